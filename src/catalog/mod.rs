//! What a directory archive holds, entry by entry, and where each entry lies in the archive's
//! plain tar stream: written as the tar is written (no second read), kept compact, read back
//! without trusting its bytes.
//!
//! The compact form is a zstd stream of one record per entry, in tar order (sorted by name),
//! each path front-coded against the one before it and every number a LEB128 varint, offsets as
//! the gap since the previous entry's end. Encoding streams into the compressed buffer, so a
//! directory of a million files holds megabytes while it is written, not a list of entries.

mod find;
mod format;
mod from_index;
mod index;
mod layout;
mod ls;

pub use find::{find, FindError, FindReport, Pattern, Versions};
pub use format::{Decoder, Encoder, MAGIC};
pub use from_index::{catalogs_from_indexes, wanted as wanted_indexes, FromIndexes};
pub use index::{open as open_index, seal as seal_index, store_index, Index, IndexError};
pub use layout::{Frame, Layout, Located, AGE_CHUNK, AGE_STORED_CHUNK, LAYOUT_MAGIC, LEAF};
pub use ls::{list, Listing, LsError};

use std::path::PathBuf;

use crate::ledger::UploadRecord;

/// What the ledger keeps of one directory archive, each part in its compact form: its entries
/// ([`Encoder`]) and its layout ([`Layout::encode`]; missing from catalogs made before layouts
/// were kept, whose archives restore whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cataloged {
    /// The entries.
    pub entries: Vec<u8>,
    /// The layout.
    pub layout: Option<Vec<u8>>,
    /// The index stored beside the archive at the destination, once it is.
    pub index_id: Option<String>,
    /// An increment's base: the archive of the upload whose state it holds the changes since
    /// (`None` for a full archive).
    pub base: Option<String>,
}

/// What kind of entry a tar holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file, with data.
    File,
    /// A symbolic link (its target in [`Entry::link`]).
    Symlink,
}

impl EntryKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            EntryKind::Directory => b'd',
            EntryKind::File => b'f',
            EntryKind::Symlink => b'l',
        }
    }

    /// `directory`, `file` or `symlink`, as JSON output spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Directory => "directory",
            EntryKind::File => "file",
            EntryKind::Symlink => "symlink",
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            b'd' => Some(EntryKind::Directory),
            b'f' => Some(EntryKind::File),
            b'l' => Some(EntryKind::Symlink),
            _ => None,
        }
    }
}

/// One entry of a directory archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name inside the archive (the directory's own name first), as the tar has it.
    pub path: PathBuf,
    /// Directory, file or link.
    pub kind: EntryKind,
    /// Bytes of data (files only; 0 otherwise).
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// A link's target.
    pub link: Option<PathBuf>,
    /// Where the entry's first header record starts in the plain tar stream.
    pub header_offset: u64,
    /// Where its data starts (after its header records, long-name ones included).
    pub data_offset: u64,
    /// What says whether the entry changed since (catalogs from before incremental archives
    /// have none).
    pub stamp: Option<Stamp>,
    /// The SHA-256 of a file's bytes, kept when its path section sets `verify_content` (so a
    /// later increment finds a file whose bytes changed under the same metadata).
    pub sha256: Option<[u8; 32]>,
}

/// Of an entry's metadata, what the catalog keeps beyond the tar header's: enough to tell,
/// as GNU tar's incremental dumps do, that a file with the same size and mtime was still
/// written or replaced since (its ctime or inode changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sub-second part of the mtime, in nanoseconds.
    pub mtime_nsec: u32,
    /// The inode-change time, seconds since the epoch.
    pub ctime: i64,
    /// Its sub-second part, in nanoseconds.
    pub ctime_nsec: u32,
    /// The inode number.
    pub inode: u64,
}

impl Entry {
    /// Where the entry ends in the plain stream: its data padded to a whole 512-byte block.
    pub fn end_offset(&self) -> u64 {
        self.data_offset + self.size.div_ceil(512) * 512
    }
}

/// A catalog's bytes are not one this version wrote, or are damaged.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not a catalog (wrong magic) or from a newer version.
    #[error("not a catalog this version reads (format {0:?})")]
    Format(Vec<u8>),
    /// The compressed stream or a record is cut short or malformed.
    #[error("damaged catalog: {0}")]
    Damaged(String),
}

/// An upload's catalog could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("the catalog of {archive_id}: {source}")]
pub struct DamagedCatalog {
    /// The upload's archive.
    pub archive_id: String,
    /// What is wrong.
    pub source: CatalogError,
}

/// Calls `each` with every entry of `upload`'s catalog (`bytes`), its path made the source
/// path it was backed up from: the archive's names start with the directory's own name, which
/// stands for `upload.path`.
pub fn each_source_entry(
    upload: &UploadRecord,
    bytes: &[u8],
    each: &mut dyn FnMut(Entry),
) -> Result<(), DamagedCatalog> {
    let damaged = |source| DamagedCatalog {
        archive_id: upload.archive_id.clone(),
        source,
    };
    for entry in Decoder::new(bytes).map_err(damaged)? {
        let entry = entry.map_err(damaged)?;
        let path = source_path(upload, &entry.path);
        each(Entry { path, ..entry });
    }
    Ok(())
}

/// The source path an entry of `upload`'s archive named `name` was backed up from: the
/// archive's names start with the directory's own name, which stands for `upload.path`.
pub fn source_path(upload: &UploadRecord, name: &std::path::Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    // By bytes, not path components: a catalog of a million entries is read in well under a
    // second only without them.
    let top = crate::candidate::tar_top_name(&upload.path).as_bytes();
    let base = upload.path.as_os_str().as_bytes();
    match name.as_os_str().as_bytes().strip_prefix(top) {
        Some([]) => upload.path.clone(),
        Some(rest) if rest.starts_with(b"/") => {
            PathBuf::from(std::ffi::OsString::from_vec([base, rest].concat()))
        }
        // Outside the top directory (not one of ours): kept as the archive names it.
        _ => name.to_path_buf(),
    }
}

#[cfg(test)]
mod tests;
