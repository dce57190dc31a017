//! Turns a candidate into a stream of tree-hashed parts with bounded memory: a blocking thread
//! writes the archive into part-sized buffers, parts are hashed on the blocking pool two at a
//! time, and the backend pulls them in order. Back-pressure comes from the bounded channel.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use glacier_backup_archiver::treehash::tree_hash;
use glacier_backup_archiver::{Error, Part, PartStream};
use tokio::sync::mpsc;

use crate::candidate::Candidate;
use crate::candidate::SourceError;

/// Parts hashed concurrently; with the part being filled, the one queued and the one the
/// backend holds, at most about `HASHING + 3` parts are in memory.
const HASHING: usize = 1;

/// Streams `candidate`'s archive as parts of `part_size` bytes (the last may be shorter; an
/// empty archive is one empty part).
pub fn archive_parts(candidate: Arc<dyn Candidate>, part_size: usize) -> PartStream {
    let (tx, rx) = mpsc::channel::<Result<Bytes, SourceError>>(1);
    tokio::task::spawn_blocking(move || {
        let mut writer = PartWriter {
            part: BytesMut::with_capacity(part_size),
            part_size,
            tx: &tx,
            sent_any: false,
        };
        let result = candidate
            .write_archive(&mut writer)
            .and_then(|()| writer.finish());
        if let Err(e) = result {
            // A closed channel means the consumer is gone and does not need the reason.
            let _ = tx.blocking_send(Err(e));
        }
    });

    let mut offset = 0u64;
    let mut index = 0u64;
    tokio_stream_from(rx)
        .map(move |chunk| {
            let position = (index, offset);
            if let Ok(data) = &chunk {
                index += 1;
                offset += data.len() as u64;
            }
            async move {
                let data = chunk.map_err(|e| Error::Source(Box::new(e)))?;
                let (index, offset) = position;
                let hashed = data.clone();
                let tree_hash = tokio::task::spawn_blocking(move || tree_hash(&hashed))
                    .await
                    .map_err(|e| Error::Source(Box::new(e)))?;
                Ok(Part {
                    index,
                    offset,
                    data,
                    tree_hash,
                })
            }
        })
        .buffered(HASHING)
        .boxed()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

struct PartWriter<'a> {
    part: BytesMut,
    part_size: usize,
    tx: &'a mpsc::Sender<Result<Bytes, SourceError>>,
    sent_any: bool,
}

impl PartWriter<'_> {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.part, BytesMut::with_capacity(self.part_size));
        self.sent_any = true;
        self.tx
            .blocking_send(Ok(full.freeze()))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    fn finish(mut self) -> Result<(), SourceError> {
        if !self.part.is_empty() || !self.sent_any {
            self.send().map_err(|_| SourceError::Stopped)?;
        }
        Ok(())
    }
}

impl Write for PartWriter<'_> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let take = (self.part_size - self.part.len()).min(buf.len());
            self.part.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.part.len() == self.part_size {
                self.send()?;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
