//! `verify`: do the sources still match their last upload, and (with `--remote`) does the
//! destination still hold each archive as recorded?

use crate::shown;
use std::collections::BTreeMap;
use std::path::PathBuf;

use glacier_backup_archiver::{Listing, SourceKind};

use crate::candidate::{Candidate, PathCandidate};
use crate::inventory::reconcile;
use crate::ledger::{Ledger, LedgerError, UploadRecord};

/// One finding about one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The source path.
    pub path: PathBuf,
    /// What is wrong (or unknown).
    pub problem: String,
}

/// The latest upload of every path in the ledger (optionally only under `filter`).
pub fn latest_uploads(
    ledger: &dyn Ledger,
    filter: &[PathBuf],
) -> Result<Vec<UploadRecord>, LedgerError> {
    let mut latest: BTreeMap<PathBuf, UploadRecord> = BTreeMap::new();
    for row in ledger.uploads()? {
        if filter.is_empty() || filter.iter().any(|f| row.path.starts_with(f)) {
            latest.insert(row.path.clone(), row);
        }
    }
    Ok(latest.into_values().collect())
}

/// Re-reads each source's state (no network) and reports those that differ from their last
/// upload, or are gone.
pub fn check_sources(rows: &[UploadRecord]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for row in rows {
        let finding = |problem: String| Finding {
            path: row.path.clone(),
            problem,
        };
        let meta = match std::fs::metadata(&row.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                findings.push(finding("the source no longer exists".into()));
                continue;
            }
            Err(e) => {
                findings.push(finding(format!("cannot read the source: {e}")));
                continue;
            }
        };
        let kind = row.kind.unwrap_or(if meta.is_dir() {
            SourceKind::Directory
        } else {
            SourceKind::File
        });
        match PathCandidate::new(row.path.clone(), kind).scan() {
            Ok(scan) if !crate::backup::changed_since(row, &scan) => {}
            Ok(_) => findings.push(finding(format!(
                "changed since its upload at {}",
                row.uploaded_at
                    .map(crate::display_time)
                    .unwrap_or_else(|| "an unknown time".into())
            ))),
            Err(e) => findings.push(finding(e.to_string())),
        }
    }
    findings
}

/// Compares the uploads with what the destination holds (`listing`: its inventory, or for a
/// vault the latest one fetched): every archive present, with the recorded size and, where the
/// listing has one, tree hash. Uploads stored after the listing was taken are not expected in it.
pub fn check_remote(rows: &[UploadRecord], listing: &Listing) -> Vec<Finding> {
    let report = reconcile(rows, listing);
    for row in &report.too_recent {
        tracing::info!(
            "{}: uploaded after the inventory was taken; not checked",
            shown(&row.path)
        );
    }
    let missing = report.missing.iter().map(|row| Finding {
        path: row.path.clone(),
        problem: format!("archive {} is missing from the destination", row.archive_id),
    });
    let mismatched = report.mismatched.iter().map(|(row, difference)| Finding {
        path: row.path.clone(),
        problem: format!(
            "archive {} differs from the ledger: {difference}",
            row.archive_id
        ),
    });
    missing.chain(mismatched).collect()
}
