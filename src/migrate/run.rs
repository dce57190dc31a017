//! A migration's loop: every retrieval asked for first, then each archive moved in turn, and a
//! report of what happened to each.

use std::collections::HashMap;
use std::sync::Arc;

use glacier_backup_archiver::{Archiver, Listing};

use super::{move_one, moved_for, prepare, unrecorded_rows, MoveFailure, MoveOutcome, MoveRequest};
use crate::ledger::{Ledger, LedgerError, Moved, UploadRecord};
use crate::restore::expected_wait;
use crate::shown;

/// What a migration did, archive by archive, in the order moved.
#[derive(Debug, Default)]
pub struct MigrateReport {
    /// Each row and what happened to its archive (never a ledger failure: that ends the run).
    pub outcomes: Vec<(UploadRecord, MoveOutcome)>,
}

impl MigrateReport {
    /// How many archives ended each way: moved, already moved, pending, failed.
    pub fn totals(&self) -> [usize; 4] {
        let mut totals = [0; 4];
        for (_, outcome) in &self.outcomes {
            totals[match outcome {
                MoveOutcome::Moved(_) => 0,
                MoveOutcome::AlreadyMoved(_) => 1,
                MoveOutcome::Pending => 2,
                MoveOutcome::Failed(_) => 3,
            }] += 1;
        }
        totals
    }
}

/// Moves the archives of `rows` from `source` to `destination`: each cold archive's retrieval is
/// asked for before any is waited on, so they are prepared side by side; then each archive is
/// copied, checked and recorded in turn. A failed archive is reported and the run goes on; a
/// ledger that cannot be written stops it.
pub async fn migrate_all(
    source: &Arc<dyn Archiver>,
    destination: &dyn Archiver,
    source_ledger: &mut Ledger,
    destination_ledger: &mut Ledger,
    rows: &[UploadRecord],
    request: &MoveRequest,
) -> Result<MigrateReport, LedgerError> {
    let moved: HashMap<String, Moved> = source_ledger.moved()?;
    for row in rows
        .iter()
        .filter(|row| moved_for(&moved, row, destination).is_none())
    {
        let asked = prepare(source.as_ref(), source_ledger, row, &request.options);
        // Any other failure is reported, and counted, when the archive's turn comes.
        if let Err(MoveFailure::Ledger(e)) = asked.await {
            return Err(e);
        }
    }
    let progress = crate::progress::or_none(&request.progress);
    progress.batch(rows.len());
    let mut report = MigrateReport::default();
    for row in rows {
        let already = moved_for(&moved, row, destination);
        let outcome = move_one(
            source,
            destination,
            source_ledger,
            destination_ledger,
            row,
            request,
            already,
        )
        .await;
        progress.item_done();
        if let MoveOutcome::Failed(MoveFailure::Ledger(e)) = outcome {
            return Err(e);
        }
        log_outcome(row, &outcome, source.as_ref(), request);
        report.outcomes.push((row.clone(), outcome));
    }
    Ok(report)
}

/// Says what happened to one archive as it happens.
fn log_outcome(
    row: &UploadRecord,
    outcome: &MoveOutcome,
    source: &dyn Archiver,
    request: &MoveRequest,
) {
    let path = shown(&row.path);
    match outcome {
        MoveOutcome::Moved(key) => tracing::info!("moved {path} ({}) to {key}", row.archive_id),
        MoveOutcome::AlreadyMoved(_) => {}
        MoveOutcome::Pending => tracing::info!(
            "{path}: retrieval in progress, usually ready {} after the request; run the same \
             command again then (or add --wait)",
            expected_wait(source, request.options.tier)
        ),
        MoveOutcome::Failed(failure) => {
            tracing::error!("{path} ({}): {failure}", row.archive_id)
        }
    }
}

/// Every upload of `ledger` and, after them, a row for each archive of `listing` that no row
/// records (see [`unrecorded_rows`]), oldest first, so each path's history reads in the
/// destination as it was. The listing first gives the Python tool's rows the size and tree hash
/// a copy is checked against.
pub fn with_unrecorded(
    ledger: &mut Ledger,
    listing: &Listing,
    backend: &str,
) -> Result<Vec<UploadRecord>, LedgerError> {
    for archive in &listing.archives {
        if let Some(tree_hash) = archive.tree_hash {
            ledger.complete_upload(&archive.archive_id, archive.size, tree_hash)?;
        }
    }
    let mut uploads = ledger.uploads()?;
    let recorded = uploads.iter().map(|row| row.archive_id.clone()).collect();
    uploads.extend(unrecorded_rows(listing, &recorded, backend));
    uploads.sort_by_key(|row| row.stored_at());
    Ok(uploads)
}
