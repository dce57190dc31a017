//! A restore of several archives: every retrieval asked for before any is waited on (so cold
//! archives are prepared side by side), then each restored, and a report of what became of
//! each one. The binary only prints the report.

use glacier_backup_archiver::{Archiver, RestoreTier, SourceKind};

use super::{request_retrieval, restore_one, Outcome, RestoreFailure, RestoreRequest};
use crate::ledger::{Ledger, LedgerError, UploadRecord};
use crate::shown;

/// What a restore did, archive by archive, in the order asked.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Each archive's row and outcome.
    pub archives: Vec<(UploadRecord, Outcome)>,
}

impl RestoreReport {
    /// Archives put back whole (a file's newer copy kept does not count).
    pub fn restored(&self) -> usize {
        self.archives
            .iter()
            .filter(|(row, outcome)| whole(row, outcome))
            .count()
    }

    /// Archives whose retrieval is still under way.
    pub fn pending(&self) -> usize {
        self.archives
            .iter()
            .filter(|(_, outcome)| matches!(outcome, Outcome::Pending))
            .count()
    }

    /// Archives that failed, or had entries refused as unsafe.
    pub fn failed(&self) -> usize {
        self.archives
            .iter()
            .filter(|(_, outcome)| match outcome {
                Outcome::Failed(_) => true,
                Outcome::Restored { rejected, .. } => *rejected > 0,
                Outcome::Pending => false,
            })
            .count()
    }
}

/// Whether a restored archive came back whole: nothing kept in its place, or a directory
/// (whose newer entries kept are reported, but the rest is there).
pub fn whole(row: &UploadRecord, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Restored { kept, .. } => *kept == 0 || row.kind == Some(SourceKind::Directory),
        _ => false,
    }
}

/// How long a retrieval at `tier` usually takes on this destination, for messages.
pub fn expected_wait(archiver: &dyn Archiver, tier: RestoreTier) -> &'static str {
    if !archiver.capabilities().needs_restore {
        return "none";
    }
    match tier {
        RestoreTier::Expedited => "1-5 minutes",
        RestoreTier::Standard => "3-5 hours (up to 12 for DEEP_ARCHIVE)",
        RestoreTier::Bulk => "5-12 hours (up to 48 for DEEP_ARCHIVE)",
    }
}

/// Restores `rows`: their retrievals asked for first, then each archive in turn. An archive
/// that fails is reported and the others go on; a ledger that fails stops the restore, as it
/// stops a backup.
pub async fn restore_all(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    rows: &[UploadRecord],
    request: &RestoreRequest,
) -> Result<RestoreReport, LedgerError> {
    let mut report = RestoreReport::default();
    let mut ready_to_try = Vec::new();
    for row in rows {
        match request_retrieval(archiver, ledger, row, request).await {
            Ok(state) => ready_to_try.push((row, state)),
            Err(RestoreFailure::Ledger(e)) => return Err(e),
            Err(failure) => {
                tracing::error!("{}: {failure}", shown(&row.path));
                report
                    .archives
                    .push((row.clone(), Outcome::Failed(failure)));
            }
        }
    }
    let progress = crate::progress::or_none(&request.progress);
    progress.batch(ready_to_try.len());
    for (row, state) in ready_to_try {
        let outcome = match restore_one(archiver, ledger, row, request, Some(state)).await {
            Outcome::Failed(RestoreFailure::Ledger(e)) => return Err(e),
            outcome => outcome,
        };
        progress.item_done();
        match &outcome {
            Outcome::Restored {
                path,
                rejected,
                kept,
                partial,
            } => {
                match partial {
                    Some(entries) => tracing::info!(
                        "restored {entries} entries of {} to {}",
                        shown(&row.path),
                        shown(path)
                    ),
                    None if whole(row, &outcome) => {
                        tracing::info!("restored {} to {}", shown(&row.path), shown(path))
                    }
                    None => {}
                }
                if *rejected > 0 {
                    tracing::warn!(
                        "{rejected} unsafe archive entries were not restored (see above)"
                    );
                }
                if *kept > 0 {
                    tracing::info!(
                        "{kept} existing newer entries kept (use --force to replace them)"
                    );
                }
            }
            Outcome::Pending => tracing::info!(
                "{}: retrieval in progress, usually ready {} after the request; run the same \
                 command again then (or add --wait)",
                shown(&row.path),
                expected_wait(archiver, request.options.tier)
            ),
            Outcome::Failed(failure) => tracing::error!("{}: {failure}", shown(&row.path)),
        }
        report.archives.push((row.clone(), outcome));
    }
    Ok(report)
}
