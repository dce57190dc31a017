//! A chain's state: its catalogs merged in tar order, the newest version of each path winning,
//! and what a later increment deleted (it or a directory above it) left out.
//!
//! The merge keeps each layer's next entry in a heap, so a chain of hundreds of increments costs
//! a logarithm of its length per entry, not its length.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use crate::catalog::{CatalogError, Decoder, Entry};

/// One entry of a chain's state and the archive holding its newest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The entry as that archive's catalog has it (its offsets are in that archive).
    pub entry: Entry,
    /// Which archive of the chain: 0 the full, then each increment in order.
    pub layer: usize,
}

/// A layer's next entry in the heap: its path as a tar-order key, then its layer.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Head {
    key: Vec<u8>,
    layer: usize,
}

/// The entries of a chain's state, in tar order.
pub struct Composed<'a> {
    layers: Vec<Decoder<'a>>,
    /// Each layer's next entry, which `heads` orders.
    next: Vec<Option<Entry>>,
    heads: BinaryHeap<Reverse<Head>>,
    /// Every deleted path (by its key) and the newest layer that deleted it.
    deleted: HashMap<Vec<u8>, usize>,
    failed: bool,
}

/// A path as the heap orders it (see [`super::tar_order`]).
fn key(path: &Path) -> Vec<u8> {
    super::tar_bytes(path).collect()
}

impl<'a> Composed<'a> {
    /// The state as of the last of `catalogs` (the full's first, then each increment's).
    pub fn new(catalogs: &[&'a [u8]]) -> Result<Self, CatalogError> {
        let mut composed = Composed {
            layers: Vec::with_capacity(catalogs.len()),
            next: Vec::with_capacity(catalogs.len()),
            heads: BinaryHeap::with_capacity(catalogs.len()),
            deleted: HashMap::new(),
            failed: false,
        };
        for (layer, bytes) in catalogs.iter().enumerate() {
            composed.layers.push(Decoder::new(bytes)?);
            composed.next.push(None);
            composed.advance(layer)?;
            // The full's deletions (none) are not read: nothing is older to delete.
            if layer > 0 {
                for path in Decoder::new(bytes)?.deletions()? {
                    let newest = composed.deleted.entry(key(&path)).or_insert(layer);
                    *newest = (*newest).max(layer);
                }
            }
        }
        Ok(composed)
    }

    /// Reads `layer`'s next entry into the heap.
    fn advance(&mut self, layer: usize) -> Result<(), CatalogError> {
        let next = self.layers[layer].next().transpose()?;
        if let Some(entry) = &next {
            self.heads.push(Reverse(Head {
                key: key(&entry.path),
                layer,
            }));
        }
        self.next[layer] = next;
        Ok(())
    }

    /// Whether a layer newer than `layer` deleted the path of `key` or a directory holding it.
    fn deleted_after(&self, layer: usize, key: &[u8]) -> bool {
        if self.deleted.is_empty() {
            return false;
        }
        let ancestors = key
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == 0)
            .map(|(at, _)| &key[..at])
            .chain([key]);
        ancestors
            .filter_map(|path| self.deleted.get(path))
            .any(|&deleted| deleted > layer)
    }

    fn next_entry(&mut self) -> Result<Option<Held>, CatalogError> {
        while let Some(Reverse(first)) = self.heads.pop() {
            let mut layers = vec![first.layer];
            while self
                .heads
                .peek()
                .is_some_and(|Reverse(head)| head.key == first.key)
            {
                layers.extend(self.heads.pop().map(|Reverse(head)| head.layer));
            }
            let newest = *layers.iter().max().expect("the first layer");
            let entry = self.next[newest].take().expect("a head's entry");
            for layer in layers {
                self.advance(layer)?;
            }
            if !self.deleted_after(newest, &first.key) {
                return Ok(Some(Held {
                    entry,
                    layer: newest,
                }));
            }
        }
        Ok(None)
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
