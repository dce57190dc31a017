//! Moving archives from one destination to another (`migrate`, a Glacier vault into S3): each
//! archive is made readable (a retrieval recorded in the source's ledger, as restores record
//! them), read in ranged parts straight into the destination's multipart upload, checked against
//! the recorded size and tree hash before the upload is completed, and recorded in both ledgers.
//! An interrupted copy continues where it stopped: the parts the destination confirmed are kept
//! in the source's ledger (number, length, tree hash, receipt) and are not read again.

mod copy;
mod one;
mod plan;
mod run;

pub use one::{move_one, prepare};
pub use plan::{Cost, Plan, PlanOf};
pub use run::{migrate_all, with_unrecorded, MigrateReport};

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, Error as ArchiverError, Listing, RestoreOptions, SourceKind,
    TreeHash,
};
use time::OffsetDateTime;

use crate::error_chain;
use crate::ledger::{LedgerError, Moved, UploadRecord};
use crate::progress::SharedProgress;
use crate::restore::RestoreFailure;

/// How to move archives.
#[derive(Debug, Clone)]
pub struct MoveRequest {
    /// Retrieval tier for the source's cold archives.
    pub options: RestoreOptions,
    /// Wait for retrievals until then; `None`: ask for them and return.
    pub deadline: Option<Instant>,
    /// Delete each source archive once its copy is verified in the destination.
    pub delete_source: bool,
    /// Where progress goes.
    pub progress: Option<SharedProgress>,
    /// The key whose stanza proves the indexes written beside encrypted copies are ours
    /// (`[encryption] authentication_key_file` of either config).
    pub authentication: Option<crate::codec::auth::AuthKey>,
}

/// What happened to one archive.
#[derive(Debug)]
pub enum MoveOutcome {
    /// Copied, verified and recorded: its key in the destination.
    Moved(String),
    /// An earlier run moved it (and, with `--delete-source`, its source copy is now deleted).
    AlreadyMoved(String),
    /// Its retrieval is under way: run again later.
    Pending,
    /// It failed, and why; the next run continues.
    Failed(MoveFailure),
}

/// Why one archive was not moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveFailure {
    /// The row lacks the size and tree hash the copy is checked against.
    #[error(
        "the ledger row has no size or tree hash to check the copy against (the Python tool \
         wrote it); run `glacier-backup inventory --rebuild-ledger` first to fill them in"
    )]
    Unverifiable,
    /// Making the archive readable failed.
    #[error(transparent)]
    Retrieval(#[from] RestoreFailure),
    /// The source or the destination failed.
    #[error("{}", error_chain(.0))]
    Archiver(#[from] ArchiverError),
    /// A ledger could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The destination's account of the copy differs from what was sent to it.
    #[error(transparent)]
    Upload(crate::upload::Mismatch),
    /// The destination keeps an archive whole only with its index, and the copy's index could
    /// not be stored: the copy was deleted again.
    #[error(
        "the copy's index could not be stored ({0}); without it the destination would lose the \
         copy's tree hash, so the copy was deleted and the next run copies it again"
    )]
    NoIndex(String),
    /// The destination's copy is not what the source holds, so the source's was kept.
    #[error(
        "the copy at {key} does not match the archive (size {size} vs {expected_size}, tree \
         hash {tree_hash} vs {expected_tree_hash}); the source's archive was not deleted. \
         Check the copy under the destination's config (`restore --archive-id {key}` checks \
         its bytes against the ledger); the source's archive stays until they agree"
    )]
    CopyMismatch {
        /// The copy's key.
        key: String,
        /// The copy's size.
        size: u64,
        /// The archive's size.
        expected_size: u64,
        /// The copy's tree hash, as the destination tells it.
        tree_hash: String,
        /// The archive's.
        expected_tree_hash: TreeHash,
    },
}

/// The uploads to move, oldest first (so the destination's history reads as the source's), each
/// archive once, limited to `paths` and what lies below them when any are given.
pub fn select(uploads: Vec<UploadRecord>, paths: &[PathBuf]) -> Vec<UploadRecord> {
    let mut seen = std::collections::HashSet::new();
    uploads
        .into_iter()
        .filter(|row| paths.is_empty() || paths.iter().any(|p| row.path.starts_with(p)))
        .filter(|row| seen.insert(row.archive_id.clone()))
        .collect()
}

/// Rows for the archives of `listing` that no ledger row records (an archive of ours whose row
/// was lost, the Python tool's, another tool's), as the destination is told of them. An archive
/// without an origin of ours is named by its description (its id when it has none), at
/// `/<name>`, and is a directory archive when its name ends in `.tar`.
pub fn unrecorded_rows(
    listing: &Listing,
    recorded: &std::collections::HashSet<String>,
    backend: &str,
) -> Vec<UploadRecord> {
    listing
        .archives
        .iter()
        .filter(|archive| !recorded.contains(&archive.archive_id))
        .map(|archive| match &archive.origin {
            Some(origin) => crate::inventory::row_of(archive, origin, backend),
            None => {
                let described = archive
                    .description
                    .as_deref()
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .unwrap_or(&archive.archive_id)
                    .to_owned();
                UploadRecord {
                    path: PathBuf::from("/").join(described.trim_start_matches('/')),
                    name: described,
                    archive_id: archive.archive_id.clone(),
                    description: archive.description.clone(),
                    backend: backend.to_owned(),
                    kind: None,
                    size: Some(archive.size),
                    tree_hash: archive.tree_hash,
                    fingerprint: None,
                    started_at: None,
                    uploaded_at: archive.created_at,
                    encoding: Default::default(),
                    plain_size: None,
                }
            }
        })
        .collect()
}

/// What the source's ledger says of the row's archive having moved, if that settles it for
/// `destination`: moved there, or moved elsewhere and deleted here (nothing is left to copy).
/// An archive moved to another destination and still here is moved again.
pub fn moved_for<'a>(
    moved: &'a HashMap<String, Moved>,
    row: &UploadRecord,
    destination: &dyn Archiver,
) -> Option<&'a Moved> {
    moved
        .get(&row.archive_id)
        .filter(|mark| mark.destination == destination.target() || mark.source_deleted_at.is_some())
}

/// The archive as the destination is told of it: the source's path, name, kind, fingerprint
/// and layers, and its original upload time (which names its key).
pub fn meta_of(row: &UploadRecord, size: u64) -> ArchiveMeta {
    ArchiveMeta {
        source_path: row.path.clone(),
        name: row.name.clone(),
        kind: kind_of(row),
        fingerprint: row.fingerprint.clone().unwrap_or_default(),
        size_hint: size,
        started_at: row
            .started_at
            .or(row.uploaded_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        encoding: row.encoding.clone(),
        index_of: None,
        indexed_tree_hash: None,
    }
}

/// The Python tool recorded no kind: its directory archives are named `<dir>.tar`.
pub(super) fn kind_of(row: &UploadRecord) -> SourceKind {
    row.kind.unwrap_or(if row.name.ends_with(".tar") {
        SourceKind::Directory
    } else {
        SourceKind::File
    })
}

/// The archive a row records, with what its copy is checked against.
pub(super) fn archive_of(row: &UploadRecord) -> Result<ArchiveRef, MoveFailure> {
    row.archive().ok_or(MoveFailure::Unverifiable)
}
