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

#[cfg(test)]
mod tests;
