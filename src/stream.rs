//! Turns a candidate into a stream of tree-hashed parts with bounded memory: a blocking thread
//! writes the archive into part-sized buffers, parts are hashed on the blocking pool two at a
//! time, and the backend pulls them in order. Back-pressure comes from the bounded channel.
//!
//! File contents are read straight into the part buffers, and a buffer comes back for the next
//! part once the backend drops it: no byte is copied in our process, and no page is faulted in
//! and zeroed again for every part.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use glacier_backup_archiver::treehash::{leaf_hashes, tree_hash_of_leaves};
use glacier_backup_archiver::{Error, Part, PartStream};
use tokio::sync::mpsc;

use crate::candidate::SourceError;
use crate::candidate::{ArchiveSink, Candidate};
use crate::catalog::{Cataloged, Encoder};
pub use crate::codec::PlainSize;
use crate::codec::{EncodingSink, Layers};
use glacier_backup_archiver::SourceKind;

/// Parts hashed concurrently; with the part being filled, the one queued and the one the
/// backend holds, at most about `HASHING + 3` parts are in memory.
const HASHING: usize = 1;

/// Bytes asked of the file in one read.
const READ_SIZE: usize = 1 << 20;

pub(crate) use crate::codec::MIN_BUFFER;

/// Streams `candidate`'s archive as parts of `part_size` bytes (the last may be shorter; an
/// empty archive is one empty part). `size_hint` is the expected archive size: a small archive
/// gets a buffer its size, not a part's, so many can be under way in one memory budget.
pub fn archive_parts(
    candidate: Arc<dyn Candidate>,
    part_size: usize,
    size_hint: u64,
) -> PartStream {
    encoded_parts(candidate, part_size, size_hint, None).0
}

/// [`archive_parts`] with `layers` (compression, encryption) applied between the archive
/// writer and the parts: what the parts carry are the stored bytes. A directory archive's
/// catalog, written in the same pass, is in the returned slot once the last part is out.
pub fn encoded_parts(
    candidate: Arc<dyn Candidate>,
    part_size: usize,
    size_hint: u64,
    layers: Option<Layers>,
) -> (PartStream, PlainSize, CatalogSlot) {
    let plain_size = PlainSize::default();
    let plain_total = plain_size.clone();
    let catalog = CatalogSlot::default();
    let catalog_out = catalog.clone();
    let (tx, rx) = mpsc::channel::<Result<Bytes, SourceError>>(1);
    let first_buffer = usize::try_from(size_hint)
        .unwrap_or(usize::MAX)
        .clamp(MIN_BUFFER, part_size.max(MIN_BUFFER));
    tokio::task::spawn_blocking(move || {
        let mut writer = PartWriter {
            part: Vec::new(),
            part_size,
            first_buffer,
            filled: 0,
            pool: BufferPool::default(),
            tx: &tx,
            sent_any: false,
        };
        // A catalog that cannot be made or finished costs only itself: the archive stays
        // whole and restorable, only not by entry.
        let no_catalog = |e: io::Error| {
            let path = crate::shown(candidate.source_path());
            tracing::warn!("{path}: no catalog kept: {e}");
        };
        let mut catalog = match candidate.kind() {
            SourceKind::Directory => Encoder::new().map_err(no_catalog).ok(),
            SourceKind::File => None,
        };
        catalog_out.expect_leaves(catalog.is_some());
        let written = match &layers {
            None => write(&*candidate, &mut writer, catalog.as_mut()).map(|()| writer),
            Some(layers) => encode_into(
                &*candidate,
                layers,
                writer,
                &plain_total,
                catalog.as_mut(),
                &catalog_out,
            ),
        };
        // The catalog goes in the slot before the last part is sent: whoever sees the parts
        // end finds it there.
        let result = written.and_then(|writer| {
            if let Some(encoder) = catalog {
                match encoder.finish() {
                    Ok(bytes) => catalog_out.put_entries(bytes),
                    Err(e) => no_catalog(e),
                }
            }
            writer.finish()
        });
        if let Err(e) = result {
            // A closed channel means the consumer is gone and does not need the reason.
            let _ = tx.blocking_send(Err(e));
        }
    });

    let parts = hashed_parts(rx, catalog.clone());
    (parts, plain_size, catalog)
}

/// The written buffers as parts in order, each tree-hashed on the blocking pool (`HASHING` at
/// a time); the leaves go to `leaves_out` for the catalog, so nothing is hashed twice.
fn hashed_parts(
    rx: mpsc::Receiver<Result<Bytes, SourceError>>,
    leaves_out: CatalogSlot,
) -> PartStream {
    let mut offset = 0u64;
    let mut index = 0u64;
    tokio_stream_from(rx)
        .map(move |chunk| {
            let position = (index, offset);
            if let Ok(data) = &chunk {
                index += 1;
                offset += data.len() as u64;
            }
            let leaves_out = leaves_out.clone();
            async move {
                let data = chunk.map_err(|e| Error::Source(Box::new(e)))?;
                let (index, offset) = position;
                let hashed = data.clone();
                let tree_hash = tokio::task::spawn_blocking(move || {
                    let leaves = leaf_hashes(&hashed);
                    let tree_hash = tree_hash_of_leaves(&leaves);
                    leaves_out.put_leaves(index, leaves);
                    tree_hash
                })
                .await
                .map_err(|e| Error::Source(Box::new(e)))?;
                Ok(Part {
                    index,
                    offset,
                    data,
                    tree_hash,
                    // Hashed just above, from these very bytes.
                    hash_from_data: true,
                    held: None,
                })
            }
        })
        .buffered(HASHING)
        .boxed()
}

/// Where a directory archive's catalog is left by the writer once the archive is written
/// whole, with what its layout needs (see [`crate::catalog::Layout`]): the leaves of every part
/// as it is hashed, and the zstd frames. Empty for a file, or after a failure.
#[derive(Debug, Clone, Default)]
pub struct CatalogSlot(Arc<Mutex<CatalogParts>>);

#[derive(Debug, Default)]
struct CatalogParts {
    entries: Option<Vec<u8>>,
    /// Whether leaves are kept (a catalog is being written).
    keeps_leaves: bool,
    /// Each part's leaves, by part index (parts may be hashed out of order).
    leaves: std::collections::BTreeMap<u64, Vec<[u8; 32]>>,
    frames: Option<Vec<crate::catalog::Frame>>,
}

impl CatalogSlot {
    /// The catalog and its layout, once the archive is stored whole as `stored_size` bytes:
    /// `age_header` is the header (through the nonce) of an encrypted archive.
    pub fn take(&self, stored_size: u64, age_header: Option<Vec<u8>>) -> Option<Cataloged> {
        let mut parts = self.lock();
        let entries = parts.entries.take()?;
        let leaves: Vec<[u8; 32]> = std::mem::take(&mut parts.leaves)
            .into_values()
            .flatten()
            .collect();
        let layout = crate::catalog::Layout {
            stored_size,
            // An empty archive has one leaf, of no bytes.
            leaves: match leaves.is_empty() {
                true => vec![empty_leaf()],
                false => leaves,
            },
            frames: parts.frames.take(),
            age_header,
        };
        Some(Cataloged {
            entries,
            layout: Some(layout.encode()),
            index_id: None,
            base: None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CatalogParts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expect_leaves(&self, keep: bool) {
        self.lock().keeps_leaves = keep;
    }

    fn put_entries(&self, catalog: Vec<u8>) {
        self.lock().entries = Some(catalog);
    }

    fn put_leaves(&self, part: u64, leaves: Vec<[u8; 32]>) {
        let mut parts = self.lock();
        if parts.keeps_leaves {
            parts.leaves.insert(part, leaves);
        }
    }

    fn put_frames(&self, frames: Vec<crate::catalog::Frame>) {
        self.lock().frames = Some(frames);
    }
}

/// The SHA-256 of no bytes: the one leaf of an empty archive.
fn empty_leaf() -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest([]).into()
}

/// Writes the archive, with its catalog when one is asked for.
fn write(
    candidate: &dyn Candidate,
    out: &mut dyn ArchiveSink,
    catalog: Option<&mut Encoder>,
) -> Result<(), SourceError> {
    match catalog {
        Some(catalog) => candidate.write_cataloged(out, catalog),
        None => candidate.write_archive(out),
    }
}

/// Writes the archive through the encoding stage into `writer`, noting its own size.
fn encode_into<'a>(
    candidate: &dyn Candidate,
    layers: &Layers,
    writer: PartWriter<'a>,
    plain_size: &PlainSize,
    catalog: Option<&mut Encoder>,
    catalog_out: &CatalogSlot,
) -> Result<PartWriter<'a>, SourceError> {
    // The stage's own failures (zstd's, age's) are a broken pipe to the parts or a resource
    // the machine lacks: reported as the source stopping, with the cause.
    let failed = |e: io::Error| match e.kind() {
        io::ErrorKind::BrokenPipe => SourceError::Stopped,
        _ => SourceError::Encode(e.to_string()),
    };
    let mut sink = EncodingSink::new(layers, writer, plain_size.clone()).map_err(failed)?;
    write(candidate, &mut sink, catalog)?;
    let finished = sink.finish().map_err(failed)?;
    if let Some(frames) = finished.frames {
        catalog_out.put_frames(frames);
    }
    Ok(finished.out)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Part buffers the backend has finished with, for the next parts. It never holds more than
/// were in flight at once, which the channel and the backend's concurrency bound.
#[derive(Clone, Default)]
struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufferPool {
    /// A buffer given back, or a new one of `len` bytes (zeroed pages the kernel maps on first
    /// touch).
    fn take(&self, len: usize) -> Vec<u8> {
        self.0
            .lock()
            .expect("pool lock")
            .pop()
            .unwrap_or_else(|| vec![0; len])
    }
}

/// A filled part buffer shared as [`Bytes`], going back to its pool when the last clone drops.
struct PooledPart {
    buffer: Vec<u8>,
    len: usize,
    pool: BufferPool,
}

impl AsRef<[u8]> for PooledPart {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl Drop for PooledPart {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.pool.0.lock().expect("pool lock").push(buffer);
    }
}

struct PartWriter<'a> {
    /// The part being filled, `filled` bytes of it in use; it grows up to the part size.
    part: Vec<u8>,
    part_size: usize,
    /// The size of a new buffer: the whole archive when it is smaller than a part.
    first_buffer: usize,
    filled: usize,
    pool: BufferPool,
    tx: &'a mpsc::Sender<Result<Bytes, SourceError>>,
    sent_any: bool,
}

impl PartWriter<'_> {
    /// Where the next bytes go: the unfilled rest of the part, never empty before the part is
    /// full.
    fn room(&mut self) -> &mut [u8] {
        if self.part.is_empty() {
            self.part = self.pool.take(self.first_buffer);
        }
        if self.filled == self.part.len() && self.part.len() < self.part_size {
            // Larger than its hint: grow by doubling, up to a whole part.
            let grown = (self.part.len() * 2).clamp(MIN_BUFFER, self.part_size);
            self.part.resize(grown, 0);
        }
        let end = self.part.len().min(self.part_size);
        &mut self.part[self.filled..end]
    }

    fn send(&mut self) -> io::Result<()> {
        let full = PooledPart {
            buffer: std::mem::take(&mut self.part),
            len: std::mem::take(&mut self.filled),
            pool: self.pool.clone(),
        };
        self.sent_any = true;
        self.tx
            .blocking_send(Ok(Bytes::from_owner(full)))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    fn finish(mut self) -> Result<(), SourceError> {
        if self.filled > 0 || !self.sent_any {
            self.send().map_err(|_| SourceError::Stopped)?;
        }
        Ok(())
    }

    fn send_if_full(&mut self) -> io::Result<()> {
        if self.filled == self.part_size {
            self.send()?;
        }
        Ok(())
    }
}

impl Write for PartWriter<'_> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let room = self.room();
            let take = room.len().min(buf.len());
            room[..take].copy_from_slice(&buf[..take]);
            self.filled += take;
            buf = &buf[take..];
            self.send_if_full()?;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ArchiveSink for PartWriter<'_> {
    fn read_from(&mut self, reader: &mut dyn Read) -> io::Result<usize> {
        // Reads of at most a MiB: the kernel's copy then writes into cache-sized pieces.
        let room = self.room();
        let end = READ_SIZE.min(room.len());
        let n = reader.read(&mut room[..end])?;
        self.filled += n;
        self.send_if_full()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candidate::PathCandidate;
    use glacier_backup_archiver::treehash::tree_hash;
    use glacier_backup_archiver::SourceKind;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    /// Buffers are reused only once the backend has dropped every handle on them: parts held
    /// all at once and parts dropped one by one carry the same bytes.
    #[tokio::test(flavor = "multi_thread")]
    async fn parts_keep_their_bytes_whether_held_or_dropped_as_they_go() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.bin");
        let data = sample(5 * (1 << 20) + 12_345);
        std::fs::write(&file, &data).unwrap();
        let candidate: Arc<dyn Candidate> =
            Arc::new(PathCandidate::new(file.clone(), SourceKind::File));

        let held: Vec<Part> = archive_parts(candidate.clone(), 1 << 20, data.len() as u64)
            .map(|part| part.unwrap())
            .collect()
            .await;
        let mut joined = Vec::new();
        for part in &held {
            assert_eq!(part.tree_hash, tree_hash(&part.data));
            joined.extend_from_slice(&part.data);
        }
        assert_eq!(held.len(), 6);
        assert_eq!(joined, data);

        // A hint far below the real size: buffers grow, parts keep the part size.
        let mut streamed = Vec::new();
        let mut sizes = Vec::new();
        let mut parts = archive_parts(candidate, 1 << 20, 10);
        while let Some(part) = parts.next().await {
            let part = part.unwrap();
            assert_eq!(part.tree_hash, tree_hash(&part.data));
            sizes.push(part.data.len());
            streamed.extend_from_slice(&part.data);
        }
        assert_eq!(streamed, data);
        assert_eq!(sizes, [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 12_345]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_directory_streams_the_same_tar_as_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/big"), sample(3 * (1 << 20) + 7)).unwrap();
        std::fs::write(tree.join("small"), b"small").unwrap();
        let candidate = PathCandidate::new(tree, SourceKind::Directory);
        let mut whole = Vec::new();
        candidate.write_archive(&mut whole).unwrap();
        let mut streamed = Vec::new();
        let mut parts = archive_parts(Arc::new(candidate), 1 << 20, 0);
        while let Some(part) = parts.next().await {
            streamed.extend_from_slice(&part.unwrap().data);
        }
        assert_eq!(streamed, whole);
    }
}
