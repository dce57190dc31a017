//! Reading a source tree: the one walk order shared by fingerprints and tar archives, and the
//! reader that notices files changing under it.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use glacier_backup_archiver::shown;
use rustix::fs::{FileType, Stat};

use crate::fsat;

/// A source could not be archived as it was.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file changed while it was being read; the archive would not match any real state.
    #[error(
        "{}: {what} while being archived; it will be tried again on the next run",
        shown(path)
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// What was noticed.
        what: &'static str,
    },
    /// A file disappeared between listing and reading.
    #[error(
        "{}: vanished while being archived; it will be tried again on the next run",
        shown(path)
    )]
    Vanished {
        /// The file.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", shown(path))]
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

impl SourceError {
    /// Wraps an I/O error on `path`, recognising a vanished file.
    pub fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            SourceError::Vanished {
                path: path.to_path_buf(),
            }
        } else {
            SourceError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// Recovers a `SourceError` that travelled inside an `io::Error` (through the tar
    /// builder), or wraps a plain one as an error on `path`.
    pub fn from_io(error: io::Error, path: &Path) -> Self {
        if error.get_ref().is_some_and(|e| e.is::<SourceError>()) {
            let inner = error.into_inner().expect("checked above");
            return *inner.downcast::<SourceError>().expect("checked above");
        }
        if error.kind() == io::ErrorKind::BrokenPipe {
            return SourceError::Stopped;
        }
        SourceError::io(path, error)
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
    pub fn open(path: &Path, listed: &Metadata) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|e| SourceError::io(path, e))?;
        Self::checked(file, path, listed.len(), mtime_ns(listed))
    }

    /// Reads `file`, opened as `path`, which was listed with this size and mtime.
    fn checked(
        file: File,
        path: &Path,
        listed_len: u64,
        listed_mtime: i128,
    ) -> Result<Self, SourceError> {
        let now = file.metadata().map_err(|e| SourceError::io(path, e))?;
        if !now.is_file() {
            return Err(SourceError::Changed {
                path: path.to_path_buf(),
                what: "is no longer a regular file",
            });
        }
        if now.len() != listed_len || mtime_ns(&now) != listed_mtime {
            return Err(SourceError::Changed {
                path: path.to_path_buf(),
                what: "changed between listing and reading",
            });
        }
        Ok(ExactFileReader {
            file,
            path: path.to_path_buf(),
            remaining: listed_len,
            mtime: listed_mtime,
        })
    }

    /// Checks, after all bytes were read, that the file neither grew nor was modified.
    pub fn finish(mut self) -> Result<(), SourceError> {
        let mut probe = [0u8; 1];
        let extra = self
            .file
            .read(&mut probe)
            .map_err(|e| SourceError::io(&self.path, e))?;
        let meta = self
            .file
            .metadata()
            .map_err(|e| SourceError::io(&self.path, e))?;
        if extra > 0 {
            return Err(self.changed("grew"));
        }
        if mtime_ns(&meta) != self.mtime {
            return Err(self.changed("was modified"));
        }
        Ok(())
    }

    fn changed(&self, what: &'static str) -> SourceError {
        SourceError::Changed {
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
            .map_err(|e| io::Error::other(SourceError::io(&self.path, e)))?;
        if n == 0 {
            return Err(io::Error::other(self.changed("shrank")));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// What the walk knows of an entry: its `lstat` (for the root, the `stat` of what it leads
/// to, since a configured directory may be a link to one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    kind: EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    len: u64,
    mtime: i64,
    mtime_ns: i128,
}

impl EntryMeta {
    fn from_stat(stat: &Stat) -> Self {
        let kind = match fsat::file_type(stat) {
            FileType::RegularFile => EntryType::File,
            FileType::Directory => EntryType::Dir,
            FileType::Symlink => EntryType::Symlink,
            _ => EntryType::Special,
        };
        EntryMeta {
            kind,
            mode: fsat::mode(stat),
            uid: stat.st_uid,
            gid: stat.st_gid,
            len: fsat::size(stat),
            mtime: fsat::mtime_secs(stat),
            mtime_ns: fsat::mtime_ns(stat),
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the size is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Owner.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Group.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Modification time, whole seconds since the epoch.
    pub fn mtime(&self) -> i64 {
        self.mtime
    }

    /// Modification time in nanoseconds since the epoch.
    pub fn mtime_ns(&self) -> i128 {
        self.mtime_ns
    }
}

/// One entry of a directory tree, in archive order.
pub struct TreeEntry<'a> {
    /// Path on disk, for messages only: it may be longer than the system accepts in a call.
    pub path: PathBuf,
    /// Path inside the archive: starts with the directory's own name.
    pub archive_path: PathBuf,
    /// Metadata, not following symlinks (except for the root, which may be a link to a dir).
    pub meta: EntryMeta,
    /// The directory holding the entry, and its name there (`None` for the root).
    location: Option<(BorrowedFd<'a>, &'a OsStr)>,
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

impl TreeEntry<'_> {
    /// The entry's type.
    pub fn entry_type(&self) -> EntryType {
        self.meta.kind
    }

    /// The target of a symlink entry.
    pub fn read_link(&self) -> Result<OsString, SourceError> {
        let (dir, name) = self.location.ok_or_else(|| {
            SourceError::io(&self.path, io::Error::from(io::ErrorKind::InvalidInput))
        })?;
        fsat::read_link_at(dir, name).map_err(|e| SourceError::io(&self.path, e))
    }

    /// Opens a file entry for reading exactly the bytes it was listed with.
    pub fn open_exact(&self) -> Result<ExactFileReader, SourceError> {
        let (dir, name) = self.location.ok_or_else(|| {
            SourceError::io(&self.path, io::Error::from(io::ErrorKind::InvalidInput))
        })?;
        let file = fsat::open_file_at(dir, name).map_err(|e| match e.raw_os_error() {
            // Replaced by a link since it was listed.
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => SourceError::Changed {
                path: self.path.clone(),
                what: "was replaced by a link",
            },
            _ => SourceError::io(&self.path, e),
        })?;
        ExactFileReader::checked(file, &self.path, self.meta.len, self.meta.mtime_ns)
    }
}

/// A directory being walked: its handle and the names in it not yet visited.
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    archive_path: PathBuf,
    names: std::vec::IntoIter<OsString>,
}

impl Frame {
    fn open(fd: OwnedFd, path: PathBuf, archive_path: PathBuf) -> Result<Self, SourceError> {
        let names = fsat::sorted_names(fd.as_fd()).map_err(|e| SourceError::io(&path, e))?;
        Ok(Frame {
            fd,
            path,
            archive_path,
            names: names.into_iter(),
        })
    }
}

/// Walks `root` depth-first in byte order of names, calling `visit` for each entry (the root
/// first) except those in `skip` (and what is below them). Special files are passed too; the
/// caller decides what to do with them.
///
/// Every directory is read through a handle opened from its parent's, by name, not following
/// links: a tree of any depth is walked (paths longer than PATH_MAX included), and a directory
/// swapped for a link during the walk is not followed. `root` itself may be a link to a
/// directory; it counts as the directory it leads to.
pub fn walk_tree(
    root: &Path,
    skip: &[PathBuf],
    mut visit: impl FnMut(TreeEntry<'_>) -> Result<(), SourceError>,
) -> Result<(), SourceError> {
    let base = root
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| "root".into());
    let root_fd = fsat::open_dir(root).map_err(|e| SourceError::io(root, e))?;
    let stat = fsat::fstat(&root_fd).map_err(|e| SourceError::io(root, e))?;
    visit(TreeEntry {
        path: root.to_path_buf(),
        archive_path: base.clone(),
        meta: EntryMeta::from_stat(&stat),
        location: None,
    })?;
    let mut stack = vec![Frame::open(root_fd, root.to_path_buf(), base)?];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.next() else {
            stack.pop();
            continue;
        };
        let path = frame.path.join(&name);
        if skip.contains(&path) {
            continue;
        }
        let stat = match fsat::lstat_at(frame.fd.as_fd(), &name) {
            Ok(stat) => stat,
            Err(e) => return Err(SourceError::io(&path, e)),
        };
        let meta = EntryMeta::from_stat(&stat);
        let archive_path = frame.archive_path.join(&name);
        visit(TreeEntry {
            path: path.clone(),
            archive_path: archive_path.clone(),
            meta,
            location: Some((frame.fd.as_fd(), &name)),
        })?;
        if meta.kind == EntryType::Dir {
            let fd =
                fsat::open_dir_at(frame.fd.as_fd(), &name).map_err(|e| match e.raw_os_error() {
                    Some(c)
                        if c == rustix::io::Errno::LOOP.raw_os_error()
                            || c == rustix::io::Errno::NOTDIR.raw_os_error() =>
                    {
                        SourceError::Changed {
                            path: path.clone(),
                            what: "was replaced by a link or a file",
                        }
                    }
                    _ => SourceError::io(&path, e),
                })?;
            stack.push(Frame::open(fd, path, archive_path)?);
        }
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
            matches!(err, SourceError::Changed { what: "grew", .. }),
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
        let err = SourceError::from_io(err, &path);
        assert!(
            matches!(err, SourceError::Changed { what: "shrank", .. }),
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
            Err(SourceError::Changed {
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
            Err(SourceError::Vanished { .. })
        ));
    }
}
