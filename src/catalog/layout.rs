//! Where an archive's plain tar bytes lie in its stored bytes, and what checks a span of them:
//! the SHA-256 of every MiB of the stored bytes (the tree hash's own leaves, so nothing is
//! hashed twice at backup), the zstd frames (each decodes alone), and the age header (so a
//! span of chunks decrypts without fetching the archive's start).
//!
//! The compact form: `LAYOUT_MAGIC`, the stored size, the leaves (32 bytes each), the frames
//! (count, then plain and compressed length of each), the age header (length, bytes); numbers
//! are LEB128 varints.

use std::ops::Range;

use super::format::{put_varint, read_varint as varint};
use super::CatalogError;

/// The first bytes of every layout: the format and its version.
pub const LAYOUT_MAGIC: &[u8; 4] = b"GBL1";

/// A tree hash leaf covers this many stored bytes; spans are fetched aligned to it.
pub const LEAF: u64 = 1 << 20;

/// age's STREAM: plaintext bytes per chunk, and the chunk as stored (with its tag).
pub const AGE_CHUNK: u64 = 64 << 10;
/// See [`AGE_CHUNK`].
pub const AGE_STORED_CHUNK: u64 = AGE_CHUNK + 16;

/// One zstd frame: the plain bytes it decodes to and its compressed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Plain bytes.
    pub plain: u64,
    /// Compressed bytes.
    pub compressed: u64,
}

/// How one archive's stored bytes are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The archive's stored size.
    pub stored_size: u64,
    /// SHA-256 of each MiB of the stored bytes, in order (the last may cover less).
    pub leaves: Vec<[u8; 32]>,
    /// The zstd frames, in order, when the archive is compressed; the seek table's skippable
    /// frame follows them.
    pub frames: Option<Vec<Frame>>,
    /// The age header through the payload nonce, when the archive is encrypted.
    pub age_header: Option<Vec<u8>>,
}

/// Where a plain span lies in the stored bytes: the stored bytes to fetch, and where decoding
/// starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Stored bytes that hold the span, aligned outward to [`LEAF`].
    pub stored: Range<u64>,
    /// The span of the compressed stream (the plain stream when not compressed) to decode:
    /// whole frames.
    pub inner: Range<u64>,
    /// The plain offset decoding from `inner.start` yields first.
    pub plain_start: u64,
}

impl Layout {
    /// The compact form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.leaves.len() * 32);
        out.extend_from_slice(LAYOUT_MAGIC);
        put_varint(&mut out, self.stored_size);
        put_varint(&mut out, self.leaves.len() as u64);
        self.leaves
            .iter()
            .for_each(|leaf| out.extend_from_slice(leaf));
        match &self.frames {
            None => out.push(0),
            Some(frames) => {
                out.push(1);
                put_varint(&mut out, frames.len() as u64);
                for frame in frames {
                    put_varint(&mut out, frame.plain);
                    put_varint(&mut out, frame.compressed);
                }
            }
        }
        match &self.age_header {
            None => out.push(0),
            Some(header) => {
                out.push(1);
                put_varint(&mut out, header.len() as u64);
                out.extend_from_slice(header);
            }
        }
        out
    }

    /// Reads the compact form back, refusing anything inconsistent: leaves that do not cover
    /// the stored size, frames or a header that do not fit in it.
    pub fn decode(bytes: &[u8]) -> Result<Self, CatalogError> {
        let mut input = bytes
            .strip_prefix(LAYOUT_MAGIC.as_slice())
            .ok_or_else(|| CatalogError::Format(bytes.iter().take(4).copied().collect()))?;
        let input = &mut input;
        let stored_size = varint(input)?;
        let count = varint(input)?;
        if count != stored_size.div_ceil(LEAF).max(1) {
            return Err(damaged("its leaves do not cover the archive"));
        }
        let leaves = (0..count)
            .map(|_| take(input, 32).map(|leaf| leaf.try_into().expect("32 bytes")))
            .collect::<Result<Vec<[u8; 32]>, _>>()?;
        let frames = match flag(input)? {
            false => None,
            true => {
                let count = varint(input)?;
                if count > stored_size {
                    return Err(damaged("more frames than bytes"));
                }
                let frames = (0..count)
                    .map(|_| {
                        Ok(Frame {
                            plain: varint(input)?,
                            compressed: varint(input)?,
                        })
                    })
                    .collect::<Result<Vec<_>, CatalogError>>()?;
                Some(frames)
            }
        };
        let age_header = match flag(input)? {
            false => None,
            true => {
                let len = varint(input)?;
                Some(take(input, len)?.to_vec())
            }
        };
        let layout = Layout {
            stored_size,
            leaves,
            frames,
            age_header,
        };
        if !input.is_empty() {
            return Err(damaged("bytes after its end"));
        }
        if layout.inner_size().is_none() {
            return Err(damaged("its frames or header do not fit the archive"));
        }
        Ok(layout)
    }

    /// The compressed stream's size (the plain stream's when not compressed): the stored
    /// bytes without age's header and tags; `None` when they cannot be (a damaged layout).
    fn inner_size(&self) -> Option<u64> {
        let Some(header) = &self.age_header else {
            return Some(self.stored_size);
        };
        let payload = self.stored_size.checked_sub(header.len() as u64)?;
        let chunks = payload.div_ceil(AGE_STORED_CHUNK).max(1);
        payload.checked_sub(chunks * 16)
    }

    /// Where the plain bytes `plain` lie in the stored bytes, or `None` when the layout does not
    /// reach them (a damaged catalog).
    pub fn locate(&self, plain: Range<u64>) -> Option<Located> {
        let (inner, plain_start) = match &self.frames {
            None => (plain.clone(), plain.start),
            Some(frames) => frame_span(frames, plain)?,
        };
        if inner.end > self.inner_size()? {
            return None;
        }
        let stored = match &self.age_header {
            None => inner.clone(),
            Some(header) => {
                let payload = header.len() as u64;
                let first = inner.start / AGE_CHUNK;
                let last = inner.end.saturating_sub(1).max(inner.start) / AGE_CHUNK;
                let start = payload + first * AGE_STORED_CHUNK;
                let end = (payload + (last + 1) * AGE_STORED_CHUNK).min(self.stored_size);
                start..end
            }
        };
        let aligned = stored.start / LEAF * LEAF..stored.end.div_ceil(LEAF).saturating_mul(LEAF);
        Some(Located {
            stored: aligned.start..aligned.end.min(self.stored_size),
            inner,
            plain_start,
        })
    }

    /// The leaf that the MiB starting at `offset` must hash to.
    pub fn leaf_at(&self, offset: u64) -> Option<&[u8; 32]> {
        self.leaves.get(usize::try_from(offset / LEAF).ok()?)
    }
}

/// The compressed span of the frames holding `plain`, with the first frame's plain start.
fn frame_span(frames: &[Frame], plain: Range<u64>) -> Option<(Range<u64>, u64)> {
    let (mut plain_at, mut inner_at) = (0u64, 0u64);
    let mut first = None;
    for frame in frames {
        let plain_end = plain_at.checked_add(frame.plain)?;
        let inner_end = inner_at.checked_add(frame.compressed)?;
        let holds_start = plain.start < plain_end || (plain.start == plain_end && frame.plain == 0);
        if first.is_none() && holds_start {
            first = Some((inner_at, plain_at));
        }
        if let Some((inner_start, plain_start)) = first {
            if plain.end <= plain_end {
                return Some((inner_start..inner_end, plain_start));
            }
        }
        (plain_at, inner_at) = (plain_end, inner_end);
    }
    // An empty span at the very end of the plain stream.
    (plain.start == plain_at && plain.end == plain_at).then_some((inner_at..inner_at, plain_at))
}

fn damaged(what: &str) -> CatalogError {
    CatalogError::Damaged(format!("layout: {what}"))
}

fn flag(input: &mut &[u8]) -> Result<bool, CatalogError> {
    match take(input, 1)? {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(damaged("a bad flag")),
    }
}

fn take<'a>(input: &mut &'a [u8], len: u64) -> Result<&'a [u8], CatalogError> {
    let len = usize::try_from(len).map_err(|_| damaged("a length too large"))?;
    if input.len() < len {
        return Err(damaged("cut short"));
    }
    let (taken, rest) = input.split_at(len);
    *input = rest;
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(stored_size: u64) -> Layout {
        Layout {
            stored_size,
            leaves: (0..stored_size.div_ceil(LEAF).max(1))
                .map(|i| [i as u8; 32])
                .collect(),
            frames: None,
            age_header: None,
        }
    }

    #[test]
    fn the_compact_form_round_trips_and_refuses_damage() {
        let mut with_everything = layout(5 * LEAF + 3);
        with_everything.frames = Some(vec![
            Frame {
                plain: 4 << 20,
                compressed: 1 << 20,
            },
            Frame {
                plain: 100,
                compressed: 40,
            },
        ]);
        with_everything.age_header = Some(b"age-encryption.org/v1\n...nonce".to_vec());
        for layout in [layout(0), layout(LEAF), with_everything] {
            let bytes = layout.encode();
            assert_eq!(Layout::decode(&bytes).unwrap(), layout);
            for cut in 0..bytes.len() {
                assert!(Layout::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        let mut wrong_count = layout(3 * LEAF);
        wrong_count.leaves.pop();
        assert!(Layout::decode(&wrong_count.encode()).is_err());
    }

    #[test]
    fn a_plain_span_is_fetched_aligned_to_whole_mib() {
        let plain = layout(10 * LEAF + 5);
        let located = plain.locate(3 * LEAF + 10..3 * LEAF + 20).unwrap();
        assert_eq!(located.stored, 3 * LEAF..4 * LEAF);
        assert_eq!(located.inner, 3 * LEAF + 10..3 * LEAF + 20);
        assert_eq!(located.plain_start, 3 * LEAF + 10);
        // Across a MiB boundary, and at the archive's end (not past it).
        assert_eq!(
            plain.locate(LEAF - 1..LEAF + 1).unwrap().stored,
            0..2 * LEAF
        );
        assert_eq!(
            plain.locate(10 * LEAF..10 * LEAF + 5).unwrap().stored,
            10 * LEAF..10 * LEAF + 5
        );
        assert!(
            plain.locate(10 * LEAF..10 * LEAF + 6).is_none(),
            "past the end"
        );
    }

    #[test]
    fn frames_and_age_chunks_map_a_plain_span_to_the_stored_bytes_holding_it() {
        let header = vec![7u8; 100];
        // Two frames: plain 0..3 MiB in compressed 0..1 MiB, plain 3..4 MiB in 1..1.5 MiB.
        let frames = vec![
            Frame {
                plain: 3 << 20,
                compressed: 1 << 20,
            },
            Frame {
                plain: 1 << 20,
                compressed: 512 << 10,
            },
        ];
        let inner = (1 << 20) + (512 << 10) + 20; // and a seek table
        let chunks = (inner as u64).div_ceil(AGE_CHUNK);
        let stored_size = 100 + inner as u64 + chunks * 16;
        let mut both = layout(stored_size);
        both.frames = Some(frames);
        both.age_header = Some(header);
        let located = both.locate((3 << 20) + 5..(3 << 20) + 10).unwrap();
        assert_eq!(located.inner, (1 << 20)..(1 << 20) + (512 << 10));
        assert_eq!(located.plain_start, 3 << 20);
        // Compressed 1 MiB .. 1.5 MiB is chunks 16..23, stored from 100 + 16 * 65552.
        let start = 100 + 16 * AGE_STORED_CHUNK;
        let end = 100 + 24 * AGE_STORED_CHUNK;
        assert_eq!(
            located.stored,
            start / LEAF * LEAF..(end.div_ceil(LEAF) * LEAF).min(stored_size)
        );
        // The first frame (1 MiB compressed) ends in chunk 16, past the first MiB.
        assert_eq!(both.locate(0..1).unwrap().stored, 0..stored_size);
    }
}
