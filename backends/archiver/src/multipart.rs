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
    let receipts = match outcome {
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
    complete_in_order(
        store,
        meta,
        options,
        &upload,
        &checker,
        receipts,
        already_stored,
    )
    .await
}

/// Ends the upload with every part's receipt in order, after journaling that it is completing.
async fn complete_in_order<S: MultipartStore>(
    store: &S,
    meta: &ArchiveMeta,
    options: &PutOptions,
    upload: &S::Upload,
    checker: &PartChecker,
    mut receipts: Vec<(u64, S::Receipt)>,
    already_stored: Vec<(u64, S::Receipt)>,
) -> Result<ArchiveRef> {
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
    store.complete(upload, receipts, size, tree_hash).await
}

#[cfg(test)]
mod tests;
