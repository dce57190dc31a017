//! zstd written as independent frames, so a span of a directory archive decodes from the frames
//! holding it alone: a frame ends at the first entry boundary after [`FRAME_MIN`] bytes of input,
//! and at [`FRAME_MAX`] wherever it is. After the last frame comes zstd's seek table, in the
//! seekable format's skippable frame, which stock `zstd -d` skips.
//!
//! Each frame is compressed whole by one single-threaded compressor, so the stored bytes depend
//! on the input and the level alone (a resumed upload writes them again). Because frames are
//! independent, several are compressed at once on worker threads of our own: zstd's own workers
//! would have to finish every frame before the next one starts.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use zstd::bulk::Compressor;

use crate::catalog::Frame;

/// A frame ends at the next entry boundary once it holds this much input.
pub const FRAME_MIN: u64 = 1 << 20;

/// A frame ends here whatever it holds: what a restore of one small entry may decode at most.
pub const FRAME_MAX: u64 = 4 << 20;

/// The skippable frame's magic number that holds a seek table (zstd's seekable format).
const SEEK_TABLE_FRAME: u32 = 0x184D_2A5E;
/// The seek table footer's magic number.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// A frame's input, and the buffer its compressed bytes go to (both reused from frame to frame).
struct FrameBuffers {
    plain: Vec<u8>,
    compressed: Vec<u8>,
}

/// The zstd layer of a seekable archive: frames compressed here or on `workers` threads, written
/// to `out` in order.
pub struct FramedZstd<W: Write> {
    out: W,
    /// The frame being filled.
    filling: FrameBuffers,
    frames: Vec<Frame>,
    compressing: Compressing,
}

enum Compressing {
    /// On the writer's own thread (a small archive: one frame or so).
    Here(Compressor<'static>),
    /// On worker threads, frame `n` on worker `n % workers`.
    Pool(Pool),
}

impl<W: Write> FramedZstd<W> {
    /// Frames at zstd `level` into `out`, compressed on `workers` threads of their own (none:
    /// on the caller's). The stored bytes are the same for any number of workers.
    pub fn new(level: i32, workers: usize, out: W) -> io::Result<Self> {
        let compressing = match workers {
            0 => Compressing::Here(compressor(level)?),
            workers => Compressing::Pool(Pool::start(level, workers)?),
        };
        Ok(FramedZstd {
            out,
            filling: FrameBuffers::empty(),
            frames: Vec::new(),
            compressing,
        })
    }

    /// Says an archive entry starts here: the frame ends if it holds enough.
    pub fn entry_boundary(&mut self) -> io::Result<()> {
        if self.filling.plain.len() as u64 >= FRAME_MIN {
            self.end_frame()?;
        }
        Ok(())
    }

    /// Ends the last frame and writes the seek table: the writer underneath, and the frames.
    pub fn finish(mut self) -> io::Result<(W, Vec<Frame>)> {
        // An empty archive is still one (empty) frame, as zstd writes it.
        if !self.filling.plain.is_empty() || self.frames.is_empty() {
            self.end_frame()?;
        }
        if let Compressing::Pool(pool) = &mut self.compressing {
            while let Some(done) = pool.oldest_done()? {
                write_frame(&mut self.out, &mut self.frames, &done)?;
            }
        }
        let table = seek_table(&self.frames)?;
        self.out.write_all(&table)?;
        Ok((self.out, self.frames))
    }

    /// Hands the filled frame on: compressed at once, or to the next worker once that worker's
    /// previous frame is written (which bounds the frames in flight to one per worker).
    fn end_frame(&mut self) -> io::Result<()> {
        match &mut self.compressing {
            Compressing::Here(compressor) => {
                compress_frame(compressor, &mut self.filling)?;
                write_frame(&mut self.out, &mut self.frames, &self.filling)?;
                self.filling.plain.clear();
            }
            Compressing::Pool(pool) => {
                let mut next = FrameBuffers::empty();
                if pool.is_full() {
                    if let Some(done) = pool.oldest_done()? {
                        write_frame(&mut self.out, &mut self.frames, &done)?;
                        next = done;
                        next.plain.clear();
                    }
                }
                pool.send(std::mem::replace(&mut self.filling, next))?;
            }
        }
        Ok(())
    }
}

impl<W: Write> Write for FramedZstd<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = FRAME_MAX as usize - self.filling.plain.len();
            if room == 0 {
                self.end_frame()?;
                continue;
            }
            let take = rest.len().min(room);
            self.filling.plain.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl FrameBuffers {
    fn empty() -> Self {
        FrameBuffers {
            plain: Vec::new(),
            compressed: Vec::new(),
        }
    }
}

/// A compressor for one whole frame at a time, with zstd's checksum in each frame.
fn compressor(level: i32) -> io::Result<Compressor<'static>> {
    let mut compressor = Compressor::new(level)?;
    compressor.include_checksum(true)?;
    Ok(compressor)
}

/// Compresses `frame.plain` into `frame.compressed`, as one frame.
fn compress_frame(
    compressor: &mut Compressor<'static>,
    frame: &mut FrameBuffers,
) -> io::Result<()> {
    frame.compressed.clear();
    frame
        .compressed
        .reserve(zstd::zstd_safe::compress_bound(frame.plain.len()));
    compressor.compress_to_buffer(&frame.plain, &mut frame.compressed)?;
    Ok(())
}

/// Writes a compressed frame and records it.
fn write_frame(
    out: &mut impl Write,
    frames: &mut Vec<Frame>,
    frame: &FrameBuffers,
) -> io::Result<()> {
    out.write_all(&frame.compressed)?;
    frames.push(Frame {
        plain: frame.plain.len() as u64,
        compressed: frame.compressed.len() as u64,
    });
    Ok(())
}

/// Worker threads compressing frames, each its own in turn, so results come back in order.
struct Pool {
    workers: Vec<Worker>,
    /// The worker holding the oldest frame not yet written.
    oldest: usize,
    in_flight: usize,
}

struct Worker {
    /// `None` once closed, at the end.
    frames: Option<SyncSender<FrameBuffers>>,
    done: Receiver<io::Result<FrameBuffers>>,
    thread: Option<JoinHandle<()>>,
}

impl Pool {
    fn start(level: i32, workers: usize) -> io::Result<Pool> {
        let workers = (0..workers)
            .map(|n| Worker::start(level, n))
            .collect::<io::Result<_>>()?;
        Ok(Pool {
            workers,
            oldest: 0,
            in_flight: 0,
        })
    }

    fn is_full(&self) -> bool {
        self.in_flight == self.workers.len()
    }

    /// Gives `frame` to the worker after the newest one in flight.
    fn send(&mut self, frame: FrameBuffers) -> io::Result<()> {
        let next = (self.oldest + self.in_flight) % self.workers.len();
        let sent = match &self.workers[next].frames {
            Some(frames) => frames.send(frame).is_ok(),
            None => false,
        };
        if !sent {
            return Err(self.workers[next].stopped());
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for the oldest frame in flight: `None` when there is none.
    fn oldest_done(&mut self) -> io::Result<Option<FrameBuffers>> {
        if self.in_flight == 0 {
            return Ok(None);
        }
        let worker = &mut self.workers[self.oldest];
        let done = match worker.done.recv() {
            Ok(done) => done?,
            Err(_) => return Err(worker.stopped()),
        };
        self.oldest = (self.oldest + 1) % self.workers.len();
        self.in_flight -= 1;
        Ok(Some(done))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.frames = None;
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Worker {
    fn start(level: i32, n: usize) -> io::Result<Worker> {
        // One frame waiting beside the one compressing would only hold more memory: the writer
        // sends a worker its next frame after taking the last one back.
        let (frames, inbox) = sync_channel::<FrameBuffers>(1);
        let (outbox, done) = sync_channel(1);
        let mut compressor = compressor(level)?;
        let thread = std::thread::Builder::new()
            .name(format!("zstd-frames-{n}"))
            .spawn(move || {
                for mut frame in inbox {
                    let result = compress_frame(&mut compressor, &mut frame).map(|()| frame);
                    if outbox.send(result).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Worker {
            frames: Some(frames),
            done,
            thread: Some(thread),
        })
    }

    /// The error for a worker that is gone (it panicked): its panic says why.
    fn stopped(&mut self) -> io::Error {
        self.frames = None;
        let why = match self.thread.take().map(JoinHandle::join) {
            Some(Err(panic)) => panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default(),
            _ => String::new(),
        };
        io::Error::other(format!("a zstd compressing thread stopped: {why}"))
    }
}
/// The seekable format's seek table in its skippable frame: per frame its compressed and
/// plain size, then the frame count, a descriptor (no checksums) and the seekable magic.
fn seek_table(frames: &[Frame]) -> io::Result<Vec<u8>> {
    let too_large = |_| io::Error::other("a zstd frame larger than 4 GiB");
    let count = u32::try_from(frames.len()).map_err(too_large)?;
    let content = frames.len() * 8 + 9;
    let mut table = Vec::with_capacity(8 + content);
    table.extend_from_slice(&SEEK_TABLE_FRAME.to_le_bytes());
    table.extend_from_slice(&u32::try_from(content).map_err(too_large)?.to_le_bytes());
    for frame in frames {
        table.extend_from_slice(
            &u32::try_from(frame.compressed)
                .map_err(too_large)?
                .to_le_bytes(),
        );
        table.extend_from_slice(&u32::try_from(frame.plain).map_err(too_large)?.to_le_bytes());
    }
    table.extend_from_slice(&count.to_le_bytes());
    table.push(0);
    table.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn framed(data: &[&[u8]], workers: usize) -> (Vec<u8>, Vec<Frame>) {
        let mut zstd = FramedZstd::new(3, workers, Vec::new()).unwrap();
        for piece in data {
            zstd.entry_boundary().unwrap();
            zstd.write_all(piece).unwrap();
        }
        zstd.finish().unwrap()
    }

    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 16) as u8
            })
            .collect()
    }

    #[test]
    fn frames_end_at_entries_and_at_the_cap_and_each_decodes_alone() {
        let (small, large) = (sample(300 << 10, 1), sample(9 << 20, 2));
        let pieces: Vec<&[u8]> = vec![&small, &small, &small, &small, &large, &small];
        let (stored, frames) = framed(&pieces, 0);
        for workers in [1, 2, 3] {
            assert_eq!(framed(&pieces, workers), (stored.clone(), frames.clone()));
        }
        let plain: Vec<u8> = pieces.concat();
        let sizes: Vec<u64> = frames.iter().map(|f| f.plain).collect();
        // Four small entries pass 1 MiB together; the large one is cut at 4 MiB twice; its
        // last MiB ends at the next boundary.
        assert_eq!(
            sizes,
            [4 * (300 << 10), 4 << 20, 4 << 20, 1 << 20, 300 << 10]
        );
        // All of it decodes as one stream, the seek table skipped, as `zstd -d` does.
        assert_eq!(zstd::decode_all(stored.as_slice()).unwrap(), plain);
        // Each frame alone.
        let (mut plain_at, mut stored_at) = (0usize, 0usize);
        for frame in &frames {
            let bytes = &stored[stored_at..stored_at + frame.compressed as usize];
            let mut decoded = Vec::new();
            zstd::stream::read::Decoder::new(bytes)
                .unwrap()
                .single_frame()
                .read_to_end(&mut decoded)
                .unwrap();
            assert_eq!(decoded, plain[plain_at..plain_at + frame.plain as usize]);
            plain_at += frame.plain as usize;
            stored_at += frame.compressed as usize;
        }
        // Then the seek table: a skippable frame ending in the seekable magic.
        let table = &stored[stored_at..];
        assert_eq!(table.len(), 8 + frames.len() * 8 + 9);
        assert_eq!(&table[..4], &SEEK_TABLE_FRAME.to_le_bytes());
        assert_eq!(&table[table.len() - 4..], &SEEKABLE_MAGIC.to_le_bytes());
    }

    #[test]
    fn an_empty_archive_is_one_empty_frame() {
        let (stored, frames) = framed(&[], 2);
        assert_eq!(frames.len(), 1);
        assert!(zstd::decode_all(stored.as_slice()).unwrap().is_empty());
    }
}
