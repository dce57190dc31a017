//! Helpers for consuming and producing [`PartStream`]s.

use bytes::Bytes;
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
    futures::stream::unfold(
        (body, TreeHasher::new(), false),
        move |(mut body, mut hasher, done)| {
            let archive_id = archive_id.clone();
            async move {
                if done {
                    return None;
                }
                match body.next().await {
                    Some(Ok(chunk)) => {
                        hasher.update(&chunk);
                        Some((Ok(chunk), (body, hasher, false)))
                    }
                    Some(Err(e)) => Some((Err(e), (body, hasher, true))),
                    None => {
                        let got = hasher.len();
                        let failure = if got != expected_len {
                            Error::Remote {
                                backend,
                                message: format!(
                                    "downloading {archive_id}: got {got} bytes, expected {expected_len}"
                                ),
                                temporary: true,
                                source: None,
                            }
                        } else {
                            let actual = hasher.clone().finish();
                            match whole_archive_hash {
                                Some(expected) if expected != actual => Error::Integrity {
                                    backend,
                                    archive_id,
                                    expected: expected.to_hex(),
                                    actual: actual.to_hex(),
                                },
                                _ => return None,
                            }
                        };
                        Some((Err(failure), (body, hasher, true)))
                    }
                }
            }
        },
    )
    .boxed()
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
