//! The behaviour every backend must show, as async functions over `&dyn Archiver`.
//!
//! Each backend's tests call [`run_all`] (or the functions one by one) against a fresh, empty
//! destination. Functions panic with a message naming the broken rule.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use time::OffsetDateTime;

use crate::parts::parts_from_bytes;
use crate::treehash::{tree_hash, LEAF_SIZE};
use crate::{
    ArchiveMeta, ArchiveRef, Archiver, Error, OnFailure, Part, PutOptions, RestoreOptions,
    RestoreState, Resume, SourceKind, UploadEvent,
};

/// Runs every check in this module.
pub async fn run_all(archiver: &dyn Archiver) {
    check_succeeds(archiver).await;
    round_trips_sizes(archiver).await;
    ranged_reads(archiver).await;
    same_name_never_overwrites(archiver).await;
    failed_stream_stores_nothing(archiver).await;
    corrupt_part_is_rejected(archiver).await;
    unknown_archive_is_not_found(archiver).await;
    inventory_tells_where_archives_came_from(archiver).await;
    an_index_is_stored_beside_its_archive(archiver).await;
    an_index_keeps_the_tree_hash_its_archive_cannot(archiver).await;
    a_deleted_archive_is_gone(archiver).await;
    interrupted_upload_resumes(archiver).await;
}

/// A deleted archive is no longer listed nor read, and deleting it again is harmless: `Ok`,
/// or [`Error::NotFound`] where the backend can tell.
pub async fn a_deleted_archive_is_gone(archiver: &dyn Archiver) {
    let kept = put_bytes(archiver, "kept", sample(1500, 5)).await;
    let doomed = put_bytes(archiver, "doomed", sample(1500, 6)).await;
    archiver
        .delete(&doomed)
        .await
        .unwrap_or_else(|e| panic!("{}: delete: {e}", archiver.name()));
    match archiver.delete(&doomed).await {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("{}: deleting again: {e}", archiver.name()),
    }
    if let Some(listed) = listing(archiver).await {
        let ids: Vec<&str> = listed.iter().map(|a| a.archive_id.as_str()).collect();
        assert!(
            !ids.contains(&doomed.archive_id.as_str()),
            "{}: a deleted archive is listed",
            archiver.name()
        );
        assert!(ids.contains(&kept.archive_id.as_str()));
    }
    if !archiver.capabilities().needs_restore {
        assert!(
            matches!(
                archiver.get(&doomed, None).await.map(drop),
                Err(Error::NotFound { .. })
            ),
            "{}: a deleted archive reads",
            archiver.name()
        );
        assert_eq!(read_back(archiver, &kept).await, sample(1500, 5));
    }
}

/// An index (`ArchiveMeta::index_of`) is stored beside its archive, reads back, and is listed
/// among the indexes naming its archive, never among the archives.
pub async fn an_index_is_stored_beside_its_archive(archiver: &dyn Archiver) {
    let archive = put_bytes(archiver, "indexed", sample(2000, 3)).await;
    let index_bytes = sample(100, 4);
    let index = put_index(archiver, &archive, index_bytes.clone()).await;
    assert_ne!(index.archive_id, archive.archive_id);
    assert_eq!(read_back(archiver, &index).await, index_bytes);
    if !archiver.capabilities().listable {
        return;
    }
    let listing = archiver.list().await.expect("list");
    assert!(
        listing
            .archives
            .iter()
            .all(|a| a.archive_id != index.archive_id),
        "{}: an index listed as an archive",
        archiver.name()
    );
    let listed = listing
        .indexes
        .iter()
        .find(|i| i.archive_id == index.archive_id)
        .unwrap_or_else(|| panic!("{}: the index is not listed", archiver.name()));
    assert_eq!(
        listed.index_of.as_deref(),
        Some(archive.archive_id.as_str())
    );
}

/// On a backend that keeps a multipart archive's tree hash only with its index
/// ([`Capabilities::needs_index`](crate::Capabilities::needs_index)): once the index is stored
/// with [`ArchiveMeta::indexed_tree_hash`], `describe` and the inventory give the archive's
/// tree hash; deleting the archive takes its index too.
pub async fn an_index_keeps_the_tree_hash_its_archive_cannot(archiver: &dyn Archiver) {
    if !archiver.capabilities().needs_index {
        return;
    }
    let name = archiver.name();
    let part_size = archiver.part_size(3 * LEAF_SIZE as u64);
    let data = sample(2 * part_size as usize + 10, 31);
    let archive = put_bytes(archiver, "multipart", data.clone()).await;
    assert_eq!(archive.tree_hash, tree_hash(&data));
    let index = put_index(archiver, &archive, sample(100, 32)).await;
    let described = archiver
        .describe(&archive.archive_id)
        .await
        .expect("describe");
    assert_eq!(
        described.tree_hash,
        Some(archive.tree_hash),
        "{name}: describe must give the tree hash kept with the index"
    );
    let Ok(crate::InventoryState::Ready(listing)) = archiver.inventory(None).await else {
        panic!("{name}: a listable backend's inventory is ready at once");
    };
    let listed = listing
        .archives
        .iter()
        .find(|a| a.archive_id == archive.archive_id)
        .unwrap_or_else(|| panic!("{name}: the archive is not in the inventory"));
    assert_eq!(
        listed.tree_hash,
        Some(archive.tree_hash),
        "{name}: the inventory must give the tree hash kept with the index"
    );
    archiver.delete(&archive).await.expect("delete");
    assert!(
        matches!(
            archiver.get(&index, None).await.map(drop),
            Err(Error::NotFound { .. })
        ),
        "{name}: an index must go with its archive"
    );
}

/// Stores `data` as the index of `archive`, carrying its tree hash as the engine's indexes do.
async fn put_index(archiver: &dyn Archiver, archive: &ArchiveRef, data: Bytes) -> ArchiveRef {
    let mut index_meta = meta("index", data.len() as u64);
    index_meta.index_of = Some(archive.archive_id.clone());
    index_meta.indexed_tree_hash = Some(archive.tree_hash);
    let parts = parts_from_bytes(data.clone(), archiver.part_size(data.len() as u64));
    let index = archiver
        .put(&index_meta, &PutOptions::default(), parts)
        .await
        .unwrap_or_else(|e| panic!("{}: put an index: {e}", archiver.name()));
    synced(archiver, &index).await;
    index
}

/// Deterministic test bytes that differ at every offset.
pub fn sample(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// Metadata for a test archive.
pub fn meta(name: &str, size_hint: u64) -> ArchiveMeta {
    ArchiveMeta {
        source_path: PathBuf::from("/conformance/zoë's files").join(name),
        name: name.to_owned(),
        kind: SourceKind::File,
        fingerprint: "conformance".into(),
        size_hint,
        started_at: OffsetDateTime::now_utc(),
        encoding: Default::default(),
        index_of: None,
        indexed_tree_hash: None,
    }
}

/// Reads an archive back whole, restoring it first when the backend needs that.
pub async fn read_back(archiver: &dyn Archiver, archive: &ArchiveRef) -> Vec<u8> {
    read_range(archiver, archive, None).await
}

async fn read_range(
    archiver: &dyn Archiver,
    archive: &ArchiveRef,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    wait_until_readable(archiver, archive).await;
    let mut stream = archiver
        .get(archive, range)
        .await
        .unwrap_or_else(|e| panic!("{}: get {}: {e}", archiver.name(), archive.archive_id));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(
            &chunk.unwrap_or_else(|e| panic!("{}: reading: {e}", archiver.name())),
        );
    }
    out
}

async fn wait_until_readable(archiver: &dyn Archiver, archive: &ArchiveRef) {
    if !archiver.capabilities().needs_restore {
        return;
    }
    let mut state = archiver
        .request_restore(archive, &RestoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: request_restore: {e}", archiver.name()));
    for _ in 0..120 {
        if state == RestoreState::Ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        state = archiver
            .restore_state(archive, None)
            .await
            .expect("restore_state");
    }
    panic!(
        "{}: archive never became readable: {state:?}",
        archiver.name()
    );
}

async fn put_bytes(archiver: &dyn Archiver, name: &str, data: Bytes) -> ArchiveRef {
    let part_size = archiver.part_size(data.len() as u64);
    let stored = archiver
        .put(
            &meta(name, data.len() as u64),
            &PutOptions::default(),
            parts_from_bytes(data, part_size),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: put {name}: {e}", archiver.name()));
    synced(archiver, &stored).await;
    stored
}

/// What the engine does before it records an archive: a backend with batched durability
/// makes its archives durable, named and readable in `sync`.
async fn synced(archiver: &dyn Archiver, stored: &ArchiveRef) {
    archiver
        .sync(std::slice::from_ref(&stored.archive_id))
        .await
        .unwrap_or_else(|e| panic!("{}: sync: {e}", archiver.name()));
}

/// The `sync` after a failed put: nothing of it may become readable.
async fn nothing_to_name(archiver: &dyn Archiver) {
    archiver
        .sync(&[])
        .await
        .unwrap_or_else(|e| panic!("{}: sync: {e}", archiver.name()));
}

/// `check` accepts a usable destination.
pub async fn check_succeeds(archiver: &dyn Archiver) {
    archiver.check().await.unwrap_or_else(|e| {
        panic!(
            "{}: check on a usable destination failed: {e}",
            archiver.name()
        )
    });
}

/// Empty, tiny, one-leaf, multi-part and ragged archives come back byte-exact with the right
/// size and tree hash. A backend that cannot store empty archives must refuse one cleanly.
pub async fn round_trips_sizes(archiver: &dyn Archiver) {
    let capabilities = archiver.capabilities();
    if !capabilities.stores_empty_archives {
        let result = archiver
            .put(
                &meta("empty", 0),
                &PutOptions::default(),
                parts_from_bytes(Bytes::new(), 1 << 20),
            )
            .await;
        // Refused as what it is (not, say, a network error the caller would retry forever).
        assert!(
            matches!(result, Err(crate::Error::Unsupported { .. })),
            "{}: an empty archive must be refused as unsupported: {result:?}",
            archiver.name()
        );
    }
    let part = archiver.part_size(3 * LEAF_SIZE as u64) as usize;
    for (i, len) in [0, 1, 1000, LEAF_SIZE, part, 2 * part + 12_345]
        .into_iter()
        .enumerate()
        .filter(|(_, len)| *len > 0 || capabilities.stores_empty_archives)
    {
        let data = sample(len, i as u8);
        let stored = put_bytes(archiver, &format!("round-trip-{len}"), data.clone()).await;
        assert_eq!(
            stored.size,
            len as u64,
            "{}: size of a {len}-byte archive",
            archiver.name()
        );
        assert_eq!(
            stored.tree_hash,
            tree_hash(&data),
            "{}: tree hash of a {len}-byte archive",
            archiver.name()
        );
        let back = read_back(archiver, &stored).await;
        assert!(
            back == data,
            "{}: {len}-byte archive changed on the way back",
            archiver.name()
        );
        if !capabilities.listable {
            continue;
        }
        let listed = archiver.list().await.expect("list");
        let entry = listed
            .archives
            .iter()
            .find(|a| a.archive_id == stored.archive_id)
            .unwrap_or_else(|| {
                panic!(
                    "{}: {} missing from list",
                    archiver.name(),
                    stored.archive_id
                )
            });
        assert_eq!(entry.size, len as u64);
    }
}

/// A byte range reads exactly those bytes (when the backend offers ranged reads).
pub async fn ranged_reads(archiver: &dyn Archiver) {
    if !archiver.capabilities().ranged_reads {
        return;
    }
    let data = sample(3 * LEAF_SIZE + 17, 42);
    let stored = put_bytes(archiver, "ranged", data.clone()).await;
    for range in [
        0..1u64,
        5..LEAF_SIZE as u64 + 9,
        3 * LEAF_SIZE as u64..data.len() as u64,
    ] {
        let got = read_range(archiver, &stored, Some(range.clone())).await;
        assert!(
            got[..] == data[range.start as usize..range.end as usize],
            "{}: range {range:?} came back wrong",
            archiver.name()
        );
    }
}

/// Two uploads under the same name both survive with distinct ids.
pub async fn same_name_never_overwrites(archiver: &dyn Archiver) {
    let first = sample(5000, 1);
    let second = sample(6000, 2);
    let a = put_bytes(archiver, "same-name", first.clone()).await;
    let b = put_bytes(archiver, "same-name", second.clone()).await;
    assert_ne!(
        a.archive_id,
        b.archive_id,
        "{}: second upload reused the id",
        archiver.name()
    );
    assert!(
        read_back(archiver, &a).await == first,
        "{}: first upload was overwritten",
        archiver.name()
    );
    assert!(read_back(archiver, &b).await == second);
}

async fn listing(archiver: &dyn Archiver) -> Option<Vec<crate::ListedArchive>> {
    if !archiver.capabilities().listable {
        return None;
    }
    Some(archiver.list().await.expect("list").archives)
}

/// When the source fails midway, `put` fails and nothing new is listed.
pub async fn failed_stream_stores_nothing(archiver: &dyn Archiver) {
    let before = listing(archiver).await;
    let part_size = archiver.part_size(4 * LEAF_SIZE as u64);
    let good: Vec<_> = parts_from_bytes(sample(part_size as usize * 2, 9), part_size)
        .collect::<Vec<_>>()
        .await;
    let failing = futures::stream::iter(good.into_iter().take(1).chain([Err(Error::Source(
        "source changed while being archived".into(),
    ))]))
    .boxed();
    let result = archiver
        .put(
            &meta("failing", 3 * part_size),
            &PutOptions::default(),
            failing,
        )
        .await;
    assert!(
        matches!(result, Err(Error::Source(_))),
        "{}: a failing source must fail put with Error::Source, got {result:?}",
        archiver.name()
    );
    // Nothing was stored to be named; a backend that named it anyway would list it.
    nothing_to_name(archiver).await;
    let after = listing(archiver).await;
    assert_eq!(
        before,
        after,
        "{}: a failed put left something listed",
        archiver.name()
    );
}

/// A part whose bytes do not match its hash is refused (by the backend or the service behind
/// it) and nothing is stored.
pub async fn corrupt_part_is_rejected(archiver: &dyn Archiver) {
    let before = listing(archiver).await;
    let data = sample(1000, 3);
    let bad = Part {
        index: 0,
        offset: 0,
        tree_hash: tree_hash(b"something else"),
        data,
        hash_from_data: false,
        held: None,
    };
    let result = archiver
        .put(
            &meta("corrupt", 1000),
            &PutOptions::default(),
            futures::stream::iter([Ok(bad)]).boxed(),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Integrity { .. }
                | Error::Remote {
                    temporary: false,
                    ..
                })
        ),
        "{}: a corrupt part must be refused, got {result:?}",
        archiver.name()
    );
    // Nothing was stored to be named; a backend that named it anyway would list it.
    nothing_to_name(archiver).await;
    let after = listing(archiver).await;
    assert_eq!(
        before,
        after,
        "{}: a refused put left something listed",
        archiver.name()
    );
}

/// Reading an id that was never stored is `NotFound`.
pub async fn unknown_archive_is_not_found(archiver: &dyn Archiver) {
    let missing = ArchiveRef {
        archive_id: "no/such/archive".into(),
        size: 1,
        tree_hash: tree_hash(b"x"),
        description: None,
    };
    let result = if archiver.capabilities().needs_restore {
        archiver
            .request_restore(&missing, &RestoreOptions::default())
            .await
            .map(|_| ())
    } else {
        archiver.get(&missing, None).await.map(|_| ())
    };
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "{}: an unknown id must be NotFound, got {:?}",
        archiver.name(),
        result.err()
    );
}

/// The inventory lists every archive stored with the source path and kind it came from, so a
/// lost ledger can be rebuilt. A backend whose inventory comes through a job may answer
/// `Pending`, must then hand back the same request when asked again, and must finish.
pub async fn inventory_tells_where_archives_came_from(archiver: &dyn Archiver) {
    let mut directory = meta("inventoried", 3000);
    directory.kind = SourceKind::Directory;
    directory.fingerprint = "v1:entries=2:bytes=3000:sha256=0a1b".into();
    let parts = parts_from_bytes(sample(3000, 9), archiver.part_size(3000));
    let stored = archiver
        .put(&directory, &PutOptions::default(), parts)
        .await
        .expect("put");
    synced(archiver, &stored).await;
    // A job-based inventory must finish: polled on the same request (never a second job)
    // for up to two minutes.
    let mut state = archiver.inventory(None).await.expect("inventory");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let listing = loop {
        match state {
            crate::InventoryState::Ready(listing) => break listing,
            crate::InventoryState::Pending { request_id } => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: the inventory never finished",
                    archiver.name()
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                state = archiver
                    .inventory(Some(&request_id))
                    .await
                    .expect("inventory");
                if let crate::InventoryState::Pending { request_id: again } = &state {
                    assert_eq!(
                        *again,
                        request_id,
                        "{}: a second inventory job",
                        archiver.name()
                    );
                }
            }
        }
    };
    let entry = listing
        .archives
        .iter()
        .find(|a| a.archive_id == stored.archive_id)
        .unwrap_or_else(|| {
            panic!(
                "{}: {} missing from the inventory",
                archiver.name(),
                stored.archive_id
            )
        });
    assert_eq!(entry.size, 3000, "{}: inventory size", archiver.name());
    let origin = entry
        .origin
        .as_ref()
        .unwrap_or_else(|| panic!("{}: inventory entry without its origin", archiver.name()));
    assert_eq!(
        origin.source_path,
        directory.source_path,
        "{}",
        archiver.name()
    );
    assert_eq!(origin.kind, SourceKind::Directory, "{}", archiver.name());
    if let Some(fingerprint) = &origin.fingerprint {
        assert_eq!(
            *fingerprint,
            directory.fingerprint,
            "{}: fingerprint",
            archiver.name()
        );
    }
    assert_eq!(
        origin.started_at.map(|t| t.unix_timestamp()),
        Some(directory.started_at.unix_timestamp()),
        "{}: upload time",
        archiver.name()
    );
}

/// What a caller recorded of one `put`'s events (answering `Completing` as a caller must).
#[derive(Debug, Default)]
struct Recorded {
    started: Vec<String>,
    receipts: Vec<(u64, String)>,
}

/// Runs `put` with options that report events, answering them as a caller must: its result
/// and every event it reported.
async fn put_recorded(
    archiver: &dyn Archiver,
    meta: &ArchiveMeta,
    on_failure: OnFailure,
    resume: Option<Resume>,
    parts: crate::PartStream,
) -> (crate::Result<ArchiveRef>, Recorded) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut log = Recorded::default();
        while let Some(event) = rx.recv().await {
            match event {
                UploadEvent::Started(token) => log.started.push(token),
                UploadEvent::PartStored { number, receipt } => log.receipts.push((number, receipt)),
                UploadEvent::Completing { recorded, .. } => recorded.done(),
            }
        }
        log
    });
    let options = PutOptions {
        resume,
        events: Some(tx),
        on_failure,
    };
    let result = archiver.put(meta, &options, parts).await;
    if let Ok(stored) = &result {
        synced(archiver, stored).await;
    }
    // The last sender goes with the options: the collector has seen everything when it ends.
    drop(options);
    (result, collector.await.expect("event collector"))
}

/// A stream of `data`'s first `good` parts, then a source failure.
async fn failing_after(data: Bytes, part_size: u64, good: usize) -> crate::PartStream {
    let parts: Vec<_> = parts_from_bytes(data, part_size).collect().await;
    futures::stream::iter(
        parts
            .into_iter()
            .take(good)
            .chain([Err(Error::Source("the source went away".into()))]),
    )
    .boxed()
}

/// For a backend that resumes uploads: a multipart upload reports its token as it starts; a
/// failed one kept for resuming is not an archive; a later `put` given the token and the
/// receipts continues it (no new upload) and stores the whole archive once, byte-exact; a
/// token given up with `abort_upload` cannot be continued (the next `put` starts over).
pub async fn interrupted_upload_resumes(archiver: &dyn Archiver) {
    if !archiver.capabilities().resumable_uploads {
        return;
    }
    let name = archiver.name();
    let part_size = archiver.part_size(4 * LEAF_SIZE as u64);
    let data = sample(3 * part_size as usize + 100, 21);
    let m = meta("resumed", data.len() as u64);
    let before = listing(archiver).await;

    let (failed, first) = put_recorded(
        archiver,
        &m,
        OnFailure::Keep,
        None,
        failing_after(data.clone(), part_size, 2).await,
    )
    .await;
    assert!(
        matches!(failed, Err(Error::Source(_))),
        "{name}: a failing source must fail put, got {failed:?}"
    );
    let token = first.started.first().cloned().unwrap_or_else(|| {
        panic!("{name}: a multipart upload must report its token (UploadEvent::Started)")
    });
    assert_eq!(
        listing(archiver).await,
        before,
        "{name}: an upload kept for resuming must not be listed as an archive"
    );

    let resume = Resume {
        receipts: first.receipts,
        ..Resume::new(token.clone())
    };
    let (stored, second) = put_recorded(
        archiver,
        &m,
        OnFailure::Abort,
        Some(resume),
        parts_from_bytes(data.clone(), part_size),
    )
    .await;
    let stored = stored.unwrap_or_else(|e| panic!("{name}: resuming upload {token}: {e}"));
    assert!(
        second.started.is_empty(),
        "{name}: a resumable upload must be continued, not started over"
    );
    assert_eq!(
        (stored.size, stored.tree_hash),
        (data.len() as u64, tree_hash(&data)),
        "{name}: the resumed archive's size or tree hash"
    );
    assert!(
        read_back(archiver, &stored).await == data,
        "{name}: the resumed archive's bytes differ"
    );
    if let (Some(before), Some(after)) = (&before, listing(archiver).await) {
        assert_eq!(
            after.len(),
            before.len() + 1,
            "{name}: the resumed upload must make exactly one archive"
        );
    }

    let (_, third) = put_recorded(
        archiver,
        &m,
        OnFailure::Keep,
        None,
        failing_after(data.clone(), part_size, 1).await,
    )
    .await;
    let token = third.started.first().cloned();
    let token = token.unwrap_or_else(|| panic!("{name}: no token for the third upload"));
    archiver
        .abort_upload(&token)
        .await
        .unwrap_or_else(|e| panic!("{name}: abort_upload {token}: {e}"));
    let (after_abort, fourth) = put_recorded(
        archiver,
        &m,
        OnFailure::Abort,
        Some(Resume::new(token.clone())),
        parts_from_bytes(data.clone(), part_size),
    )
    .await;
    after_abort.unwrap_or_else(|e| panic!("{name}: a put resuming an aborted upload: {e}"));
    assert!(
        !fourth.started.is_empty() && !fourth.started.contains(&token),
        "{name}: an aborted upload must not be continued: {:?}",
        fourth.started
    );
}
