//! A chain's state: its catalogs merged in tar order, the newest version of each path winning,
//! and what a later increment deleted (it or a directory above it) left out.

use std::iter::Peekable;
use std::path::{Path, PathBuf};

use super::tar_order;
use crate::catalog::{CatalogError, Decoder, Entry};

/// One entry of a chain's state and the archive holding its newest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The entry as that archive's catalog has it (its offsets are in that archive).
    pub entry: Entry,
    /// Which archive of the chain: 0 the full, then each increment in order.
    pub layer: usize,
}

/// The entries of a chain's state, in tar order.
pub struct Composed<'a> {
    layers: Vec<Peekable<Decoder<'a>>>,
    /// Each layer's deleted paths, sorted as the walk visits them.
    deletions: Vec<Vec<PathBuf>>,
    failed: bool,
}

impl<'a> Composed<'a> {
    /// The state as of the last of `catalogs` (the full's first, then each increment's).
    pub fn new(catalogs: &[&'a [u8]]) -> Result<Self, CatalogError> {
        let mut layers = Vec::with_capacity(catalogs.len());
        let mut deletions = Vec::with_capacity(catalogs.len());
        for (layer, bytes) in catalogs.iter().enumerate() {
            layers.push(Decoder::new(bytes)?.peekable());
            // The full's deletions (none) are not read: nothing is older to delete.
            deletions.push(match layer {
                0 => Vec::new(),
                _ => Decoder::new(bytes)?.deletions()?,
            });
        }
        Ok(Composed {
            layers,
            deletions,
            failed: false,
        })
    }

    /// Whether a layer newer than `layer` deleted `path` or a directory holding it.
    fn deleted_after(&self, layer: usize, path: &Path) -> bool {
        self.deletions[layer + 1..].iter().any(|deleted| {
            !deleted.is_empty()
                && path
                    .ancestors()
                    .any(|a| deleted.binary_search_by(|d| tar_order(d, a)).is_ok())
        })
    }

    fn next_entry(&mut self) -> Result<Option<Held>, CatalogError> {
        loop {
            let mut first: Option<PathBuf> = None;
            for entries in self.layers.iter_mut() {
                match entries.peek() {
                    Some(Err(_)) => return Err(entries.next().expect("peeked").unwrap_err()),
                    Some(Ok(entry))
                        if first
                            .as_ref()
                            .is_none_or(|p| tar_order(&entry.path, p).is_lt()) =>
                    {
                        first = Some(entry.path.clone());
                    }
                    _ => {}
                }
            }
            let Some(path) = first else {
                return Ok(None);
            };
            let mut newest = None;
            for (layer, entries) in self.layers.iter_mut().enumerate() {
                if let Some(Ok(entry)) = entries.peek() {
                    if entry.path.as_os_str() == path.as_os_str() {
                        let entry = entries.next().expect("peeked")?;
                        newest = Some(Held { entry, layer });
                    }
                }
            }
            let held = newest.expect("the first path is some layer's");
            if !self.deleted_after(held.layer, &held.entry.path) {
                return Ok(Some(held));
            }
        }
    }
}

impl Iterator for Composed<'_> {
    type Item = Result<Held, CatalogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_entry();
        self.failed = next.is_err();
        next.transpose()
    }
}
