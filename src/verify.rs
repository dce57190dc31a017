//! `verify`: do the sources still match their last upload, and (with `--remote`) does the
//! destination still hold each archive as recorded?

use crate::shown;
use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::StreamExt;
use glacier_backup_archiver::treehash::TreeHasher;
use glacier_backup_archiver::{Archiver, InventoryState, Listing, SourceKind};

use crate::candidate::{Candidate, PathCandidate};
use crate::inventory::reconcile;
use crate::ledger::{Ledger, LedgerError, UploadRecord};

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    /// Only the uploads of these source paths and below (all when empty).
    pub paths: Vec<PathBuf>,
    /// Also compare the destination's listing with the ledger.
    pub remote: bool,
    /// Also read every archive back and re-hash it (destinations that read at once only).
    pub read: bool,
}

/// What a verification found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Uploads checked: the latest of each selected path.
    pub verified: usize,
    /// Every problem found.
    pub findings: Vec<Finding>,
    /// The destination's listing taken now (a listable one's): kept in the ledger as its last
    /// inventory, it tells the next backup which chains lost an archive.
    pub listing: Option<Listing>,
}

/// A verification that could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `read` on a destination whose archives need a retrieval first.
    #[error(
        "verify --read reads every archive back, and this {0} destination's archives need a \
         retrieval first (hours, billed by the GB); to check every byte of some, restore them \
         to a scratch directory with `restore --to DIR`, which checks each download"
    )]
    ReadNeedsRetrieval(&'static str),
    /// `remote` on a destination listed by a job, before any inventory was fetched.
    #[error(
        "the {0} backend lists its archives through an inventory job, and none was fetched \
         yet: run `glacier-backup inventory` (again later, or with --wait) first"
    )]
    NoInventoryYet(&'static str),
    /// The ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The destination failed.
    #[error(transparent)]
    Archiver(#[from] glacier_backup_archiver::Error),
}

/// Checks the latest upload of each selected path: the source (no network), with `remote` the
/// destination's listing (a job's, from the last `inventory`, where the backend lists through
/// one), and with `read` every archive's bytes. Archives `migrate --delete-source` deleted are
/// expected to be gone from here. `prices` price the reads announced before they start.
pub async fn verify_all(
    archiver: &dyn Archiver,
    ledger: &Ledger,
    request: &VerifyRequest,
    prices: &crate::costs::Prices,
) -> Result<VerifyReport, VerifyError> {
    if request.read && archiver.capabilities().needs_restore {
        return Err(VerifyError::ReadNeedsRetrieval(archiver.name()));
    }
    let rows = latest_uploads(ledger, &request.paths)?;
    let mut findings = check_sources(&rows);
    let mut fresh = None;
    if request.remote {
        let listing = if archiver.capabilities().listable {
            match archiver.inventory(None).await? {
                InventoryState::Ready(listing) => Some(listing),
                InventoryState::Pending { .. } => None,
            }
        } else {
            ledger.last_inventory()?
        };
        let listing = listing.ok_or(VerifyError::NoInventoryYet(archiver.name()))?;
        let taken_now = archiver.capabilities().listable;
        if let Some(taken) = listing.taken_at {
            tracing::info!(
                "comparing with the inventory of {}",
                crate::display_time(taken)
            );
        }
        let here = ledger.split_moved_away(rows.clone())?.here;
        findings.extend(check_remote(&here, &listing));
        findings.extend(check_indexes(ledger, &here, &listing)?);
        findings.extend(check_chains(ledger, &here, &listing)?);
        match (request.read, archiver.local_directory().is_some()) {
            // A local directory's inventory (above) already read back and re-hashed each one.
            (_, true) => {}
            (true, false) => {
                announce_reading(prices, archiver, &here);
                findings.extend(check_by_reading(archiver, &here).await);
            }
            (false, false) => tracing::info!("{}", unread_note(archiver)),
        }
        if taken_now {
            fresh = Some(listing);
        }
    }
    Ok(VerifyReport {
        verified: rows.len(),
        findings,
        listing: fresh,
    })
}

/// What a check without `read` leaves unproven, said in its output.
fn unread_note(archiver: &dyn Archiver) -> String {
    let what = "the destination was asked what it holds (sizes, and the tree hashes recorded \
                when each archive was stored); no archive was read back";
    if archiver.capabilities().needs_restore {
        format!(
            "{what}: reading one needs a retrieval, and `restore --to DIR` checks every byte of \
             what it downloads"
        )
    } else {
        format!("{what}: `verify --remote --read` reads each one back and re-hashes it")
    }
}

/// Says what reading every archive back from a cloud destination costs before it starts:
/// data transfer out, and GLACIER_IR's per-GB read.
fn announce_reading(prices: &crate::costs::Prices, archiver: &dyn Archiver, rows: &[UploadRecord]) {
    use crate::costs::{dollars, PriceClass};
    let bytes: u64 = rows.iter().filter_map(|r| r.size).sum();
    let tier = glacier_backup_archiver::RestoreTier::Standard;
    let cost = archiver
        .storage_class()
        .as_deref()
        .and_then(PriceClass::of)
        .and_then(|class| prices.retrieval(class, tier, rows.len() as u64, bytes))
        .map_or_else(|| prices.transfer_out(bytes), |e| e.total());
    tracing::info!(
        "reading {} archive(s) back ({}) to re-hash them: about {} in reads and data transfer \
         out",
        rows.len(),
        crate::display_size(bytes),
        dollars(cost)
    );
}

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
    ledger: &Ledger,
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

/// Finds the directory uploads whose index is missing from `listing` (or was never stored):
/// a ledger rebuilt from the destination would not know what they hold.
pub fn check_indexes(
    ledger: &Ledger,
    rows: &[UploadRecord],
    listing: &Listing,
) -> Result<Vec<Finding>, LedgerError> {
    let mut findings = Vec::new();
    for row in rows {
        let listed_after = |row: &UploadRecord| {
            let stored = row.stored_at();
            listing
                .taken_at
                .zip(stored)
                .is_some_and(|(taken, stored)| stored > taken)
        };
        // Only the index's id: the catalogs themselves are not loaded.
        let Some(index_id) = ledger.catalog_index(&row.archive_id)? else {
            continue;
        };
        let problem = match &index_id {
            None => "has no index at the destination (it could not be stored at backup)".into(),
            Some(id) if listing.indexes.iter().any(|i| i.archive_id == *id) => continue,
            Some(_) if listed_after(row) => continue,
            Some(id) => format!("its index {id} is missing from the destination"),
        };
        findings.push(Finding {
            path: row.path.clone(),
            problem: format!(
                "archive {} {problem}; a ledger rebuilt from the destination would know it only \
                 as a whole (back it up again to write a new one)",
                row.archive_id
            ),
        });
    }
    Ok(findings)
}

/// The broken chains among the latest uploads of every path here (not moved away), as
/// `listing` shows the destination: what `inventory` reports beside its rows.
pub fn broken_chains(ledger: &Ledger, listing: &Listing) -> Result<Vec<Finding>, LedgerError> {
    let here = ledger.split_moved_away(latest_uploads(ledger, &[])?)?.here;
    check_chains(ledger, &here, listing)
}

/// Finds the increments whose chain is broken: an earlier upload of it missing from the ledger,
/// or its archive missing from `listing` or different there. Such a chain no longer restores
/// as of its later uploads; the next backup of its directory starts a new full once an
/// inventory in the ledger (`inventory`'s, or `verify --remote`'s listing) shows the loss.
pub fn check_chains(
    ledger: &Ledger,
    rows: &[UploadRecord],
    listing: &Listing,
) -> Result<Vec<Finding>, LedgerError> {
    let mut findings = Vec::new();
    for row in rows {
        if ledger.catalog_base(&row.archive_id)?.flatten().is_none() {
            continue;
        }
        let finding = |problem: String| Finding {
            path: row.path.clone(),
            problem: format!(
                "the chain of increments ending at archive {} is broken: {problem}; it no \
                 longer restores as of its later uploads, and the next backup starts a new full",
                row.archive_id
            ),
        };
        let chain = match crate::chain::Chain::ending_at(ledger, row) {
            Ok(Some(chain)) => chain,
            Ok(None) => continue,
            Err(crate::chain::ChainError::Ledger(e)) => return Err(e),
            Err(broken) => {
                findings.push(finding(broken.to_string()));
                continue;
            }
        };
        let earlier: Vec<UploadRecord> = chain.uploads[..chain.uploads.len() - 1]
            .iter()
            .map(|(upload, _)| upload.clone())
            .collect();
        for lost in check_remote(&earlier, listing) {
            findings.push(finding(lost.problem));
        }
    }
    Ok(findings)
}

/// Reads every archive back from the destination and compares its size and tree hash with the
/// row: what a listing cannot prove (S3 reports the size and the tag written at upload, not
/// the bytes now held). For destinations that read at once; a cold one's reads fail as not
/// ready.
pub async fn check_by_reading(archiver: &dyn Archiver, rows: &[UploadRecord]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for row in rows {
        let finding = |problem: String| Finding {
            path: row.path.clone(),
            problem,
        };
        let Some(archive) = row.archive() else {
            findings.push(finding(format!(
                "archive {}: the ledger has no size or tree hash to check it against",
                row.archive_id
            )));
            continue;
        };
        match read_and_hash(archiver, &archive).await {
            Ok((size, tree_hash)) if size == archive.size && tree_hash == archive.tree_hash => {}
            Ok((size, tree_hash)) => findings.push(finding(format!(
                "archive {} read back differs from the ledger: {size} bytes with tree hash \
                 {}, recorded {} bytes with {}",
                row.archive_id,
                tree_hash.to_hex(),
                archive.size,
                archive.tree_hash.to_hex()
            ))),
            // The backend checks the whole read itself, where it can (S3 against the tree
            // hash it was given).
            Err(e @ glacier_backup_archiver::Error::Integrity { .. }) => {
                findings.push(finding(format!(
                    "archive {} read back differs from the ledger: {e}",
                    row.archive_id
                )))
            }
            Err(e) => findings.push(finding(format!(
                "archive {} could not be read back: {}",
                row.archive_id,
                crate::error_chain(&e)
            ))),
        }
    }
    findings
}

async fn read_and_hash(
    archiver: &dyn Archiver,
    archive: &glacier_backup_archiver::ArchiveRef,
) -> Result<(u64, glacier_backup_archiver::TreeHash), glacier_backup_archiver::Error> {
    let mut body = archiver.get(archive, None).await?;
    let mut hasher = TreeHasher::new();
    while let Some(chunk) = body.next().await {
        hasher.update(&chunk?);
    }
    Ok((hasher.len(), hasher.finish()))
}
