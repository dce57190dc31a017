//! The catalog's compact form: `MAGIC`, then a zstd stream of records, one per entry, closed by
//! an end record that counts them (a stream cut anywhere is refused, not read as shorter).
//!
//! A record: kind (`d`, `f`, `l`; 0 ends the stream), the length of the path prefix shared with
//! the previous entry and the rest of the path, mode, uid, gid, the mtime as a signed step from
//! the previous one, the size (files), the gap from the previous entry's end to this entry's
//! header, the header's length, and a link's target. Numbers are LEB128 varints.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{CatalogError, Entry, EntryKind};

/// The first bytes of every catalog: the format and its version.
pub const MAGIC: &[u8; 4] = b"GBC1";

/// zstd level: the records are small and repetitive; a low level already gets most of it.
const LEVEL: i32 = 3;

/// Longest path or link target read back: a guard against a damaged length.
const MAX_NAME: u64 = 1 << 20;

/// Writes entries, in tar order, into the compact form as they come.
pub struct Encoder {
    out: zstd::stream::write::Encoder<'static, Vec<u8>>,
    previous: Previous,
    count: u64,
}

/// What each record is coded against.
#[derive(Default)]
struct Previous {
    path: Vec<u8>,
    end: u64,
    mtime: i64,
}

impl Encoder {
    /// An empty catalog.
    pub fn new() -> io::Result<Self> {
        let mut buffer = Vec::new();
        buffer.extend_from_slice(MAGIC);
        Ok(Encoder {
            out: zstd::stream::write::Encoder::new(buffer, LEVEL)?,
            previous: Previous::default(),
            count: 0,
        })
    }

    /// Appends `entry`, which starts at or after the previous entry's end.
    pub fn push(&mut self, entry: &Entry) -> io::Result<()> {
        let path = entry.path.as_os_str().as_bytes();
        let shared = path
            .iter()
            .zip(&self.previous.path)
            .take_while(|(a, b)| a == b)
            .count();
        let mut record = Vec::with_capacity(32 + path.len() - shared);
        record.push(entry.kind.code());
        put_varint(&mut record, shared as u64);
        put_bytes(&mut record, &path[shared..]);
        put_varint(&mut record, u64::from(entry.mode));
        put_varint(&mut record, entry.uid);
        put_varint(&mut record, entry.gid);
        put_varint(
            &mut record,
            zigzag(entry.mtime.wrapping_sub(self.previous.mtime)),
        );
        put_varint(&mut record, entry.size);
        let gap = entry.header_offset.checked_sub(self.previous.end);
        let header_len = entry.data_offset.checked_sub(entry.header_offset);
        let (Some(gap), Some(header_len)) = (gap, header_len) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "catalog entries must come in stream order",
            ));
        };
        put_varint(&mut record, gap);
        put_varint(&mut record, header_len);
        if let Some(link) = &entry.link {
            put_bytes(&mut record, link.as_os_str().as_bytes());
        }
        self.out.write_all(&record)?;
        self.previous = Previous {
            path: path.to_vec(),
            end: entry.end_offset(),
            mtime: entry.mtime,
        };
        self.count += 1;
        Ok(())
    }

    /// The catalog's bytes.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        let mut end = vec![0u8];
        put_varint(&mut end, self.count);
        self.out.write_all(&end)?;
        self.out.finish()
    }
}

/// Reads a catalog back, entry by entry, checking every length and count: damaged bytes give an
/// error, never a panic or an unbounded allocation.
pub struct Decoder<'a> {
    /// Buffered above zstd: records are read a byte at a time, which through zstd's own
    /// reader would run its decoding loop for every byte.
    input: io::BufReader<zstd::stream::read::Decoder<'static, io::BufReader<&'a [u8]>>>,
    previous: Previous,
    count: u64,
    ended: bool,
}

impl<'a> Decoder<'a> {
    /// Starts reading `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Self, CatalogError> {
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Err(CatalogError::Format(
                bytes.iter().take(4).copied().collect(),
            ));
        };
        let input = zstd::stream::read::Decoder::new(rest).map_err(damaged)?;
        Ok(Decoder {
            input: io::BufReader::with_capacity(64 << 10, input),
            previous: Previous::default(),
            count: 0,
            ended: false,
        })
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, CatalogError> {
        let kind = read_u8(&mut self.input)?;
        if kind == 0 {
            let count = read_varint(&mut self.input)?;
            if count != self.count {
                return Err(CatalogError::Damaged(format!(
                    "{} entries read, the end record says {count}",
                    self.count
                )));
            }
            return Ok(None);
        }
        let kind = EntryKind::from_code(kind)
            .ok_or_else(|| CatalogError::Damaged(format!("unknown entry kind {kind}")))?;
        let shared = usize::try_from(read_varint(&mut self.input)?).unwrap_or(usize::MAX);
        if shared > self.previous.path.len() {
            return Err(CatalogError::Damaged(
                "a path shares more than the previous one has".into(),
            ));
        }
        let mut path = self.previous.path[..shared].to_vec();
        path.extend(read_bytes(&mut self.input)?);
        let mode = u32::try_from(read_varint(&mut self.input)?)
            .map_err(|_| CatalogError::Damaged("mode out of range".into()))?;
        let uid = read_varint(&mut self.input)?;
        let gid = read_varint(&mut self.input)?;
        let mtime = self
            .previous
            .mtime
            .wrapping_add(unzigzag(read_varint(&mut self.input)?));
        let size = read_varint(&mut self.input)?;
        let gap = read_varint(&mut self.input)?;
        let header_len = read_varint(&mut self.input)?;
        let header_offset = self.previous.end.checked_add(gap);
        let data_offset = header_offset.and_then(|h| h.checked_add(header_len));
        let (Some(header_offset), Some(data_offset)) = (header_offset, data_offset) else {
            return Err(CatalogError::Damaged("an offset past 2^64".into()));
        };
        let link = match kind {
            EntryKind::Symlink => Some(PathBuf::from(std::ffi::OsStr::from_bytes(&read_bytes(
                &mut self.input,
            )?))),
            _ => None,
        };
        let entry = Entry {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(&path)),
            kind,
            size,
            mode,
            uid,
            gid,
            mtime,
            link,
            header_offset,
            data_offset,
        };
        if entry
            .data_offset
            .checked_add(size.div_ceil(512) * 512)
            .is_none()
        {
            return Err(CatalogError::Damaged("an entry past 2^64".into()));
        }
        self.previous = Previous {
            path,
            end: entry.end_offset(),
            mtime,
        };
        self.count += 1;
        Ok(Some(entry))
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<Entry, CatalogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let next = self.next_entry();
        if !matches!(next, Ok(Some(_))) {
            self.ended = true;
        }
        next.transpose()
    }
}

fn damaged(e: io::Error) -> CatalogError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => CatalogError::Damaged("cut short".into()),
        _ => CatalogError::Damaged(e.to_string()),
    }
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn read_u8(input: &mut impl Read) -> Result<u8, CatalogError> {
    let mut byte = [0u8];
    input.read_exact(&mut byte).map_err(damaged)?;
    Ok(byte[0])
}

pub(super) fn read_varint(input: &mut impl Read) -> Result<u64, CatalogError> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = read_u8(input)?;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(CatalogError::Damaged("a number longer than 64 bits".into()))
}

fn read_bytes(input: &mut impl Read) -> Result<Vec<u8>, CatalogError> {
    let len = read_varint(input)?;
    if len > MAX_NAME {
        return Err(CatalogError::Damaged(format!("a name of {len} bytes")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    input.take(len).read_to_end(&mut bytes).map_err(damaged)?;
    if bytes.len() as u64 != len {
        return Err(CatalogError::Damaged("cut short".into()));
    }
    Ok(bytes)
}
