//! The upload driver's tests against a scripted store: parts, limits, resume, held parts.

use std::sync::Mutex;

use bytes::Bytes;

use super::*;
use crate::parts::parts_from_bytes;
use crate::treehash::tree_hash;
use crate::SourceKind;

/// A store that keeps parts in memory and writes down every call.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    /// Part indexes the open upload already holds.
    held: Vec<u64>,
    /// Refuse the part with this index.
    refuse: Option<u64>,
    /// What `complete_again` finds.
    completed_before: Option<ArchiveRef>,
    max_parts: u64,
    /// Parts in flight at once (1 unless a test says otherwise).
    concurrency: usize,
    /// How long storing a part takes.
    part_delay: std::time::Duration,
}

impl Recorder {
    fn note(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl MultipartStore for Recorder {
    type Upload = String;
    type Receipt = u64;

    fn backend(&self) -> &'static str {
        "recorder"
    }
    fn limits(&self) -> UploadLimits {
        UploadLimits {
            max_parts: self.max_parts,
            concurrency: self.concurrency.max(1),
            verify_part_hashes: true,
        }
    }
    async fn put_whole(&self, _meta: &ArchiveMeta, part: Part) -> Result<ArchiveRef> {
        self.note(format!("whole {}", part.data.len()));
        Ok(archive("whole", part.data.len() as u64, part.tree_hash))
    }
    async fn open(
        &self,
        _meta: &ArchiveMeta,
        part_size: u64,
        resume: Option<&Resume>,
    ) -> Result<Opened<String>> {
        self.note(format!("open {part_size}"));
        Ok(match resume {
            Some(resume) => Opened {
                upload: resume.token.clone(),
                newly_known: None,
            },
            None => Opened {
                upload: "u1".into(),
                newly_known: Some("u1".into()),
            },
        })
    }
    fn already_stored(&self, _upload: &String, part: &Part) -> Option<u64> {
        self.held.contains(&part.index).then_some(part.index)
    }
    async fn put_part(&self, upload: &String, part: Part) -> Result<StoredPart<u64>> {
        tokio::time::sleep(self.part_delay).await;
        if self.refuse == Some(part.index) {
            return Err(Error::Source("refused".into()));
        }
        self.note(format!("part {upload} {}", part.index));
        Ok(StoredPart {
            receipt: part.index,
            note: Some(format!("r{}", part.index)),
        })
    }
    async fn complete(
        &self,
        upload: &String,
        receipts: Vec<u64>,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<ArchiveRef> {
        self.note(format!("complete {upload} {receipts:?} {size}"));
        Ok(archive(upload, size, tree_hash))
    }
    async fn complete_again(
        &self,
        _meta: &ArchiveMeta,
        resume: &Resume,
        _size: u64,
        _tree_hash: TreeHash,
    ) -> Result<Option<ArchiveRef>> {
        self.note(format!("complete again {}", resume.token));
        Ok(self.completed_before.clone())
    }
    async fn abort(&self, upload: &String) -> Result<()> {
        self.note(format!("abort {upload}"));
        Ok(())
    }
}

fn archive(id: &str, size: u64, tree_hash: TreeHash) -> ArchiveRef {
    ArchiveRef {
        archive_id: id.into(),
        size,
        tree_hash,
        description: None,
    }
}

fn meta() -> ArchiveMeta {
    ArchiveMeta {
        source_path: "/data/x".into(),
        name: "x".into(),
        kind: SourceKind::File,
        fingerprint: "f".into(),
        size_hint: 0,
        started_at: time::OffsetDateTime::UNIX_EPOCH,
        encoding: Default::default(),
        index_of: None,
        indexed_tree_hash: None,
    }
}

fn recorder() -> Recorder {
    Recorder {
        max_parts: 10_000,
        ..Recorder::default()
    }
}

const MIB: usize = 1 << 20;

/// `data` put through `store` in 1 MiB parts.
async fn put_data(store: &Recorder, options: &PutOptions, data: Bytes) -> Result<ArchiveRef> {
    put(store, &meta(), options, parts_from_bytes(data, 1 << 20)).await
}

fn resuming(resume: Resume) -> PutOptions {
    PutOptions {
        resume: Some(resume),
        ..PutOptions::default()
    }
}

fn data(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>())
}

/// Collects events, answering `Completing` as a caller must.
fn events() -> (
    UnboundedSender<UploadEvent>,
    std::sync::Arc<Mutex<Vec<String>>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let text = match event {
                UploadEvent::Started(token) => format!("started {token}"),
                UploadEvent::PartStored { number, receipt } => {
                    format!("stored {number} {receipt}")
                }
                UploadEvent::Completing { size, recorded, .. } => {
                    // Written down before the answer, which lets the upload finish.
                    log.lock().unwrap().push(format!("completing {size}"));
                    recorded.done();
                    continue;
                }
            };
            log.lock().unwrap().push(text);
        }
    });
    (tx, seen)
}

#[tokio::test]
async fn one_part_goes_up_whole_and_several_as_a_multipart_upload() {
    let store = recorder();
    let one = put(
        &store,
        &meta(),
        &PutOptions::default(),
        parts_from_bytes(data(10), 1 << 20),
    )
    .await
    .unwrap();
    assert_eq!(one.archive_id, "whole");
    let bytes = data(2 * MIB + 5);
    let many = put(
        &store,
        &meta(),
        &PutOptions::default(),
        parts_from_bytes(bytes.clone(), 1 << 20),
    )
    .await
    .unwrap();
    assert_eq!(
        (many.size, many.tree_hash),
        (bytes.len() as u64, tree_hash(&bytes))
    );
    assert_eq!(
        store.calls(),
        [
            "whole 10",
            "open 1048576",
            "part u1 0",
            "part u1 1",
            "part u1 2",
            "complete u1 [0, 1, 2] 2097157"
        ]
    );
}

/// Parts an earlier run stored come without their bytes: found in the resumed upload, they
/// count towards the size and tree hash and are not sent; one the upload does not hold
/// stops the upload, since its bytes are not there to send.
#[tokio::test]
async fn held_parts_count_without_their_bytes_and_one_not_held_stops_the_upload() {
    let bytes = data(3 * MIB + 7);
    let with_held = |bytes: &Bytes| {
        let held = [0u64, 2];
        let parts: Vec<Result<Part>> = bytes
            .chunks(MIB)
            .enumerate()
            .map(|(i, chunk)| {
                let (index, offset) = (i as u64, (i * MIB) as u64);
                Ok(if held.contains(&index) {
                    Part::held(index, offset, chunk.len() as u64, tree_hash(chunk))
                } else {
                    Part::hashed(index, offset, Bytes::copy_from_slice(chunk))
                })
            })
            .collect();
        futures::stream::iter(parts).boxed()
    };
    let store = Recorder {
        held: vec![0, 2],
        ..recorder()
    };
    let done = put(
        &store,
        &meta(),
        &resuming(Resume::new("u0")),
        with_held(&bytes),
    )
    .await
    .unwrap();
    assert_eq!(
        (done.size, done.tree_hash),
        (bytes.len() as u64, tree_hash(&bytes))
    );
    assert_eq!(
        store.calls(),
        [
            "open 1048576",
            "part u0 1",
            "part u0 3",
            "complete u0 [0, 1, 2, 3] 3145735"
        ]
    );
    let forgetful = Recorder {
        held: vec![0],
        ..recorder()
    };
    let err = put(
        &forgetful,
        &meta(),
        &resuming(Resume::new("u0")),
        with_held(&bytes),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::PartNotHeld { number: 3, .. }), "{err}");
    assert!(!forgetful.calls().iter().any(|c| c.starts_with("complete")));
    // A consumer that is not the driver cannot store a part without its bytes.
    let mut checker = PartChecker::new("test", true);
    let held = Part::held(0, 0, 5, tree_hash(b"12345"));
    assert!(matches!(
        checker.accept(&held),
        Err(Error::PartNotHeld { number: 1, .. })
    ));
}

#[tokio::test]
async fn events_report_the_start_each_part_and_the_completion_in_order() {
    let store = recorder();
    let (tx, seen) = events();
    let options = PutOptions {
        events: Some(tx),
        ..PutOptions::default()
    };
    put_data(&store, &options, data(2 * MIB)).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "started u1",
            "stored 1 r0",
            "stored 2 r1",
            "completing 2097152"
        ]
    );
}

#[tokio::test]
async fn parts_already_stored_are_not_sent_and_complete_in_order() {
    let store = Recorder {
        held: vec![0, 2],
        ..recorder()
    };
    let options = resuming(Resume::new("earlier"));
    put_data(&store, &options, data(3 * MIB)).await.unwrap();
    assert_eq!(
        store.calls(),
        [
            "open 1048576",
            "part earlier 1",
            "complete earlier [0, 1, 2] 3145728"
        ]
    );
}

#[tokio::test]
async fn a_resumed_upload_continues_even_when_one_part_remains() {
    let store = Recorder {
        held: vec![0],
        ..recorder()
    };
    let options = resuming(Resume::new("earlier"));
    put_data(&store, &options, data(MIB)).await.unwrap();
    assert_eq!(
        store.calls(),
        ["open 1048576", "complete earlier [0] 1048576"]
    );
}

#[tokio::test]
async fn a_failed_upload_is_aborted_unless_the_caller_keeps_it() {
    for (on_failure, aborted) in [(OnFailure::Abort, true), (OnFailure::Keep, false)] {
        let store = Recorder {
            refuse: Some(1),
            ..recorder()
        };
        let options = PutOptions {
            on_failure,
            ..PutOptions::default()
        };
        let result = put_data(&store, &options, data(3 * MIB)).await;
        assert!(result.is_err());
        let calls = store.calls();
        assert_eq!(calls.contains(&"abort u1".to_owned()), aborted, "{calls:?}");
        assert!(
            !calls.iter().any(|c| c.starts_with("complete")),
            "{calls:?}"
        );
    }
}

/// Parts already on their way when the source fails are stored when the upload is kept for
/// resuming (the next run need not send them), and cancelled when it is aborted anyway.
#[tokio::test]
async fn parts_in_flight_finish_only_for_an_upload_kept_for_resuming() {
    for (on_failure, finished) in [(OnFailure::Keep, true), (OnFailure::Abort, false)] {
        let store = Recorder {
            concurrency: 4,
            part_delay: std::time::Duration::from_millis(200),
            ..recorder()
        };
        let two: Vec<_> = parts_from_bytes(data(3 * MIB), 1 << 20)
            .take(2)
            .collect()
            .await;
        let parts = futures::stream::iter(two)
            .chain(futures::stream::iter([Err(Error::Source("gone".into()))]))
            .boxed();
        let options = PutOptions {
            on_failure,
            ..PutOptions::default()
        };
        let result = put(&store, &meta(), &options, parts).await;
        assert!(matches!(result, Err(Error::Source(_))), "{result:?}");
        let calls = store.calls();
        let stored = calls.iter().filter(|c| c.starts_with("part ")).count();
        assert_eq!(stored, if finished { 2 } else { 0 }, "{calls:?}");
    }
}

#[tokio::test]
async fn the_part_limit_stops_the_upload_before_one_part_too_many() {
    let store = Recorder {
        max_parts: 2,
        ..recorder()
    };
    let err = put(
        &store,
        &meta(),
        &PutOptions::default(),
        parts_from_bytes(data(3 * MIB), 1 << 20),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("outgrew 2 parts of 1048576 bytes; set a larger [recorder] part_size"),
        "{err}"
    );
    assert_eq!(
        store.calls(),
        ["open 1048576", "part u1 0", "part u1 1", "abort u1"]
    );
}

#[tokio::test]
async fn a_part_whose_hash_does_not_match_its_bytes_is_refused() {
    let store = recorder();
    let mut parts: Vec<_> =
        futures::StreamExt::collect(parts_from_bytes(data(2 * MIB), 1 << 20)).await;
    if let Some(Ok(part)) = parts.get_mut(1) {
        // A part from elsewhere, whose maker did not hash these bytes.
        part.tree_hash = tree_hash(b"other bytes");
        part.hash_from_data = false;
    }
    let err = put(
        &store,
        &meta(),
        &PutOptions::default(),
        futures::stream::iter(parts).boxed(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(!store.calls().iter().any(|c| c.starts_with("complete")));
}

#[tokio::test]
async fn an_upload_completed_by_the_run_that_stopped_is_not_sent_again() {
    let bytes = data(2 * MIB);
    let earlier = archive("made-before", bytes.len() as u64, tree_hash(&bytes));
    let store = Recorder {
        completed_before: Some(earlier.clone()),
        ..recorder()
    };
    let options = resuming(Resume {
        completing: Some((bytes.len() as u64, tree_hash(&bytes))),
        ..Resume::new("earlier")
    });
    let stored = put_data(&store, &options, bytes).await.unwrap();
    assert_eq!(stored, earlier);
    assert_eq!(store.calls(), ["complete again earlier"]);

    // Gone (aborted, expired): the upload starts over from the resumed one.
    let store = recorder();
    put_data(&store, &options, data(2 * MIB)).await.unwrap();
    assert_eq!(store.calls()[0], "complete again earlier");
    assert_eq!(store.calls()[1], "open 1048576");
}
