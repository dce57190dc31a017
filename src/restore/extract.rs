//! Safe extraction of tar archives for restores: nothing is written outside the destination.
//!
//! Every entry must lie under the archive's own top directory (the backed-up directory's
//! name); absolute names, `..`, links whose target would leave the destination, hard links to
//! anything but a file of the same archive, and anything else are refused and reported, not
//! silently dropped. Names are resolved one component at a time from a handle on the
//! destination, never through a symbolic link ([`crate::fsat`]): neither a link planted by the
//! archive nor one swapped in by whoever can write to the destination can redirect a write,
//! and trees deeper than PATH_MAX restore like any other.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use glacier_backup_archiver::shown_bytes;
use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use crate::fsat;

/// An entry that was not extracted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The entry's name as stored in the archive, escaped for display.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// What an extraction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Entries written.
    pub written: u64,
    /// Entries refused as unsafe.
    pub rejected: Vec<Rejected>,
    /// Files already there with the archived size and mtime, left as they are.
    pub unchanged: u64,
    /// Entries not written because something newer (or, for anything but an older file,
    /// something different) is already there; `--force` replaces them.
    pub kept: Vec<String>,
    /// Device files not made (only root may, and only when asked), with a warning.
    pub skipped: Vec<Rejected>,
}

/// The archive could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("extracting into {}: {source}", glacier_backup_archiver::shown(dest))]
pub struct ExtractError {
    /// The destination directory.
    pub dest: PathBuf,
    /// What failed.
    pub source: io::Error,
}

/// How an extraction treats what is already in the destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Give files their archived owners (meaningful when running as root).
    pub preserve_owners: bool,
    /// Replace existing entries even when they are newer than the archived ones.
    pub force: bool,
    /// Make device files (character and block); needs root.
    pub devices: bool,
}

mod entry;
mod tree;
mod write;

use entry::*;
use tree::*;
use write::*;

pub(crate) use write::copy_whole;

/// What to do about an entry, given what is at its name already.
enum Verdict {
    Write,
    Unchanged,
    Kept,
}

fn verdict(
    tree: &Tree,
    name: &OsStr,
    kind: Kind,
    attributes: &Attributes,
    link: Option<&Path>,
    force: bool,
) -> io::Result<Verdict> {
    let existing = match fsat::lstat_at(tree.current(), name) {
        Ok(stat) => stat,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Verdict::Write),
        Err(e) => return Err(e),
    };
    let existing_type = fsat::file_type(&existing);
    let existing_mtime = fsat::mtime_secs(&existing);
    Ok(match kind {
        Kind::Dir if existing_type == FileType::Directory => Verdict::Write,
        Kind::File
            if existing_type == FileType::RegularFile
                && existing_mtime == attributes.mtime
                && fsat::size(&existing) == attributes.size =>
        {
            Verdict::Unchanged
        }
        Kind::Symlink
            if existing_type == FileType::Symlink
                && link.is_some_and(|l| {
                    fsat::read_link_at(tree.current(), name).is_ok_and(|t| t == l.as_os_str())
                }) =>
        {
            Verdict::Unchanged
        }
        _ if force => Verdict::Write,
        Kind::File
            if existing_type == FileType::RegularFile && existing_mtime < attributes.mtime =>
        {
            Verdict::Write
        }
        _ => Verdict::Kept,
    })
}

/// Makes room for a non-directory at `name`: only an empty directory may be replaced (with
/// `--force`); anything else is replaced by the rename that publishes the new entry.
fn make_room(tree: &Tree, name: &OsStr) -> io::Result<bool> {
    match fsat::lstat_at(tree.current(), name) {
        Ok(stat) if fsat::file_type(&stat) == FileType::Directory => {
            match rustix::fs::unlinkat(tree.current(), name, AtFlags::REMOVEDIR) {
                Ok(()) => Ok(true),
                Err(Errno::NOTEMPTY) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        _ => Ok(true),
    }
}

/// Extracts a directory archive into `dest` (created if missing): its entries must all lie
/// under `top`, the backed-up directory's own name. Files are written under a temporary name
/// and renamed into place, so a reader never sees half a file; modes and mtimes are restored
/// (directories' at the end, once nothing more is written into them); owners only with
/// `preserve_owners`. Unless `force`, an existing file is replaced only when older than the
/// archived one, and left alone when it has the archived size and mtime.
pub fn extract_tar(
    archive: impl Read,
    dest: &Path,
    top: &OsStr,
    options: ExtractOptions,
) -> Result<Extracted, ExtractError> {
    let fail = |source| ExtractError {
        dest: dest.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(fail)?;
    let mut tree = Tree {
        root: fsat::open_dir(dest).map_err(fail)?,
        open: Vec::new(),
        temp_counter: 0,
    };
    let mut archive = tar::Archive::new(archive);
    let mut report = Extracted::default();
    let mut directories: Vec<(Vec<OsString>, Attributes)> = Vec::new();
    for entry in archive.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        if entry.header().entry_type().is_pax_global_extensions() {
            continue;
        }
        let shown = shown_bytes(&entry.path_bytes());
        let admitted = match admit(&entry, top, &mut tree).map_err(fail)? {
            Ok(admitted) => admitted,
            Err(reason) => {
                report.refuse(shown, reason);
                continue;
            }
        };
        let Admitted {
            parts,
            kind,
            attributes,
            link,
        } = admitted;
        let name = parts.last().expect("at least the top");
        let link = link.as_deref();
        match verdict(&tree, name, kind, &attributes, link, options.force).map_err(fail)? {
            Verdict::Unchanged => {
                report.unchanged += 1;
                if kind == Kind::Dir {
                    directories.push((parts, attributes));
                }
                continue;
            }
            Verdict::Kept => {
                report.kept.push(shown);
                continue;
            }
            Verdict::Write => {}
        }
        if let Kind::Device(_) = kind {
            // Before anything is made room for: a skipped device replaces nothing.
            if !options.devices {
                report.skip_device(shown);
                continue;
            }
        }
        let made = Made {
            name,
            kind,
            attributes: &attributes,
            link,
        };
        match made
            .write(&mut tree, &mut entry, top, options)
            .map_err(fail)?
        {
            Ok(true) => {
                report.written += 1;
                if kind == Kind::Dir {
                    directories.push((parts.clone(), attributes));
                }
            }
            Ok(false) => report.kept.push(shown),
            Err(reason) => {
                report.refuse(shown, reason);
                continue;
            }
        }
        tree.forget(&parts);
    }
    set_directory_attributes(&mut tree, directories, options).map_err(fail)?;
    Ok(report)
}

/// An entry that may be restored: its name's parts under the destination (the top first), with
/// the directories on its way open, and what it is.
struct Admitted {
    parts: Vec<OsString>,
    kind: Kind,
    attributes: Attributes,
    link: Option<PathBuf>,
}

/// Checks an entry's name, kind and link, and opens its way from the destination; the reason
/// it is refused otherwise.
fn admit<R: Read>(
    entry: &tar::Entry<'_, R>,
    top: &OsStr,
    tree: &mut Tree,
) -> io::Result<Result<Admitted, &'static str>> {
    let parts = match components(&entry.path_bytes(), top) {
        Ok(parts) => parts,
        Err(reason) => return Ok(Err(reason)),
    };
    let Some(kind) = kind_of(entry.header().entry_type()) else {
        return Ok(Err("unsupported entry type"));
    };
    if parts.len() == 1 && kind != Kind::Dir {
        return Ok(Err(TOP_NOT_DIR));
    }
    let link = match kind {
        Kind::Symlink | Kind::HardLink => match entry.link_name() {
            Ok(Some(link)) => Some(link.into_owned()),
            _ => return Ok(Err("link without a target")),
        },
        _ => None,
    };
    if kind == Kind::Symlink && !stays_inside(parts.len() - 1, link.as_deref().expect("read above"))
    {
        return Ok(Err("link points outside the destination"));
    }
    let (_, dirs) = parts.split_last().expect("at least the top");
    if let Way::Blocked = tree.open_dirs(dirs)? {
        return Ok(Err(THROUGH_LINK));
    }
    Ok(Ok(Admitted {
        parts,
        kind,
        attributes: Attributes::of(entry.header()),
        link,
    }))
}

/// An admitted entry about to be written at `name` in the tree's current directory.
struct Made<'a> {
    name: &'a OsStr,
    kind: Kind,
    attributes: &'a Attributes,
    link: Option<&'a Path>,
}

impl Made<'_> {
    /// Writes the entry: `Ok(true)` when written, `Ok(false)` when what is there stays (a
    /// directory that is not empty), or the reason it is refused (a hard link to anything but
    /// a file of this archive).
    fn write<R: Read>(
        &self,
        tree: &mut Tree,
        entry: &mut tar::Entry<'_, R>,
        top: &OsStr,
        options: ExtractOptions,
    ) -> io::Result<Result<bool, &'static str>> {
        let (name, attributes) = (self.name, self.attributes);
        if self.kind == Kind::Dir {
            return make_dir(tree, name).map(Ok);
        }
        if !make_room(tree, name)? {
            return Ok(Ok(false));
        }
        match self.kind {
            Kind::Dir => unreachable!("made above"),
            Kind::File => write_file(tree, name, entry, attributes, options)?,
            Kind::Symlink => {
                let target = self.link.expect("read when admitted");
                write_symlink(tree, name, target, attributes, options)?;
            }
            Kind::HardLink => {
                let target = self.link.expect("read when admitted");
                if let Err(reason) = hard_link(tree, name, target, top)? {
                    return Ok(Err(reason));
                }
            }
            Kind::Fifo => write_node(tree, name, FileType::Fifo, 0, attributes, options)?,
            Kind::Device(file_type) => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = rustix::fs::makedev(major, minor);
                write_node(tree, name, file_type, dev, attributes, options)?;
            }
        }
        Ok(Ok(true))
    }
}

/// Gives the directories written or found unchanged their archived attributes, deepest first,
/// so setting a parent's mtime comes after its children are done.
fn set_directory_attributes(
    tree: &mut Tree,
    mut directories: Vec<(Vec<OsString>, Attributes)>,
    options: ExtractOptions,
) -> io::Result<()> {
    directories.sort_by_key(|(parts, _)| std::cmp::Reverse(parts.len()));
    for (parts, attributes) in directories {
        if let Some(fd) = tree.find_dir(&parts)? {
            set_attributes(&fd, &attributes, options, 0o7777)?;
        }
    }
    Ok(())
}

impl Extracted {
    fn refuse(&mut self, name: String, reason: &'static str) {
        tracing::warn!("not restoring archive entry \"{name}\": {reason}");
        self.rejected.push(Rejected { name, reason });
    }

    fn skip_device(&mut self, name: String) {
        let reason = "device files are made only by root with --devices";
        tracing::warn!("not restoring device \"{name}\": {reason}");
        self.skipped.push(Rejected { name, reason });
    }
}

#[cfg(test)]
mod tests;
