//! Carrying a plan out: each archive (and its index) deleted through the backend, noted in the
//! ledger before the deletion is asked for and marked once it is confirmed.

use std::path::PathBuf;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use glacier_backup_archiver::{ArchiveRef, Archiver, Error as ArchiverError, TreeHash};

use super::plan::{Plan, Verdict};
use crate::ledger::{Ledger, LedgerError};

/// What a prune deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Archives deleted (or found gone already), in the order confirmed.
    pub deleted: Vec<String>,
    /// Of those, deletions an interrupted prune had asked for.
    pub finished: usize,
    /// Of those, archives the destination no longer had.
    pub already_gone: usize,
}

/// A prune that could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// A path the plan deletes from has an upload under way (or interrupted).
    #[error(
        "{}: an upload of it is under way or was interrupted; run the backup to finish it, \
         then prune",
        crate::shown(.0)
    )]
    PendingUpload(PathBuf),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The destination refused or failed a deletion; what was confirmed stays marked.
    #[error("deleting {archive_id}: {source}; run prune again to finish")]
    Delete {
        /// The archive.
        archive_id: String,
        /// Why.
        source: ArchiverError,
    },
}

/// Deletes what `plan` deletes, after finishing what an interrupted prune asked for. At most
/// the backend's upload concurrency of deletions are in flight; each is noted in the ledger
/// before it is asked for and marked as soon as it is confirmed.
pub async fn prune(
    plan: &Plan,
    ledger: &mut Ledger,
    archiver: &dyn Archiver,
) -> Result<PruneReport, PruneError> {
    for path in &plan.paths {
        let deletes = path
            .uploads
            .iter()
            .any(|u| matches!(u.verdict, Verdict::Delete { .. }));
        if deletes && ledger.pending_upload(&path.path)?.is_some() {
            return Err(PruneError::PendingUpload(path.path.clone()));
        }
    }
    let mut report = PruneReport::default();
    let unfinished = plan.unfinished.iter().cloned();
    let planned = plan.deletions().map(|u| u.archive_id.clone());
    let mut queue = unfinished
        .map(|id| (id, true))
        .chain(planned.map(|id| (id, false)));
    let mut seen = std::collections::HashSet::new();
    let in_flight = archiver.upload_concurrency().max(1);
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < in_flight {
            let Some((archive_id, resumed)) = queue.next() else {
                break;
            };
            if !seen.insert(archive_id.clone()) {
                continue;
            }
            let index = ledger.catalog_index(&archive_id)?.flatten();
            ledger.record_pruning(&archive_id, crate::clock::now())?;
            running.push(async move {
                let gone = delete(archiver, &archive_id, index.as_deref()).await;
                (archive_id, resumed, gone)
            });
        }
        let Some((archive_id, resumed, gone)) = running.next().await else {
            break;
        };
        let already_gone = gone.map_err(|source| PruneError::Delete {
            archive_id: archive_id.clone(),
            source,
        })?;
        ledger.record_pruned(&archive_id, crate::clock::now())?;
        tracing::info!("deleted {archive_id}");
        report.finished += usize::from(resumed);
        report.already_gone += usize::from(already_gone);
        report.deleted.push(archive_id);
    }
    Ok(report)
}

/// Deletes an archive and then its index; `true` when the archive was gone already.
async fn delete(
    archiver: &dyn Archiver,
    archive_id: &str,
    index: Option<&str>,
) -> Result<bool, ArchiverError> {
    let gone = match archiver.delete(&by_id(archive_id)).await {
        Ok(()) => false,
        Err(ArchiverError::NotFound { .. }) => true,
        Err(e) => return Err(e),
    };
    if let Some(index) = index {
        match archiver.delete(&by_id(index)).await {
            Ok(()) | Err(ArchiverError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(gone)
}

/// An archive named by its id alone: deleting needs nothing else.
fn by_id(archive_id: &str) -> ArchiveRef {
    ArchiveRef {
        archive_id: archive_id.to_owned(),
        size: 0,
        tree_hash: TreeHash::empty(),
        description: None,
    }
}
