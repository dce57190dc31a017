//! The selected entries read back from the fetched spans as one tar stream (each entry's header
//! records and padded data, then the end-of-archive blocks), for the safe extraction. Each run
//! of entries is decoded in one pass from its first frame; age's chunks are decrypted one at a
//! time, from the header the layout keeps.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

use super::fetch::Spans;
use super::{PartialPlan, Run};
use crate::catalog::AGE_CHUNK;
use crate::codec::seal::ChunkOpener;

/// The two zero blocks that end a tar.
const TAR_END: u64 = 1024;

/// A tar of the plan's entries, read from the fetched spans.
pub(crate) struct SelectedTar {
    spans: Arc<Spans>,
    opener: Option<Arc<ChunkOpener>>,
    compressed: bool,
    runs: VecDeque<Run>,
    current: Option<RunReader>,
    trailer: u64,
}

struct RunReader {
    decoded: Box<dyn Read + Send>,
    /// The plain offset of the next byte `decoded` yields.
    position: u64,
    entries: VecDeque<Range<u64>>,
}

impl SelectedTar {
    /// The tar of `plan`'s entries from `spans`; `file_key` opens an encrypted archive.
    pub(crate) fn new(
        plan: PartialPlan,
        spans: Spans,
        file_key: Option<[u8; 16]>,
    ) -> io::Result<Self> {
        let opener = match (&plan.layout.age_header, file_key) {
            (Some(header), Some(key)) => {
                Some(Arc::new(ChunkOpener::new(header, &key, plan.stored_size)?))
            }
            (Some(_), None) => return Err(io::Error::other("an encrypted archive needs its key")),
            (None, _) => None,
        };
        Ok(SelectedTar {
            spans: Arc::new(spans),
            opener,
            compressed: plan.layout.frames.is_some(),
            runs: plan.runs.into(),
            current: None,
            trailer: TAR_END,
        })
    }

    /// The decoder of one run: its compressed span, decrypted when encrypted, decompressed
    /// when compressed.
    fn open(&self, run: Run) -> io::Result<RunReader> {
        let inner: Box<dyn Read + Send> = match &self.opener {
            None => Box::new(PlainSpan {
                spans: self.spans.clone(),
                position: run.inner.start,
                end: run.inner.end,
            }),
            Some(opener) => Box::new(AgeSpan {
                spans: self.spans.clone(),
                opener: opener.clone(),
                position: run.inner.start,
                end: run.inner.end,
                chunk: Vec::new(),
                chunk_index: None,
            }),
        };
        let decoded: Box<dyn Read + Send> = match self.compressed {
            false => inner,
            true => Box::new(zstd::stream::read::Decoder::new(inner)?),
        };
        Ok(RunReader {
            decoded,
            position: run.plain_start,
            entries: run.entries.into(),
        })
    }
}

impl Read for SelectedTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(run) = &mut self.current {
                if let Some(n) = run.read(buf)? {
                    return Ok(n);
                }
                self.current = None;
            }
            match self.runs.pop_front() {
                Some(run) => self.current = Some(self.open(run)?),
                None => break,
            }
        }
        let n = buf
            .len()
            .min(usize::try_from(self.trailer).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.trailer -= n as u64;
        Ok(n)
    }
}

impl RunReader {
    /// Reads from the current entry, skipping what lies between entries: `None` when the run
    /// has no entry left.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(entry) = self.entries.front() else {
            return Ok(None);
        };
        if self.position < entry.start {
            let gap = entry.start - self.position;
            let skipped = io::copy(&mut (&mut self.decoded).take(gap), &mut io::sink())?;
            if skipped < gap {
                return Err(cut_short());
            }
            self.position = entry.start;
        }
        let want = buf
            .len()
            .min(usize::try_from(entry.end - self.position).unwrap_or(usize::MAX));
        let n = self.decoded.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(cut_short());
        }
        self.position += n as u64;
        if self.position == entry.end {
            self.entries.pop_front();
        }
        Ok(Some(n))
    }
}

fn cut_short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the decoded span ends before an entry it should hold",
    )
}

/// A span of stored bytes, as they are (an archive without age).
struct PlainSpan {
    spans: Arc<Spans>,
    position: u64,
    end: u64,
}

impl Read for PlainSpan {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.end - self.position).unwrap_or(usize::MAX));
        self.spans.read_exact_at(&mut buf[..n], self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

/// The plaintext of an encrypted archive's span, chunk by chunk.
struct AgeSpan {
    spans: Arc<Spans>,
    opener: Arc<ChunkOpener>,
    position: u64,
    end: u64,
    chunk: Vec<u8>,
    chunk_index: Option<u64>,
}

impl Read for AgeSpan {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let index = self.position / AGE_CHUNK;
        if self.chunk_index != Some(index) {
            let stored = self.opener.stored_range(index);
            self.chunk.resize((stored.end - stored.start) as usize, 0);
            self.spans.read_exact_at(&mut self.chunk, stored.start)?;
            self.chunk_index = None;
            self.opener.open(index, &mut self.chunk)?;
            self.chunk_index = Some(index);
        }
        let offset = (self.position - index * AGE_CHUNK) as usize;
        let available = self.chunk.len().saturating_sub(offset);
        if available == 0 {
            return Err(cut_short());
        }
        let n = buf
            .len()
            .min(available)
            .min(usize::try_from(self.end - self.position).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.chunk[offset..offset + n]);
        self.position += n as u64;
        Ok(n)
    }
}
