//! A backup run: for each candidate, decide whether it needs uploading (`decision.rs`), stream
//! it to the archiver (`put.rs`, continuing what an earlier run left: `resume.rs`), and record
//! it in the ledger once the archiver confirms it (`run.rs`).

mod decision;
mod index;
mod paced;
mod put;
mod record;
mod resume;
mod run;
mod state;

use std::path::PathBuf;

use glacier_backup_archiver::Error as ArchiverError;
use tokio_util::sync::CancellationToken;

use crate::candidate::SourceError;
use crate::ledger::{LedgerError, UploadRecord};
use crate::upload::UploadError;
use crate::{error_chain, shown};

pub use crate::config::DEFAULT_PARALLEL_UPLOADS;
pub use decision::{changed_since, decide, Decision};
pub use resume::remove_unrecorded;
pub use run::run_backup;

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Only report what would be uploaded.
    pub dry_run: bool,
    /// Stop after this many successful uploads (the Python tool stopped after one).
    pub max_uploads: Option<usize>,
    /// Where progress goes (nowhere when `None`).
    pub progress: Option<crate::progress::SharedProgress>,
    /// Candidates uploaded at once (at least 1). Archives of one part go up side by side within
    /// the backend's memory budget; a multipart archive, which fills that budget itself, goes
    /// alone.
    pub parallel_uploads: usize,
    /// Cancelled to stop the run: uploads under way are dropped (a resumable one is continued
    /// by the next run), what finished is recorded, and the report says it stopped.
    pub stop: CancellationToken,
    /// How new archives are compressed and encrypted (`[archive]`, `[encryption]`).
    pub format: crate::codec::Format,
    /// The time the run takes as now (an incremental chain's age is counted to it).
    pub now: time::OffsetDateTime,
    /// The upload limit the archiver applies (its `Bandwidth::upload`): an archive of several
    /// parts shows its progress as its bytes pass it.
    pub upload_limit: glacier_backup_archiver::bandwidth::Throttle,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            dry_run: false,
            max_uploads: None,
            progress: None,
            parallel_uploads: DEFAULT_PARALLEL_UPLOADS,
            stop: CancellationToken::new(),
            now: crate::clock::now(),
            format: crate::codec::Format::default(),
            upload_limit: Default::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Uploaded (or, in a dry run, would upload).
    pub uploaded: Vec<Uploaded>,
    /// Skipped as already uploaded: path and since when.
    pub up_to_date: Vec<(PathBuf, Decision)>,
    /// Failed: path and the error, as shown to the user.
    pub failed: Vec<(PathBuf, String)>,
    /// Candidates not looked at because `max_uploads` was reached.
    pub deferred: Vec<PathBuf>,
    /// Empty files the backend cannot store.
    pub empty_skipped: Vec<PathBuf>,
    /// The run was stopped ([`RunOptions::stop`]) before it looked at every candidate.
    pub stopped: bool,
}

/// A candidate uploaded by a run, or that a dry run would upload.
#[derive(Debug)]
pub struct Uploaded {
    /// The source.
    pub path: PathBuf,
    /// Why it was uploaded.
    pub decision: Decision,
    /// The ledger row written (none in a dry run).
    pub record: Option<UploadRecord>,
    /// In a dry run, the archive's estimated size (0 where the destination does not price
    /// storage, so nothing was scanned for it).
    pub estimated_size: u64,
}

/// Something that stops the whole run, not just one candidate.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The ledger cannot be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Archives were stored but could not be recorded: the user must know their ids.
    #[error("{} but the ledger could not record {}: {source}", stored_as(.stored), if .stored.len() == 1 { "it" } else { "them" })]
    Unrecorded {
        /// Each source and where it went.
        stored: Vec<(PathBuf, String)>,
        /// Why recording failed.
        source: LedgerError,
    },
    /// Archives an interrupted run stored without recording them could not be removed.
    #[error(
        "cannot remove an archive an interrupted run stored without recording it: {}; fix \
         the destination's permissions and run again",
        error_chain(.0)
    )]
    Cleanup(ArchiverError),
}

fn stored_as(stored: &[(PathBuf, String)]) -> String {
    let each: Vec<String> = stored
        .iter()
        .map(|(path, id)| format!("{} was stored as {id:?}", shown(path)))
        .collect();
    each.join("; ")
}

/// One candidate could not be backed up.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The backend failed.
    #[error(transparent)]
    Backend(ArchiverError),
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The backend's account of the archive differs from what was sent.
    #[error(transparent)]
    Mismatch(crate::upload::Mismatch),
    /// What changed since the chain's last upload could not be found.
    #[error(transparent)]
    Chain(crate::chain::DiffError),
    /// An increment's catalog could not be made: without it, the chain could not be restored
    /// entry by entry, so nothing is recorded.
    #[error(
        "no catalog could be made for the increment (memory ran out?); it is not recorded and \
         the next run uploads it again"
    )]
    NoIncrementCatalog,
    /// The backend keeps an archive whole only with its index
    /// ([`Capabilities::needs_index`](glacier_backup_archiver::Capabilities::needs_index)), and
    /// the index could not be stored: the archive was deleted again.
    #[error(
        "the archive was stored but its index could not be ({0}); without it the archive's \
         tree hash would be lost at the destination, so the archive was deleted and the next \
         run uploads it again"
    )]
    NoIndex(String),
}

impl From<UploadError> for CandidateError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Archiver(e) => e.into(),
            UploadError::Journal(e) => CandidateError::Ledger(e),
            UploadError::Mismatch(mismatch) => CandidateError::Mismatch(mismatch),
        }
    }
}

impl From<ArchiverError> for CandidateError {
    fn from(e: ArchiverError) -> Self {
        match e {
            ArchiverError::Source(inner) => match inner.downcast::<SourceError>() {
                Ok(source) => CandidateError::Source(*source),
                Err(other) => CandidateError::Backend(ArchiverError::Source(other)),
            },
            other => CandidateError::Backend(other),
        }
    }
}
