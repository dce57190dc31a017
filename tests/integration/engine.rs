//! The run engine through the library: decisions, failure isolation, ledger rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use glacier_backup::archiver::{Archiver, MemoryArchiver, SourceKind};
use glacier_backup::backup::{run_backup, Decision, RunOptions};
use glacier_backup::candidate::SourceError;
use glacier_backup::candidate::{ArchiveSink, Candidate, Fingerprint, PathCandidate, Scan};
use glacier_backup::ledger::Ledger;
use glacier_backup::resolve::Planned;

use crate::support::sandbox::Sandbox;

fn planned(path: &Path, kind: SourceKind, upload_if_changed: bool) -> Planned {
    Planned {
        candidate: Arc::new(PathCandidate::new(path.to_path_buf(), kind)),
        upload_if_changed,
        chain: None,
    }
}

/// A source that writes some bytes and then reports that it changed underneath.
#[derive(Debug)]
struct ChangesMidway(PathBuf);

impl Candidate for ChangesMidway {
    fn source_path(&self) -> &Path {
        &self.0
    }
    fn kind(&self) -> SourceKind {
        SourceKind::File
    }
    fn scan(&self) -> Result<Scan, SourceError> {
        Ok(Scan {
            fingerprint: Fingerprint {
                entries: 1,
                bytes: 20 << 20,
                newest_mtime_ns: 0,
                digest: [0; 32],
            },
            size_estimate: 20 << 20,
        })
    }
    fn write_archive(&self, out: &mut dyn ArchiveSink) -> Result<(), SourceError> {
        out.write_all(&vec![7u8; 20 << 20]).expect("sink accepts");
        Err(SourceError::Changed {
            path: self.0.clone(),
            what: "grew",
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_candidate_is_reported_and_the_others_still_go_up() {
    let sb = Sandbox::new();
    let good = sb.path("good.txt");
    std::fs::write(&good, b"keep me").unwrap();
    let bad = sb.path("bad.bin");
    let items = vec![
        Planned {
            candidate: Arc::new(ChangesMidway(bad.clone())),
            upload_if_changed: false,
            chain: None,
        },
        planned(&good, SourceKind::File, false),
    ];
    let archiver = MemoryArchiver::new();
    let mut ledger = Ledger::in_memory().unwrap();
    let report = run_backup(&items, &mut ledger, &archiver, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].1.contains("grew while being archived"),
        "{:?}",
        report.failed
    );
    assert_eq!(report.uploaded.len(), 1);
    let rows = ledger.uploads().unwrap();
    assert_eq!(rows.len(), 1, "only the good file is recorded");
    assert_eq!(rows[0].path, good);
    let listed = archiver.list().await.unwrap().archives;
    assert_eq!(listed.len(), 1, "the failed archive left nothing behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_once_then_again_only_when_changed_and_asked() {
    let sb = Sandbox::new();
    let tree = sb.path("tree");
    std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
    std::fs::write(tree.join("a/b/c/deep.txt"), b"v1").unwrap();
    let archiver = MemoryArchiver::new();
    let mut ledger = Ledger::in_memory().unwrap();
    let once = [planned(&tree, SourceKind::Directory, false)];
    let tracked = [planned(&tree, SourceKind::Directory, true)];
    let options = RunOptions::default();

    let first = run_backup(&once, &mut ledger, &archiver, &options)
        .await
        .unwrap();
    assert_eq!(first.uploaded[0].decision, Decision::New);
    let again = run_backup(&tracked, &mut ledger, &archiver, &options)
        .await
        .unwrap();
    assert_eq!((again.uploaded.len(), again.up_to_date.len()), (0, 1));

    // An edit deep inside the tree; the top directory's own mtime does not change.
    let top_mtime = std::fs::metadata(&tree).unwrap().modified().unwrap();
    std::fs::write(tree.join("a/b/c/deep.txt"), b"v2 longer").unwrap();
    assert_eq!(
        std::fs::metadata(&tree).unwrap().modified().unwrap(),
        top_mtime
    );

    let without = run_backup(&once, &mut ledger, &archiver, &options)
        .await
        .unwrap();
    assert_eq!((without.uploaded.len(), without.up_to_date.len()), (0, 1));
    let with = run_backup(&tracked, &mut ledger, &archiver, &options)
        .await
        .unwrap();
    assert!(
        matches!(with.uploaded[0].decision, Decision::Changed { .. }),
        "{with:?}"
    );
    assert_eq!(ledger.uploads().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_uploads_stops_early_and_dry_run_records_nothing() {
    let sb = Sandbox::new();
    let items: Vec<_> = (0..3)
        .map(|i| {
            let p = sb.dir.path().join(format!("f{i}"));
            std::fs::write(&p, format!("{i}")).unwrap();
            planned(&p, SourceKind::File, false)
        })
        .collect();
    let archiver = MemoryArchiver::new();
    let mut ledger = Ledger::in_memory().unwrap();
    let dry = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let report = run_backup(&items, &mut ledger, &archiver, &dry)
        .await
        .unwrap();
    assert_eq!(report.uploaded.len(), 3);
    assert!(ledger.uploads().unwrap().is_empty());
    assert!(archiver.list().await.unwrap().archives.is_empty());

    let one = RunOptions {
        max_uploads: Some(1),
        ..RunOptions::default()
    };
    let report = run_backup(&items, &mut ledger, &archiver, &one)
        .await
        .unwrap();
    assert_eq!((report.uploaded.len(), report.deferred.len()), (1, 2));
    let report = run_backup(&items, &mut ledger, &archiver, &one)
        .await
        .unwrap();
    assert_eq!((report.uploaded.len(), report.up_to_date.len()), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_part_file_round_trips_with_its_tree_hash() {
    let sb = Sandbox::new();
    let file = sb.path("big.bin");
    let data: Vec<u8> = (0..(19u32 << 20) + 12345)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let archiver = MemoryArchiver::new();
    let mut ledger = Ledger::in_memory().unwrap();
    run_backup(
        &[planned(&file, SourceKind::File, false)],
        &mut ledger,
        &archiver,
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let row = &ledger.uploads().unwrap()[0];
    assert_eq!(row.size, Some(data.len() as u64));
    assert_eq!(
        row.tree_hash,
        Some(glacier_backup::archiver::treehash::tree_hash(&data))
    );
    let stored = glacier_backup::archiver::ArchiveRef {
        archive_id: row.archive_id.clone(),
        size: data.len() as u64,
        tree_hash: row.tree_hash.unwrap(),
        description: None,
    };
    let back = glacier_backup::archiver::conformance::read_back(&archiver, &stored).await;
    assert!(back == data);
}

/// The Python tool's own needs-upload cases, through `decide`.
#[test]
fn needs_upload_follows_the_python_tool() {
    use glacier_backup::backup::decide;
    let sb = Sandbox::new();
    let file = sb.path("file1");
    std::fs::write(&file, b"one").unwrap();
    let mut ledger = Ledger::in_memory().unwrap();
    let once = planned(&file, SourceKind::File, false);
    let tracked = planned(&file, SourceKind::File, true);

    assert_eq!(
        decide(&once, &ledger).unwrap().0,
        Decision::New,
        "unknown path"
    );

    let scan = once.candidate.scan().unwrap();
    let now = time::OffsetDateTime::now_utc();
    ledger
        .record_upload(&glacier_backup::ledger::UploadRecord {
            path: file.clone(),
            name: "file1".into(),
            archive_id: "id".into(),
            description: None,
            backend: "memory".into(),
            kind: Some(SourceKind::File),
            size: Some(3),
            tree_hash: None,
            fingerprint: Some(scan.fingerprint.to_string()),
            started_at: Some(now),
            uploaded_at: Some(now),
            encoding: Default::default(),
            plain_size: None,
        })
        .unwrap();
    assert!(matches!(
        decide(&once, &ledger).unwrap().0,
        Decision::UpToDate { .. }
    ));
    assert!(matches!(
        decide(&tracked, &ledger).unwrap().0,
        Decision::UpToDate { .. }
    ));

    std::fs::write(&file, b"two, longer").unwrap();
    assert!(matches!(
        decide(&once, &ledger).unwrap().0,
        Decision::UpToDate { .. }
    ));
    assert!(matches!(
        decide(&tracked, &ledger).unwrap().0,
        Decision::Changed { .. }
    ));
}

/// Records what a run reports to its progress display.
#[derive(Debug, Default)]
struct Recorder(
    std::sync::Mutex<Vec<String>>,
    Arc<std::sync::atomic::AtomicU64>,
);

struct RecordedItem(Arc<std::sync::atomic::AtomicU64>);

impl glacier_backup::progress::ItemProgress for RecordedItem {
    fn advance(&self, bytes: u64) {
        self.0.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
    }
}

impl glacier_backup::progress::Progress for Recorder {
    fn batch(&self, items: usize) {
        self.0.lock().unwrap().push(format!("batch {items}"));
    }
    fn item(&self, label: &str, bytes: u64) -> Box<dyn glacier_backup::progress::ItemProgress> {
        let name = label.rsplit('/').next().unwrap_or(label);
        self.0.lock().unwrap().push(format!("item {name} {bytes}"));
        Box::new(RecordedItem(self.1.clone()))
    }
    fn item_done(&self) {
        self.0.lock().unwrap().push("done".into());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_reports_each_candidate_and_every_byte_to_its_progress_display() {
    let sb = Sandbox::new();
    let mut items = Vec::new();
    for (name, len) in [("a", 3_000_000usize), ("b", 10), ("c", 0)] {
        let path = sb.path(name);
        std::fs::write(&path, vec![7u8; len]).unwrap();
        items.push(planned(&path, SourceKind::File, true));
    }
    let recorder = Arc::new(Recorder::default());
    // One at a time, so the order of events is known.
    let options = RunOptions {
        progress: Some(recorder.clone()),
        parallel_uploads: 1,
        ..RunOptions::default()
    };
    let archiver = MemoryArchiver::new();
    let mut ledger = Ledger::in_memory().unwrap();
    run_backup(&items, &mut ledger, &archiver, &options)
        .await
        .unwrap();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        [
            "batch 3",
            "item a 3000000",
            "done",
            "item b 10",
            "done",
            "item c 0",
            "done"
        ]
    );
    assert_eq!(
        recorder.1.load(std::sync::atomic::Ordering::SeqCst),
        3_000_010
    );
    // An unchanged candidate is done without an item of work.
    recorder.0.lock().unwrap().clear();
    run_backup(&items, &mut ledger, &archiver, &options)
        .await
        .unwrap();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        ["batch 3", "done", "done", "done"]
    );
}

/// A compressed upload's progress counts the source's bytes (what the item's total is), not
/// the fewer bytes stored: 3 MB of one repeated byte still shows as 3 MB done.
#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_run_reports_the_sources_bytes_not_the_stored_ones() {
    let sb = Sandbox::new();
    let path = sb.path("a");
    std::fs::write(&path, vec![7u8; 3_000_000]).unwrap();
    let recorder = Arc::new(Recorder::default());
    let options = RunOptions {
        progress: Some(recorder.clone()),
        format: glacier_backup::codec::Format {
            compression: glacier_backup::archiver::Compression::Zstd(Some(3)),
            recipients: Vec::new(),
            authentication: None,
        },
        ..RunOptions::default()
    };
    let archiver = MemoryArchiver::new();
    let mut ledger = Ledger::in_memory().unwrap();
    let report = run_backup(
        &[planned(&path, SourceKind::File, true)],
        &mut ledger,
        &archiver,
        &options,
    )
    .await
    .unwrap();
    let stored = report.uploaded[0].record.as_ref().unwrap().size.unwrap();
    assert!(stored < 10_000, "compressed to {stored} bytes");
    assert_eq!(
        recorder.1.load(std::sync::atomic::Ordering::SeqCst),
        3_000_000
    );
}
