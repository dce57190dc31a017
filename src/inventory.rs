//! Inventories: what the destination holds, compared with the ledger, and the ledger rebuilt
//! from it when it was lost.

use std::collections::{HashMap, HashSet};

use glacier_backup_archiver::{
    Archiver, Error as ArchiverError, InventoryState, ListedArchive, Listing,
};
use time::OffsetDateTime;

use crate::candidate::archive_name;
use crate::ledger::{Ledger, LedgerError, Retrieval, UploadRecord};

/// What asking the destination for its inventory gave.
#[derive(Debug)]
pub enum Fetched {
    /// The listing.
    Ready(Listing),
    /// A job is under way (recorded in the ledger); a later run picks it up.
    Pending {
        /// The job.
        request_id: String,
    },
}

/// Why no inventory could be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A dry run of a job-based backend with no inventory fetched before.
    #[error(
        "no inventory of this vault was fetched yet, and a dry run does not start an inventory \
         job: run `glacier-backup inventory` without -d"
    )]
    NoneYet,
    /// The destination failed.
    #[error(transparent)]
    Archiver(#[from] ArchiverError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The destination's inventory: at once from a listable backend, else through a job (recorded
/// in the ledger, never asked twice, picked up by later runs), polled until `wait` runs out.
/// A dry run starts no job: it gives the last inventory the ledger kept.
pub async fn fetch(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    dry_run: bool,
    wait: Option<std::time::Duration>,
    progress: &crate::progress::SharedProgress,
) -> Result<Fetched, FetchError> {
    let known = ledger.retrieval(None)?.and_then(|r| r.request_id);
    if dry_run && !archiver.capabilities().listable {
        return ledger
            .last_inventory()?
            .map(Fetched::Ready)
            .ok_or(FetchError::NoneYet);
    }
    let request_id = match archiver.inventory(known.as_deref()).await? {
        InventoryState::Ready(listing) => return Ok(Fetched::Ready(listing)),
        InventoryState::Pending { request_id } => request_id,
    };
    if known.as_deref() != Some(request_id.as_str()) && !dry_run {
        ledger.record_retrieval(&Retrieval {
            archive_id: None,
            request_id: Some(request_id.clone()),
            tier: "standard".into(),
            requested_at: OffsetDateTime::now_utc(),
        })?;
    }
    tracing::info!(
        "inventory job {request_id} is under way (a vault inventory takes about 4 hours)"
    );
    if let Some(limit) = wait {
        let what = format!("inventory job {request_id} under way");
        let report = |pause| progress.waiting(&what, pause);
        let ready = crate::poll::with_backoff(limit, report, || async {
            match archiver.inventory(Some(&request_id)).await? {
                InventoryState::Ready(listing) => Ok::<_, ArchiverError>(Some(listing)),
                InventoryState::Pending { .. } => Ok(None),
            }
        })
        .await?;
        if let Some(listing) = ready {
            return Ok(Fetched::Ready(listing));
        }
    }
    Ok(Fetched::Pending { request_id })
}

/// The ledger and an inventory side by side.
#[derive(Debug, Default, Clone)]
pub struct Reconciliation {
    /// Archives recorded in the ledger, with the same size and tree hash (where both are known).
    pub matched: usize,
    /// Archives the destination holds and the ledger does not know.
    pub unrecorded: Vec<ListedArchive>,
    /// Ledger rows whose archive the destination does not list.
    pub missing: Vec<UploadRecord>,
    /// Ledger rows stored after the inventory was taken: not in it yet, for a good reason.
    pub too_recent: Vec<UploadRecord>,
    /// Ledger rows whose archive is listed with another size or tree hash: what differs.
    pub mismatched: Vec<(UploadRecord, String)>,
    /// Listed archives `prune` deleted since (a vault's inventory lags a day): neither
    /// unrecorded nor brought back by a rebuild.
    pub pruned: usize,
}

impl Reconciliation {
    /// Whether anything recorded is missing or different: the ledger promises a backup the
    /// destination may not have.
    pub fn has_problems(&self) -> bool {
        !self.missing.is_empty() || !self.mismatched.is_empty()
    }
}

/// Compares every ledger row with the listing.
pub fn reconcile(rows: &[UploadRecord], listing: &Listing) -> Reconciliation {
    let mut reconciler = Reconciler::new(listing);
    for row in rows {
        reconciler.add(row.clone());
    }
    reconciler.finish()
}

/// Compares every row of `ledger` with the listing, a page of rows at a time: memory grows
/// with the listing and the problems found, not with the ledger.
pub fn reconcile_ledger(ledger: &Ledger, listing: &Listing) -> Result<Reconciliation, LedgerError> {
    let mut reconciler = Reconciler::new(listing);
    ledger.each_upload(&mut |row| {
        reconciler.add(row);
        true
    })?;
    let pruned = ledger.pruned()?;
    let mut report = reconciler.finish();
    let listed = report.unrecorded.len();
    report
        .unrecorded
        .retain(|archive| !pruned.contains_key(&archive.archive_id));
    report.pruned = listed - report.unrecorded.len();
    Ok(report)
}

/// A reconciliation under way: rows are added one by one.
struct Reconciler<'a> {
    listing: &'a Listing,
    listed: HashMap<&'a str, &'a ListedArchive>,
    /// Listed archives some row recorded.
    recorded: HashSet<&'a str>,
    report: Reconciliation,
}

impl<'a> Reconciler<'a> {
    fn new(listing: &'a Listing) -> Self {
        Reconciler {
            listing,
            listed: listing
                .archives
                .iter()
                .map(|a| (a.archive_id.as_str(), a))
                .collect(),
            recorded: HashSet::new(),
            report: Reconciliation::default(),
        }
    }

    fn add(&mut self, row: UploadRecord) {
        let Some((&id, archive)) = self.listed.get_key_value(row.archive_id.as_str()) else {
            let after_listing = match (self.listing.taken_at, row.stored_at()) {
                (Some(taken), Some(stored)) => stored >= taken,
                _ => false,
            };
            if after_listing {
                self.report.too_recent.push(row);
            } else {
                self.report.missing.push(row);
            }
            return;
        };
        self.recorded.insert(id);
        let mut differences = Vec::new();
        if let Some(size) = row.size.filter(|&s| s != archive.size) {
            differences.push(format!("size {} (recorded {size})", archive.size));
        }
        if let (Some(recorded), Some(listed)) = (row.tree_hash, archive.tree_hash) {
            if recorded != listed {
                differences.push(format!("tree hash {listed} (recorded {recorded})"));
            }
        }
        if differences.is_empty() {
            self.report.matched += 1;
        } else {
            self.report.mismatched.push((row, differences.join(", ")));
        }
    }

    fn finish(mut self) -> Reconciliation {
        self.report.unrecorded = self
            .listing
            .archives
            .iter()
            .filter(|a| !self.recorded.contains(a.archive_id.as_str()))
            .cloned()
            .collect();
        self.report
    }
}

/// The backend a ledger is rebuilt for: its name, and whether its archives are whole only with
/// their index.
#[derive(Debug, Clone, Copy)]
pub struct Capable<'a> {
    /// Backend name, recorded in each row.
    pub name: &'a str,
    /// [`Capabilities::needs_index`](glacier_backup_archiver::Capabilities::needs_index).
    pub needs_index: bool,
}

impl<'a> Capable<'a> {
    /// `archiver`'s.
    pub fn of(archiver: &'a dyn glacier_backup_archiver::Archiver) -> Self {
        Capable {
            name: archiver.name(),
            needs_index: archiver.capabilities().needs_index,
        }
    }

    /// A backend that keeps archives whole without an index.
    pub fn named(name: &'a str) -> Self {
        Capable {
            name,
            needs_index: false,
        }
    }
}

/// What rebuilding the ledger did.
#[derive(Debug, Default, Clone)]
pub struct Rebuilt {
    /// Rows added, oldest first.
    pub added: Vec<UploadRecord>,
    /// Rows the Python tool wrote, now with the size and tree hash the destination gave, so
    /// their archives can be restored with a check.
    pub completed: usize,
    /// Archives of ours not added because the ledger already has a newer upload of their path
    /// (adding them would make an old archive look like the latest).
    pub older: Vec<ListedArchive>,
    /// Archives that carry no origin of ours (the Python tool's plain names, other tools'):
    /// listed, never added.
    pub foreign: Vec<ListedArchive>,
    /// Archives without their index on a destination that keeps archives whole only with it
    /// ([`Capabilities::needs_index`](glacier_backup_archiver::Capabilities::needs_index)):
    /// left by a run stopped between the two, never recorded, and deleted by the next backup
    /// of their path.
    pub unindexed: Vec<ListedArchive>,
}

/// Adds a ledger row for every archive of ours the ledger does not know, so a machine that lost
/// its ledger neither uploads unchanged sources again nor loses track of what it can restore;
/// and completes rows the Python tool wrote with the size and tree hash `listing` gives.
pub fn rebuild(
    ledger: &mut Ledger,
    backend: &Capable,
    listing: &Listing,
    unrecorded: &[ListedArchive],
) -> Result<Rebuilt, LedgerError> {
    let indexed: HashSet<&str> = listing
        .indexes
        .iter()
        .filter_map(|index| index.index_of.as_deref())
        .collect();
    let mut report = Rebuilt::default();
    for archive in &listing.archives {
        if let Some(tree_hash) = archive.tree_hash {
            report.completed +=
                ledger.complete_upload(&archive.archive_id, archive.size, tree_hash)?;
        }
    }
    let mut ours: Vec<(OffsetDateTime, &ListedArchive)> = Vec::new();
    for archive in unrecorded {
        match &archive.origin {
            Some(_) if backend.needs_index && !indexed.contains(archive.archive_id.as_str()) => {
                report.unindexed.push(archive.clone())
            }
            Some(origin) => {
                let at = origin
                    .started_at
                    .or(archive.created_at)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                ours.push((at, archive));
            }
            None => report.foreign.push(archive.clone()),
        }
    }
    // Oldest first, so that each path's newest archive ends up as its latest row.
    ours.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.archive_id.cmp(&b.1.archive_id)));
    for (at, archive) in ours {
        let origin = archive
            .origin
            .as_ref()
            .expect("kept only archives with an origin");
        // Start times against start times: an archive's stored time can be much later than
        // its start (a migrated archive's is the day it was copied).
        let newer_known = ledger
            .latest_upload(&origin.source_path)?
            .and_then(|row| row.started_at.or_else(|| row.stored_at()))
            .is_some_and(|known| known > at);
        if newer_known {
            report.older.push(archive.clone());
            continue;
        }
        let row = row_of(archive, origin, backend.name);
        ledger.record_upload(&row)?;
        report.added.push(row);
    }
    Ok(report)
}

/// The ledger row for an archive this tool stored, as its origin (Glacier description, S3
/// metadata, local key) and the listing tell it.
pub fn row_of(
    archive: &ListedArchive,
    origin: &glacier_backup_archiver::origin::Origin,
    backend: &str,
) -> UploadRecord {
    let name = if origin.name.is_empty() {
        archive_name(&origin.source_path, origin.kind)
    } else {
        origin.name.clone()
    };
    UploadRecord {
        path: origin.source_path.clone(),
        name,
        archive_id: archive.archive_id.clone(),
        description: archive.description.clone(),
        backend: backend.to_owned(),
        kind: Some(origin.kind),
        size: Some(archive.size),
        tree_hash: archive.tree_hash,
        fingerprint: origin.fingerprint.clone(),
        started_at: origin.started_at,
        uploaded_at: archive.created_at.or(origin.started_at),
        encoding: origin.encoding.clone(),
        plain_size: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use glacier_backup_archiver::origin::Origin;
    use glacier_backup_archiver::SourceKind;
    use std::path::PathBuf;
    use time::macros::datetime;

    fn ours(id: &str, path: &str, at: OffsetDateTime) -> ListedArchive {
        ListedArchive {
            origin: Some(Origin {
                name: String::new(),
                source_path: PathBuf::from(path),
                kind: SourceKind::Directory,
                fingerprint: Some(format!("fp-{id}")),
                started_at: Some(at),
                encoding: Default::default(),
            }),
            created_at: Some(at + time::Duration::minutes(1)),
            ..ListedArchive::new(id, 100)
        }
    }

    #[test]
    fn rebuild_keeps_each_paths_newest_archive_as_its_latest() {
        let mut ledger = Ledger::in_memory().unwrap();
        let listing = [
            ours("new", "/data/photos", datetime!(2026-11-20 10:00 UTC)),
            ours("old", "/data/photos", datetime!(2026-01-01 10:00 UTC)),
            ours("other", "/data/my docs", datetime!(2026-05-01 10:00 UTC)),
            ListedArchive {
                description: Some("backup_20210320.tar".into()),
                ..ListedArchive::new("python-tool", 10)
            },
        ];
        let report = rebuild(
            &mut ledger,
            &Capable::named("glacier"),
            &Listing::default(),
            &listing,
        )
        .unwrap();
        assert_eq!(report.added.len(), 3);
        assert_eq!(report.foreign.len(), 1);
        let latest = ledger
            .latest_upload(std::path::Path::new("/data/photos"))
            .unwrap()
            .unwrap();
        assert_eq!(latest.archive_id, "new");
        assert_eq!(latest.name, "photos.tar");
        assert_eq!(latest.fingerprint.as_deref(), Some("fp-new"));
        assert_eq!(latest.size, Some(100));
        assert_eq!(latest.kind, Some(SourceKind::Directory));

        // A second inventory with an archive older than what the ledger has adds nothing.
        let older = [ours(
            "older",
            "/data/photos",
            datetime!(2025-01-01 10:00 UTC),
        )];
        let report = rebuild(
            &mut ledger,
            &Capable::named("glacier"),
            &Listing::default(),
            &older,
        )
        .unwrap();
        assert!(report.added.is_empty());
        assert_eq!(report.older.len(), 1);
    }

    /// Uploads of one path stored the same day long after they started (moved by `migrate`):
    /// both are added, and the later start is the latest.
    #[test]
    fn rebuild_orders_uploads_by_their_start_not_by_when_they_were_stored() {
        let mut ledger = Ledger::in_memory().unwrap();
        let copied = datetime!(2026-11-30 10:00 UTC);
        let moved = |id, at| ListedArchive {
            created_at: Some(copied),
            ..ours(id, "/data/log.txt", at)
        };
        let listing = [
            moved("first", datetime!(2026-03-01 10:00 UTC)),
            moved("second", datetime!(2026-04-01 10:00 UTC)),
        ];
        let report = rebuild(
            &mut ledger,
            &Capable::named("s3"),
            &Listing::default(),
            &listing,
        )
        .unwrap();
        assert_eq!(report.added.len(), 2, "{:?}", report.older);
        let latest = ledger
            .latest_upload(std::path::Path::new("/data/log.txt"))
            .unwrap()
            .unwrap();
        assert_eq!(latest.archive_id, "second");
    }

    #[test]
    fn reconcile_sorts_rows_into_matched_missing_recent_and_mismatched() {
        let mut ledger = Ledger::in_memory().unwrap();
        let archives = [
            ours("a", "/a", datetime!(2026-01-01 0:00 UTC)),
            ours("b", "/b", datetime!(2026-01-02 0:00 UTC)),
            ours("c", "/c", datetime!(2026-01-03 0:00 UTC)),
            ours("d", "/d", datetime!(2026-03-01 0:00 UTC)),
        ];
        rebuild(
            &mut ledger,
            &Capable::named("glacier"),
            &Listing::default(),
            &archives,
        )
        .unwrap();
        let rows = ledger.uploads().unwrap();
        let listing = Listing {
            archives: vec![
                archives[0].clone(),
                ListedArchive {
                    size: 99,
                    ..archives[1].clone()
                },
                ours("x", "/x", datetime!(2026-01-01 0:00 UTC)),
            ],
            taken_at: Some(datetime!(2026-02-01 0:00 UTC)),
            incomplete: Vec::new(),
            indexes: Vec::new(),
        };
        let report = reconcile(&rows, &listing);
        // Read from the ledger a page at a time, the same report.
        let streamed = reconcile_ledger(&ledger, &listing).unwrap();
        assert_eq!(format!("{streamed:?}"), format!("{report:?}"));
        assert_eq!(report.matched, 1);
        assert_eq!(report.mismatched.len(), 1);
        assert!(report.mismatched[0].1.contains("size 99 (recorded 100)"));
        let ids = |rows: &[UploadRecord]| {
            rows.iter()
                .map(|r| r.archive_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&report.missing), ["c"]);
        assert_eq!(ids(&report.too_recent), ["d"]);
        assert_eq!(report.unrecorded[0].archive_id, "x");
        assert!(report.has_problems());
    }
}
