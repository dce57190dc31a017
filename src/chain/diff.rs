//! What changed in a directory since a chain's latest state: the files and links whose data an
//! increment must hold, and the paths gone since.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{tar_order, Held};
use crate::candidate::{
    entry_size, walk_tree, EntryType, Scan, Scanner, SourceError, TreeEntry, TAR_BLOCK,
};
use crate::catalog::{CatalogError, Entry, EntryKind};

/// An increment's contents, found by [`diff`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Archive paths of the files and links written again (new or changed).
    pub stored: HashSet<PathBuf>,
    /// Archive paths gone since the base: the topmost of each gone subtree, in tar order.
    pub deleted: Vec<PathBuf>,
    /// Bytes of the files written again.
    pub bytes: u64,
    /// The increment's expected tar size: its directories with their dumpdirs, the files and
    /// links written again, the end blocks.
    pub size_estimate: u64,
    /// Files written again although their metadata did not change (`verify_content`): their
    /// bytes did, or the chain holds no digest of them to compare with.
    pub content_only: u64,
}

/// Comparing a tree with a chain's state failed.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The tree could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A catalog of the chain could not be read.
    #[error("a catalog of the chain: {0}")]
    Catalog(#[from] CatalogError),
}

/// Compares the tree at `root` (less `skip`) with `state` (a chain's, in tar order), reading
/// only metadata: a file or link is changed when its kind, size, mode, owner, mtime, ctime,
/// inode or link target differs from the state's. The same walk scans the tree, so a chained
/// directory is walked once to decide whether it changed and what to upload.
///
/// With `verify_content`, a file whose metadata did not change is read and its SHA-256
/// compared with the one its catalog keeps (a file without one counts as changed, so the
/// increment records it).
pub fn diff(
    root: &Path,
    skip: &[PathBuf],
    state: impl Iterator<Item = Result<Held, CatalogError>>,
    verify_content: bool,
) -> Result<(Scan, Changes), DiffError> {
    let mut stopping = Stopping {
        inner: state,
        error: None,
    };
    let mut state = (&mut stopping).peekable();
    let mut changes = Changes::default();
    let mut scanner = Scanner::default();
    walk_tree(root, skip, |entry| {
        scanner.add(&entry)?;
        if entry.entry_type() == EntryType::Special {
            return Ok(());
        }
        let path = &entry.archive_path;
        while let Some(gone) = state.next_if(|held| tar_order(&held.entry.path, path).is_lt()) {
            changes.gone(gone.entry.path);
        }
        let before = state.next_if(|held| held.entry.path.as_os_str() == path.as_os_str());
        let data = matches!(entry.entry_type(), EntryType::File | EntryType::Symlink);
        if entry.entry_type() == EntryType::Dir {
            changes.size_estimate += dir_size(&entry);
        } else if data
            && before
                .as_ref()
                .is_none_or(|held| changed(&held.entry, &entry).unwrap_or(true))
        {
            changes.store(&entry);
        } else if let Some(before) = before.filter(|_| verify_content) {
            if entry.entry_type() == EntryType::File && !same_content(&before.entry, &entry) {
                changes.content_only += 1;
                changes.store(&entry);
            }
        }
        Ok(())
    })?;
    // The two zero blocks that end a tar.
    changes.size_estimate += 2 * TAR_BLOCK;
    for gone in state.by_ref() {
        changes.gone(gone.entry.path);
    }
    drop(state);
    match stopping.error {
        Some(e) => Err(e.into()),
        None => Ok((scanner.finish(), changes)),
    }
}

impl Changes {
    /// Records `entry` as written again.
    fn store(&mut self, entry: &TreeEntry<'_>) {
        self.size_estimate += stored_size(entry);
        if entry.entry_type() == EntryType::File {
            self.bytes += entry.meta.len();
        }
        self.stored.insert(entry.archive_path.clone());
    }
}

/// Whether the file `entry` still has the bytes whose SHA-256 `before` keeps. A file that
/// cannot be read whole now counts as changed: the archive writer then reports why.
fn same_content(before: &Entry, entry: &TreeEntry<'_>) -> bool {
    let Some(kept) = before.sha256 else {
        return false;
    };
    let now = entry.open_exact().and_then(|reader| reader.digest_all());
    matches!(now, Ok(digest) if digest == kept)
}

/// A directory's dumpdir entry: its header (the name with a slash) and the list of its entries.
fn dir_size(entry: &TreeEntry<'_>) -> u64 {
    let listed: usize = entry
        .children
        .iter()
        .filter(|c| c.meta.kind() != EntryType::Special)
        .map(|c| c.name.len() + 2)
        .sum();
    let name_len = entry.archive_path.as_os_str().len() + 1;
    entry_size(name_len, 0, listed as u64 + 1)
}

/// A file's or link's entry (a link's size is its target's length).
fn stored_size(entry: &TreeEntry<'_>) -> u64 {
    let name_len = entry.archive_path.as_os_str().len();
    match entry.entry_type() {
        EntryType::Symlink => entry_size(name_len, entry.meta.len() as usize, 0),
        _ => entry_size(name_len, 0, entry.meta.len()),
    }
}

impl Changes {
    /// Records `path` as gone, unless a directory above it already is.
    fn gone(&mut self, path: PathBuf) {
        if self.deleted.last().is_some_and(|d| path.starts_with(d)) {
            return;
        }
        self.deleted.push(path);
    }
}

/// Whether `entry` on disk differs from `before`; `None` when its link cannot be read (then
/// it counts as changed, and the archive writer reports why).
fn changed(before: &Entry, entry: &TreeEntry<'_>) -> Option<bool> {
    let meta = &entry.meta;
    let kind = match entry.entry_type() {
        EntryType::File => EntryKind::File,
        EntryType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Directory,
    };
    let size = if kind == EntryKind::File {
        meta.len()
    } else {
        0
    };
    let same = before.kind == kind
        && before.size == size
        && before.mode == meta.mode() & 0o7777
        && before.uid == u64::from(meta.uid())
        && before.gid == u64::from(meta.gid())
        && before.mtime == meta.mtime().max(0)
        && before.stamp == Some(meta.stamp());
    if !same {
        return Some(true);
    }
    if kind == EntryKind::Symlink {
        let target = entry.read_link().ok()?;
        return Some(before.link.as_deref() != Some(Path::new(&target)));
    }
    Some(false)
}

/// The state's entries until the first error, which it keeps.
struct Stopping<I> {
    inner: I,
    error: Option<CatalogError>,
}

impl<I: Iterator<Item = Result<Held, CatalogError>>> Iterator for Stopping<I> {
    type Item = Held;

    fn next(&mut self) -> Option<Held> {
        if self.error.is_some() {
            return None;
        }
        match self.inner.next()? {
            Ok(held) => Some(held),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}
