//! Glacier's upload primitives for the archiver crate's one upload driver: one part with
//! UploadArchive, more as a resumable multipart upload (continued, adopted or aborted after a
//! crash, completed again when a run stopped while Glacier answered).

use crate::*;
use glacier_backup_archiver::multipart::{
    MultipartStore, Opened, Resume, StoredPart, UploadLimits,
};

/// An open upload nobody resumes after a day (the engine's resume window): safe to abort.
const ABANDONED_AFTER: time::Duration = time::Duration::hours(24);

impl GlacierArchiver {
    pub(crate) fn description(&self, meta: &ArchiveMeta) -> String {
        if let Some(archive) = &meta.index_of {
            return origin::index_description(archive);
        }
        if self.settings.plain_description {
            return origin::plain(meta);
        }
        let (description, shortfall) = origin::encode(meta);
        match shortfall {
            origin::Shortfall::Origin => tracing::warn!(
                "{}: the source path is too long for a Glacier description, so the vault keeps \
                 only the name {description:?}; this archive is in the ledger, but a ledger \
                 rebuilt from the vault will not know where it came from",
                shown(&meta.source_path)
            ),
            origin::Shortfall::Recipients
            | origin::Shortfall::Fingerprint
            | origin::Shortfall::Name => tracing::debug!(
                "{}: description shortened to fit Glacier's 1,024 characters",
                shown(&meta.source_path)
            ),
            origin::Shortfall::None => {}
        }
        description
    }

    pub(crate) async fn upload_single(
        &self,
        description: String,
        part: Part,
    ) -> Result<ArchiveRef> {
        let recorded = description.clone();
        let size = part.data.len() as u64;
        let sha256 = payload_sha256(part.data.clone()).await?;
        let out = self
            .client()
            .await?
            .upload_archive()
            .account_id(self.account())
            .vault_name(self.vault())
            .archive_description(description)
            .checksum(part.tree_hash.to_hex())
            .body(SdkByteStream::from(part.data))
            .customize()
            .interceptor(payload::OwnPayloadSha256::new(sha256))
            .send()
            .await
            .map_err(|e| ERRORS.map("uploading the archive", e))?;
        let archive_id = out.archive_id().unwrap_or_default().to_owned();
        check_reported_hash(&archive_id, out.checksum(), part.tree_hash)?;
        Ok(ArchiveRef {
            archive_id,
            size,
            tree_hash: part.tree_hash,
            description: Some(recorded),
        })
    }

    /// Continues `resume` if the vault still has it with the same part size, or an upload an
    /// earlier run left unrecorded, or starts a new one.
    pub(crate) async fn start_or_resume(
        &self,
        meta: &ArchiveMeta,
        part_size: u64,
        resume: Option<&Resume>,
        description: &str,
    ) -> Result<Opened<OpenedUpload>> {
        let opened = |id: String, stored: StoredParts, newly_known: bool| Opened {
            upload: OpenedUpload {
                id: id.clone(),
                stored,
                description: description.to_owned(),
            },
            newly_known: newly_known.then_some(id),
        };
        if let Some(upload_id) = resume.map(|r| &r.token) {
            match self.stored_parts(upload_id).await {
                Ok((size, stored)) if size == part_size => {
                    tracing::info!(
                        "{}: resuming upload {upload_id}: the vault already has {} part(s)",
                        shown(&meta.source_path),
                        stored.len()
                    );
                    return Ok(opened(upload_id.clone(), stored, false));
                }
                Ok((size, _)) => {
                    tracing::warn!(
                        "{}: earlier upload {upload_id} used {size}-byte parts, not {part_size}; starting over",
                        shown(&meta.source_path)
                    );
                    self.abort_upload(upload_id).await?;
                }
                Err(Error::NotFound { .. }) => tracing::warn!(
                    "{}: earlier upload {upload_id} no longer exists in the vault; starting over",
                    shown(&meta.source_path)
                ),
                Err(e) => return Err(e),
            }
        }
        if let Some((upload_id, stored)) = self.adopt_or_abort_left_behind(meta, part_size).await? {
            return Ok(opened(upload_id, stored, true));
        }
        let out = self
            .client()
            .await?
            .initiate_multipart_upload()
            .account_id(self.account())
            .vault_name(self.vault())
            .archive_description(description)
            .part_size(part_size.to_string())
            .send()
            .await
            .map_err(|e| ERRORS.map("starting a multipart upload", e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| remote("the vault returned no multipart upload id", false))?
            .to_owned();
        // A start the SDK retried after losing the first reply left another upload open with
        // this very description (same source, state and start time): nobody else's.
        for left in self.open_uploads_of(&meta.source_path).await? {
            if left.id != upload_id && left.description == description {
                self.abort_left_behind(meta, &left.id).await;
            }
        }
        Ok(opened(upload_id, StoredParts::new(), true))
    }

    /// Multipart uploads of `meta`'s source that earlier runs started and nobody records (a
    /// start whose reply was lost, a run killed before recording it): the newest one made from
    /// the same source state with the same part size is continued; others are aborted once
    /// more than a day old, when no run resumes them any more. A younger one may be another
    /// machine's upload of the same path to this vault, in progress: it is left alone.
    pub(crate) async fn adopt_or_abort_left_behind(
        &self,
        meta: &ArchiveMeta,
        part_size: u64,
    ) -> Result<Option<(String, StoredParts)>> {
        let mut adopted = None;
        for left in self.open_uploads_of(&meta.source_path).await? {
            let same_state = left.part_size == part_size
                && left.fingerprint.as_deref() == Some(meta.fingerprint.as_str());
            if adopted.is_none() && same_state {
                match self.stored_parts(&left.id).await {
                    Ok((_, stored)) => {
                        tracing::info!(
                            "{}: continuing upload {} left by an earlier run ({} part(s) stored)",
                            shown(&meta.source_path),
                            left.id,
                            stored.len()
                        );
                        adopted = Some((left.id, stored));
                        continue;
                    }
                    Err(Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            let stale = left
                .started_at
                .is_some_and(|t| time::OffsetDateTime::now_utc() - t > ABANDONED_AFTER);
            if stale {
                self.abort_left_behind(meta, &left.id).await;
            }
        }
        Ok(adopted)
    }

    pub(crate) async fn abort_left_behind(&self, meta: &ArchiveMeta, upload_id: &str) {
        tracing::info!(
            "{}: aborting upload {upload_id} left open by an earlier run",
            shown(&meta.source_path)
        );
        if let Err(e) = self.abort_upload(upload_id).await {
            tracing::warn!("could not abort upload {upload_id}: {e}");
        }
    }

    /// The vault's open multipart uploads that this tool started for `source` (by their
    /// description), newest first.
    pub(crate) async fn open_uploads_of(
        &self,
        source: &std::path::Path,
    ) -> Result<Vec<OpenUpload>> {
        let client = self.client().await?;
        let mut found = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = client
                .list_multipart_uploads()
                .account_id(self.account())
                .vault_name(self.vault())
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| ERRORS.map("listing open multipart uploads", e))?;
            for upload in out.uploads_list() {
                let origin = upload.archive_description().and_then(origin::decode);
                let (Some(id), Some(origin)) = (upload.multipart_upload_id(), origin) else {
                    continue;
                };
                if origin.source_path == source {
                    found.push(OpenUpload {
                        id: id.to_owned(),
                        description: upload.archive_description().unwrap_or_default().to_owned(),
                        started_at: origin.started_at,
                        part_size: upload.part_size_in_bytes() as u64,
                        fingerprint: origin.fingerprint,
                        created: upload.creation_date().unwrap_or_default().to_owned(),
                    });
                }
            }
            marker = out.marker().map(str::to_owned).filter(|m| !m.is_empty());
            if marker.is_none() {
                break;
            }
        }
        found.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(found)
    }

    /// Part size and parts of an unfinished upload, from ListParts (all pages).
    pub(crate) async fn stored_parts(&self, upload_id: &str) -> Result<(u64, StoredParts)> {
        let client = self.client().await?;
        let mut stored = StoredParts::new();
        let mut marker: Option<String> = None;
        let mut part_size;
        loop {
            let out = client
                .list_parts()
                .account_id(self.account())
                .vault_name(self.vault())
                .upload_id(upload_id)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| {
                    ERRORS.map_missing(
                        "listing the parts of an earlier upload",
                        &format!("multipart upload {upload_id}"),
                        e,
                    )
                })?;
            part_size = out.part_size_in_bytes() as u64;
            for part in out.parts() {
                let parsed = part.range_in_bytes().and_then(parse_range).zip(
                    part.sha256_tree_hash()
                        .and_then(|h| h.parse::<TreeHash>().ok()),
                );
                if let Some(((start, end), hash)) = parsed {
                    stored.insert(start, (end + 1 - start, hash));
                }
            }
            marker = out.marker().map(str::to_owned).filter(|m| !m.is_empty());
            if marker.is_none() {
                return Ok((part_size, stored));
            }
        }
    }

    pub(crate) async fn upload_part(&self, upload_id: &str, part: Part) -> Result<()> {
        let end = part.offset + part.data.len() as u64 - 1;
        let sha256 = payload_sha256(part.data.clone()).await?;
        let out = self
            .client()
            .await?
            .upload_multipart_part()
            .account_id(self.account())
            .vault_name(self.vault())
            .upload_id(upload_id)
            .range(format!("bytes {}-{end}/*", part.offset))
            .checksum(part.tree_hash.to_hex())
            .body(SdkByteStream::from(part.data))
            .customize()
            .interceptor(payload::OwnPayloadSha256::new(sha256))
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("uploading part {}", part.index), e))?;
        check_reported_hash(
            &format!("part {}", part.index),
            out.checksum(),
            part.tree_hash,
        )
    }

    /// CompleteMultipartUpload: the archive id. Repeated for an upload already completed with
    /// the same size and tree hash, Glacier answers with the same archive.
    pub(crate) async fn complete_upload(
        &self,
        upload_id: &str,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<String> {
        let out = self
            .client()
            .await?
            .complete_multipart_upload()
            .account_id(self.account())
            .vault_name(self.vault())
            .upload_id(upload_id)
            .archive_size(size.to_string())
            .checksum(tree_hash.to_hex())
            .send()
            .await
            .map_err(|e| {
                ERRORS.map_missing(
                    "completing the multipart upload",
                    &format!("multipart upload {upload_id}"),
                    e,
                )
            })?;
        let archive_id = out.archive_id().unwrap_or_default().to_owned();
        check_reported_hash(&archive_id, out.checksum(), tree_hash)?;
        Ok(archive_id)
    }
}

/// An open multipart upload of this run.
pub struct OpenedUpload {
    id: String,
    /// What the vault already holds of it.
    stored: StoredParts,
    /// As sent when it was started.
    description: String,
}

#[async_trait]
impl MultipartStore for GlacierArchiver {
    type Upload = OpenedUpload;
    type Receipt = ();

    fn backend(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> UploadLimits {
        UploadLimits {
            max_parts: self.settings.max_parts,
            concurrency: self.settings.connection.concurrency,
            // The vault checks each part's tree hash (sent with it) and refuses a mismatch.
            verify_part_hashes: false,
        }
    }

    async fn put_whole(&self, meta: &ArchiveMeta, part: Part) -> Result<ArchiveRef> {
        if part.data.is_empty() {
            return Err(Error::Unsupported {
                backend: NAME,
                operation: "storing a 0-byte archive (Glacier requires at least 1 byte)",
            });
        }
        self.upload_single(self.description(meta), part).await
    }

    async fn open(
        &self,
        meta: &ArchiveMeta,
        part_size: u64,
        resume: Option<&Resume>,
    ) -> Result<Opened<OpenedUpload>> {
        if subtree_level(part_size).is_none() || part_size > settings::MAX_PART_SIZE {
            return Err(remote(
                &format!("part size {part_size} is not a power-of-two number of MiB up to 4 GiB"),
                false,
            ));
        }
        let description = self.description(meta);
        self.start_or_resume(meta, part_size, resume, &description)
            .await
    }

    fn already_stored(&self, upload: &OpenedUpload, part: &Part) -> Option<()> {
        let this_part = (part.len(), part.tree_hash);
        (upload.stored.get(&part.offset) == Some(&this_part)).then_some(())
    }

    async fn put_part(&self, upload: &OpenedUpload, part: Part) -> Result<StoredPart<()>> {
        self.upload_part(&upload.id, part).await?;
        // ListParts says what the vault holds: nothing to note.
        Ok(StoredPart {
            receipt: (),
            note: None,
        })
    }

    async fn complete(
        &self,
        upload: &OpenedUpload,
        _receipts: Vec<()>,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<ArchiveRef> {
        let archive_id = self.complete_upload(&upload.id, size, tree_hash).await?;
        Ok(ArchiveRef {
            archive_id,
            size,
            tree_hash,
            description: Some(upload.description.clone()),
        })
    }

    /// Glacier answers a repeated Complete of the same size and tree hash with the archive it
    /// made the first time.
    async fn complete_again(
        &self,
        meta: &ArchiveMeta,
        resume: &Resume,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<Option<ArchiveRef>> {
        match self.complete_upload(&resume.token, size, tree_hash).await {
            Ok(archive_id) => Ok(Some(ArchiveRef {
                archive_id,
                size,
                tree_hash,
                description: Some(self.description(meta)),
            })),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn abort(&self, upload: &OpenedUpload) -> Result<()> {
        self.abort_upload(&upload.id).await
    }
}

/// The body's SHA-256, computed off the async threads.
pub(crate) async fn payload_sha256(body: bytes::Bytes) -> Result<String> {
    tokio::task::spawn_blocking(move || payload::payload_sha256(&body))
        .await
        .map_err(|e| remote(&format!("hashing a part: {e}"), false))
}

pub(crate) fn check_reported_hash(
    what: &str,
    reported: Option<&str>,
    ours: TreeHash,
) -> Result<()> {
    match reported {
        Some(hash) if !hash.eq_ignore_ascii_case(&ours.to_hex()) => Err(Error::Integrity {
            backend: NAME,
            archive_id: what.to_owned(),
            expected: ours.to_hex(),
            actual: hash.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// `"a-b"` (inclusive) -> (a, b).
pub(crate) fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

/// An open multipart upload of one source, as ListMultipartUploads describes it.
pub(crate) struct OpenUpload {
    pub(crate) id: String,
    /// As sent when it was started.
    pub(crate) description: String,
    /// When its run started it (from the description).
    pub(crate) started_at: Option<time::OffsetDateTime>,
    pub(crate) part_size: u64,
    pub(crate) fingerprint: Option<String>,
    /// ISO 8601, so newer sorts later.
    pub(crate) created: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("0-8388607"), Some((0, 8_388_607)));
        assert_eq!(parse_range("9-3"), None);
        assert_eq!(parse_range("x-3"), None);
    }
}
