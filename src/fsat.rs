//! File system calls relative to directory handles, one name at a time, never through a
//! symbolic link.
//!
//! Two problems have the same answer. A tree deeper than PATH_MAX (4096 bytes) cannot be named
//! by one path, but each of its directories can be opened from its parent's handle. And a
//! restore must never write outside its destination, even when someone who can write there
//! swaps a directory for a link mid-restore; resolving each name with `O_NOFOLLOW` from a handle
//! the restore holds leaves no path for a link to redirect.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

/// Opens a directory given by a full path (the root of a walk or a restore). The path itself
/// may go through links, as the user wrote it.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens the directory `name` inside `dir`; fails (`ELOOP` or `ENOTDIR`) if it is a link or
/// not a directory.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens the file `name` inside `dir` for reading, not through a link, without blocking on a
/// FIFO that took its place.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    // Regular files ignore O_NONBLOCK; clearing it keeps reads plain all the same.
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok(File::from(fd))
}

/// Metadata of `name` inside `dir`, not following a link.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Metadata of an open file or directory.
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map_err(io::Error::from)
}

/// The target of the link `name` inside `dir`.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OsString> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(OsString::from_vec(target.into_bytes()))
}

/// The names in a directory, without `.` and `..`, sorted by bytes.
pub fn sorted_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// What kind of file a `Stat` describes.
pub fn file_type(stat: &Stat) -> FileType {
    FileType::from_raw_mode(mode(stat) as _)
}

// `struct stat`'s field types differ between architectures; these casts are no-ops on some.

/// Modification time of a `Stat`, in whole seconds since the epoch.
#[allow(clippy::unnecessary_cast)]
pub fn mtime_secs(stat: &Stat) -> i64 {
    stat.st_mtime as i64
}

/// Modification time of a `Stat`, in nanoseconds since the epoch.
#[allow(clippy::unnecessary_cast)]
pub fn mtime_ns(stat: &Stat) -> i128 {
    i128::from(mtime_secs(stat)) * 1_000_000_000 + i128::from(stat.st_mtime_nsec as i64)
}

/// `st_mode` of a `Stat`: type and permission bits.
#[allow(clippy::unnecessary_cast)]
pub fn mode(stat: &Stat) -> u32 {
    stat.st_mode as u32
}

/// Size in bytes of a `Stat`.
#[allow(clippy::unnecessary_cast)]
pub fn size(stat: &Stat) -> u64 {
    stat.st_size as u64
}
