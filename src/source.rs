//! Reading a source tree: the one walk order shared by fingerprints and tar archives, and the
//! reader that notices files changing under it.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A source could not be archived as it was.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file changed while it was being read; the archive would not match any real state.
    #[error("{path}: {what} while being archived; it will be tried again on the next run")]
    Changed {
        /// The file.
        path: PathBuf,
        /// What was noticed.
        what: &'static str,
    },
    /// A file disappeared between listing and reading.
    #[error("{path}: vanished while being archived; it will be tried again on the next run")]
    Vanished {
        /// The file.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The consumer of the archive stopped reading (upload failed or cancelled).
    #[error("archiving stopped because the upload ended")]
    Stopped,
}

impl ArchiveError {
    /// Wraps an I/O error on `path`, recognising a vanished file.
    pub fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            ArchiveError::Vanished {
                path: path.to_path_buf(),
            }
        } else {
            ArchiveError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// Recovers an `ArchiveError` that travelled inside an `io::Error` (through the tar
    /// builder), or wraps a plain one as an error on `path`.
    pub fn from_io(error: io::Error, path: &Path) -> Self {
        if error.get_ref().is_some_and(|e| e.is::<ArchiveError>()) {
            let inner = error.into_inner().expect("checked above");
            return *inner.downcast::<ArchiveError>().expect("checked above");
        }
        if error.kind() == io::ErrorKind::BrokenPipe {
            return ArchiveError::Stopped;
        }
        ArchiveError::io(path, error)
    }
}

/// Modification time in nanoseconds since the epoch (negative before 1970).
pub fn mtime_ns(meta: &Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Reads exactly the `len` bytes a file had when it was listed, and fails if it turns out to be
/// shorter, longer, or modified by the time the read ends.
pub struct ExactFileReader {
    file: File,
    path: PathBuf,
    remaining: u64,
    mtime: i128,
}

impl ExactFileReader {
    /// Opens `path` and checks it still has the size and mtime in `listed`.
    pub fn open(path: &Path, listed: &Metadata) -> Result<Self, ArchiveError> {
        let file = File::open(path).map_err(|e| ArchiveError::io(path, e))?;
        let now = file.metadata().map_err(|e| ArchiveError::io(path, e))?;
        if now.len() != listed.len() || mtime_ns(&now) != mtime_ns(listed) {
            return Err(ArchiveError::Changed {
                path: path.to_path_buf(),
                what: "changed between listing and reading",
            });
        }
        Ok(ExactFileReader {
            file,
            path: path.to_path_buf(),
            remaining: listed.len(),
            mtime: mtime_ns(listed),
        })
    }

    /// Checks, after all bytes were read, that the file neither grew nor was modified.
    pub fn finish(mut self) -> Result<(), ArchiveError> {
        let mut probe = [0u8; 1];
        let extra = self
            .file
            .read(&mut probe)
            .map_err(|e| ArchiveError::io(&self.path, e))?;
        let meta = self
            .file
            .metadata()
            .map_err(|e| ArchiveError::io(&self.path, e))?;
        if extra > 0 {
            return Err(self.changed("grew"));
        }
        if mtime_ns(&meta) != self.mtime {
            return Err(self.changed("was modified"));
        }
        Ok(())
    }

    fn changed(&self, what: &'static str) -> ArchiveError {
        ArchiveError::Changed {
            path: self.path.clone(),
            what,
        }
    }
}

impl Read for ExactFileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self
            .file
            .read(&mut buf[..want])
            .map_err(|e| io::Error::other(ArchiveError::io(&self.path, e)))?;
        if n == 0 {
            return Err(io::Error::other(self.changed("shrank")));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// One entry of a directory tree, in archive order.
pub struct TreeEntry {
    /// Path on disk.
    pub path: PathBuf,
    /// Path inside the archive: starts with the directory's own name.
    pub archive_path: PathBuf,
    /// Metadata, not following symlinks (except for the root, which may be a link to a dir).
    pub meta: Metadata,
}

/// What kind of tree entry, for archiving purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (kept as a link).
    Symlink,
    /// Socket, fifo or device: not archived.
    Special,
}

impl TreeEntry {
    /// The entry's type.
    pub fn entry_type(&self) -> EntryType {
        let ft = self.meta.file_type();
        if ft.is_file() {
            EntryType::File
        } else if ft.is_dir() {
            EntryType::Dir
        } else if ft.is_symlink() {
            EntryType::Symlink
        } else {
            EntryType::Special
        }
    }
}

/// Walks `root` depth-first in byte order of names, calling `visit` for each entry (the root
/// first) except those in `skip` (and what is below them). Special files are passed too; the
/// caller decides what to do with them.
pub fn walk_tree(
    root: &Path,
    skip: &[PathBuf],
    mut visit: impl FnMut(TreeEntry) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let base = root
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| "root".into());
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !skip.iter().any(|s| s == e.path()))
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            match e.into_io_error() {
                Some(io) => ArchiveError::io(&path, io),
                None => ArchiveError::Io {
                    path,
                    source: io::Error::other("filesystem loop"),
                },
            }
        })?;
        let meta = entry
            .metadata()
            .map_err(|e| ArchiveError::io(entry.path(), e.into()))?;
        let relative = entry
            .path()
            .strip_prefix(root)
            .expect("walk stays under its root");
        visit(TreeEntry {
            archive_path: base.join(relative),
            path: entry.into_path(),
            meta,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn open(path: &Path) -> ExactFileReader {
        ExactFileReader::open(path, &std::fs::metadata(path).unwrap()).unwrap()
    }

    #[test]
    fn a_file_that_grows_while_read_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let mut reader = open(&path);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).unwrap();
        assert_eq!(sink.len(), 10_000, "reads exactly the listed size");
        let err = reader.finish().unwrap_err();
        assert!(
            matches!(err, ArchiveError::Changed { what: "grew", .. }),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_shrinks_while_read_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let mut reader = open(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10)
            .unwrap();
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        let err = ArchiveError::from_io(err, &path);
        assert!(
            matches!(err, ArchiveError::Changed { what: "shrank", .. }),
            "{err}"
        );
    }

    #[test]
    fn a_file_rewritten_in_place_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"original").unwrap();
        let mut reader = open(&path);
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).unwrap();
        let later = filetime::FileTime::from_unix_time(2_000_000_000, 0);
        filetime::set_file_mtime(&path, later).unwrap();
        assert!(matches!(
            reader.finish(),
            Err(ArchiveError::Changed {
                what: "was modified",
                ..
            })
        ));
    }

    #[test]
    fn a_file_that_vanished_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            ExactFileReader::open(&path, &meta),
            Err(ArchiveError::Vanished { .. })
        ));
    }
}
