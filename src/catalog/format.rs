//! The catalog's compact form: `MAGIC`, then a zstd stream of records, one per entry, closed by
//! an end record that counts them (a stream cut anywhere is refused, not read as shorter).
//!
//! A record: kind (`d`, `f`, `l`; 0 ends the records), the length of the path prefix shared
//! with the previous entry and the rest of the path, mode, uid, gid, the mtime as a signed step
//! from the previous one, the size, the gap from the previous entry's end to this entry's
//! header, the header's length, and a link's target. Numbers are LEB128 varints.
//!
//! Version 2 (`GBC2`) adds to each record its [`Stamp`] (a flag, then the mtime's nanoseconds,
//! the ctime as a step from the mtime and its nanoseconds, the inode as a step from the
//! previous one), and after the end record the paths an incremental archive deleted: their
//! count, then each front-coded against the one before. A stamp's flag is 1, or 3 when the 32
//! bytes of the file's SHA-256 follow the stamp. Version 1 is still read.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{CatalogError, Entry, EntryKind, Stamp};

/// The first bytes of every catalog written now: the format and its version.
pub const MAGIC: &[u8; 4] = b"GBC2";
/// Version 1's: records without stamps, no deletions.
const MAGIC_V1: &[u8; 4] = b"GBC1";

/// A record's stamp flag: a stamp follows; a stamp and the file's SHA-256 follow.
const STAMP: u8 = 1;
const STAMP_AND_DIGEST: u8 = 3;

/// zstd level: the records are small and repetitive; a low level already gets most of it.
const LEVEL: i32 = 3;

/// Longest path or link target read back: a guard against a damaged length.
const MAX_NAME: u64 = 1 << 20;

/// Writes entries, in tar order, into the compact form as they come.
pub struct Encoder {
    out: zstd::stream::write::Encoder<'static, Vec<u8>>,
    previous: Previous,
    count: u64,
    /// The deleted paths, coded, and how many.
    deleted: Vec<u8>,
    deleted_count: u64,
    previous_deleted: Vec<u8>,
}

/// What each record is coded against.
#[derive(Default)]
struct Previous {
    path: Vec<u8>,
    end: u64,
    mtime: i64,
    inode: u64,
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
            deleted: Vec::new(),
            deleted_count: 0,
            previous_deleted: Vec::new(),
        })
    }

    /// Records that an incremental archive deleted `path` (and all below it), in tar order.
    pub fn delete(&mut self, path: &std::path::Path) {
        let path = path.as_os_str().as_bytes();
        let shared = shared_prefix(path, &self.previous_deleted);
        put_varint(&mut self.deleted, shared as u64);
        put_bytes(&mut self.deleted, &path[shared..]);
        self.previous_deleted = path.to_vec();
        self.deleted_count += 1;
    }

    /// Appends `entry`, which starts at or after the previous entry's end.
    pub fn push(&mut self, entry: &Entry) -> io::Result<()> {
        let path = entry.path.as_os_str().as_bytes();
        let shared = shared_prefix(path, &self.previous.path);
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
        let mut inode = self.previous.inode;
        match &entry.stamp {
            None => record.push(0),
            Some(stamp) => {
                record.push(match entry.sha256 {
                    Some(_) => STAMP_AND_DIGEST,
                    None => STAMP,
                });
                put_varint(&mut record, u64::from(stamp.mtime_nsec));
                put_varint(&mut record, zigzag(stamp.ctime.wrapping_sub(entry.mtime)));
                put_varint(&mut record, u64::from(stamp.ctime_nsec));
                put_varint(&mut record, zigzag(stamp.inode.wrapping_sub(inode) as i64));
                inode = stamp.inode;
                if let Some(digest) = &entry.sha256 {
                    record.extend_from_slice(digest);
                }
            }
        }
        self.out.write_all(&record)?;
        self.previous = Previous {
            path: path.to_vec(),
            end: entry.end_offset(),
            mtime: entry.mtime,
            inode,
        };
        self.count += 1;
        Ok(())
    }

    /// The catalog's bytes.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        let mut end = vec![0u8];
        put_varint(&mut end, self.count);
        put_varint(&mut end, self.deleted_count);
        self.out.write_all(&end)?;
        self.out.write_all(&self.deleted)?;
        self.out.finish()
    }
}

fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(a, b)| a == b).count()
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
    /// Version 2 or later: stamps and deletions.
    stamped: bool,
    /// Deleted paths not yet read, once the records have ended.
    deletions_left: u64,
}

impl<'a> Decoder<'a> {
    /// Starts reading `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Self, CatalogError> {
        let (rest, stamped) = match (
            bytes.strip_prefix(MAGIC.as_slice()),
            bytes.strip_prefix(MAGIC_V1.as_slice()),
        ) {
            (Some(rest), _) => (rest, true),
            (None, Some(rest)) => (rest, false),
            (None, None) => {
                return Err(CatalogError::Format(
                    bytes.iter().take(4).copied().collect(),
                ))
            }
        };
        let input = zstd::stream::read::Decoder::new(rest).map_err(damaged)?;
        Ok(Decoder {
            input: io::BufReader::with_capacity(64 << 10, input),
            previous: Previous::default(),
            count: 0,
            ended: false,
            stamped,
            deletions_left: 0,
        })
    }

    /// The paths the archive deleted (an incremental archive's), in tar order: read after
    /// every entry has been.
    pub fn deletions(mut self) -> Result<Vec<PathBuf>, CatalogError> {
        while self.next().transpose()?.is_some() {}
        let mut previous: Vec<u8> = Vec::new();
        let mut paths = Vec::new();
        for _ in 0..self.deletions_left {
            let shared = usize::try_from(read_varint(&mut self.input)?).unwrap_or(usize::MAX);
            if shared > previous.len() {
                return Err(CatalogError::Damaged(
                    "a deleted path shares more than the previous one has".into(),
                ));
            }
            let mut path = previous[..shared].to_vec();
            path.extend(read_bytes(&mut self.input)?);
            paths.push(PathBuf::from(std::ffi::OsStr::from_bytes(&path)));
            previous = path;
        }
        Ok(paths)
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
            if self.stamped {
                self.deletions_left = read_varint(&mut self.input)?;
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
        let (stamp, sha256) = match self.stamped {
            true => self.read_stamp(mtime)?,
            false => (None, None),
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
            stamp,
            sha256,
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
            inode: stamp.map_or(self.previous.inode, |s| s.inode),
        };
        self.count += 1;
        Ok(Some(entry))
    }

    /// A record's stamp and file digest, as its flag says.
    fn read_stamp(
        &mut self,
        mtime: i64,
    ) -> Result<(Option<Stamp>, Option<[u8; 32]>), CatalogError> {
        let digested = match read_u8(&mut self.input)? {
            0 => return Ok((None, None)),
            STAMP => false,
            STAMP_AND_DIGEST => true,
            flag => return Err(CatalogError::Damaged(format!("unknown stamp flag {flag}"))),
        };
        let nanos = |n: u64| {
            u32::try_from(n)
                .ok()
                .filter(|&n| n < 1_000_000_000)
                .ok_or_else(|| CatalogError::Damaged("nanoseconds out of range".into()))
        };
        let mtime_nsec = nanos(read_varint(&mut self.input)?)?;
        let ctime = mtime.wrapping_add(unzigzag(read_varint(&mut self.input)?));
        let ctime_nsec = nanos(read_varint(&mut self.input)?)?;
        let inode = self
            .previous
            .inode
            .wrapping_add(unzigzag(read_varint(&mut self.input)?) as u64);
        let stamp = Stamp {
            mtime_nsec,
            ctime,
            ctime_nsec,
            inode,
        };
        let sha256 = match digested {
            true => {
                let mut digest = [0u8; 32];
                self.input.read_exact(&mut digest).map_err(damaged)?;
                Some(digest)
            }
            false => None,
        };
        Ok((Some(stamp), sha256))
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
