//! Backup candidates: what gets backed up, how its bytes are produced, and how change is noticed.

//!
//! `walk` lists a directory tree (the one order fingerprints and tar archives share), `read`
//! reads a file exactly as listed, and `tree` turns a walk into a fingerprint or a tar.

mod read;
mod tree;
mod walk;

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glacier_backup_archiver::SourceKind;
use sha2::{Digest, Sha256};

pub use read::{mtime_ns, ExactFileReader, SourceError};
pub(crate) use tree::entry_size;
use tree::{scan_tree, write_tar};
pub use tree::{Scanner, GNU_DUMPDIR};
pub use walk::{tar_top_name, walk_tree, Child, EntryMeta, EntryType, TreeEntry};

const READ_CHUNK: usize = 1 << 20;
pub(crate) const TAR_BLOCK: u64 = 512;

/// What an increment holds, and the candidate that writes it.
pub type IncrementOf = (Arc<crate::chain::Changes>, Arc<dyn Candidate>);

/// Something to back up as one archive.
pub trait Candidate: Send + Sync + fmt::Debug {
    /// Absolute source path, as recorded in the ledger.
    fn source_path(&self) -> &Path;

    /// File (stored as is) or directory (stored as tar).
    fn kind(&self) -> SourceKind;

    /// Printable-ASCII archive name (the Python tool's naming).
    fn archive_name(&self) -> String {
        archive_name(self.source_path(), self.kind())
    }

    /// Looks at the source without reading file contents: its change fingerprint and expected
    /// archive size. Taken before archiving, so a change during archiving shows up next run.
    fn scan(&self) -> Result<Scan, SourceError>;

    /// Writes the archive bytes. Blocking. Fails if the source changes while being read.
    fn write_archive(&self, out: &mut dyn ArchiveSink) -> Result<(), SourceError>;

    /// [`Candidate::write_archive`], recording in `catalog` every entry a directory archive
    /// holds and where it lies in the archive. Candidates without entries write as before.
    fn write_cataloged(
        &self,
        out: &mut dyn ArchiveSink,
        catalog: &mut crate::catalog::Encoder,
    ) -> Result<(), SourceError> {
        let _ = catalog;
        self.write_archive(out)
    }

    /// This directory as an increment over `state` (a chain's last upload, see
    /// [`crate::chain`]): its scan, what changed since, and the candidate that writes the
    /// increment, from one walk. `None` for a candidate that cannot be one.
    fn increment_over(
        &self,
        state: crate::chain::Composed<'_>,
    ) -> Result<Option<(Scan, IncrementOf)>, crate::chain::DiffError> {
        let _ = state;
        Ok(None)
    }
}

/// Where an archive's bytes go. Besides being written to, a sink takes file contents straight
/// from a reader into its own buffer: every byte of a backup passes through here, and a copy
/// through an intermediate buffer costs as much CPU as reading the file.
pub trait ArchiveSink: Write {
    /// Reads once from `reader` into the sink: the number of bytes taken, 0 at the end.
    fn read_from(&mut self, reader: &mut dyn Read) -> io::Result<usize>;

    /// Says an archive entry starts here (a place a compressed stream may end a frame).
    fn entry_boundary(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ArchiveSink for Vec<u8> {
    fn read_from(&mut self, reader: &mut dyn Read) -> io::Result<usize> {
        let start = self.len();
        self.resize(start + READ_CHUNK, 0);
        let result = reader.read(&mut self[start..]);
        self.truncate(start + *result.as_ref().unwrap_or(&0));
        result
    }
}

/// What [`Candidate::scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Change fingerprint.
    pub fingerprint: Fingerprint,
    /// Expected archive size in bytes.
    pub size_estimate: u64,
}

/// A summary of a source's state that changes whenever anything in it changes: entries, sizes,
/// mtimes, modes, owners, link targets, anywhere in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Number of entries (1 for a file).
    pub entries: u64,
    /// Total bytes of file contents.
    pub bytes: u64,
    /// Newest modification time in the tree (directories included), nanoseconds since the
    /// epoch. Compared with upload times of rows that have no fingerprint; not part of the
    /// fingerprint's identity, because a directory's mtime moves with unrelated activity.
    pub newest_mtime_ns: i128,
    /// SHA-256 over every entry's path and metadata, in walk order.
    pub digest: [u8; 32],
}

impl fmt::Display for Fingerprint {
    /// The form stored in the ledger; equal strings mean an unchanged source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v1:entries={}:bytes={}:sha256={}",
            self.entries,
            self.bytes,
            hex::encode(self.digest)
        )
    }
}

/// The Python tool's archive naming, made printable ASCII: a directory is its name with spaces
/// turned into `_` plus `.tar`; a file is its name. Bytes outside printable ASCII, `%`, and a
/// leading space (which Glacier would drop) are percent-encoded, so distinct names stay distinct.
pub fn archive_name(path: &Path, kind: SourceKind) -> String {
    let raw = tar_top_name(path).as_bytes();
    let mut name = String::with_capacity(raw.len() + 4);
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b' ' if kind == SourceKind::Directory => name.push('_'),
            b' ' if i == 0 => name.push_str("%20"),
            b'%' => name.push_str("%25"),
            0x20..=0x7e => name.push(b as char),
            _ => name.push_str(&format!("%{b:02X}")),
        }
    }
    if kind == SourceKind::Directory {
        name.push_str(".tar");
    }
    name
}

/// A file or directory on the local file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathCandidate {
    path: PathBuf,
    kind: SourceKind,
    skip: Arc<[PathBuf]>,
    /// A directory written as an increment holding these changes.
    increment: Option<Arc<crate::chain::Changes>>,
    /// Each file's SHA-256 kept in the catalog and compared by increments (`verify_content`).
    verify_content: bool,
}

impl PathCandidate {
    /// A candidate for `path`, which is (or links to) a file or a directory as `kind` says.
    pub fn new(path: PathBuf, kind: SourceKind) -> Self {
        PathCandidate {
            path,
            kind,
            skip: Arc::new([]),
            increment: None,
            verify_content: false,
        }
    }

    /// Keeps each file's SHA-256 in a directory's catalog, and has an increment compare the
    /// bytes of a file whose metadata did not change (`verify_content`).
    pub fn verifying_content(mut self, verify: bool) -> Self {
        self.verify_content = verify;
        self
    }

    /// Writes a directory as an increment holding `changes` (see [`crate::chain`]).
    pub fn incremental(mut self, changes: Arc<crate::chain::Changes>) -> Self {
        self.increment = Some(changes);
        self
    }

    /// Leaves these paths out of a directory's archive and fingerprint: the tool's own ledger,
    /// lock and log files and a local archive directory, which change during the run.
    pub fn skipping(mut self, skip: Arc<[PathBuf]>) -> Self {
        self.skip = skip;
        self
    }
}

impl Candidate for PathCandidate {
    fn source_path(&self) -> &Path {
        &self.path
    }

    fn kind(&self) -> SourceKind {
        self.kind
    }

    fn scan(&self) -> Result<Scan, SourceError> {
        match self.kind {
            SourceKind::File => scan_file(&self.path),
            SourceKind::Directory => scan_tree(&self.path, &self.skip),
        }
    }

    fn write_archive(&self, out: &mut dyn ArchiveSink) -> Result<(), SourceError> {
        match self.kind {
            SourceKind::File => write_file(&self.path, out),
            SourceKind::Directory => write_tar(
                &self.path,
                &self.skip,
                out,
                None,
                self.increment.as_deref(),
                false,
            ),
        }
    }

    fn write_cataloged(
        &self,
        out: &mut dyn ArchiveSink,
        catalog: &mut crate::catalog::Encoder,
    ) -> Result<(), SourceError> {
        match self.kind {
            SourceKind::File => write_file(&self.path, out),
            SourceKind::Directory => write_tar(
                &self.path,
                &self.skip,
                out,
                Some(catalog),
                self.increment.as_deref(),
                self.verify_content,
            ),
        }
    }

    fn increment_over(
        &self,
        state: crate::chain::Composed<'_>,
    ) -> Result<Option<(Scan, IncrementOf)>, crate::chain::DiffError> {
        if self.kind != SourceKind::Directory {
            return Ok(None);
        }
        let (scan, changes) =
            crate::chain::diff(&self.path, &self.skip, state, self.verify_content)?;
        let changes = Arc::new(changes);
        let candidate = self.clone().incremental(changes.clone());
        Ok(Some((scan, (changes, Arc::new(candidate)))))
    }
}

fn scan_file(path: &Path) -> Result<Scan, SourceError> {
    let meta = std::fs::metadata(path).map_err(|e| SourceError::io(path, e))?;
    if !meta.is_file() {
        return Err(SourceError::Changed {
            path: path.to_path_buf(),
            what: "is no longer a regular file",
        });
    }
    // Mode and owner are not part of a file archive, so they do not count as a change.
    let mut digest = Sha256::new();
    digest.update(meta.len().to_le_bytes());
    digest.update(mtime_ns(&meta).to_le_bytes());
    Ok(Scan {
        fingerprint: Fingerprint {
            entries: 1,
            bytes: meta.len(),
            newest_mtime_ns: mtime_ns(&meta),
            digest: digest.finalize().into(),
        },
        size_estimate: meta.len(),
    })
}

fn write_file(path: &Path, out: &mut dyn ArchiveSink) -> Result<(), SourceError> {
    let meta = std::fs::metadata(path).map_err(|e| SourceError::io(path, e))?;
    let mut reader = ExactFileReader::open(path, &meta)?;
    copy_exact(&mut reader, out, path)?;
    reader.finish().map(drop)
}

/// Copies a file's contents into the sink, read straight into its buffers (the tar crate's
/// own copy reads 8 KiB at a time, through a buffer of its own).
fn copy_exact(
    reader: &mut ExactFileReader,
    out: &mut dyn ArchiveSink,
    path: &Path,
) -> Result<u64, SourceError> {
    let mut total = 0u64;
    loop {
        match out.read_from(reader) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SourceError::from_io(e, path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_follow_the_python_tool_and_stay_printable() {
        let dir = SourceKind::Directory;
        let file = SourceKind::File;
        assert_eq!(
            archive_name(Path::new("/a/My Photos"), dir),
            "My_Photos.tar"
        );
        assert_eq!(
            archive_name(Path::new("/a/report 1.pdf"), file),
            "report 1.pdf"
        );
        assert_eq!(archive_name(Path::new("/a/ lead"), file), "%20lead");
        assert_eq!(archive_name(Path::new("/a/café"), file), "caf%C3%A9");
        assert_eq!(archive_name(Path::new("/a/100%"), file), "100%25");
    }
}
