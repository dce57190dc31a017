//! The one upload driver for backends that store archives in parts.
//!
//! A backend implements [`MultipartStore`]: the service's primitives (store a whole archive in
//! one request, open an upload, store a part, complete, abort). [`put`] does the rest, the same
//! way for every backend: it tells a one-part archive from a multipart one, checks every part
//! (order, sizes, hashes where the service does not), enforces the part-count limit, keeps
//! `concurrency` parts in flight (the memory bound: `concurrency x part size`), skips parts an
//! interrupted upload already stored, reports progress to the caller, and aborts a failed
//! upload unless the caller keeps it to resume. A stream stage or a rate limit plugs in here,
//! once, for every backend.

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

use crate::parts::{shape, upload_concurrently, PartChecker, Shape};
use crate::shown::shown;
use crate::treehash::TreeHash;
use crate::{ArchiveMeta, ArchiveRef, Error, Part, PartStream, Recorded, Result, UploadEvent};

/// How to upload one archive, apart from what the archive is ([`ArchiveMeta`]).
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// An interrupted upload of the same unchanged source to continue. Backends that cannot
    /// resume ignore it; those that can start over when it is no longer valid.
    pub resume: Option<Resume>,
    /// Where the upload's progress goes, so the caller can record it as it happens. A caller
    /// that sets it must read it while `put` runs and answer each [`UploadEvent::Completing`]:
    /// the upload waits for that answer.
    pub events: Option<UnboundedSender<UploadEvent>>,
    /// What becomes of a multipart upload that fails.
    pub on_failure: OnFailure,
}

/// What an earlier run recorded of an upload it did not finish.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The token sent in [`UploadEvent::Started`].
    pub token: String,
    /// The [`UploadEvent::PartStored`] receipts: the backend's own notes of what it stored, for
    /// when the service cannot say.
    pub receipts: Vec<(u64, String)>,
    /// Size and tree hash from an [`UploadEvent::Completing`]: the run stopped while completing
    /// the upload, so completing is asked again (the service answers with the archive it made)
    /// before anything is sent.
    pub completing: Option<(u64, TreeHash)>,
}

impl Resume {
    /// The upload named by `token`, with nothing else recorded of it.
    pub fn new(token: impl Into<String>) -> Self {
        Resume {
            token: token.into(),
            receipts: Vec::new(),
            completing: None,
        }
    }
}

/// What becomes of a multipart upload that fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Abort it: nobody will resume it, so it must not hold storage.
    #[default]
    Abort,
    /// Leave it for a later run to resume (the caller recorded its token).
    Keep,
}

/// Limits of a backend's multipart uploads.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Most parts in one upload.
    pub max_parts: u64,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// Re-hash each part's bytes (unless its maker hashed them, [`Part::hash_from_data`]) and
    /// compare with the hash it carries: for services that know nothing of tree hashes
    /// (Glacier checks each part's tree hash itself).
    pub verify_part_hashes: bool,
}

/// An upload [`MultipartStore::open`] started or continued.
pub struct Opened<U> {
    /// The backend's handle on it.
    pub upload: U,
    /// The token to report as [`UploadEvent::Started`] when the caller does not know it yet (a
    /// new upload, or one an earlier run left unrecorded); `None` when it is the one resumed.
    pub newly_known: Option<String>,
}

/// A part the service confirmed.
pub struct StoredPart<R> {
    /// What completing the upload needs of it.
    pub receipt: R,
    /// A note for the caller to record (reported as [`UploadEvent::PartStored`]), when the
    /// service may later be unable to say what it holds.
    pub note: Option<String>,
}

/// The service primitives a multipart backend implements; [`put`] drives them.
#[async_trait]
pub trait MultipartStore: Send + Sync {
    /// The backend's handle on an open upload (ids, key, state shared across parts).
    type Upload: Send + Sync;
    /// What completing needs of each part.
    type Receipt: Send;

    /// Backend name, also its config section.
    fn backend(&self) -> &'static str;

    /// Part count, concurrency and checks.
    fn limits(&self) -> UploadLimits;

    /// Stores an archive that fits in one part, in one request.
    async fn put_whole(&self, meta: &ArchiveMeta, part: Part) -> Result<ArchiveRef>;

    /// Continues `resume` when the service still has it with this part size, else starts a new
    /// upload.
    async fn open(
        &self,
        meta: &ArchiveMeta,
        part_size: u64,
        resume: Option<&Resume>,
    ) -> Result<Opened<Self::Upload>>;

    /// Called for every part in stream order before it is sent: its receipt when the upload
    /// already holds it (then it is not sent).
    fn already_stored(&self, upload: &Self::Upload, part: &Part) -> Option<Self::Receipt>;

    /// Stores one part.
    async fn put_part(
        &self,
        upload: &Self::Upload,
        part: Part,
    ) -> Result<StoredPart<Self::Receipt>>;

    /// Completes the upload from its parts' receipts, in part order.
    async fn complete(
        &self,
        upload: &Self::Upload,
        receipts: Vec<Self::Receipt>,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<ArchiveRef>;

    /// Asks again to complete an upload an earlier run was completing when it stopped: the
    /// archive, if the service made it; `None` when the upload is gone or completing cannot be
    /// asked twice (the default), and the upload starts over.
    async fn complete_again(
        &self,
        meta: &ArchiveMeta,
        resume: &Resume,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<Option<ArchiveRef>> {
        let _ = (meta, resume, size, tree_hash);
        Ok(None)
    }

    /// Gives up an upload; one that no longer exists is not an error.
    async fn abort(&self, upload: &Self::Upload) -> Result<()>;
}

/// Stores one archive through `store`: the driver every multipart backend's
/// [`Archiver::put`](crate::Archiver::put) calls.
pub async fn put<S: MultipartStore>(
    store: &S,
    meta: &ArchiveMeta,
    options: &PutOptions,
    parts: PartStream,
) -> Result<ArchiveRef> {
    let limits = store.limits();
    let mut checker = PartChecker::new(store.backend(), limits.verify_part_hashes).allowing_held();
    let mut parts = match shape(store.backend(), parts).await? {
        // A resumed upload is continued even when the rest fits in one part.
        Shape::Single(part)
            if part.held.is_none() && (options.resume.is_none() || part.data.is_empty()) =>
        {
            checker.accept(&part)?;
            return store.put_whole(meta, part).await;
        }
        Shape::Single(part) => futures::stream::iter([Ok(part)]).boxed(),
        Shape::Multipart(parts) => parts,
    };
    if let Some(archive) = completed_earlier(store, meta, options, &mut parts).await? {
        return Ok(archive);
    }
    upload_parts(store, meta, options, checker, parts).await
}

/// Whether the run that recorded `options.resume` had its upload completed after all; if so,
/// the stream is read through (nothing is sent) so the caller's own account of it is whole.
async fn completed_earlier<S: MultipartStore>(
    store: &S,
    meta: &ArchiveMeta,
    options: &PutOptions,
    parts: &mut PartStream,
) -> Result<Option<ArchiveRef>> {
    let Some(resume) = &options.resume else {
        return Ok(None);
    };
    let Some((size, tree_hash)) = resume.completing else {
        return Ok(None);
    };
    let Some(archive) = store.complete_again(meta, resume, size, tree_hash).await? else {
        return Ok(None);
    };
    tracing::info!(
        "{}: the earlier run had completed upload {} as archive {}; nothing is sent again",
        shown(&meta.source_path),
        resume.token,
        archive.archive_id
    );
    // The archive is what the earlier run recorded; the caller compares it with this stream.
    let mut checker = PartChecker::new(store.backend(), false).allowing_held();
    while let Some(part) = parts.next().await {
        checker.accept(&part?)?;
    }
    Ok(Some(archive))
}

async fn upload_parts<S: MultipartStore>(
    store: &S,
    meta: &ArchiveMeta,
    options: &PutOptions,
    mut checker: PartChecker,
    parts: PartStream,
) -> Result<ArchiveRef> {
    let backend = store.backend();
    let limits = store.limits();
    let mut parts = parts.peekable();
    let part_size = match std::pin::Pin::new(&mut parts).peek().await {
        Some(Ok(first)) => first.len(),
        _ => 0,
    };
    let opened = store.open(meta, part_size, options.resume.as_ref()).await?;
    if let (Some(token), Some(events)) = (&opened.newly_known, &options.events) {
        // A closed channel means nobody records uploads; nothing to do about it.
        let _ = events.send(UploadEvent::Started(token.clone()));
    }
    let upload = opened.upload;
    let mut already_stored = Vec::new();
    // An upload kept for resuming keeps the parts already on their way too.
    let finish_in_flight = options.on_failure == OnFailure::Keep;
    let outcome = upload_concurrently(
        parts.boxed(),
        limits.concurrency,
        finish_in_flight,
        |part| {
            checker.accept(&part)?;
            if part.index >= limits.max_parts {
                return Err(Error::Remote {
                    backend,
                    message: format!(
                    "the archive outgrew {} parts of {part_size} bytes; set a larger [{backend}] \
                     part_size",
                    limits.max_parts
                ),
                    temporary: false,
                    source: None,
                });
            }
            if let Some(receipt) = store.already_stored(&upload, &part) {
                already_stored.push((part.index, receipt));
                return Ok(None);
            }
            if part.held.is_some() {
                return Err(Error::PartNotHeld {
                    backend,
                    number: part.index + 1,
                });
            }
            let upload = &upload;
            Ok(Some(async move {
                let index = part.index;
                let stored = store.put_part(upload, part).await?;
                if let (Some(note), Some(events)) = (stored.note, &options.events) {
                    let _ = events.send(UploadEvent::PartStored {
                        number: index + 1,
                        receipt: note,
                    });
                }
                Ok((index, stored.receipt))
            }))
        },
    )
    .await;
    let mut receipts = match outcome {
        Ok(sent) => sent,
        Err(e) => {
            if options.on_failure == OnFailure::Abort {
                if let Err(abort) = store.abort(&upload).await {
                    tracing::warn!("{backend}: could not abort the failed upload: {abort}");
                }
            }
            return Err(e);
        }
    };
    if !already_stored.is_empty() {
        tracing::info!(
            "{}: {} part(s) were already stored and were not sent again",
            shown(&meta.source_path),
            already_stored.len()
        );
    }
    receipts.extend(already_stored);
    receipts.sort_by_key(|(index, _)| *index);
    let (size, tree_hash) = (checker.size(), checker.tree_hash());
    if let Some(events) = &options.events {
        // Recorded before asking: a run stopped while the service answers then asks again
        // instead of uploading the archive a second time.
        let (recorded, answered) = Recorded::new();
        let event = UploadEvent::Completing {
            size,
            tree_hash,
            recorded,
        };
        if events.send(event).is_ok() {
            // An error means the caller is gone, and this upload with it.
            let _ = answered.await;
        }
    }
    let receipts = receipts.into_iter().map(|(_, receipt)| receipt).collect();
    store.complete(&upload, receipts, size, tree_hash).await
}

#[cfg(test)]
mod tests {
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
}
