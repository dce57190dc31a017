//! Walking a source tree through directory handles: the one walk order shared by fingerprints
//! and tar archives.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};

use super::{ExactFileReader, SourceError};
use crate::fsat;

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
    stamp: crate::catalog::Stamp,
}

impl EntryMeta {
    #[allow(clippy::unnecessary_cast)]
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
            stamp: crate::catalog::Stamp {
                mtime_nsec: stat.st_mtime_nsec as u32,
                ctime: stat.st_ctime as i64,
                ctime_nsec: stat.st_ctime_nsec as u32,
                inode: stat.st_ino as u64,
            },
        }
    }

    /// What tells a later backup whether the entry changed (see [`crate::catalog::Stamp`]).
    pub fn stamp(&self) -> crate::catalog::Stamp {
        self.stamp
    }

    /// What kind of entry.
    pub fn kind(&self) -> EntryType {
        self.kind
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
    /// A directory's own entries, in walk order (those skipped left out).
    pub children: &'a [Child],
}

/// An entry of a directory, as the walk found it when it opened the directory.
#[derive(Debug, Clone)]
pub struct Child {
    /// Its name in the directory.
    pub name: OsString,
    /// Its `lstat`.
    pub meta: EntryMeta,
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

/// A directory being walked: its handle and its entries, each `lstat`ed when it was opened.
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    archive_path: PathBuf,
    children: Vec<Child>,
    /// The next child to visit.
    next: usize,
}

impl Frame {
    fn open(
        fd: OwnedFd,
        path: PathBuf,
        archive_path: PathBuf,
        skip: &[PathBuf],
    ) -> Result<Self, SourceError> {
        let names = fsat::sorted_names(fd.as_fd()).map_err(|e| SourceError::io(&path, e))?;
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let child = path.join(&name);
            // By bytes: both are normalized, and comparing components costs more than the walk.
            if skip.iter().any(|s| s.as_os_str() == child.as_os_str()) {
                continue;
            }
            let stat = fsat::lstat_at(fd.as_fd(), &name).map_err(|e| SourceError::io(&child, e))?;
            children.push(Child {
                name,
                meta: EntryMeta::from_stat(&stat),
            });
        }
        Ok(Frame {
            fd,
            path,
            archive_path,
            children,
            next: 0,
        })
    }
}

/// The name a directory archive's entries start with: the directory's own name (`root` for
/// `/`, which has none).
pub fn tar_top_name(root: &Path) -> &OsStr {
    root.file_name().unwrap_or(OsStr::new("root"))
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
    let base = PathBuf::from(tar_top_name(root));
    let root_fd = fsat::open_dir(root).map_err(|e| SourceError::io(root, e))?;
    let stat = fsat::fstat(&root_fd).map_err(|e| SourceError::io(root, e))?;
    let root_frame = Frame::open(root_fd, root.to_path_buf(), base.clone(), skip)?;
    visit(TreeEntry {
        path: root.to_path_buf(),
        archive_path: base,
        meta: EntryMeta::from_stat(&stat),
        location: None,
        children: &root_frame.children,
    })?;
    let mut stack = vec![root_frame];
    while let Some(frame) = stack.last_mut() {
        let Some(child) = frame.children.get(frame.next) else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let path = frame.path.join(&child.name);
        let archive_path = frame.archive_path.join(&child.name);
        let opened = match child.meta.kind {
            EntryType::Dir => Some(Frame::open(
                open_child_dir(frame.fd.as_fd(), &child.name, &path)?,
                path.clone(),
                archive_path.clone(),
                skip,
            )?),
            _ => None,
        };
        visit(TreeEntry {
            path,
            archive_path,
            meta: child.meta,
            location: Some((frame.fd.as_fd(), &child.name)),
            children: opened.as_ref().map_or(&[], |f| &f.children),
        })?;
        stack.extend(opened);
    }
    Ok(())
}

/// Opens the directory `name` in `dir`, never through a link.
fn open_child_dir(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<OwnedFd, SourceError> {
    fsat::open_dir_at(dir, name).map_err(|e| match e.raw_os_error() {
        Some(c)
            if c == rustix::io::Errno::LOOP.raw_os_error()
                || c == rustix::io::Errno::NOTDIR.raw_os_error() =>
        {
            SourceError::Changed {
                path: path.to_path_buf(),
                what: "was replaced by a link or a file",
            }
        }
        _ => SourceError::io(path, e),
    })
}
