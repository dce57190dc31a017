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
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use glacier_backup_archiver::shown_bytes;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
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

const OUTSIDE_TOP: &str = "it is not under the archive's top directory";
const THROUGH_LINK: &str = "its way goes through a symlink or a non-directory";
const TOP_NOT_DIR: &str = "the archive's top entry must be a directory";

/// Whether a link target, resolved from `base` (a directory given by its components below the
/// destination), stays inside the destination. Only `..` before any name is taken: the
/// climb then goes up through the link's own directories, which are real ones, and the names
/// after it only go down. A `..` after a name would climb from wherever that name leads,
/// which may be another link (`a -> b`, `b -> ..`, then `a/../..` leaves the destination,
/// whatever order the links arrive in), so such targets are refused.
fn stays_inside(base_depth: usize, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = base_depth as i64;
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::ParentDir if descended => return false,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => {
                depth += 1;
                descended = true;
            }
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// The components of an entry name, checked: relative, no `..`, and under `top`.
fn components(name: &[u8], top: &OsStr) -> Result<Vec<OsString>, &'static str> {
    if name.starts_with(b"/") {
        return Err("absolute name");
    }
    let mut parts = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("name contains '..'"),
            // NAME_MAX on Linux file systems; refused here rather than failing the restore.
            part if part.len() > 255 => return Err("a name component is longer than 255 bytes"),
            part => parts.push(OsStr::from_bytes(part).to_owned()),
        }
    }
    match parts.first() {
        None => Err("empty name"),
        Some(first) if first != top => Err(OUTSIDE_TOP),
        Some(_) => Ok(parts),
    }
}

/// What an entry is, for extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    HardLink,
    Fifo,
    Device(FileType),
}

fn kind_of(entry_type: tar::EntryType) -> Option<Kind> {
    use tar::EntryType as T;
    Some(match entry_type {
        T::Directory => Kind::Dir,
        T::Regular | T::Continuous | T::GNUSparse => Kind::File,
        T::Symlink => Kind::Symlink,
        T::Link => Kind::HardLink,
        T::Fifo => Kind::Fifo,
        T::Char => Kind::Device(FileType::CharacterDevice),
        T::Block => Kind::Device(FileType::BlockDevice),
        _ => return None,
    })
}

/// What the archive says of an entry besides its name and bytes.
#[derive(Debug, Clone, Copy)]
struct Attributes {
    mode: u32,
    mtime: i64,
    uid: Option<u32>,
    gid: Option<u32>,
    size: u64,
}

impl Attributes {
    fn of(header: &tar::Header) -> Self {
        Attributes {
            mode: header.mode().unwrap_or(0o644),
            mtime: header.mtime().map_or(0, |t| t as i64),
            uid: header.uid().ok().and_then(|u| u32::try_from(u).ok()),
            gid: header.gid().ok().and_then(|g| u32::try_from(g).ok()),
            size: header.size().unwrap_or(u64::MAX),
        }
    }

    fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: self.mtime,
                tv_nsec: 0,
            },
        }
    }
}

/// The destination, and the directories on the way to the entry being written: entries come
/// mostly in tree order, so consecutive ones share most of their way.
struct Tree {
    root: OwnedFd,
    /// Open handles of the directories c0/c1/.../ck below the root, by name.
    open: Vec<(OsString, OwnedFd)>,
    temp_counter: u64,
}

/// The prefix of temporary names an extraction writes under: `<prefix><pid>-<n>`.
const TEMP_PREFIX: &str = ".glacier-backup-restore-";

/// Removes from `dir` the temporary files of extractions whose process is gone (a restore
/// killed, or stopped, mid-file): they are this tool's, never anybody's data, and nothing else
/// would ever remove them. A live process's are left alone (a restore running beside this one).
/// Best effort: a directory that cannot be listed keeps them, and the restore goes on.
fn remove_stale_temps(dir: BorrowedFd<'_>) {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    let stale: Vec<OsString> = entries
        .flatten()
        .filter(|entry| stale_temp(entry.file_name().to_bytes()))
        .map(|entry| OsStr::from_bytes(entry.file_name().to_bytes()).to_owned())
        .collect();
    for name in stale {
        let _ = rustix::fs::unlinkat(dir, name.as_os_str(), AtFlags::empty());
    }
}

/// Whether `name` is a temporary name of ours (`<prefix><pid>-<n>`) whose process is gone.
fn stale_temp(name: &[u8]) -> bool {
    let Some((pid, counter)) = name
        .strip_prefix(TEMP_PREFIX.as_bytes())
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    let numbered = !counter.is_empty() && counter.bytes().all(|b| b.is_ascii_digit());
    numbered && pid.parse().is_ok_and(|pid| !process_alive(pid))
}

/// Whether a process with this id runs (ours always does).
fn process_alive(pid: i32) -> bool {
    if pid == std::process::id() as i32 {
        return true;
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    // EPERM: it runs, as another user.
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}

enum Way {
    Open,
    Blocked,
}

fn blocked(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == Errno::LOOP.raw_os_error() || code == Errno::NOTDIR.raw_os_error()
    )
}

impl Tree {
    fn current(&self) -> BorrowedFd<'_> {
        self.open
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// Opens (creating what is missing) the directories `dirs` below the root.
    fn open_dirs(&mut self, dirs: &[OsString]) -> io::Result<Way> {
        let common = self
            .open
            .iter()
            .zip(dirs)
            .take_while(|((name, _), dir)| name == *dir)
            .count();
        self.open.truncate(common);
        for name in &dirs[common..] {
            let parent = self.current();
            let fd = match fsat::open_dir_at(parent, name) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(parent, name.as_os_str(), Mode::from_raw_mode(0o700))
                    {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    match fsat::open_dir_at(parent, name) {
                        Ok(fd) => fd,
                        Err(e) if blocked(&e) => return Ok(Way::Blocked),
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if blocked(&e) => return Ok(Way::Blocked),
                Err(e) => return Err(e),
            };
            // Entered to place what the archive holds there: the moment to clear what a
            // stopped restore left in it, whether or not this one writes anything.
            remove_stale_temps(fd.as_fd());
            self.open.push((name.clone(), fd));
        }
        Ok(Way::Open)
    }

    /// Forgets open handles at and below `path`, which an entry may just have replaced.
    fn forget(&mut self, path: &[OsString]) {
        let matches = path.len() <= self.open.len()
            && self
                .open
                .iter()
                .zip(path)
                .all(|((name, _), part)| name == part);
        if matches {
            self.open.truncate(path.len() - 1);
        }
    }

    /// Opens existing directories `dirs` below the root, without creating or caching.
    fn find_dir(&self, dirs: &[OsString]) -> io::Result<Option<OwnedFd>> {
        let mut fd = rustix::io::dup(&self.root)?;
        for name in dirs {
            fd = match fsat::open_dir_at(fd.as_fd(), name) {
                Ok(next) => next,
                Err(e) if blocked(&e) || e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
        }
        Ok(Some(fd))
    }

    /// A fresh temporary name in the current directory, made by `create` (which fails with
    /// `EEXIST` when the name is taken).
    fn temp_name(
        &mut self,
        mut create: impl FnMut(BorrowedFd<'_>, &OsStr) -> rustix::io::Result<()>,
    ) -> io::Result<OsString> {
        loop {
            self.temp_counter += 1;
            let name = OsString::from(format!(
                "{TEMP_PREFIX}{}-{}",
                std::process::id(),
                self.temp_counter
            ));
            match create(self.current(), &name) {
                Ok(()) => return Ok(name),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Moves the temporary `temp` over `name` in the current directory.
    fn publish(&self, temp: &OsStr, name: &OsStr) -> io::Result<()> {
        let dir = self.current();
        let renamed = rustix::fs::renameat(dir, temp, dir, name);
        // Renaming onto another link of the same file succeeds and leaves both names.
        let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
        renamed.map_err(io::Error::from)
    }
}

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
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        let shown = shown_bytes(&entry.path_bytes());
        let mut refuse = |reason: &'static str| {
            tracing::warn!("not restoring archive entry \"{shown}\": {reason}");
            report.rejected.push(Rejected {
                name: shown.clone(),
                reason,
            });
        };
        let parts = match components(&entry.path_bytes(), top) {
            Ok(parts) => parts,
            Err(reason) => {
                refuse(reason);
                continue;
            }
        };
        let Some(kind) = kind_of(entry_type) else {
            refuse("unsupported entry type");
            continue;
        };
        if parts.len() == 1 && kind != Kind::Dir {
            refuse(TOP_NOT_DIR);
            continue;
        }
        let attributes = Attributes::of(entry.header());
        let link = match kind {
            Kind::Symlink | Kind::HardLink => match entry.link_name() {
                Ok(Some(link)) => Some(link.into_owned()),
                _ => {
                    refuse("link without a target");
                    continue;
                }
            },
            _ => None,
        };
        if kind == Kind::Symlink
            && !stays_inside(parts.len() - 1, link.as_deref().expect("read above"))
        {
            refuse("link points outside the destination");
            continue;
        }
        let (name, dirs) = parts.split_last().expect("at least the top");
        if let Way::Blocked = tree.open_dirs(dirs).map_err(fail)? {
            refuse(THROUGH_LINK);
            continue;
        }
        match verdict(
            &tree,
            name,
            kind,
            &attributes,
            link.as_deref(),
            options.force,
        )
        .map_err(fail)?
        {
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
        let written = match kind {
            Kind::Dir => {
                let made = make_dir(&tree, name).map_err(fail)?;
                if made {
                    directories.push((parts.clone(), attributes));
                }
                made
            }
            // Before anything is made room for: a skipped device replaces nothing.
            Kind::Device(_) if !options.devices => {
                let reason = "device files are made only by root with --devices";
                tracing::warn!("not restoring device \"{shown}\": {reason}");
                report.skipped.push(Rejected {
                    name: shown,
                    reason,
                });
                continue;
            }
            _ if !make_room(&tree, name).map_err(fail)? => false,
            Kind::File => {
                write_file(&mut tree, name, &mut entry, &attributes, options).map_err(fail)?;
                true
            }
            Kind::Symlink => {
                let target = link.as_deref().expect("read above");
                write_symlink(&mut tree, name, target, &attributes, options).map_err(fail)?;
                true
            }
            Kind::HardLink => {
                let target = link.as_deref().expect("read above");
                match hard_link(&mut tree, name, target, top).map_err(fail)? {
                    Ok(()) => true,
                    Err(reason) => {
                        refuse(reason);
                        continue;
                    }
                }
            }
            Kind::Fifo => {
                let dev = 0;
                write_node(&mut tree, name, FileType::Fifo, dev, &attributes, options)
                    .map_err(fail)?;
                true
            }
            Kind::Device(file_type) => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = rustix::fs::makedev(major, minor);
                write_node(&mut tree, name, file_type, dev, &attributes, options).map_err(fail)?;
                true
            }
        };
        if written {
            report.written += 1;
        } else {
            report.kept.push(shown);
        }
        tree.forget(&parts);
    }
    // Deepest first, so setting a parent's mtime comes after its children are done.
    directories.sort_by_key(|(parts, _)| std::cmp::Reverse(parts.len()));
    for (parts, attributes) in directories {
        let Some(fd) = tree.find_dir(&parts).map_err(fail)? else {
            continue;
        };
        set_attributes(&fd, &attributes, options, 0o7777).map_err(fail)?;
    }
    Ok(report)
}

/// Creates the directory `name` (or uses the one there); with `--force`, a file in its place
/// is removed first.
fn make_dir(tree: &Tree, name: &OsStr) -> io::Result<bool> {
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
fn set_attributes(
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
fn write_file(
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

fn write_symlink(
    tree: &mut Tree,
    name: &OsStr,
    target: &Path,
    attributes: &Attributes,
    options: ExtractOptions,
) -> io::Result<()> {
    let temp = tree.temp_name(|dir, temp| rustix::fs::symlinkat(target, dir, temp))?;
    finish_node(tree, name, &temp, attributes, options)
}

fn write_node(
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
fn finish_node(
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
fn hard_link(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an archive entry by entry, with raw names the tar crate's builder would refuse.
    fn raw_entry(
        out: &mut Vec<u8>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut header = tar::Header::new_gnu();
        {
            let bytes = header.as_old_mut();
            bytes.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                bytes.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    /// Each refused entry's name and reason.
    fn rejections(report: &Extracted) -> Vec<(&str, &'static str)> {
        report
            .rejected
            .iter()
            .map(|r| (r.name.as_str(), r.reason))
            .collect()
    }

    fn finish(mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn malicious_entries_restore_nothing_outside_and_are_reported() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let mut tar = Vec::new();
        raw_entry(
            &mut tar,
            "ok/file.txt",
            tar::EntryType::Regular,
            None,
            b"fine",
        );
        raw_entry(&mut tar, "/etc/evil", tar::EntryType::Regular, None, b"abs");
        raw_entry(
            &mut tar,
            "ok/../../escaped",
            tar::EntryType::Regular,
            None,
            b"dots",
        );
        raw_entry(
            &mut tar,
            "ok/out",
            tar::EntryType::Symlink,
            Some("../../"),
            b"",
        );
        raw_entry(
            &mut tar,
            "ok/abs-link",
            tar::EntryType::Symlink,
            Some("/tmp"),
            b"",
        );
        raw_entry(
            &mut tar,
            "ok/hard",
            tar::EntryType::Link,
            Some("../outside"),
            b"",
        );
        raw_entry(
            &mut tar,
            "ok/inner-link",
            tar::EntryType::Symlink,
            Some("file.txt"),
            b"",
        );
        raw_entry(
            &mut tar,
            "ok/inner-hard",
            tar::EntryType::Link,
            Some("ok/file.txt"),
            b"",
        );
        let report = extract_tar(
            &finish(tar)[..],
            &dest,
            "ok".as_ref(),
            ExtractOptions::default(),
        )
        .unwrap();
        assert_eq!(std::fs::read(dest.join("ok/file.txt")).unwrap(), b"fine");
        assert_eq!(std::fs::read(dest.join("ok/inner-hard")).unwrap(), b"fine");
        assert_eq!(
            std::fs::read_link(dest.join("ok/inner-link")).unwrap(),
            PathBuf::from("file.txt")
        );
        let rejected: Vec<_> = report.rejected.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            rejected,
            [
                "/etc/evil",
                "ok/../../escaped",
                "ok/out",
                "ok/abs-link",
                "ok/hard"
            ]
        );
        assert!(!root.path().join("escaped").exists());
        assert!(!dest.join("ok/out").exists());
        assert_eq!(report.written, 3);
    }

    #[test]
    fn a_file_written_through_an_archive_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"not for the archive").unwrap();
        let mut tar = Vec::new();
        // Each link looks harmless by name ("p/l" is "p" itself, "p/l/q" climbs two levels
        // from "p/l"), but together "p/l/q" would be a link to a sibling of the destination;
        // nothing "under" a link may be written, and no link is followed to write.
        raw_entry(&mut tar, "p/", tar::EntryType::Directory, None, b"");
        raw_entry(&mut tar, "p/l", tar::EntryType::Symlink, Some("."), b"");
        raw_entry(
            &mut tar,
            "p/l/q",
            tar::EntryType::Symlink,
            Some("../../outside"),
            b"",
        );
        raw_entry(
            &mut tar,
            "p/q",
            tar::EntryType::Symlink,
            Some("../outside"),
            b"",
        );
        raw_entry(&mut tar, "p/q/evil", tar::EntryType::Regular, None, b"data");
        raw_entry(
            &mut tar,
            "p/q/made/deeper/evil",
            tar::EntryType::Regular,
            None,
            b"data",
        );
        raw_entry(&mut tar, "p/q/dir/", tar::EntryType::Directory, None, b"");
        raw_entry(
            &mut tar,
            "hard",
            tar::EntryType::Link,
            Some("p/q/secret"),
            b"",
        );
        raw_entry(
            &mut tar,
            "p/hard",
            tar::EntryType::Link,
            Some("p/l/q/secret"),
            b"",
        );
        let report = extract_tar(
            &finish(tar)[..],
            &dest,
            "p".as_ref(),
            ExtractOptions::default(),
        )
        .unwrap();
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "something was written outside");
        assert!(
            !dest.join("p/hard").exists(),
            "an outside file was linked in"
        );
        let rejected = rejections(&report);
        assert_eq!(
            rejected,
            [
                ("p/l/q", THROUGH_LINK),
                ("p/q/evil", THROUGH_LINK),
                ("p/q/made/deeper/evil", THROUGH_LINK),
                ("p/q/dir/", THROUGH_LINK),
                ("hard", OUTSIDE_TOP),
                (
                    "p/hard",
                    "hard link to something that is not a file of this archive"
                ),
            ],
            "{report:?}"
        );
    }

    /// Temporary files of a restore killed mid-file are removed by the next extraction into
    /// the same directories, even one that writes nothing there (every file unchanged); a
    /// live process's, and names that only look alike, are left alone.
    #[test]
    fn temporary_files_of_a_killed_restore_are_removed_by_the_next() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let mut tar = Vec::new();
        raw_entry(&mut tar, "top/", tar::EntryType::Directory, None, b"");
        raw_entry(&mut tar, "top/a.txt", tar::EntryType::Regular, None, b"a");
        raw_entry(&mut tar, "top/sub/", tar::EntryType::Directory, None, b"");
        raw_entry(
            &mut tar,
            "top/sub/b.txt",
            tar::EntryType::Regular,
            None,
            b"b",
        );
        let tar = finish(tar);
        let extract =
            || extract_tar(&tar[..], &dest, "top".as_ref(), ExtractOptions::default()).unwrap();
        extract();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let stale = [
            dest.join(format!("top/{TEMP_PREFIX}{gone}-3")),
            dest.join(format!("top/sub/{TEMP_PREFIX}{gone}-4")),
        ];
        let kept = [
            dest.join(format!("top/{TEMP_PREFIX}{}-77", std::process::id())),
            dest.join(format!("top/{TEMP_PREFIX}notes")),
        ];
        for path in stale.iter().chain(&kept) {
            std::fs::write(path, b"").unwrap();
        }
        let report = extract();
        assert_eq!(report.unchanged, 2, "every file was unchanged: {report:?}");
        for path in &stale {
            assert!(!path.exists(), "{} stayed", path.display());
        }
        for path in &kept {
            assert!(path.exists(), "{} was removed", path.display());
        }
        assert_eq!(std::fs::read(dest.join("top/sub/b.txt")).unwrap(), b"b");
    }

    /// Each link stays inside by its own name, but through the others `c` would lead to the
    /// destination's parent; placed in either order, it is refused.
    #[test]
    fn a_chain_of_links_cannot_climb_out_of_the_destination() {
        for reversed in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let dest = root.path().join("dest");
            let mut links = vec![("top/a", "b"), ("top/b", ".."), ("top/c", "a/../..")];
            if reversed {
                links.reverse();
            }
            let mut tar = Vec::new();
            raw_entry(&mut tar, "top/", tar::EntryType::Directory, None, b"");
            for (name, target) in &links {
                raw_entry(&mut tar, name, tar::EntryType::Symlink, Some(target), b"");
            }
            let report = extract_tar(
                &finish(tar)[..],
                &dest,
                "top".as_ref(),
                ExtractOptions::default(),
            )
            .unwrap();
            let rejected = rejections(&report);
            assert_eq!(
                rejected,
                [("top/c", "link points outside the destination")],
                "{report:?}"
            );
            assert!(std::fs::symlink_metadata(dest.join("top/c")).is_err());
            assert_eq!(
                std::fs::read_link(dest.join("top/b")).unwrap(),
                Path::new("..")
            );
            // Every link placed resolves inside the destination.
            let inside = dest.canonicalize().unwrap();
            for name in ["top/a", "top/b"] {
                let resolved = dest.join(name).canonicalize().unwrap();
                assert!(resolved.starts_with(&inside), "{name} -> {resolved:?}");
            }
        }
    }

    #[test]
    fn entries_outside_the_top_directory_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".bashrc"), b"mine").unwrap();
        let mut tar = Vec::new();
        raw_entry(&mut tar, "photos/", tar::EntryType::Directory, None, b"");
        raw_entry(
            &mut tar,
            "photos/a.jpg",
            tar::EntryType::Regular,
            None,
            b"jpg",
        );
        // An archive of /home/u/photos restored in place: this would be /home/u/.bashrc.
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        header.set_mtime(4_000_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_path(".bashrc").unwrap();
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(b"evil");
        tar.resize(tar.len().div_ceil(512) * 512, 0);
        raw_entry(
            &mut tar,
            "photosX/b",
            tar::EntryType::Regular,
            None,
            b"near miss",
        );
        raw_entry(
            &mut tar,
            "./photos/c",
            tar::EntryType::Regular,
            None,
            b"dot",
        );
        let report = extract_tar(
            &finish(tar)[..],
            &home,
            "photos".as_ref(),
            ExtractOptions {
                force: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(home.join(".bashrc")).unwrap(), b"mine");
        assert!(!home.join("photosX").exists());
        assert_eq!(std::fs::read(home.join("photos/a.jpg")).unwrap(), b"jpg");
        assert_eq!(std::fs::read(home.join("photos/c")).unwrap(), b"dot");
        let rejected: Vec<_> = report.rejected.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rejected, [".bashrc", "photosX/b"]);
        assert!(report.rejected.iter().all(|r| r.reason == OUTSIDE_TOP));
    }

    #[test]
    fn the_top_entry_must_be_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        raw_entry(&mut tar, "top", tar::EntryType::Symlink, Some("."), b"");
        raw_entry(&mut tar, "top/x", tar::EntryType::Regular, None, b"x");
        let report = extract_tar(
            &finish(tar)[..],
            root.path(),
            "top".as_ref(),
            ExtractOptions::default(),
        )
        .unwrap();
        assert_eq!(report.rejected[0].reason, TOP_NOT_DIR);
        // The entry below it lands in a real directory, not through the link.
        assert!(root.path().join("top").is_dir());
        assert_eq!(std::fs::read(root.path().join("top/x")).unwrap(), b"x");
    }

    #[test]
    fn fifos_are_made_devices_skipped_and_reported() {
        use std::os::unix::fs::FileTypeExt;
        let root = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        raw_entry(&mut tar, "t/", tar::EntryType::Directory, None, b"");
        raw_entry(&mut tar, "t/pipe", tar::EntryType::Fifo, None, b"");
        raw_entry(&mut tar, "t/null", tar::EntryType::Char, None, b"");
        raw_entry(&mut tar, "t/disk", tar::EntryType::Block, None, b"");
        let report = extract_tar(
            &finish(tar)[..],
            root.path(),
            "t".as_ref(),
            ExtractOptions::default(),
        )
        .unwrap();
        let pipe = std::fs::symlink_metadata(root.path().join("t/pipe")).unwrap();
        assert!(pipe.file_type().is_fifo(), "{pipe:?}");
        assert!(!root.path().join("t/null").exists());
        assert!(!root.path().join("t/disk").exists());
        let skipped: Vec<_> = report.skipped.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(skipped, ["t/null", "t/disk"]);
        assert!(report.rejected.is_empty());
    }

    #[test]
    fn long_names_and_pax_paths_are_checked_like_any_other() {
        use glacier_backup_archiver::shown;
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let mut builder = tar::Builder::new(Vec::new());
        let long = format!("top/{}/{}/file", "n".repeat(200), "m".repeat(200));
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header.clone(), &long, &b"long"[..])
            .unwrap();
        // A PAX path overrides the header's harmless-looking name.
        builder
            .append_pax_extensions([("path", &b"../pax-escape"[..])])
            .unwrap();
        builder
            .append_data(&mut header.clone(), "top/innocent", &b"evil"[..])
            .unwrap();
        builder
            .append_pax_extensions([("path", &b"top/from-pax"[..])])
            .unwrap();
        builder
            .append_data(&mut header.clone(), "top/short", &b"pax!"[..])
            .unwrap();
        let too_long = format!("top/{}", "x".repeat(300));
        builder
            .append_data(&mut header.clone(), &too_long, &b"?"[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let report =
            extract_tar(&tar[..], &dest, "top".as_ref(), ExtractOptions::default()).unwrap();
        assert_eq!(std::fs::read(dest.join(&long)).unwrap(), b"long");
        assert_eq!(std::fs::read(dest.join("top/from-pax")).unwrap(), b"pax!");
        assert!(!dest.join("top/innocent").exists());
        assert!(!root.path().join("pax-escape").exists());
        let rejected: Vec<_> = report.rejected.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rejected, ["../pax-escape".to_owned(), shown(&too_long)]);
    }

    #[test]
    fn duplicate_entries_never_write_through_a_link_and_a_file_is_not_made_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        raw_entry(&mut tar, "t/", tar::EntryType::Directory, None, b"");
        raw_entry(&mut tar, "t/a", tar::EntryType::Symlink, Some("b"), b"");
        raw_entry(
            &mut tar,
            "t/a",
            tar::EntryType::Regular,
            None,
            b"replaces the link",
        );
        raw_entry(&mut tar, "t/f", tar::EntryType::Regular, None, b"file");
        raw_entry(&mut tar, "t/f/", tar::EntryType::Directory, None, b"");
        raw_entry(&mut tar, "t/f/inner", tar::EntryType::Regular, None, b"x");
        let force = ExtractOptions {
            force: true,
            ..Default::default()
        };
        let report = extract_tar(&finish(tar)[..], root.path(), "t".as_ref(), force).unwrap();
        let t = root.path().join("t");
        assert_eq!(std::fs::read(t.join("a")).unwrap(), b"replaces the link");
        assert!(!t.join("b").exists(), "written through the link");
        // With --force the directory entry replaces the file, and its child lands inside it.
        assert!(t.join("f").is_dir(), "{report:?}");
        assert_eq!(std::fs::read(t.join("f/inner")).unwrap(), b"x");

        let root = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        raw_entry(&mut tar, "t/", tar::EntryType::Directory, None, b"");
        raw_entry(&mut tar, "t/f", tar::EntryType::Regular, None, b"file");
        raw_entry(&mut tar, "t/f/", tar::EntryType::Directory, None, b"");
        raw_entry(&mut tar, "t/f/inner", tar::EntryType::Regular, None, b"x");
        let report = extract_tar(
            &finish(tar)[..],
            root.path(),
            "t".as_ref(),
            ExtractOptions::default(),
        )
        .unwrap();
        assert_eq!(std::fs::read(root.path().join("t/f")).unwrap(), b"file");
        assert_eq!(report.kept, ["t/f/"]);
        let rejected = rejections(&report);
        assert_eq!(rejected, [("t/f/inner", THROUGH_LINK)]);
    }

    #[test]
    fn a_tree_deeper_than_path_max_restores() {
        let root = tempfile::tempdir().unwrap();
        let level = "d".repeat(20);
        let mut name = String::from("top");
        let mut builder = tar::Builder::new(Vec::new());
        for _ in 0..300 {
            name.push('/');
            name.push_str(&level);
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, format!("{name}/leaf"), &b"deep!"[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        assert!(name.len() > 6000);
        let report = extract_tar(
            &tar[..],
            root.path(),
            "top".as_ref(),
            ExtractOptions::default(),
        )
        .unwrap();
        assert!(report.rejected.is_empty(), "{report:?}");
        let mut dir = fsat::open_dir(&root.path().join("top")).unwrap();
        for _ in 0..300 {
            dir = fsat::open_dir_at(dir.as_fd(), level.as_ref()).unwrap();
        }
        let mut data = Vec::new();
        fsat::open_file_at(dir.as_fd(), "leaf".as_ref())
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        assert_eq!(data, b"deep!");
        // The temporary directories tempfile removes by path would fail this deep.
        remove_deep(root.path());
    }

    /// Removes a tree of any depth (std's remove_dir_all fails past PATH_MAX on some systems).
    fn remove_deep(path: &Path) {
        let status = std::process::Command::new("rm")
            .arg("-rf")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn our_own_archives_round_trip_with_modes_and_mtimes() {
        use crate::candidate::{Candidate, PathCandidate};
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir_all(tree.join("empty dir")).unwrap();
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/script.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            tree.join("sub/script.sh"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        std::fs::write(tree.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("sub/script.sh", tree.join("run")).unwrap();
        let mtime = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_mtime(tree.join("sub/script.sh"), mtime).unwrap();
        let mut tar = Vec::new();
        PathCandidate::new(tree.clone(), glacier_backup_archiver::SourceKind::Directory)
            .write_archive(&mut tar)
            .unwrap();
        let dest = root.path().join("restored");
        let report =
            extract_tar(&tar[..], &dest, "tree".as_ref(), ExtractOptions::default()).unwrap();
        assert!(report.rejected.is_empty(), "{report:?}");
        let restored = dest.join("tree");
        assert!(restored.join("empty dir").is_dir());
        assert_eq!(std::fs::read(restored.join("empty")).unwrap(), b"");
        let meta = std::fs::metadata(restored.join("sub/script.sh")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o751);
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&meta),
            mtime
        );
        assert_eq!(
            std::fs::read_link(restored.join("run")).unwrap(),
            PathBuf::from("sub/script.sh")
        );
    }
}
