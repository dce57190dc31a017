//! Backup candidates: what gets backed up, how its bytes are produced, and how change is noticed.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glacier_backup_archiver::SourceKind;
use sha2::{Digest, Sha256};

use crate::source::{mtime_ns, walk_tree, EntryType, ExactFileReader, SourceError};

/// Bytes read from a file per system call while archiving.
const READ_CHUNK: usize = 1 << 20;
const TAR_BLOCK: u64 = 512;

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
    fn write_archive(&self, out: &mut dyn Write) -> Result<(), SourceError>;
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

/// The Python tool's archive naming, made printable ASCII: a directory is its name with spaces turned
/// into `_` plus `.tar`; a file is its name. Bytes outside printable ASCII, `%`, and a leading
/// space (which Glacier would drop) are percent-encoded, so distinct names stay distinct.
pub fn archive_name(path: &Path, kind: SourceKind) -> String {
    let raw = path
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b"root".to_vec());
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
}

impl PathCandidate {
    /// A candidate for `path`, which is (or links to) a file or a directory as `kind` says.
    pub fn new(path: PathBuf, kind: SourceKind) -> Self {
        PathCandidate {
            path,
            kind,
            skip: Arc::new([]),
        }
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

    fn write_archive(&self, out: &mut dyn Write) -> Result<(), SourceError> {
        match self.kind {
            SourceKind::File => write_file(&self.path, out),
            SourceKind::Directory => write_tar(&self.path, &self.skip, out),
        }
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

fn scan_tree(root: &Path, skip: &[PathBuf]) -> Result<Scan, SourceError> {
    let mut digest = Sha256::new();
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let mut newest = i128::MIN;
    let mut size_estimate = 2 * TAR_BLOCK;
    walk_tree(root, skip, |entry| {
        let kind = entry.entry_type();
        if kind == EntryType::Special {
            return Ok(());
        }
        let name = entry.archive_path.as_os_str().as_bytes();
        let link = match kind {
            EntryType::Symlink => entry.read_link()?.into_vec(),
            _ => Vec::new(),
        };
        let size = if kind == EntryType::File {
            entry.meta.len()
        } else {
            0
        };
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name);
        digest.update([kind as u8]);
        digest.update(size.to_le_bytes());
        // A directory's mtime only says its entries changed, which the entries themselves show;
        // leaving it out keeps unrelated activity (a SQLite journal coming and going) from
        // counting as a change.
        if kind != EntryType::Dir {
            digest.update(entry.meta.mtime_ns().to_le_bytes());
        }
        digest.update(entry.meta.mode().to_le_bytes());
        digest.update(entry.meta.uid().to_le_bytes());
        digest.update(entry.meta.gid().to_le_bytes());
        digest.update((link.len() as u64).to_le_bytes());
        digest.update(&link);
        entries += 1;
        bytes += size;
        newest = newest.max(entry.meta.mtime_ns());
        size_estimate += TAR_BLOCK + size.div_ceil(TAR_BLOCK) * TAR_BLOCK;
        let name_len = name.len() + usize::from(kind == EntryType::Dir && !name.ends_with(b"/"));
        for long in [name_len, link.len()] {
            if long >= 100 {
                size_estimate += TAR_BLOCK + (long as u64 + 1).div_ceil(TAR_BLOCK) * TAR_BLOCK;
            }
        }
        Ok(())
    })?;
    Ok(Scan {
        fingerprint: Fingerprint {
            entries,
            bytes,
            newest_mtime_ns: newest,
            digest: digest.finalize().into(),
        },
        size_estimate,
    })
}

fn write_file(path: &Path, out: &mut dyn Write) -> Result<(), SourceError> {
    let meta = std::fs::metadata(path).map_err(|e| SourceError::io(path, e))?;
    let mut reader = ExactFileReader::open(path, &meta)?;
    copy_exact(&mut reader, out, path)?;
    reader.finish()
}

/// Copies with large reads (the tar crate's own copy reads 8 KiB at a time).
fn copy_exact(
    reader: &mut ExactFileReader,
    out: &mut dyn Write,
    path: &Path,
) -> Result<u64, SourceError> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SourceError::from_io(e, path)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| SourceError::from_io(e, path))?;
        total += n as u64;
    }
}

/// A deterministic GNU tar of `root`: entries named from the directory's own name down, sorted
/// by name; modes, owners (numeric) and mtimes kept; symlinks stored as links; no access times
/// or user names, so the same tree always gives the same bytes.
fn write_tar(root: &Path, skip: &[PathBuf], out: &mut dyn Write) -> Result<(), SourceError> {
    let mut builder = tar::Builder::new(out);
    walk_tree(root, skip, |entry| {
        let kind = entry.entry_type();
        let fail = |e: io::Error| SourceError::from_io(e, &entry.path);
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.meta.mode() & 0o7777);
        header.set_uid(u64::from(entry.meta.uid()));
        header.set_gid(u64::from(entry.meta.gid()));
        header.set_mtime(u64::try_from(entry.meta.mtime()).unwrap_or(0));
        header.set_size(0);
        match kind {
            EntryType::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                // GNU tar marks directories with a trailing slash; so do we, for every one.
                let mut name = entry.archive_path.clone().into_os_string();
                if !name.as_bytes().ends_with(b"/") {
                    name.push("/");
                }
                builder
                    .append_data(&mut header, &name, io::empty())
                    .map_err(fail)?;
            }
            EntryType::Symlink => {
                let target = entry.read_link()?;
                header.set_entry_type(tar::EntryType::Symlink);
                builder
                    .append_link(&mut header, &entry.archive_path, target)
                    .map_err(fail)?;
            }
            EntryType::File => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(entry.meta.len());
                let mut reader = entry.open_exact()?;
                // The header (and any long-name record) goes through the builder with no data;
                // the contents follow with large reads, then the padding to a whole block.
                builder
                    .append_data(&mut header, &entry.archive_path, io::empty())
                    .map_err(fail)?;
                let out = builder.get_mut();
                let written = copy_exact(&mut reader, out, &entry.path)?;
                let padding = (TAR_BLOCK - written % TAR_BLOCK) % TAR_BLOCK;
                out.write_all(&[0u8; TAR_BLOCK as usize][..padding as usize])
                    .map_err(fail)?;
                reader.finish()?;
            }
            EntryType::Special => {
                tracing::warn!(
                    "skipping {}: sockets, fifos and devices are not archived",
                    glacier_backup_archiver::shown(&entry.path)
                );
            }
        }
        Ok(())
    })?;
    builder
        .into_inner()
        .map_err(|e| SourceError::from_io(e, root))?;
    Ok(())
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

    #[test]
    fn size_estimate_is_exact_for_ordinary_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a"), vec![1u8; 1000]).unwrap();
        std::fs::write(root.join("sub/b"), b"").unwrap();
        std::fs::write(root.join("sub").join("x".repeat(150)), b"long").unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let candidate = PathCandidate::new(root, SourceKind::Directory);
        let scan = candidate.scan().unwrap();
        let mut tar = Vec::new();
        candidate.write_archive(&mut tar).unwrap();
        assert_eq!(scan.size_estimate, tar.len() as u64);
        assert_eq!(scan.fingerprint.entries, 6);
        assert_eq!(scan.fingerprint.bytes, 1004);
    }
}
