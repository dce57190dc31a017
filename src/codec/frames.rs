//! zstd written as independent frames, so a span of a directory archive decodes from the frames
//! holding it alone: a frame ends at the first entry boundary after [`FRAME_MIN`] bytes of input,
//! and at [`FRAME_MAX`] wherever it is. After the last frame comes zstd's seek table, in the
//! seekable format's skippable frame, which stock `zstd -d` skips. A file archive is one frame,
//! as before.

use std::io::{self, Write};

use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

use crate::catalog::Frame;

/// A frame ends at the next entry boundary once it holds this much input.
pub const FRAME_MIN: u64 = 1 << 20;

/// A frame ends here whatever it holds: what a restore of one small entry may decode at most.
pub const FRAME_MAX: u64 = 4 << 20;

/// The skippable frame's magic number that holds a seek table (zstd's seekable format).
const SEEK_TABLE_FRAME: u32 = 0x184D_2A5E;
/// The seek table footer's magic number.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// Compressed output taken from zstd per call.
const OUT_BUFFER: usize = 128 << 10;

/// The zstd layer: compresses into `out`, frame by frame when `seekable`.
pub struct FramedZstd<W: Write> {
    encoder: Encoder<'static>,
    out: W,
    buffer: Vec<u8>,
    seekable: bool,
    /// The frame being written: its input and output so far.
    current: Frame,
    frames: Vec<Frame>,
}

impl<W: Write> FramedZstd<W> {
    /// `encoder` set up with its level and parameters, writing into `out`.
    pub fn new(encoder: Encoder<'static>, out: W, seekable: bool) -> Self {
        FramedZstd {
            encoder,
            out,
            buffer: Vec::with_capacity(OUT_BUFFER),
            seekable,
            current: Frame {
                plain: 0,
                compressed: 0,
            },
            frames: Vec::new(),
        }
    }

    /// Says an archive entry starts here: the frame ends if it holds enough.
    pub fn entry_boundary(&mut self) -> io::Result<()> {
        if self.seekable && self.current.plain >= FRAME_MIN {
            self.end_frame()?;
        }
        Ok(())
    }

    /// Ends the last frame and writes the seek table (when seekable): the writer underneath,
    /// and the frames (none when not seekable).
    pub fn finish(mut self) -> io::Result<(W, Option<Vec<Frame>>)> {
        // An empty archive is still one (empty) frame, as zstd writes it.
        if self.current.plain > 0 || self.frames.is_empty() {
            self.end_frame()?;
        }
        if !self.seekable {
            return Ok((self.out, None));
        }
        let table = seek_table(&self.frames)?;
        self.out.write_all(&table)?;
        Ok((self.out, Some(self.frames)))
    }

    fn end_frame(&mut self) -> io::Result<()> {
        loop {
            let mut output = OutBuffer::around(&mut self.buffer);
            let remaining = self.encoder.finish(&mut output, false)?;
            self.drain()?;
            if remaining == 0 {
                break;
            }
        }
        self.frames.push(self.current);
        self.current = Frame {
            plain: 0,
            compressed: 0,
        };
        self.encoder.reinit()
    }

    /// Writes what zstd put in the buffer to `out`.
    fn drain(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buffer)?;
        self.current.compressed += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Compresses all of `data` into the current frame.
    fn compress(&mut self, data: &[u8]) -> io::Result<()> {
        let mut input = InBuffer::around(data);
        while input.pos < data.len() {
            let mut output = OutBuffer::around(&mut self.buffer);
            self.encoder.run(&mut input, &mut output)?;
            self.drain()?;
        }
        self.current.plain += data.len() as u64;
        Ok(())
    }
}

impl<W: Write> Write for FramedZstd<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = match self.seekable {
                true => FRAME_MAX - self.current.plain,
                false => u64::MAX,
            };
            if room == 0 {
                self.end_frame()?;
                continue;
            }
            let take = rest.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.compress(&rest[..take])?;
            rest = &rest[take..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
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

    fn framed(data: &[&[u8]]) -> (Vec<u8>, Vec<Frame>) {
        let mut encoder = Encoder::new(3).unwrap();
        encoder
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .unwrap();
        let mut zstd = FramedZstd::new(encoder, Vec::new(), true);
        for piece in data {
            zstd.entry_boundary().unwrap();
            zstd.write_all(piece).unwrap();
        }
        let (out, frames) = zstd.finish().unwrap();
        (out, frames.unwrap())
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
        let (stored, frames) = framed(&pieces);
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
        let (stored, frames) = framed(&[]);
        assert_eq!(frames.len(), 1);
        assert!(zstd::decode_all(stored.as_slice()).unwrap().is_empty());
    }
}
