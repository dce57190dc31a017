//! The destination as directory handles: each entry's way opened from the one above it, never
//! through a link; temporary files a killed extraction left are swept once per directory.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Mode};
use rustix::io::Errno;

use crate::fsat;

/// The destination, and the directories on the way to the entry being written: entries come
/// mostly in tree order, so consecutive ones share most of their way.
pub(super) struct Tree {
    pub(super) root: OwnedFd,
    /// Open handles of the directories c0/c1/.../ck below the root, by name.
    pub(super) open: Vec<(OsString, OwnedFd)>,
    pub(super) temp_counter: u64,
}

/// The prefix of temporary names an extraction writes under: `<prefix><pid>-<n>`.
pub(super) const TEMP_PREFIX: &str = ".glacier-backup-restore-";

/// Removes from `dir` the temporary files of extractions whose process is gone (a restore
/// killed, or stopped, mid-file): they are this tool's, never anybody's data, and nothing else
/// would ever remove them. A live process's are left alone (a restore running beside this one).
/// Best effort: a directory that cannot be listed keeps them, and the restore goes on.
pub(super) fn remove_stale_temps(dir: BorrowedFd<'_>) {
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
pub(super) fn stale_temp(name: &[u8]) -> bool {
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
pub(super) fn process_alive(pid: i32) -> bool {
    if pid == std::process::id() as i32 {
        return true;
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    // EPERM: it runs, as another user.
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}

pub(super) enum Way {
    Open,
    Blocked,
}

pub(super) fn blocked(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == Errno::LOOP.raw_os_error() || code == Errno::NOTDIR.raw_os_error()
    )
}

impl Tree {
    pub(super) fn current(&self) -> BorrowedFd<'_> {
        self.open
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// Opens (creating what is missing) the directories `dirs` below the root.
    pub(super) fn open_dirs(&mut self, dirs: &[OsString]) -> io::Result<Way> {
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
    pub(super) fn forget(&mut self, path: &[OsString]) {
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
    pub(super) fn find_dir(&self, dirs: &[OsString]) -> io::Result<Option<OwnedFd>> {
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
    pub(super) fn temp_name(
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
    pub(super) fn publish(&self, temp: &OsStr, name: &OsStr) -> io::Result<()> {
        let dir = self.current();
        let renamed = rustix::fs::renameat(dir, temp, dir, name);
        // Renaming onto another link of the same file succeeds and leaves both names.
        let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
        renamed.map_err(io::Error::from)
    }
}
