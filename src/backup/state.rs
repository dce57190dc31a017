//! The state of a backup run, shared by its loop (`run.rs`) and its recording (`record.rs`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use glacier_backup_archiver::Archiver;

use super::{CandidateError, Decision, RunError, RunOptions, RunReport, Uploaded};
use crate::ledger::UploadRecord;
use crate::progress::SharedProgress;

/// Why the run's loop ended early.
pub(super) enum Halt {
    /// [`RunOptions::stop`] was cancelled.
    Stopped,
    /// Something that stops the whole run.
    Failed(RunError),
}

impl<E: Into<RunError>> From<E> for Halt {
    fn from(e: E) -> Self {
        Halt::Failed(e.into())
    }
}

/// A candidate's upload that ended, well or not.
pub(super) struct Finished {
    pub(super) index: usize,
    pub(super) path: PathBuf,
    pub(super) decision: Decision,
    /// Bytes of the memory budget it held.
    pub(super) cost: u64,
    pub(super) seconds: f64,
    /// The row to write and the archive's catalog, if it has one.
    pub(super) result: Result<(UploadRecord, Option<crate::catalog::Cataloged>), CandidateError>,
}

/// The state of a run: what is under way and what was done.
pub(super) struct Run<'a> {
    pub(super) archiver: &'a dyn Archiver,
    pub(super) options: &'a RunOptions,
    pub(super) progress: SharedProgress,
    /// Bytes in flight allowed at once: the backend's parts in flight times its part size.
    pub(super) budget: u64,
    pub(super) parallel: usize,
    /// Bytes of the budget held by the uploads under way.
    pub(super) reserved: u64,
    pub(super) running_paths: HashSet<PathBuf>,
    /// Uploads done, with their planned positions (the report lists them in plan order).
    pub(super) uploaded: Vec<(usize, Uploaded)>,
    /// How many of `uploaded` have their rows in the ledger: the rest wait for the backend's
    /// `sync` (see [`BATCH_ROWS`]).
    pub(super) committed: usize,
    /// When the first of the uncommitted uploads finished.
    pub(super) batch_started: Instant,
    /// The catalogs of uploads whose rows are not committed yet, by archive id: written with
    /// their rows, then dropped (the report does not keep them).
    pub(super) catalogs: HashMap<String, crate::catalog::Cataloged>,
    /// Everything but the uploads.
    pub(super) report: RunReport,
}

impl Run<'_> {
    pub(super) fn uploaded(&self) -> usize {
        self.uploaded.len()
    }

    /// Uploads whose rows wait for the backend's `sync`.
    pub(super) fn uncommitted(&self) -> impl Iterator<Item = &(usize, Uploaded)> {
        self.uploaded[self.committed..].iter()
    }

    /// What an archive of `size` bytes holds of the budget: its buffer when it fits in one
    /// part, the whole budget when it goes in several (the upload driver fills it).
    pub(super) fn memory_cost(&self, size: u64) -> u64 {
        if size > self.archiver.part_size(size) {
            self.budget
        } else {
            size.max(crate::stream::MIN_BUFFER as u64).min(self.budget)
        }
    }
}
