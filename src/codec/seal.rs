//! age encryption that can be repeated byte for byte, so an interrupted multipart upload can be
//! resumed: the age crate writes the header (it wraps the file key to each recipient and MACs
//! the header), and we keep the file key it used, with the header and nonce it wrote.
//!
//! The age crate picks a fresh file key and nonce on every `Encryptor` and offers no way to give
//! them back, so the payload (age's STREAM: ChaCha20-Poly1305 over 64 KiB chunks, keyed by
//! HKDF-SHA-256 of the file key and nonce) is written here from that seal, with the same RustCrypto
//! primitives age uses. Decryption is the age crate's, and the tests check that both it and the
//! stock `age` tool read what we write.

use std::io::{self, Write};
use std::sync::Mutex;

use age_core::format::{FileKey, Stanza};
use age_core::secrecy::ExposeSecret;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;

/// Plaintext bytes per STREAM chunk (age-encryption.org/v1).
const CHUNK: usize = 64 << 10;
/// The Poly1305 tag after each chunk.
const TAG: usize = 16;
/// The payload nonce that follows the header.
const NONCE: usize = 16;
const FILE_KEY: usize = 16;
const SEAL_VERSION: u8 = 1;

/// What it takes to write one age file's bytes again: the header (with its nonce) and the file
/// key. Secret: it decrypts the archive. Kept only in the ledger (0600) while the upload is
/// unfinished.
#[derive(Clone, PartialEq, Eq)]
pub struct Seal {
    file_key: [u8; FILE_KEY],
    /// The header as age wrote it, ending with the 16-byte payload nonce.
    header: Vec<u8>,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("header_len", &self.header.len())
            .finish_non_exhaustive()
    }
}

/// Wraps the file key to every recipient, noting the key so the payload can be written from it.
struct Capture<'a> {
    recipients: &'a [age::x25519::Recipient],
    /// Adds the stanza that proves the archive is ours (see [`super::auth`]).
    authentication: Option<&'a super::auth::AuthKey>,
    file_key: Mutex<Option<[u8; FILE_KEY]>>,
}

impl age::Recipient for Capture<'_> {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, std::collections::HashSet<String>), age::EncryptError> {
        *self.file_key.lock().expect("capture lock") = Some(*file_key.expose_secret());
        let mut stanzas = Vec::new();
        for recipient in self.recipients {
            stanzas.extend(age::Recipient::wrap_file_key(recipient, file_key)?.0);
        }
        if let Some(key) = self.authentication {
            stanzas.push(key.stanza(file_key.expose_secret()));
        }
        Ok((stanzas, Default::default()))
    }
}

impl Seal {
    /// A new file key and header for `recipients` (at least one).
    pub fn new(recipients: &[age::x25519::Recipient]) -> io::Result<Self> {
        Self::authenticated(recipients, None)
    }

    /// A new file key and header for `recipients` (at least one), the header proving with
    /// `authentication` (when given) that this tool wrote it.
    pub fn authenticated(
        recipients: &[age::x25519::Recipient],
        authentication: Option<&super::auth::AuthKey>,
    ) -> io::Result<Self> {
        let capture = Capture {
            recipients,
            authentication,
            file_key: Mutex::new(None),
        };
        let encryptor = age::Encryptor::with_recipients(std::iter::once(&capture as _))
            .map_err(io::Error::other)?;
        let mut header = Vec::new();
        // Writes the header and the nonce; the crate's own payload writer is not used.
        drop(encryptor.wrap_output(&mut header)?);
        let file_key = capture
            .file_key
            .into_inner()
            .expect("capture lock")
            .ok_or_else(|| io::Error::other("age wrapped no file key"))?;
        Ok(Seal { file_key, header })
    }

    /// The age header as written, through the payload nonce: what a span of chunks needs to be
    /// decrypted alone.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The seal as kept in the ledger.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![SEAL_VERSION];
        bytes.extend_from_slice(&self.file_key);
        bytes.extend_from_slice(&self.header);
        bytes
    }

    /// Inverse of [`Seal::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != SEAL_VERSION || rest.len() < FILE_KEY + NONCE {
            return None;
        }
        let (key, header) = rest.split_at(FILE_KEY);
        Some(Seal {
            file_key: key.try_into().ok()?,
            header: header.to_vec(),
        })
    }

    /// A writer that writes this age file into `out`: header, then the encrypted payload.
    /// [`PayloadWriter::finish`] must be called to write the last chunk.
    pub fn writer<W: Write>(&self, mut out: W) -> io::Result<PayloadWriter<W>> {
        out.write_all(&self.header)?;
        let nonce = &self.header[self.header.len() - NONCE..];
        let key = payload_key(nonce, &self.file_key);
        Ok(PayloadWriter {
            aead: ChaCha20Poly1305::new(&key.into()),
            counter: 0,
            chunk: Vec::with_capacity(CHUNK + TAG),
            out,
        })
    }
}

/// Opens the chunks of one age file one at a time, from its header: what a partial restore
/// decrypts a span of an archive with. Each chunk is authenticated with its position, and the
/// last one with its final flag, as age's own reader does.
pub struct ChunkOpener {
    aead: ChaCha20Poly1305,
    /// Where the payload starts: the header's length, nonce included.
    payload_start: u64,
    /// The index of the last chunk, from the stored size.
    last_chunk: u64,
    stored_size: u64,
}

impl ChunkOpener {
    /// The opener for the age file of `stored_size` bytes whose header (through the nonce) is
    /// `header`, decrypting with `file_key`.
    pub fn new(header: &[u8], file_key: &[u8; FILE_KEY], stored_size: u64) -> io::Result<Self> {
        let nonce = header
            .len()
            .checked_sub(NONCE)
            .map(|at| &header[at..])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "age header too short"))?;
        let payload_start = header.len() as u64;
        let payload = stored_size
            .checked_sub(payload_start)
            .filter(|&p| p >= TAG as u64);
        let payload = payload.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "age file shorter than its header",
            )
        })?;
        Ok(ChunkOpener {
            aead: ChaCha20Poly1305::new(&payload_key(nonce, file_key).into()),
            payload_start,
            last_chunk: payload.div_ceil((CHUNK + TAG) as u64) - 1,
            stored_size,
        })
    }

    /// Where chunk `index` lies in the stored bytes.
    pub fn stored_range(&self, index: u64) -> std::ops::Range<u64> {
        let start = self.payload_start + index * (CHUNK + TAG) as u64;
        start..(start + (CHUNK + TAG) as u64).min(self.stored_size)
    }

    /// Decrypts chunk `index` (its stored bytes, tag included) in place: its plaintext, or
    /// an error when it is not that chunk of this file.
    pub fn open(&self, index: u64, chunk: &mut Vec<u8>) -> io::Result<()> {
        let damaged =
            || io::Error::new(io::ErrorKind::InvalidData, "an age chunk failed to decrypt");
        if index > self.last_chunk || chunk.len() < TAG {
            return Err(damaged());
        }
        let tag_at = chunk.len() - TAG;
        let tag = chacha20poly1305::Tag::clone_from_slice(&chunk[tag_at..]);
        chunk.truncate(tag_at);
        self.aead
            .decrypt_in_place_detached(
                &chunk_nonce(index.into(), index == self.last_chunk).into(),
                &[],
                chunk,
                &tag,
            )
            .map_err(|_| damaged())
    }
}

/// age's payload key: HKDF-SHA-256 of the file key, salted with the payload nonce.
fn payload_key(nonce: &[u8], file_key: &[u8; FILE_KEY]) -> [u8; 32] {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(nonce), file_key)
        .expand(b"payload", &mut key)
        .expect("32 bytes is a valid HKDF-SHA-256 length");
    key
}

/// STREAM's nonce: 11 bytes of big-endian counter, then the final flag.
fn chunk_nonce(counter: u128, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..11].copy_from_slice(&counter.to_be_bytes()[16 - 11..]);
    nonce[11] = u8::from(last);
    nonce
}

/// age's STREAM payload writer: 64 KiB chunks, each sealed once more bytes follow it (the last
/// chunk, sealed by `finish`, carries the final flag).
pub struct PayloadWriter<W: Write> {
    aead: ChaCha20Poly1305,
    counter: u128,
    chunk: Vec<u8>,
    out: W,
}

impl<W: Write> PayloadWriter<W> {
    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        let nonce = chunk_nonce(self.counter, last);
        let tag = self
            .aead
            .encrypt_in_place_detached(&nonce.into(), &[], &mut self.chunk)
            .map_err(|_| io::Error::other("ChaCha20-Poly1305 refused a 64 KiB chunk"))?;
        self.chunk.extend_from_slice(&tag);
        self.out.write_all(&self.chunk)?;
        self.chunk.clear();
        self.counter += 1;
        Ok(())
    }

    /// Seals the last chunk and hands back the writer underneath.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_chunk(true)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for PayloadWriter<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            if self.chunk.len() == CHUNK {
                // More bytes follow this full chunk: it is not the last one.
                self.seal_chunk(false)?;
            }
            let take = (CHUNK - self.chunk.len()).min(buf.len());
            self.chunk.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decrypt(identity: &age::x25519::Identity, stored: &[u8]) -> io::Result<Vec<u8>> {
        let decryptor = age::Decryptor::new(stored).map_err(io::Error::other)?;
        let mut reader = decryptor
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .map_err(io::Error::other)?;
        let mut plain = Vec::new();
        reader.read_to_end(&mut plain)?;
        Ok(plain)
    }

    fn encrypt(seal: &Seal, plain: &[u8], write_size: usize) -> Vec<u8> {
        let mut writer = seal.writer(Vec::new()).unwrap();
        for piece in plain.chunks(write_size.max(1)) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap()
    }

    /// Every length around chunk edges decrypts with the age crate, and a seal read back from
    /// its bytes writes the same file again, however the input is cut.
    #[test]
    fn the_age_crate_reads_what_we_write_and_a_kept_seal_repeats_it() {
        let identity = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let seal = Seal::new(&[identity.to_public(), other.to_public()]).unwrap();
        let again = Seal::from_bytes(&seal.to_bytes()).unwrap();
        assert_eq!(again, seal);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let stored = encrypt(&seal, &plain, 1000);
            assert_eq!(decrypt(&identity, &stored).unwrap(), plain, "{len} bytes");
            assert_eq!(decrypt(&other, &stored).unwrap(), plain, "{len} bytes");
            assert_eq!(encrypt(&again, &plain, 4096 * 3 + 1), stored, "{len} bytes");
        }
        let stranger = age::x25519::Identity::generate();
        assert!(decrypt(&stranger, &encrypt(&seal, b"x", 1)).is_err());
        assert_eq!(Seal::from_bytes(b"\x02junk"), None);
    }

    #[test]
    fn a_flipped_or_missing_byte_fails_to_decrypt() {
        let identity = age::x25519::Identity::generate();
        let seal = Seal::new(&[identity.to_public()]).unwrap();
        let plain = vec![7u8; 2 * CHUNK + 5];
        let stored = encrypt(&seal, &plain, CHUNK);
        let mut flipped = stored.clone();
        let at = stored.len() - CHUNK;
        flipped[at] ^= 1;
        assert!(decrypt(&identity, &flipped).is_err());
        assert!(decrypt(&identity, &stored[..stored.len() - 1]).is_err());
        // Cut at a chunk boundary: the final flag is missing.
        assert!(decrypt(&identity, &stored[..stored.len() - 5 - TAG]).is_err());
    }

    /// Any chunk opens alone from the header and the identity; a chunk moved, flipped or a
    /// file cut short at a chunk boundary (the last flag missing) does not.
    #[test]
    fn each_chunk_opens_alone_and_only_in_its_place() {
        let identity = age::x25519::Identity::generate();
        let seal = Seal::new(&[identity.to_public()]).unwrap();
        let identities = crate::codec::Identities::from_identity(identity);
        for len in [0, CHUNK, 3 * CHUNK + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 249) as u8).collect();
            let stored = encrypt(&seal, &plain, 5000);
            let file_key = identities.file_key(seal.header()).unwrap();
            let opener = ChunkOpener::new(seal.header(), &file_key, stored.len() as u64).unwrap();
            let chunks = (len as u64).div_ceil(CHUNK as u64).max(1);
            for index in 0..chunks {
                let range = opener.stored_range(index);
                let mut chunk = stored[range.start as usize..range.end as usize].to_vec();
                opener.open(index, &mut chunk).unwrap();
                let at = index as usize * CHUNK;
                assert_eq!(
                    chunk,
                    plain[at..(at + CHUNK).min(len)],
                    "{len}: chunk {index}"
                );
                if chunks > 1 {
                    let mut moved = stored[range.start as usize..range.end as usize].to_vec();
                    assert!(opener.open((index + 1) % chunks, &mut moved).is_err());
                }
                let mut flipped = stored[range.start as usize..range.end as usize].to_vec();
                flipped[0] ^= 1;
                assert!(opener.open(index, &mut flipped).is_err());
            }
        }
        // Cut after a whole chunk: that chunk is not the last, so it fails as the last one.
        let stored = encrypt(&seal, &[1u8; 2 * CHUNK], CHUNK);
        let cut = seal.header().len() + CHUNK + TAG;
        let file_key = identities.file_key(seal.header()).unwrap();
        let opener = ChunkOpener::new(seal.header(), &file_key, cut as u64).unwrap();
        let mut first = stored[seal.header().len()..cut].to_vec();
        assert!(opener.open(0, &mut first).is_err());
        let stranger = crate::codec::Identities::from_identity(age::x25519::Identity::generate());
        assert!(stranger.file_key(seal.header()).is_err());
    }
}
