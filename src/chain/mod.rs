//! Incremental chains: a full directory archive, then increments that hold only what changed
//! since the chain's latest state (and say what was deleted), each written in GNU tar's
//! incremental format so stock `tar --extract --incremental` applies them in order.
//!
//! Everything here is catalog arithmetic: [`Composed`] merges a chain's catalogs into the tree
//! as of its last upload, and [`diff`] compares a tree on disk with that state, reading nothing
//! from the destination.

mod compose;
mod diff;
mod plan;

pub use compose::{Composed, Held};
pub use diff::{diff, Changes, DiffError};
pub use plan::{each_entry_of, Chain, ChainError, EntriesError, Increment};

/// The order the walk (and so every tar and catalog) puts paths in: component by component,
/// each by its bytes. For the normalized paths of a catalog that is the order of their bytes
/// with `/` sorting first, compared here without splitting them into components.
pub fn tar_order(a: &std::path::Path, b: &std::path::Path) -> std::cmp::Ordering {
    tar_bytes(a).cmp(tar_bytes(b))
}

/// A path's bytes with `/` as 0: ordered as [`tar_order`] orders paths, each ancestor a
/// prefix ending before a 0.
fn tar_bytes(path: &std::path::Path) -> impl Iterator<Item = u8> + '_ {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&byte| if byte == b'/' { 0 } else { byte })
}

#[cfg(test)]
mod tests;
