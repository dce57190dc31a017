//! Helpers for consuming and producing [`PartStream`]s.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::treehash::{tree_hash, TreeHash, TreeHashBuilder};
use crate::{Error, Part, PartStream};

/// Splits an in-memory buffer into a part stream (tests, small archives).
pub fn parts_from_bytes(data: Bytes, part_size: u64) -> PartStream {
    let part_size = part_size.max(1) as usize;
    let mut parts = Vec::new();
    let mut offset = 0usize;
    loop {
        let end = (offset + part_size).min(data.len());
        let chunk = data.slice(offset..end);
        parts.push(Ok(Part::hashed(parts.len() as u64, offset as u64, chunk)));
        offset = end;
        if offset >= data.len() {
            break;
        }
    }
    futures::stream::iter(parts).boxed()
}

/// Checks a stream of parts as a backend consumes it: order, sizes and each part's hash, and
/// builds the whole-archive tree hash. Backends feed every part through [`PartChecker::accept`].
#[derive(Debug)]
pub struct PartChecker {
    backend: &'static str,
    part_size: Option<u64>,
    next_index: u64,
    size: u64,
    saw_short_part: bool,
    hashes: TreeHashBuilder,
    verify_hashes: bool,
    allow_held: bool,
}

impl PartChecker {
    /// A checker for `backend`'s error messages. With `verify_hashes`, each part's bytes are
    /// re-hashed and compared with the hash it carries.
    pub fn new(backend: &'static str, verify_hashes: bool) -> Self {
        PartChecker {
            backend,
            part_size: None,
            next_index: 0,
            size: 0,
            saw_short_part: false,
            hashes: TreeHashBuilder::new(),
            verify_hashes,
            allow_held: false,
        }
    }

    /// Also accepts parts an earlier run stored ([`Part::held`]): for the upload driver, which
    /// finds them in the upload it continues. Any other consumer cannot store a part without
    /// its bytes and refuses them.
    pub fn allowing_held(mut self) -> Self {
        self.allow_held = true;
        self
    }

    /// Accepts the next part, or says why the stream is malformed.
    pub fn accept(&mut self, part: &Part) -> Result<(), Error> {
        let malformed = |message: String| Error::Remote {
            backend: self.backend,
            message: format!("malformed part stream: {message}"),
            temporary: false,
            source: None,
        };
        if part.index != self.next_index || part.offset != self.size {
            return Err(malformed(format!(
                "expected part {} at offset {}, got part {} at offset {}",
                self.next_index, self.size, part.index, part.offset
            )));
        }
        if part.held.is_some() && !self.allow_held {
            return Err(Error::PartNotHeld {
                backend: self.backend,
                number: part.index + 1,
            });
        }
        let len = part.len();
        if self.saw_short_part {
            return Err(malformed("a part followed the final short part".into()));
        }
        match self.part_size {
            None => self.part_size = Some(len),
            Some(size) if len < size => self.saw_short_part = true,
            Some(size) if len > size => {
                return Err(malformed(format!(
                    "part {} is {len} bytes, larger than the first part ({size})",
                    part.index
                )))
            }
            Some(_) => {}
        }
        // A part hashed from its own bytes by its maker is not hashed again: one pass per byte.
        if self.verify_hashes && !part.hash_from_data && part.held.is_none() {
            let actual = tree_hash(&part.data);
            if actual != part.tree_hash {
                return Err(Error::Integrity {
                    backend: self.backend,
                    archive_id: format!("part {}", part.index),
                    expected: part.tree_hash.to_hex(),
                    actual: actual.to_hex(),
                });
            }
        }
        self.hashes
            .push_part(len, part.tree_hash)
            .map_err(|e| malformed(e.to_string()))?;
        self.next_index += 1;
        self.size += len;
        Ok(())
    }

    /// Bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Tree hash of everything accepted.
    pub fn tree_hash(&self) -> TreeHash {
        self.hashes.finish()
    }
}

/// Passes `stream`'s items through, showing each to `observe` (which may refuse it), and when
/// the stream ends asks `finish` whether everything seen adds up: its error, if any, comes as
/// the last item. The stream ends after the first error. Downloads and copies check their
/// size and tree hash this way, so a short or altered stream fails instead of ending quietly.
pub fn check_at_end<T, S, O, F>(
    stream: BoxStream<'static, Result<T, Error>>,
    state: S,
    observe: O,
    finish: F,
) -> BoxStream<'static, Result<T, Error>>
where
    T: Send + 'static,
    S: Send + 'static,
    O: FnMut(&mut S, &T) -> Result<(), Error> + Send + 'static,
    F: FnOnce(S) -> Option<Error> + Send + 'static,
{
    let checking = Some((state, observe, finish));
    futures::stream::unfold((stream, checking), |(mut stream, checking)| async move {
        // `None` once an error was given: nothing follows it.
        let (mut state, mut observe, finish) = checking?;
        match stream.next().await {
            Some(Ok(item)) => match observe(&mut state, &item) {
                Ok(()) => Some((Ok(item), (stream, Some((state, observe, finish))))),
                Err(e) => Some((Err(e), (stream, None))),
            },
            Some(Err(e)) => Some((Err(e), (stream, None))),
            None => finish(state).map(|e| (Err(e), (stream, None))),
        }
    })
    .boxed()
}

/// Wraps a download so that it fails instead of ending quietly when the byte count is wrong or,
/// for a whole-archive read, when the bytes do not have the recorded tree hash. The error comes
/// as the last item, before the stream ends.
pub fn verified_download(
    backend: &'static str,
    archive_id: String,
    body: crate::ByteStream,
    expected_len: u64,
    whole_archive_hash: Option<TreeHash>,
) -> crate::ByteStream {
    use crate::treehash::TreeHasher;
    let observe = |hasher: &mut TreeHasher, chunk: &Bytes| {
        hasher.update(chunk);
        Ok(())
    };
    check_at_end(body, TreeHasher::new(), observe, move |hasher| {
        let got = hasher.len();
        if got != expected_len {
            return Some(Error::Remote {
                backend,
                message: format!(
                    "downloading {archive_id}: got {got} bytes, expected {expected_len}"
                ),
                temporary: true,
                source: None,
            });
        }
        let actual = hasher.finish();
        match whole_archive_hash {
            Some(expected) if expected != actual => Some(Error::Integrity {
                backend,
                archive_id,
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            }),
            _ => None,
        }
    })
}

/// Drives a backend's part uploads: takes parts from `parts` while fewer than `concurrency` are
/// in flight, and keeps those in flight moving while the next part is being produced. `start`
/// checks a part and returns its upload, or `None` when it need not be sent. Returns the uploads'
/// results in completion order. The first error stops taking parts; the uploads in flight are
/// then dropped (which cancels them), or, with `finish_in_flight`, allowed to finish first, so
/// that an upload kept for resuming holds every part that was on its way.
pub async fn upload_concurrently<T, Fut>(
    mut parts: PartStream,
    concurrency: usize,
    finish_in_flight: bool,
    mut start: impl FnMut(Part) -> Result<Option<Fut>, Error>,
) -> Result<Vec<T>, Error>
where
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut results = Vec::new();
    let mut source_done = false;
    let outcome = loop {
        tokio::select! {
            next = parts.next(), if !source_done && in_flight.len() < concurrency.max(1) => {
                match next {
                    None => source_done = true,
                    Some(part) => match part.and_then(&mut start) {
                        Ok(Some(upload)) => in_flight.push(upload),
                        Ok(None) => {}
                        Err(e) => break Err(e),
                    },
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                Ok(result) => results.push(result),
                Err(e) => break Err(e),
            },
            else => break Ok(results),
        }
    };
    if outcome.is_err() && finish_in_flight {
        while in_flight.next().await.is_some() {}
    }
    outcome
}

/// The smallest power-of-two part size, at least `min`, that keeps an archive of about
/// `size_hint` bytes under `max_parts` parts, with headroom (an eighth, plus 64 MiB) for a
/// stream that grows a little past its estimate. Never above `max`.
pub fn automatic_part_size(size_hint: u64, min: u64, max: u64, max_parts: u64) -> u64 {
    let with_headroom = size_hint
        .saturating_add(size_hint / 8)
        .saturating_add(64 << 20);
    let mut size = min;
    while with_headroom.div_ceil(size) > max_parts && size < max {
        size *= 2;
    }
    size
}

/// How an archive arrives, told by looking one part ahead.
pub enum Shape {
    /// All of it in one part (which may be empty).
    Single(Part),
    /// Several parts: the whole stream, first part included.
    Multipart(PartStream),
}

/// Looks one part ahead to tell a one-part archive from a multipart one. A stream with no part
/// at all breaks the [`PartStream`] contract and is an error.
pub async fn shape(backend: &'static str, parts: PartStream) -> Result<Shape, Error> {
    let mut parts = parts.peekable();
    let first = match parts.next().await {
        Some(part) => part?,
        None => {
            return Err(Error::Remote {
                backend,
                message: "the archive stream was empty".into(),
                temporary: false,
                source: None,
            })
        }
    };
    if std::pin::Pin::new(&mut parts).peek().await.is_none() {
        return Ok(Shape::Single(first));
    }
    Ok(Shape::Multipart(
        futures::stream::iter([Ok(first)]).chain(parts).boxed(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> crate::ByteStream {
        let chunks: Vec<Result<Bytes, Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        futures::stream::iter(chunks).boxed()
    }

    async fn items(stream: crate::ByteStream) -> Vec<Result<Bytes, Error>> {
        stream.collect().await
    }

    /// A download passes through whole when it has the recorded length and tree hash; a short
    /// one or one with other bytes ends with an error after its last chunk, never quietly.
    #[tokio::test]
    async fn a_download_ends_with_an_error_unless_its_length_and_tree_hash_match() {
        let hash = tree_hash(b"hello world");
        let fine = items(verified_download(
            "t",
            "a".into(),
            body(&[b"hello ", b"world"]),
            11,
            Some(hash),
        ))
        .await;
        assert_eq!(fine.len(), 2);
        assert!(fine.iter().all(Result::is_ok));

        let short = items(verified_download(
            "t",
            "a".into(),
            body(&[b"hello "]),
            11,
            Some(hash),
        ))
        .await;
        assert_eq!(short.len(), 2);
        let Err(Error::Remote {
            message,
            temporary: true,
            ..
        }) = &short[1]
        else {
            panic!("{short:?}")
        };
        assert!(message.contains("got 6 bytes, expected 11"), "{message}");

        let altered = items(verified_download(
            "t",
            "a".into(),
            body(&[b"hello", b"World"]),
            10,
            Some(tree_hash(b"helloworld")),
        ))
        .await;
        assert!(
            matches!(altered.last(), Some(Err(Error::Integrity { .. }))),
            "{altered:?}"
        );
        // A ranged read is checked by length only.
        let ranged = items(verified_download(
            "t",
            "a".into(),
            body(&[b"hello"]),
            5,
            None,
        ))
        .await;
        assert!(ranged.iter().all(Result::is_ok));
    }

    /// Nothing follows an error: not the rest of the stream, not the final check.
    #[tokio::test]
    async fn nothing_follows_the_first_error() {
        let refuse_second = |seen: &mut usize, _: &Bytes| {
            *seen += 1;
            match *seen {
                2 => Err(Error::Unsupported {
                    backend: "t",
                    operation: "second",
                }),
                _ => Ok(()),
            }
        };
        let checked = check_at_end(body(&[b"a", b"b", b"c"]), 0usize, refuse_second, |_| {
            Some(Error::Unsupported {
                backend: "t",
                operation: "final",
            })
        });
        let out = items(checked).await;
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(
            &out[1],
            Err(Error::Unsupported {
                operation: "second",
                ..
            })
        ));
    }

    /// A checker that verifies hashes trusts a part hashed from its own bytes by its maker (the
    /// engine's: the second pass would only repeat the first) and re-hashes any other.
    #[test]
    fn only_parts_not_hashed_from_their_bytes_are_hashed_again() {
        let data = Bytes::from_static(b"some bytes");
        let hashed = Part::hashed(0, 0, data.clone());
        assert!(PartChecker::new("test", true).accept(&hashed).is_ok());
        let claimed = Part {
            hash_from_data: false,
            ..hashed.clone()
        };
        assert!(PartChecker::new("test", true).accept(&claimed).is_ok());
        let wrong = Part {
            tree_hash: tree_hash(b"other bytes"),
            ..claimed
        };
        let err = PartChecker::new("test", true).accept(&wrong).unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        // The provenance is what decides: the maker vouches for it.
        let vouched = Part {
            hash_from_data: true,
            ..wrong
        };
        assert!(PartChecker::new("test", true).accept(&vouched).is_ok());
    }
}
