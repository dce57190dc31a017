//! Candidates side by side through the library: how many at once, a multipart archive alone,
//! a stopped run, and rows of a backend that makes archives durable in batches.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use glacier_backup::archiver::{
    ArchiveMeta, ArchiveRef, Archiver, ByteRange, ByteStream, Capabilities, Error, Listing,
    MemoryArchiver, PartStream, PutOptions, Result, SourceKind,
};
use glacier_backup::backup::{run_backup, RunOptions};
use glacier_backup::ledger::Ledger;
use glacier_backup::resolve::Planned;
use glacier_backup_local::LocalArchiver;

use crate::support::sandbox::Sandbox;

/// Wraps an archiver to watch the engine: uploads under way at once, whether a multipart one
/// shared the budget, which puts finished, and what the ledger held at each `sync`.
#[derive(Debug)]
struct Gauge {
    inner: Box<dyn Archiver>,
    part_size: u64,
    /// Each put waits this long first, so that uploads started together overlap.
    put_delay: Duration,
    /// The put of this source never finishes.
    hang: Option<PathBuf>,
    hanging: AtomicBool,
    fail_sync: bool,
    /// `sync` names the batch, then never returns: a run killed before recording it.
    die_after_sync: bool,
    /// The ledger file, read at each `sync`.
    ledger: Option<PathBuf>,
    now: AtomicUsize,
    most: AtomicUsize,
    multipart_running: AtomicBool,
    multipart_shared: AtomicBool,
    done: Mutex<Vec<PathBuf>>,
    /// (rows in the ledger file, puts finished) at each sync.
    syncs: Mutex<Vec<(usize, usize)>>,
    /// With `list_at_sync`, the destination's listing just before each sync: what an
    /// inventory running beside the backup may see.
    list_at_sync: bool,
    listings: Mutex<Vec<Listing>>,
}

impl Gauge {
    fn new(inner: impl Archiver + 'static) -> Self {
        Gauge {
            inner: Box::new(inner),
            part_size: 1 << 20,
            put_delay: Duration::from_millis(200),
            hang: None,
            hanging: AtomicBool::new(false),
            fail_sync: false,
            die_after_sync: false,
            ledger: None,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            multipart_running: AtomicBool::new(false),
            multipart_shared: AtomicBool::new(false),
            done: Mutex::new(Vec::new()),
            syncs: Mutex::new(Vec::new()),
            list_at_sync: false,
            listings: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl Archiver for Gauge {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn target(&self) -> String {
        self.inner.target()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn part_size(&self, _size_hint: u64) -> u64 {
        self.part_size
    }
    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }
    async fn put(
        &self,
        meta: &ArchiveMeta,
        options: &PutOptions,
        parts: PartStream,
    ) -> Result<ArchiveRef> {
        let multipart = meta.size_hint > self.part_size;
        let at_once = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(at_once, Ordering::SeqCst);
        if (multipart && at_once > 1) || self.multipart_running.load(Ordering::SeqCst) {
            self.multipart_shared.store(true, Ordering::SeqCst);
        }
        if multipart {
            self.multipart_running.store(true, Ordering::SeqCst);
        }
        if self.hang.as_deref() == Some(meta.source_path.as_path()) {
            self.hanging.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.put_delay).await;
        let stored = self.inner.put(meta, options, parts).await;
        if multipart {
            self.multipart_running.store(false, Ordering::SeqCst);
        }
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.done.lock().unwrap().push(meta.source_path.clone());
        stored
    }
    async fn sync(&self, archive_ids: &[String]) -> Result<()> {
        let rows = self.ledger.as_ref().map_or(0, |file| rows_in(file));
        let done = self.done.lock().unwrap().len();
        self.syncs.lock().unwrap().push((rows, done));
        if self.list_at_sync {
            let listing = self.inner.list().await?;
            self.listings.lock().unwrap().push(listing);
        }
        if self.fail_sync {
            return Err(Error::io(
                "local",
                "cannot sync directory /archives",
                std::io::Error::other("the disk went away"),
            ));
        }
        self.inner.sync(archive_ids).await?;
        if self.die_after_sync {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
    async fn delete(&self, archive: &ArchiveRef) -> Result<()> {
        self.inner.delete(archive).await
    }
    async fn restore_state(
        &self,
        archive: &ArchiveRef,
        request: Option<&str>,
    ) -> Result<glacier_backup::archiver::RestoreState> {
        self.inner.restore_state(archive, request).await
    }
    async fn get(&self, archive: &ArchiveRef, range: Option<ByteRange>) -> Result<ByteStream> {
        self.inner.get(archive, range).await
    }
    async fn list(&self) -> Result<Listing> {
        self.inner.list().await
    }
}

fn rows_in(ledger: &Path) -> usize {
    Ledger::reader(ledger).unwrap().uploads().unwrap().len()
}

fn files(sb: &Sandbox, names: &[(&str, usize)]) -> Vec<Planned> {
    names
        .iter()
        .map(|(name, len)| {
            let path = sb.path(name);
            std::fs::write(&path, vec![b'x'; *len]).unwrap();
            Planned {
                candidate: Arc::new(glacier_backup::candidate::PathCandidate::new(
                    path,
                    SourceKind::File,
                )),
                upload_if_changed: false,
                chain: None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn small_candidates_overlap_up_to_the_limit_and_a_multipart_one_goes_alone() {
    let sb = Sandbox::new();
    let mut names: Vec<(String, usize)> = (0..6).map(|i| (format!("a{i}"), 100)).collect();
    names.push(("big".into(), 3 << 20));
    names.extend((0..6).map(|i| (format!("c{i}"), 100)));
    let names: Vec<(&str, usize)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    let items = files(&sb, &names);
    let archiver = Gauge::new(MemoryArchiver::new());
    let mut ledger = Ledger::in_memory().unwrap();
    let options = RunOptions {
        parallel_uploads: 4,
        ..RunOptions::default()
    };
    let report = run_backup(&items, &mut ledger, &archiver, &options)
        .await
        .unwrap();

    assert_eq!(report.uploaded.len(), 13, "{:?}", report.failed);
    let most = archiver.most.load(Ordering::SeqCst);
    assert!((2..=4).contains(&most), "{most} uploads at once");
    assert!(!archiver.multipart_shared.load(Ordering::SeqCst));
    // The report lists uploads in plan order, whatever order they finished in.
    let reported: Vec<_> = report.uploaded.iter().map(|u| u.path.clone()).collect();
    let planned: Vec<_> = items
        .iter()
        .map(|p| p.candidate.source_path().to_path_buf())
        .collect();
    assert_eq!(reported, planned);
    // One row per path, each the archive that went up for it.
    let rows = ledger.uploads().unwrap();
    assert_eq!(rows.len(), 13);
    for item in &items {
        let path = item.candidate.source_path();
        let row = ledger.latest_upload(path).unwrap().unwrap();
        let expected = std::fs::metadata(path).unwrap().len();
        assert_eq!(row.size, Some(expected), "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_run_records_the_uploads_that_finished_and_nothing_else() {
    let sb = Sandbox::new();
    let items = files(&sb, &[("a", 10), ("b", 20), ("c", 30), ("d", 40)]);
    let local = LocalArchiver::new(sb.path("archives"), true);
    local.check().await.unwrap();
    let mut archiver = Gauge::new(local);
    archiver.put_delay = Duration::ZERO;
    archiver.hang = Some(sb.path("b"));
    let ledger_file = sb.path("ledger.sqlite3");
    let mut ledger = Ledger::open(&ledger_file).unwrap();
    let options = RunOptions {
        parallel_uploads: 2,
        ..RunOptions::default()
    };
    let stop = options.stop.clone();
    let gauge = &archiver;
    let (report, ()) = tokio::join!(run_backup(&items, &mut ledger, gauge, &options), async {
        // Stop once the others are through and only b is left, hanging.
        while !(gauge.hanging.load(Ordering::SeqCst) && gauge.done.lock().unwrap().len() == 3) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
    });
    let report = report.unwrap();
    assert!(report.stopped);
    let uploaded: Vec<_> = report.uploaded.iter().map(|u| u.path.clone()).collect();
    assert_eq!(uploaded, [sb.path("a"), sb.path("c"), sb.path("d")]);
    // The local backend batches its rows: the stop committed them, after a sync.
    let mut rows: Vec<_> = ledger
        .uploads()
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    rows.sort();
    assert_eq!(rows, [sb.path("a"), sb.path("c"), sb.path("d")]);
    assert_eq!(*archiver.syncs.lock().unwrap(), [(0, 3)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_of_a_batching_backend_wait_for_its_sync_and_a_failed_sync_records_nothing() {
    let sb = Sandbox::new();
    let ledger_file = sb.path("ledger.sqlite3");
    let local = LocalArchiver::new(sb.path("archives"), true);
    local.check().await.unwrap();
    let mut archiver = Gauge::new(local);
    archiver.put_delay = Duration::ZERO;
    archiver.ledger = Some(ledger_file.clone());
    let mut ledger = Ledger::open(&ledger_file).unwrap();
    let first = files(&sb, &[("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]);
    let report = run_backup(&first, &mut ledger, &archiver, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.uploaded.len(), 5);
    // When the archives were made durable, none of their rows was in the ledger yet.
    assert_eq!(*archiver.syncs.lock().unwrap(), [(0, 5)]);
    assert_eq!(rows_in(&ledger_file), 5);

    archiver.fail_sync = true;
    let more = files(&sb, &[("f", 6), ("g", 7)]);
    let report = run_backup(&more, &mut ledger, &archiver, &RunOptions::default())
        .await
        .unwrap();
    assert!(report.uploaded.is_empty());
    let mut failed: Vec<_> = report.failed.iter().map(|(p, _)| p.clone()).collect();
    failed.sort();
    assert_eq!(failed, [sb.path("f"), sb.path("g")]);
    assert!(
        report.failed[0].1.contains("the disk went away"),
        "{}",
        report.failed[0].1
    );
    assert_eq!(rows_in(&ledger_file), 5);
    // Not recorded, so the next run uploads them again.
    archiver.fail_sync = false;
    let report = run_backup(&more, &mut ledger, &archiver, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.uploaded.len(), 2);
    assert_eq!(rows_in(&ledger_file), 7);
}

/// An inventory that lists the destination while a backup's archives are written but not yet
/// named (a batching backend names them in `sync`) finds their rows newer than its listing:
/// "not listed yet", never "missing".
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_taken_before_a_batch_is_named_finds_its_rows_too_recent_not_missing() {
    let sb = Sandbox::new();
    let local = LocalArchiver::new(sb.path("archives"), true);
    local.check().await.unwrap();
    let mut archiver = Gauge::new(local);
    archiver.put_delay = Duration::ZERO;
    archiver.list_at_sync = true;
    let mut ledger = Ledger::in_memory().unwrap();
    let items = files(&sb, &[("a", 1), ("b", 2)]);
    let report = run_backup(&items, &mut ledger, &archiver, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.uploaded.len(), 2);
    let listing = archiver.listings.lock().unwrap().remove(0);
    assert!(
        listing.archives.is_empty(),
        "named before sync: {listing:?}"
    );
    let reconciled = glacier_backup::inventory::reconcile_ledger(&ledger, &listing).unwrap();
    assert!(reconciled.missing.is_empty(), "{reconciled:?}");
    assert_eq!(reconciled.too_recent.len(), 2);
}

/// A run killed after the local backend named a batch's archives and before the ledger recorded
/// them: the next run removes those archives (they are this tool's, and nothing records them)
/// and uploads their sources again, so the destination holds exactly one archive per row.
#[tokio::test(flavor = "multi_thread")]
async fn archives_named_by_a_run_killed_before_recording_them_are_removed_by_the_next() {
    let sb = Sandbox::new();
    let root = sb.path("archives");
    let local = LocalArchiver::new(&root, true);
    local.check().await.unwrap();
    let mut archiver = Gauge::new(local);
    archiver.put_delay = Duration::ZERO;
    archiver.die_after_sync = true;
    let ledger_file = sb.path("ledger.sqlite3");
    let items = files(&sb, &[("a", 10), ("b", 20), ("c", 30)]);
    {
        let mut ledger = Ledger::open(&ledger_file).unwrap();
        let options = RunOptions::default();
        let run = run_backup(&items, &mut ledger, &archiver, &options);
        // The run is dropped where it waits, as a kill -9 would leave it.
        let killed = tokio::time::timeout(Duration::from_secs(2), run).await;
        assert!(killed.is_err(), "the run was to hang after naming");
    }
    assert_eq!(rows_in(&ledger_file), 0);
    let named = LocalArchiver::new(&root, false).list().await.unwrap();
    assert_eq!(named.archives.len(), 3, "the batch was named: {named:?}");

    let local = LocalArchiver::new(&root, false);
    local.check().await.unwrap();
    let mut ledger = Ledger::open(&ledger_file).unwrap();
    let report = run_backup(&items, &mut ledger, &local, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.uploaded.len(), 3, "{:?}", report.failed);
    let listing = local.list().await.unwrap();
    let mut stored: Vec<_> = listing
        .archives
        .iter()
        .map(|a| a.archive_id.clone())
        .collect();
    stored.sort();
    let mut recorded: Vec<_> = ledger
        .uploads()
        .unwrap()
        .into_iter()
        .map(|r| r.archive_id)
        .collect();
    recorded.sort();
    assert_eq!(stored, recorded, "one archive per row, no orphan");
    assert!(ledger.unrecorded_names().unwrap().is_empty());
}
