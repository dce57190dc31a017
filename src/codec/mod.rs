//! Compression and encryption of archives: a stage between the archive writer and the part
//! stream on the way up (zstd, then age), and the inverse on the way back (age, then zstd).
//!
//! Stored bytes are `age(zstd(archive))`, each layer optional, in the standard formats, so an
//! archive can be recovered without this tool: `age -d -i KEY FILE | zstd -d | tar x`.

pub mod auth;
mod frames;
pub mod key_file;
pub mod keys;
mod read_ahead;
pub mod seal;

use std::io::{self, Read, Write};

use glacier_backup_archiver::{Compression, Encoding};

use crate::candidate::ArchiveSink;
pub use keys::{Identities, IdentityError};
pub use seal::Seal;

/// zstd levels the configuration accepts.
pub const LEVELS: std::ops::RangeInclusive<i32> = 1..=19;

/// The zstd level when `[archive] level` is not set.
pub const DEFAULT_LEVEL: i32 = 3;

/// Smallest buffer allocated for an archive's bytes (a part, a read): a page.
pub(crate) const MIN_BUFFER: usize = 4096;

/// Bytes taken from a source file per read when a stage sits between it and the parts.
const READ_SIZE: usize = 256 << 10;

/// How new archives are encoded, from `[archive]` and `[encryption]`.
#[derive(Debug, Clone, Default)]
pub struct Format {
    /// Compression and level.
    pub compression: Compression,
    /// age recipients; empty: not encrypted.
    pub recipients: Vec<age::x25519::Recipient>,
    /// The key whose stanza proves each new encrypted archive is ours (`[encryption]
    /// authentication_key_file`).
    pub authentication: Option<auth::AuthKey>,
}

impl Format {
    /// The encoding new archives get.
    pub fn encoding(&self) -> Encoding {
        Encoding {
            compression: self.compression,
            encrypted: !self.recipients.is_empty(),
            recipients: self.recipients.iter().map(ToString::to_string).collect(),
        }
    }

    /// True when archives are stored as made.
    pub fn is_plain(&self) -> bool {
        self.compression == Compression::None && self.recipients.is_empty()
    }
}

/// The stage for one archive: its compression, and the seal that encrypts it (kept with a
/// pending upload, so a resumed upload writes the same bytes).
#[derive(Debug, Clone)]
pub struct Layers {
    /// zstd level, when compressed.
    pub zstd_level: Option<i32>,
    /// The age file key and header, when encrypted.
    pub seal: Option<Seal>,
    /// Whether zstd compresses on worker threads (an archive of more than one job). A file
    /// archive's frame then does not depend on how many workers there are, but differs from
    /// the one a single thread writes, so this follows from the archive's expected size alone,
    /// which a resumed upload of an unchanged source repeats. A seekable archive's frames are
    /// the same either way.
    pub zstd_threads: bool,
    /// The archive's expected size: the read buffer is sized for it, so a small file does not
    /// cost a quarter MiB of zeroed memory.
    pub size_hint: u64,
    /// Whether zstd's output is cut into frames that decode alone, with a seek table (directory
    /// archives, whose entries a restore may want one by one, each with zstd's seek table after the last).
    pub seekable: bool,
}

impl Layers {
    /// The layers for `encoding` of an archive of about `size_hint` bytes: `None` when it has
    /// none. `seal` is required when it is encrypted; a `seekable` archive's zstd frames
    /// decode alone.
    pub fn of(
        encoding: &Encoding,
        seal: Option<Seal>,
        size_hint: u64,
        seekable: bool,
    ) -> Option<Layers> {
        let zstd_level = match encoding.compression {
            Compression::None => None,
            Compression::Zstd(level) => Some(level.unwrap_or(DEFAULT_LEVEL)),
        };
        (zstd_level.is_some() || seal.is_some()).then_some(Layers {
            zstd_level,
            seal,
            zstd_threads: size_hint > u64::from(ZSTD_JOB),
            size_hint,
            seekable,
        })
    }
}

/// Bytes zstd compresses per job on its worker threads. Smaller than zstd's default (four
/// windows: 8 MiB at level 3), which holds about 140 MiB for two workers; 2 MiB holds about 60
/// and costs under 0.1% in size. Part of the stored bytes: a resumed upload must use the same.
const ZSTD_JOB: u32 = 2 << 20;

/// zstd worker threads: at least one, because zstd's output is the same for any number of
/// workers from one up (a resumed upload may run on another machine), but not for none.
fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4) as u32)
}

/// The age layer over the writer underneath, or nothing.
enum Encrypt<W: Write> {
    Plain(W),
    Age(seal::PayloadWriter<W>),
}

impl<W: Write> Encrypt<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Encrypt::Plain(w) => Ok(w),
            Encrypt::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Encrypt<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encrypt::Plain(w) => w.write(buf),
            Encrypt::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encrypt::Plain(w) => w.flush(),
            Encrypt::Age(w) => w.flush(),
        }
    }
}

/// The zstd layer over the age layer, or just the age layer.
enum Compress<W: Write> {
    Plain(Encrypt<W>),
    /// One frame (a file archive).
    Zstd(zstd::stream::write::Encoder<'static, Encrypt<W>>),
    /// Frames that decode alone (a directory archive).
    Frames(frames::FramedZstd<Encrypt<W>>),
}

/// The archive's own size, before compression and encryption: the bytes written so far while
/// the part stream runs (progress reads it), exact once it has ended. Counted only when layers
/// apply (without them, the parts are the archive).
#[derive(Debug, Clone, Default)]
pub struct PlainSize(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl PlainSize {
    /// The bytes the archive writer wrote so far.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    fn add(&self, bytes: usize) {
        self.0
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Release);
    }
}

/// What an [`EncodingSink`] leaves when it is finished.
pub struct Finished<W> {
    /// The writer underneath.
    pub out: W,
    /// The archive's own size.
    pub plain_size: u64,
    /// The zstd frames, when the archive is seekable.
    pub frames: Option<Vec<crate::catalog::Frame>>,
}

/// An archive sink that compresses and encrypts what the archive writer gives it, into `W`
/// (the part writer), and counts the archive's own bytes into its [`PlainSize`].
pub struct EncodingSink<W: Write> {
    stage: Compress<W>,
    plain_size: PlainSize,
    scratch: Vec<u8>,
}

impl<W: Write> EncodingSink<W> {
    /// The stage for `layers` over `out`, counting into `plain_size`; the age header is written
    /// at once.
    pub fn new(layers: &Layers, out: W, plain_size: PlainSize) -> io::Result<Self> {
        let encrypt = match &layers.seal {
            Some(seal) => Encrypt::Age(seal.writer(out)?),
            None => Encrypt::Plain(out),
        };
        let stage = match layers.zstd_level {
            Some(level) if layers.seekable => {
                let workers = match layers.zstd_threads {
                    true => zstd_workers() as usize,
                    false => 0,
                };
                Compress::Frames(frames::FramedZstd::new(level, workers, encrypt)?)
            }
            Some(level) => {
                let mut zstd = zstd::stream::write::Encoder::new(encrypt, level)?;
                zstd.include_checksum(true)?;
                if layers.zstd_threads {
                    zstd.multithread(zstd_workers())?;
                    zstd.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB))?;
                }
                Compress::Zstd(zstd)
            }
            None => Compress::Plain(encrypt),
        };
        let scratch = usize::try_from(layers.size_hint)
            .unwrap_or(READ_SIZE)
            .clamp(MIN_BUFFER, READ_SIZE);
        Ok(EncodingSink {
            stage,
            plain_size,
            scratch: vec![0; scratch],
        })
    }

    /// Ends every layer (zstd's last frame, age's last chunk): the writer underneath, the
    /// archive's own size, and the zstd frames of a seekable archive.
    pub fn finish(self) -> io::Result<Finished<W>> {
        let (encrypt, frames) = match self.stage {
            Compress::Plain(encrypt) => (encrypt, None),
            Compress::Zstd(zstd) => (zstd.finish()?, None),
            Compress::Frames(zstd) => {
                let (encrypt, frames) = zstd.finish()?;
                (encrypt, Some(frames))
            }
        };
        Ok(Finished {
            out: encrypt.finish()?,
            plain_size: self.plain_size.get(),
            frames,
        })
    }
}

impl<W: Write> Write for EncodingSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.stage {
            Compress::Plain(w) => w.write(buf)?,
            Compress::Zstd(w) => w.write(buf)?,
            Compress::Frames(w) => w.write(buf)?,
        };
        self.plain_size.add(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stage {
            Compress::Plain(w) => w.flush(),
            Compress::Zstd(w) => w.flush(),
            Compress::Frames(w) => w.flush(),
        }
    }
}

impl<W: Write> ArchiveSink for EncodingSink<W> {
    fn read_from(&mut self, reader: &mut dyn Read) -> io::Result<usize> {
        let n = reader.read(&mut self.scratch)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let written = self.write_all(&scratch[..n]);
        std::mem::swap(&mut self.scratch, &mut scratch);
        written.map(|()| n)
    }

    fn entry_boundary(&mut self) -> io::Result<()> {
        match &mut self.stage {
            Compress::Plain(_) | Compress::Zstd(_) => Ok(()),
            Compress::Frames(zstd) => zstd.entry_boundary(),
        }
    }
}

/// Undoing the layers failed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The archive is encrypted and no identity was given.
    #[error(
        "the archive is encrypted{}; give the identity file with --identity FILE or [encryption] \
         identity_file",
        needs(.recipients)
    )]
    NoIdentity {
        /// Who it was encrypted to, when known.
        recipients: Vec<String>,
    },
    /// None of the identities opens it.
    #[error(
        "the archive is encrypted{}, and no identity in {file} opens it; give the identity of \
         one of its recipients with --identity FILE",
        needs(.recipients)
    )]
    WrongIdentity {
        /// The identity file.
        file: String,
        /// Who it was encrypted to, when known.
        recipients: Vec<String>,
    },
    /// age or zstd refused the start of the stored bytes (damaged, or not their format).
    #[error(
        "the stored archive does not start as age or zstd data, as the ledger says it should \
         (damaged, or recorded wrongly): {0}"
    )]
    Header(String),
    /// No thread could be started to decode on.
    #[error("cannot start a thread to decode the archive: {0}")]
    Thread(io::Error),
}

fn needs(recipients: &[String]) -> String {
    if recipients.is_empty() {
        String::new()
    } else {
        format!(" to {}", recipients.join(", "))
    }
}

/// Reads `stored` with its layers undone: age (with `identities`), then zstd. Each layer is
/// undone on a thread of its own, a few chunks ahead of the next, as a pipeline of the stock
/// tools would run. Whether the identities open the archive is known on return.
pub fn decoder<R: Read + Send + 'static>(
    encoding: &Encoding,
    identities: Option<&Identities>,
    stored: R,
) -> Result<Box<dyn Read + Send>, DecodeError> {
    if !encoding.encrypted {
        return Ok(match encoding.compression {
            Compression::None => Box::new(stored),
            Compression::Zstd(_) => Box::new(spread(zstd_decoder(stored)?)?),
        });
    }
    let identities = identities.ok_or_else(|| DecodeError::NoIdentity {
        recipients: encoding.recipients.clone(),
    })?;
    let decryptor = age::Decryptor::new_buffered(io::BufReader::new(stored))
        .map_err(|e| DecodeError::Header(e.to_string()))?;
    let decrypted = match decryptor.decrypt(identities.iter()) {
        Ok(reader) => spread(reader)?,
        Err(age::DecryptError::NoMatchingKeys) => {
            return Err(DecodeError::WrongIdentity {
                file: identities.file(),
                recipients: encoding.recipients.clone(),
            })
        }
        Err(e) => return Err(DecodeError::Header(e.to_string())),
    };
    Ok(match encoding.compression {
        Compression::None => Box::new(decrypted),
        // A third thread: decryption, decompression and the caller's writes each get one.
        Compression::Zstd(_) => Box::new(spread(zstd_decoder(decrypted)?)?),
    })
}

fn spread(reader: impl Read + Send + 'static) -> Result<read_ahead::ReadAhead, DecodeError> {
    read_ahead::ReadAhead::spawn(reader).map_err(DecodeError::Thread)
}

fn zstd_decoder<R: Read>(
    reader: R,
) -> Result<zstd::stream::read::Decoder<'static, io::BufReader<R>>, DecodeError> {
    zstd::stream::read::Decoder::new(reader).map_err(|e| DecodeError::Header(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(layers: &Layers, plain: &[u8], read_sizes: usize) -> (Vec<u8>, u64) {
        let mut sink = EncodingSink::new(layers, Vec::new(), PlainSize::default()).unwrap();
        for piece in plain.chunks(read_sizes) {
            let mut reader = piece;
            while sink.read_from(&mut reader).unwrap() > 0 {}
        }
        let finished = sink.finish().unwrap();
        (finished.out, finished.plain_size)
    }

    fn mixed(len: usize) -> Vec<u8> {
        let mut state = 0x2545F491u64;
        (0..len)
            .map(|i| {
                if (i / 100_000) % 2 == 0 {
                    b"the quick brown fox "[i % 20]
                } else {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                }
            })
            .collect()
    }

    /// Resuming an upload depends on this: the same layers give the same bytes whatever the
    /// reads look like and however many zstd workers run (one or more).
    #[test]
    fn the_same_layers_give_the_same_bytes_and_decode_back() {
        let identity = age::x25519::Identity::generate();
        let seal = Seal::new(&[identity.to_public()]).unwrap();
        let identities = Identities::from_identity(identity);
        let plain = mixed(5 << 20);
        for (level, seal) in [
            (Some(3), Some(seal.clone())),
            (Some(1), None),
            (None, Some(seal)),
        ] {
            for (zstd_threads, seekable) in [(false, false), (true, false), (true, true)] {
                let layers = Layers {
                    zstd_level: level,
                    seal: seal.clone(),
                    zstd_threads,
                    size_hint: 5 << 20,
                    seekable,
                };
                let (stored, plain_size) = encode(&layers, &plain, 1 << 20);
                assert_eq!(plain_size, plain.len() as u64);
                assert_eq!(encode(&layers, &plain, 77_777).0, stored, "{level:?}");
                let encoding = Encoding {
                    compression: level.map_or(Compression::None, |l| Compression::Zstd(Some(l))),
                    encrypted: seal.is_some(),
                    recipients: Vec::new(),
                };
                let mut back = Vec::new();
                decoder(&encoding, Some(&identities), io::Cursor::new(stored))
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, plain);
            }
        }
        // One zstd worker and several write the same frames.
        let level = 3;
        let one = {
            let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
            zstd.include_checksum(true).unwrap();
            zstd.multithread(1).unwrap();
            zstd.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB))
                .unwrap();
            zstd.write_all(&plain).unwrap();
            zstd.finish().unwrap()
        };
        let (many, _) = encode(
            &Layers {
                zstd_level: Some(level),
                seal: None,
                zstd_threads: true,
                size_hint: 5 << 20,
                seekable: false,
            },
            &plain,
            1 << 20,
        );
        assert_eq!(one, many);
    }

    #[test]
    fn an_encrypted_archive_needs_an_identity_that_opens_it() {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let seal = Seal::new(&[identity.to_public()]).unwrap();
        let layers = Layers {
            zstd_level: None,
            seal: Some(seal),
            zstd_threads: false,
            size_hint: 5 << 20,
            seekable: false,
        };
        let (stored, _) = encode(&layers, b"secret", 6);
        let encoding = Encoding {
            compression: Compression::None,
            encrypted: true,
            recipients: vec![recipient.clone()],
        };
        let err = decoder(&encoding, None, io::Cursor::new(stored.clone()))
            .err()
            .unwrap();
        assert!(err.to_string().contains(&recipient), "{err}");
        let stranger = Identities::from_identity(age::x25519::Identity::generate());
        let err = decoder(&encoding, Some(&stranger), io::Cursor::new(stored))
            .err()
            .unwrap();
        assert!(matches!(err, DecodeError::WrongIdentity { .. }), "{err}");
        assert!(err.to_string().contains(&recipient), "{err}");
    }
}
