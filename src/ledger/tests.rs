//! The ledger's own tests: the Python tool's rows, every record round-tripping, the file's
//! safety.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use glacier_backup_archiver::{Compression, Encoding, ListedArchive, Listing, SourceKind};
use rusqlite::Connection;
use time::OffsetDateTime;

use super::*;

fn record(path: &str, id: &str) -> UploadRecord {
    let now = OffsetDateTime::now_utc();
    UploadRecord {
        path: path.into(),
        name: "n".into(),
        archive_id: id.into(),
        description: None,
        backend: "local".into(),
        kind: Some(SourceKind::File),
        size: Some(3),
        tree_hash: Some(glacier_backup_archiver::treehash::tree_hash(b"abc")),
        fingerprint: Some("v1:x".into()),
        started_at: Some(now),
        uploaded_at: Some(now),
        encoding: Encoding {
            compression: Compression::Zstd(Some(7)),
            encrypted: true,
            recipients: vec!["age1a".into(), "age1b".into()],
        },
        plain_size: Some(10),
    }
}

#[test]
fn python_tool_database_rows_are_honoured_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("glacier.myvault.sqlite3");
    {
        let python_tool = Connection::open(&path).unwrap();
        python_tool.execute_batch(
            "CREATE TABLE \"uploads\" (path text, name text, archive_id text, uploaded_date integer);
             INSERT INTO uploads VALUES ('/data/a', 'a', 'ID-A', 1700000000);
             INSERT INTO uploads VALUES ('/data/b', 'b.tar', 'ID-B', NULL);",
        )
        .unwrap();
    }
    let mut ledger = Ledger::open(&path).unwrap();
    let a = ledger.latest_upload(Path::new("/data/a")).unwrap().unwrap();
    assert_eq!(a.archive_id, "ID-A");
    assert_eq!(a.uploaded_at.unwrap().unix_timestamp(), 1_700_000_000);
    assert_eq!(a.fingerprint, None);
    assert_eq!(a.backend, "glacier");
    let b = ledger.latest_upload(Path::new("/data/b")).unwrap().unwrap();
    assert_eq!((b.archive_id.as_str(), b.uploaded_at), ("ID-B", None));
    assert!(ledger
        .latest_upload(Path::new("/data/c"))
        .unwrap()
        .is_none());

    ledger.record_upload(&record("/data/a", "L1")).unwrap();
    drop(ledger);
    // The Python tool's own query still works on the migrated file and sees every row.
    let python_tool = Connection::open(&path).unwrap();
    let count: i64 = python_tool
        .query_row(
            "SELECT count(*) FROM uploads WHERE uploaded_date IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 2);
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.uploads().unwrap().len(), 3);
}

#[test]
fn latest_upload_wins_and_round_trips_every_field() {
    let mut ledger = Ledger::in_memory().unwrap();
    let first = record("/x", "one");
    let mut second = record("/x", "two");
    second.started_at = second.started_at.map(|t| t.replace_nanosecond(0).unwrap());
    second.uploaded_at = second.uploaded_at.map(|t| t.replace_nanosecond(0).unwrap());
    ledger.record_upload(&first).unwrap();
    ledger.record_upload(&second).unwrap();
    assert_eq!(
        ledger.latest_upload(Path::new("/x")).unwrap().unwrap(),
        second
    );
}

#[test]
fn pending_uploads_are_kept_until_the_upload_is_recorded() {
    let mut ledger = Ledger::in_memory().unwrap();
    let pending = PendingUpload {
        path: "/x".into(),
        backend: "glacier".into(),
        token: "upload-1".into(),
        part_size: 8 << 20,
        fingerprint: "v1:f".into(),
        started_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        completing: None,
        encoding: Encoding::from_tag("zstd3+age").unwrap(),
        seal: Some(vec![1, 2, 3]),
    };
    ledger.record_pending(&pending).unwrap();
    assert_eq!(
        ledger.pending_upload(Path::new("/x")).unwrap().as_ref(),
        Some(&pending),
        "layers and seal come back"
    );
    let hash = glacier_backup_archiver::treehash::tree_hash(b"archive");
    ledger.record_completing(Path::new("/x"), 7, hash).unwrap();
    assert_eq!(
        ledger
            .pending_upload(Path::new("/x"))
            .unwrap()
            .unwrap()
            .completing,
        Some((7, hash))
    );
    let replaced = PendingUpload {
        token: "upload-2".into(),
        ..pending.clone()
    };
    ledger.record_pending(&replaced).unwrap();
    assert_eq!(
        ledger.pending_upload(Path::new("/x")).unwrap(),
        Some(replaced),
        "a new upload starts with nothing being completed"
    );
    ledger.record_upload(&record("/x", "done")).unwrap();
    assert_eq!(ledger.pending_upload(Path::new("/x")).unwrap(), None);
    assert!(ledger.pending_parts(Path::new("/x")).unwrap().is_empty());
    ledger.record_pending(&pending).unwrap();
    ledger.clear_pending(Path::new("/x")).unwrap();
    assert_eq!(ledger.pending_upload(Path::new("/x")).unwrap(), None);
}

/// The seal of a finished upload (its archive's file key) is gone from the file itself,
/// not only from the table.
#[test]
fn a_recorded_uploads_seal_leaves_no_trace_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let secret: Vec<u8> = b"SEAL-".iter().copied().chain(0..200u8).collect();
    let mut ledger = Ledger::open(&path).unwrap();
    ledger
        .record_pending(&PendingUpload {
            path: "/x".into(),
            backend: "glacier".into(),
            token: "upload-1".into(),
            part_size: 8 << 20,
            fingerprint: "v1:f".into(),
            started_at: OffsetDateTime::now_utc(),
            completing: None,
            encoding: Encoding::from_tag("age").unwrap(),
            seal: Some(secret.clone()),
        })
        .unwrap();
    let holds = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret);
    assert!(holds(&std::fs::read(&path).unwrap()), "written to the file");
    ledger.record_upload(&record("/x", "ID")).unwrap();
    drop(ledger);
    assert!(!holds(&std::fs::read(&path).unwrap()), "still in the file");
}

#[test]
fn retrievals_and_the_last_inventory_are_kept_until_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.sqlite3");
    let mut ledger = Ledger::open(&file).unwrap();
    assert_eq!(
        ledger.last_inventory().unwrap().map(|l| l.archives.len()),
        None
    );
    let job = Retrieval {
        archive_id: Some("archive-1".into()),
        request_id: Some("job-7".into()),
        tier: "bulk".into(),
        requested_at: time::macros::datetime!(2026-11-26 05:00 UTC),
    };
    let inventory_job = Retrieval {
        archive_id: None,
        request_id: Some("job-8".into()),
        ..job.clone()
    };
    ledger.record_retrieval(&job).unwrap();
    ledger.record_retrieval(&inventory_job).unwrap();
    let mut listing = Listing {
        archives: vec![ListedArchive::new("archive-1", 10)],
        taken_at: Some(time::macros::datetime!(2026-11-25 06:00 UTC)),
        incomplete: Vec::new(),
        indexes: Vec::new(),
    };
    ledger.record_inventory(&listing).unwrap();
    drop(ledger);

    let mut ledger = Ledger::open(&file).unwrap();
    assert_eq!(ledger.retrieval(Some("archive-1")).unwrap(), Some(job));
    assert_eq!(ledger.retrieval(None).unwrap(), Some(inventory_job));
    assert_eq!(ledger.retrieval(Some("other")).unwrap(), None);
    ledger.clear_retrieval(None).unwrap();
    assert_eq!(ledger.retrieval(None).unwrap(), None);
    let kept = ledger.last_inventory().unwrap().unwrap();
    assert_eq!(kept.archives, listing.archives);
    assert_eq!(kept.taken_at, listing.taken_at);
    listing.archives.clear();
    ledger.record_inventory(&listing).unwrap();
    assert_eq!(ledger.last_inventory().unwrap().unwrap().archives, []);
}

#[test]
fn non_utf8_paths_do_not_collide() {
    let mut ledger = Ledger::in_memory().unwrap();
    let a = PathBuf::from(OsStr::from_bytes(b"/d/\xff"));
    let b = PathBuf::from(OsStr::from_bytes(b"/d/\xfe"));
    let mut rec = record("", "A");
    rec.path = a.clone();
    ledger.record_upload(&rec).unwrap();
    assert!(ledger.latest_upload(&a).unwrap().is_some());
    assert!(ledger.latest_upload(&b).unwrap().is_none());
    assert_eq!(ledger.uploads().unwrap()[0].path, a);
}

#[test]
fn lookups_use_the_index() {
    let ledger = Ledger::in_memory().unwrap();
    let plan: String = ledger
        .conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT * FROM uploads WHERE path = '/x' ORDER BY rowid DESC LIMIT 1",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("uploads_by_path"), "{plan}");
}

#[test]
fn file_is_private_and_snapshot_never_writes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let snapshot = Ledger::snapshot(&path).unwrap();
    assert!(snapshot.uploads().unwrap().is_empty());
    assert!(!path.exists(), "a snapshot must not create the file");
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.record_upload(&record("/x", "one")).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let snapshot = Ledger::snapshot(&path).unwrap();
    assert_eq!(snapshot.uploads().unwrap().len(), 1);
}

fn cataloged(entries: &[u8]) -> crate::catalog::Cataloged {
    crate::catalog::Cataloged {
        entries: entries.to_vec(),
        layout: Some([b"layout of ".as_slice(), entries].concat()),
        index_id: Some(format!("index of {}", entries.len())),
        base: None,
    }
}

/// A snapshot copies rows, indexes and the schema version, but reads catalogs from the file,
/// so a dry run's memory does not grow with them; a path SQLite URIs treat specially works.
#[test]
fn a_snapshot_reads_catalogs_in_place_and_copies_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd ?#% name.sqlite3");
    let mut ledger = Ledger::open(&path).unwrap();
    let first = record("/x", "one");
    ledger
        .record_cataloged(&[(&first, Some(&cataloged(b"entries")))])
        .unwrap();
    ledger.record_upload(&record("/y", "two")).unwrap();
    drop(ledger);

    let mut snapshot = Ledger::snapshot(&path).unwrap();
    let in_memory: i64 = snapshot
        .conn
        .query_row("SELECT count(*) FROM main.catalogs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(in_memory, 0, "catalogs must not be copied into memory");
    assert_eq!(
        snapshot.catalog("one").unwrap().as_deref(),
        Some(&b"entries"[..])
    );
    assert_eq!(snapshot.catalog("two").unwrap(), None);
    let ids: Vec<_> = snapshot
        .uploads()
        .unwrap()
        .into_iter()
        .map(|u| u.archive_id)
        .collect();
    assert_eq!(ids, ["one", "two"]);
    let plan: String = snapshot
        .conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT * FROM uploads WHERE path = '/x'",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("uploads_by_path"), "{plan}");
    // What a dry run records goes to memory, catalogs too, and the file is untouched.
    let third = record("/z", "three");
    snapshot
        .record_cataloged(&[(&third, Some(&cataloged(b"more")))])
        .unwrap();
    assert_eq!(
        snapshot.catalog("three").unwrap().as_deref(),
        Some(&b"more"[..])
    );
    assert_eq!(Ledger::reader(&path).unwrap().uploads().unwrap().len(), 2);
}

/// Rows come a page at a time, in order, all of them, and a reader can stop early; a
/// reader of a current ledger reads it in place and cannot write to it.
#[test]
fn each_upload_pages_through_every_row_and_a_snapshot_reads_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let mut ledger = Ledger::open(&path).unwrap();
    for n in 0..2500 {
        ledger
            .record_upload(&record(&format!("/p{n}"), &format!("id{n}")))
            .unwrap();
    }
    let snapshot = Ledger::reader(&path).unwrap();
    let mut seen = Vec::new();
    snapshot
        .each_upload(&mut |u| {
            seen.push(u.archive_id);
            true
        })
        .unwrap();
    let expected: Vec<String> = (0..2500).map(|n| format!("id{n}")).collect();
    assert_eq!(seen, expected);
    let mut first_three = Vec::new();
    snapshot
        .each_upload(&mut |u| {
            first_three.push(u.archive_id);
            first_three.len() < 3
        })
        .unwrap();
    assert_eq!(first_three, ["id0", "id1", "id2"]);
    // Read in place: what the file gets after the snapshot was taken shows, and nothing
    // can be written through it.
    ledger.record_upload(&record("/late", "late")).unwrap();
    assert_eq!(snapshot.uploads().unwrap().len(), 2501);
    let mut snapshot = snapshot;
    assert!(snapshot.record_upload(&record("/x", "nope")).is_err());
}

#[test]
fn an_empty_ledger_file_is_refused_not_read_as_nothing_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    std::fs::write(&path, b"").unwrap();
    for result in [Ledger::open(&path), Ledger::snapshot(&path)] {
        let err = result.unwrap_err();
        assert!(err.is_setup(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("l.sqlite3") && text.contains("empty"),
            "{text}"
        );
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as found");
}

#[test]
fn a_directory_as_ledger_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ledger::open(dir.path()).unwrap_err();
    assert!(err.is_setup(), "{err}");
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn a_ledger_readable_by_others_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    drop(Ledger::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Ledger::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_ledger_that_cannot_be_written_is_found_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    drop(Ledger::open(&path).unwrap());
    // SQLite cannot create its rollback journal where a directory takes the name: the
    // same failure as a read-only directory, and one that holds for root too.
    std::fs::create_dir(dir.path().join("l.sqlite3-journal")).unwrap();
    let err = Ledger::open(&path).unwrap_err();
    assert!(matches!(err, LedgerError::Unwritable { .. }), "{err}");
    assert!(err.is_setup());
    assert!(err.to_string().contains("l.sqlite3"), "{err}");
}

#[test]
fn runs_starting_together_create_and_upgrade_a_ledger_once() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        if round % 2 == 1 {
            // The Python tool's schema, upgraded by both at once.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE uploads (path text, name text, archive_id text, uploaded_date integer);",
            )
            .unwrap();
        }
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    Ledger::open(&path).map(|_| ())
                })
            })
            .collect();
        for thread in threads {
            thread
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "round {round}: temporary files left");
    }
}
