//! What an archive entry is and whether its name and link may be restored: under the top
//! directory, no `..` out of it, a link that stays inside.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{FileType, Timespec, Timestamps};

pub(super) const OUTSIDE_TOP: &str = "it is not under the archive's top directory";
pub(super) const THROUGH_LINK: &str = "its way goes through a symlink or a non-directory";
pub(super) const TOP_NOT_DIR: &str = "the archive's top entry must be a directory";

/// Whether a link target, resolved from `base` (a directory given by its components below the
/// destination), stays inside the destination. Only `..` before any name is taken: the
/// climb then goes up through the link's own directories, which are real ones, and the names
/// after it only go down. A `..` after a name would climb from wherever that name leads,
/// which may be another link (`a -> b`, `b -> ..`, then `a/../..` leaves the destination,
/// whatever order the links arrive in), so such targets are refused.
pub(super) fn stays_inside(base_depth: usize, target: &Path) -> bool {
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
pub(super) fn components(name: &[u8], top: &OsStr) -> Result<Vec<OsString>, &'static str> {
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
pub(super) enum Kind {
    Dir,
    File,
    Symlink,
    HardLink,
    Fifo,
    Device(FileType),
}

pub(super) fn kind_of(entry_type: tar::EntryType) -> Option<Kind> {
    use tar::EntryType as T;
    Some(match entry_type {
        T::Directory => Kind::Dir,
        // An increment's directory with its dumpdir (GNU tar's incremental format): a directory
        // like any other here; what it lists matters to stock tar's extraction only.
        t if t.as_byte() == crate::candidate::GNU_DUMPDIR => Kind::Dir,
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
pub(super) struct Attributes {
    pub(super) mode: u32,
    pub(super) mtime: i64,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) size: u64,
}

impl Attributes {
    pub(super) fn of(header: &tar::Header) -> Self {
        Attributes {
            mode: header.mode().unwrap_or(0o644),
            mtime: header.mtime().map_or(0, |t| t as i64),
            uid: header.uid().ok().and_then(|u| u32::try_from(u).ok()),
            gid: header.gid().ok().and_then(|g| u32::try_from(g).ok()),
            size: header.size().unwrap_or(u64::MAX),
        }
    }

    pub(super) fn timestamps(&self) -> Timestamps {
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
