//! A reader whose reads happen on a thread of its own, a few chunks ahead: undoing one layer
//! (age's decryption) there while the caller undoes the next (zstd) and writes files uses two
//! cores, as a shell pipeline of the stock tools does.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};

/// Bytes per chunk handed over.
const CHUNK: usize = 256 << 10;
/// Chunks read ahead: what the reading thread may hold besides the one being read.
const AHEAD: usize = 4;

/// Reads `inner` on its own thread; an error there comes out of the next read here.
pub struct ReadAhead {
    chunks: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    taken: usize,
}

impl ReadAhead {
    /// Starts reading `inner` ahead. The thread stops at the end, at an error, or when this
    /// reader is dropped.
    pub fn spawn(mut inner: impl Read + Send + 'static) -> io::Result<Self> {
        let (tx, chunks) = sync_channel(AHEAD);
        std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || loop {
                let mut chunk = vec![0; CHUNK];
                let mut filled = 0;
                let result = loop {
                    match inner.read(&mut chunk[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == CHUNK {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(filled);
                let end = filled < CHUNK;
                let sent = match result {
                    Ok(()) if filled == 0 => break,
                    Ok(()) => tx.send(Ok(chunk)),
                    // What was read before the error comes first.
                    Err(e) => {
                        let _ = tx.send(Ok(chunk));
                        let _ = tx.send(Err(e));
                        break;
                    }
                };
                if sent.is_err() || end {
                    break;
                }
            })?;
        Ok(ReadAhead {
            chunks,
            current: Vec::new(),
            taken: 0,
        })
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.taken == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk?;
                    self.taken = 0;
                }
                // The thread is done: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.taken);
        buf[..n].copy_from_slice(&self.current[self.taken..self.taken + n]);
        self.taken += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails after `good` bytes.
    struct Breaks {
        good: usize,
    }

    impl Read for Breaks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "decryption error",
                ));
            }
            let n = buf.len().min(self.good).min(1000);
            buf[..n].fill(7);
            self.good -= n;
            Ok(n)
        }
    }

    #[test]
    fn every_byte_then_the_end_or_the_error_comes_through() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 3] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut back = Vec::new();
            ReadAhead::spawn(io::Cursor::new(data.clone()))
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{len}");
        }
        let mut back = Vec::new();
        let err = ReadAhead::spawn(Breaks { good: CHUNK + 10 })
            .unwrap()
            .read_to_end(&mut back)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(back.len(), CHUNK + 10, "what came before the error");
    }
}
