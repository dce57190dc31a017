//! `verify`: do the sources still match their last upload, and (with `--remote`) does the
//! destination still hold each archive as recorded?

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use futures::StreamExt;
use glacier_backup_archiver::treehash::TreeHasher;
use glacier_backup_archiver::{Archiver, ListedArchive, Listing, SourceKind};

use crate::candidate::{Candidate, PathCandidate};
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
        let Some(recorded) = &row.fingerprint else {
            findings.push(finding(
                "no fingerprint recorded (an upload by the Python tool): cannot compare".into(),
            ));
            continue;
        };
        match PathCandidate::new(row.path.clone(), kind).scan() {
            Ok(scan) if scan.fingerprint.to_string() == *recorded => {}
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

/// Compares the ledger with what the destination holds (`listing`: the backend's list, or for
/// a vault its latest inventory): every archive present with its size and, where the listing
/// has one, its tree hash; for destinations on this machine the tree hash is re-computed.
/// Uploads stored after the listing was taken are not expected in it.
pub async fn check_remote(
    archiver: &dyn Archiver,
    rows: &[UploadRecord],
    listing: &Listing,
) -> Result<Vec<Finding>, glacier_backup_archiver::Error> {
    let listed: HashMap<&str, &ListedArchive> = listing
        .archives
        .iter()
        .map(|a| (a.archive_id.as_str(), a))
        .collect();
    let rehash = archiver.local_directory().is_some();
    let mut findings = Vec::new();
    for row in rows {
        let finding = |problem: String| Finding {
            path: row.path.clone(),
            problem,
        };
        let Some(archive) = listed.get(row.archive_id.as_str()) else {
            let stored = row.uploaded_at.or(row.started_at);
            if let (Some(taken), Some(stored)) = (listing.taken_at, stored) {
                if stored >= taken {
                    tracing::info!(
                        "{}: uploaded after the inventory of {}; not checked",
                        row.path.display(),
                        crate::display_time(taken)
                    );
                    continue;
                }
            }
            findings.push(finding(format!(
                "archive {} is missing from the destination",
                row.archive_id
            )));
            continue;
        };
        let size = archive.size;
        if let (Some(recorded), Some(listed)) = (row.tree_hash, archive.tree_hash) {
            if recorded != listed {
                findings.push(finding(format!(
                    "archive {} has tree hash {listed}, the ledger recorded {recorded}",
                    row.archive_id
                )));
                continue;
            }
        }
        if row.size.is_some_and(|recorded| recorded != size) {
            findings.push(finding(format!(
                "archive {} is {size} bytes, the ledger recorded {}",
                row.archive_id,
                row.size.unwrap_or_default()
            )));
            continue;
        }
        if let (true, Some(expected)) = (rehash, row.tree_hash) {
            let archive = glacier_backup_archiver::ArchiveRef {
                archive_id: row.archive_id.clone(),
                size,
                tree_hash: expected,
                description: None,
            };
            let mut hasher = TreeHasher::new();
            let mut stream = archiver.get(&archive, None).await?;
            let mut failed = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => hasher.update(&bytes),
                    // The download's own check reports a mismatch as an error at the end.
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            let actual = hasher.finish();
            if let Some(message) = failed {
                findings.push(finding(message));
            } else if actual != expected {
                findings.push(finding(format!(
                    "archive {} has tree hash {actual}, the ledger recorded {expected}",
                    row.archive_id
                )));
            }
        }
    }
    Ok(findings)
}
