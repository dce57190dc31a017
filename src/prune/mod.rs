//! `prune`: what a retention policy keeps of each path's uploads, and the deletion of the rest.
//! The plan is arithmetic on the ledger (policy, chains, minimum durations, prices); deleting
//! goes through the backend, each archive noted in the ledger before it is asked for and marked
//! once the destination confirms, so an interrupted prune finishes what it started.

mod history;
mod keep;
mod plan;
mod run;
#[cfg(test)]
mod tests;

pub use history::{pruned_at, PrunedUpload};
pub use keep::{kept_by, Rule};
pub use plan::{plan, PathPlan, Plan, Planned, PruneOptions, Reason, Setting, Totals, Verdict};
pub use run::{prune, PruneError, PruneReport};
