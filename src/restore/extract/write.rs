//! Writing one entry: a file under a temporary name renamed into place, a link, a node, a
//! hard link inside the archive; then its mode, owner and times.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::fsat;

use super::*;

/// Creates the directory `name` (or uses the one there); with `--force`, a file in its place
/// is removed first.
pub(super) fn make_dir(tree: &Tree, name: &OsStr) -> io::Result<bool> {
    let dir = tree.current();
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => match fsat::lstat_at(dir, name) {
            Ok(stat) if fsat::file_type(&stat) == FileType::Directory => Ok(true),
            // Reached only with --force (see `verdict`).
            Ok(_) => {
                rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
                Ok(true)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e.into()),
    }
}

/// Owner (as root), permissions and mtime of an open file or directory.
pub(super) fn set_attributes(
    fd: &impl AsFd,
    attributes: &Attributes,
    options: ExtractOptions,
    mask: u32,
) -> io::Result<()> {
    if options.preserve_owners {
        rustix::fs::fchown(
            fd,
            attributes.uid.map(rustix::fs::Uid::from_raw),
            attributes.gid.map(rustix::fs::Gid::from_raw),
        )?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode((attributes.mode & mask) as _))?;
    rustix::fs::futimens(fd, &attributes.timestamps())?;
    Ok(())
}

/// Writes one regular file under a temporary name beside its final one, with its mode, mtime
/// (and owner), then renames it into place.
pub(super) fn write_file(
    tree: &mut Tree,
    name: &OsStr,
    data: &mut impl Read,
    attributes: &Attributes,
    options: ExtractOptions,
) -> io::Result<()> {
    let mut file = None;
    let temp = tree.temp_name(|dir, temp| {
        let fd = rustix::fs::openat(
            dir,
            temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        file = Some(File::from(fd));
        Ok(())
    })?;
    let mut file = file.expect("made by temp_name");
    // Without root, set-id bits would belong to the wrong owner: keep only the permissions.
    let mask = if options.preserve_owners {
        0o7777
    } else {
        0o777
    };
    let written = copy_whole(data, &mut file)
        .and_then(|_| set_attributes(&file, attributes, options, mask))
        .and_then(|()| tree.publish(&temp, name));
    if written.is_err() {
        let _ = rustix::fs::unlinkat(tree.current(), temp.as_os_str(), AtFlags::empty());
    }
    written
}

/// Copies `data` into `file` in writes of up to a MiB (`io::copy` alone writes 8 KiB at a time:
/// a hundred thousand system calls per GiB restored).
pub(crate) fn copy_whole(data: &mut dyn Read, file: &mut File) -> io::Result<u64> {
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let copied = io::copy(data, &mut out)?;
    out.flush()?;
    Ok(copied)
}

pub(super) fn write_symlink(
    tree: &mut Tree,
    name: &OsStr,
    target: &Path,
    attributes: &Attributes,
    options: ExtractOptions,
) -> io::Result<()> {
    let temp = tree.temp_name(|dir, temp| rustix::fs::symlinkat(target, dir, temp))?;
    finish_node(tree, name, &temp, attributes, options)
}

pub(super) fn write_node(
    tree: &mut Tree,
    name: &OsStr,
    file_type: FileType,
    dev: rustix::fs::Dev,
    attributes: &Attributes,
    options: ExtractOptions,
) -> io::Result<()> {
    let mask = if options.preserve_owners {
        0o7777
    } else {
        0o777
    };
    let mode = Mode::from_raw_mode((attributes.mode & mask) as _);
    let temp = tree.temp_name(|dir, temp| rustix::fs::mknodat(dir, temp, file_type, mode, dev))?;
    finish_node(tree, name, &temp, attributes, options)
}

/// Owner and mtime of a link or node made under `temp` (by name, not following links, since
/// neither can be opened to set them), then the rename into place.
pub(super) fn finish_node(
    tree: &mut Tree,
    name: &OsStr,
    temp: &OsStr,
    attributes: &Attributes,
    options: ExtractOptions,
) -> io::Result<()> {
    let dir = tree.current();
    let result = (|| {
        if options.preserve_owners {
            rustix::fs::chownat(
                dir,
                temp,
                attributes.uid.map(rustix::fs::Uid::from_raw),
                attributes.gid.map(rustix::fs::Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::utimensat(
            dir,
            temp,
            &attributes.timestamps(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok::<(), io::Error>(())
    })()
    .and_then(|()| tree.publish(temp, name));
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
    }
    result
}

/// Links `name` to a file this archive already restored: the target is named from the
/// archive's top, must lie under it, and must be a regular file reached through no link.
pub(super) fn hard_link(
    tree: &mut Tree,
    name: &OsStr,
    target: &Path,
    top: &OsStr,
) -> io::Result<Result<(), &'static str>> {
    const BAD_TARGET: &str = "hard link to something that is not a file of this archive";
    let Ok(parts) = components(target.as_os_str().as_bytes(), top) else {
        return Ok(Err(BAD_TARGET));
    };
    let (target_name, dirs) = parts.split_last().expect("at least the top");
    let Some(source_dir) = tree.find_dir(dirs)? else {
        return Ok(Err(BAD_TARGET));
    };
    match fsat::lstat_at(source_dir.as_fd(), target_name) {
        Ok(stat) if fsat::file_type(&stat) == FileType::RegularFile => {}
        Ok(_) => return Ok(Err(BAD_TARGET)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(BAD_TARGET)),
        Err(e) => return Err(e),
    }
    let temp = tree.temp_name(|dir, temp| {
        rustix::fs::linkat(
            source_dir.as_fd(),
            target_name.as_os_str(),
            dir,
            temp,
            AtFlags::empty(),
        )
    })?;
    tree.publish(&temp, name)?;
    Ok(Ok(()))
}
