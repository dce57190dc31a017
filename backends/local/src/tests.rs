//! The local backend's own tests: layout, partial files, batches, names.

use super::*;
use glacier_backup_archiver::conformance;
use glacier_backup_archiver::SourceKind;

#[tokio::test]
async fn local_archiver_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let archiver = LocalArchiver::new(dir.path().join("archives"), true);
    conformance::run_all(&archiver).await;
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("archives").join(INCOMING))
        .unwrap()
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn missing_directory_is_an_error_unless_creation_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-mounted");
    let err = LocalArchiver::new(&missing, false)
        .check()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!missing.exists());
}

fn one_part(data: &'static [u8]) -> PartStream {
    let part = glacier_backup_archiver::Part::hashed(0, 0, bytes::Bytes::from_static(data));
    futures::stream::iter([Ok(part)]).boxed()
}

fn meta(path: &str) -> ArchiveMeta {
    ArchiveMeta {
        source_path: PathBuf::from(path),
        name: "f".into(),
        kind: SourceKind::File,
        fingerprint: "v1".into(),
        size_hint: 4,
        started_at: time::OffsetDateTime::now_utc(),
        encoding: Default::default(),
        index_of: None,
        indexed_tree_hash: None,
    }
}

#[tokio::test]
async fn a_destination_that_vanishes_mid_run_is_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mounted");
    fs::create_dir(&root).unwrap();
    let archiver = LocalArchiver::new(&root, false);
    archiver.check().await.unwrap();
    archiver
        .put(&meta("/a"), &PutOptions::default(), one_part(b"data"))
        .await
        .unwrap();
    fs::remove_dir_all(&root).unwrap();
    let err = archiver
        .put(&meta("/b"), &PutOptions::default(), one_part(b"data"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("vanished during the run"), "{err}");
    assert!(!root.exists(), "the destination was created again");
    // An empty directory where the mount was (an unmounted disk) is not the one checked,
    // even when the file system hands out the same inode number again.
    fs::create_dir(&root).unwrap();
    let err = archiver
        .put(&meta("/b"), &PutOptions::default(), one_part(b"data"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("replaced by another directory") || text.contains("lost its .incoming"),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&root).unwrap().count(),
        0,
        "written to the mount point"
    );
}

/// `sync` names the archives it is given and no other: an upload that finished while the
/// engine noted a batch is not named with it (a kill then would leave it unrecorded and
/// unnoted), but by the `sync` of its own batch.
#[tokio::test]
async fn sync_names_only_the_archives_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let archiver = LocalArchiver::new(dir.path().join("archives"), true);
    archiver.check().await.unwrap();
    let first = archiver
        .put(&meta("/a"), &PutOptions::default(), one_part(b"one"))
        .await
        .unwrap();
    let later = archiver
        .put(&meta("/b"), &PutOptions::default(), one_part(b"two"))
        .await
        .unwrap();
    archiver
        .sync(std::slice::from_ref(&first.archive_id))
        .await
        .unwrap();
    let listed: Vec<String> = archiver
        .list()
        .await
        .unwrap()
        .archives
        .into_iter()
        .map(|a| a.archive_id)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&first.archive_id));
    archiver
        .sync(std::slice::from_ref(&later.archive_id))
        .await
        .unwrap();
    assert_eq!(archiver.list().await.unwrap().archives.len(), 2);
}

/// `put` reserves a name and `sync` gives it: before, nothing is readable under it; an
/// archive never synced (its run crashed) leaves no name at all.
#[tokio::test]
async fn archives_are_named_by_sync_and_an_unsynced_one_leaves_no_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archives");
    let archiver = LocalArchiver::new(&root, true);
    archiver.check().await.unwrap();
    let same = meta("/a");
    let first = archiver
        .put(&same, &PutOptions::default(), one_part(b"one"))
        .await
        .unwrap();
    let second = archiver
        .put(&same, &PutOptions::default(), one_part(b"two"))
        .await
        .unwrap();
    assert_ne!(
        first.archive_id, second.archive_id,
        "one name for two archives"
    );
    assert!(matches!(
        archiver.get(&first, None).await,
        Err(Error::NotFound { .. })
    ));
    archiver
        .sync(&[first.archive_id.clone(), second.archive_id.clone()])
        .await
        .unwrap();
    for (stored, data) in [(&first, b"one"), (&second, b"two")] {
        let read = archiver.get(stored, None).await.unwrap();
        let bytes: Vec<u8> = read.map(|chunk| chunk.unwrap().to_vec()).concat().await;
        assert_eq!(bytes, data);
    }

    let never_synced = archiver
        .put(&meta("/c"), &PutOptions::default(), one_part(b"three"))
        .await
        .unwrap();
    drop(archiver);
    assert!(!root.join(&never_synced.archive_id).exists());
    assert_eq!(fs::read_dir(root.join(INCOMING)).unwrap().count(), 0);
}

#[tokio::test]
async fn partial_files_of_killed_runs_are_reported_then_removed_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archives");
    let archiver = LocalArchiver::new(&root, true);
    archiver.check().await.unwrap();
    let incoming = root.join(INCOMING);
    let stale = incoming.join("upload-killed.partial");
    fs::write(&stale, vec![7u8; 1000]).unwrap();
    // An upload in progress (of another ledger's run) holds its lock.
    let live = incoming.join("upload-live.partial");
    let live_file = File::create(&live).unwrap();
    live_file.lock().unwrap();
    let InventoryState::Ready(listing) = archiver.inventory(None).await.unwrap() else {
        panic!("a local inventory is ready at once");
    };
    let reported: Vec<_> = listing
        .incomplete
        .iter()
        .map(|a| (a.archive_id.as_str(), a.size))
        .collect();
    assert_eq!(reported, [(".incoming/upload-killed.partial", 1000)]);
    assert!(listing.archives.is_empty());
    LocalArchiver::new(&root, true).check().await.unwrap();
    assert!(!stale.exists(), "the stale partial is still there");
    assert!(live.exists(), "a live upload's file was removed");
}

#[test]
fn ids_cannot_escape_the_root() {
    let archiver = LocalArchiver::new("/backups", false);
    for id in [
        "../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        "",
        ".incoming/x",
    ] {
        assert!(archiver.archive_path(id).is_err(), "{id}");
    }
    assert_eq!(
        archiver.archive_path("a/b.tar").unwrap(),
        PathBuf::from("/backups/a/b.tar")
    );
}

#[test]
fn target_names_differ_for_same_basename() {
    let a = LocalArchiver::new("/mnt/a/backups", false).target();
    let b = LocalArchiver::new("/mnt/b/backups", false).target();
    assert!(a.starts_with("local.backups-") && b.starts_with("local.backups-"));
    assert_ne!(a, b);
}
