//! S3's upload primitives for the archiver crate's one upload driver: one part with PutObject,
//! more as a resumable multipart upload with a CRC64NVME checksum on every part and the whole,
//! and part receipts recorded for a later run.

use std::sync::Mutex;

use crate::*;
use glacier_backup_archiver::multipart::{
    MultipartStore, Opened, Resume, StoredPart, UploadLimits,
};
use glacier_backup_archiver::TreeHash;

/// Where an archive goes among the keys of its source path and start time.
pub(crate) enum KeyChoice {
    /// No object has this key yet.
    Free(String),
    /// This key already holds these very bytes (size and tree-hash tag): an earlier run stored
    /// them and stopped before recording them.
    Holds(String),
}

impl S3Archiver {
    /// A key for a new archive that no object has yet (`.1`, `.2`... appended if needed).
    pub(crate) async fn fresh_key(&self, meta: &ArchiveMeta) -> Result<String> {
        match self.key_for_bytes(meta, None).await? {
            KeyChoice::Free(key) | KeyChoice::Holds(key) => Ok(key),
        }
    }

    /// The first free key of `meta`'s, unless one before it already holds `same` (size and
    /// tree hash): a key names a source path and start time, so such an object is this
    /// archive, stored by an earlier run that stopped before recording it (a migration's copy
    /// keeps the original start time, so its rerun comes here).
    async fn key_for_bytes(
        &self,
        meta: &ArchiveMeta,
        same: Option<(u64, TreeHash)>,
    ) -> Result<KeyChoice> {
        // An index goes beside its archive (whose id is its whole key), replacing any index an
        // earlier run left there: an archive has one index, the latest.
        if let Some(archive) = &meta.index_of {
            return Ok(KeyChoice::Free(index_key(archive)));
        }
        let base = format!("{}{}", self.settings.prefix, key_for(meta));
        let client = self.client().await?;
        let mut key = base.clone();
        for n in 1..1000 {
            match client
                .head_object()
                .bucket(self.bucket())
                .key(&key)
                .send()
                .await
            {
                Ok(head) => {
                    if let Some((size, tree_hash)) = same {
                        let sized = head.content_length().map(|len| len as u64) == Some(size);
                        // A tag that cannot be read is no proof: the key is passed over.
                        if sized
                            && self.tree_hash_tag(&key).await.ok().flatten().as_deref()
                                == Some(tree_hash.to_hex().as_str())
                        {
                            return Ok(KeyChoice::Holds(key));
                        }
                    }
                    key = format!("{base}.{n}");
                }
                Err(e) if ERRORS.is_not_found(&e) => return Ok(KeyChoice::Free(key)),
                Err(e) => return Err(ERRORS.map(&format!("checking key {key}"), e)),
            }
        }
        Err(remote(format!("no free key near {base}"), false))
    }

    /// Stores a one-part archive with PutObject, unless an earlier run already stored it at
    /// its key (then it is found, not made twice).
    pub(crate) async fn put_single(&self, meta: &ArchiveMeta, part: Part) -> Result<ArchiveRef> {
        let size = part.data.len() as u64;
        let key = match self
            .key_for_bytes(meta, Some((size, part.tree_hash)))
            .await?
        {
            KeyChoice::Free(key) => key,
            KeyChoice::Holds(key) => {
                tracing::info!(
                    "{}: {key} already holds this archive (an earlier run stored it and \
                     stopped before recording it); it is not stored again",
                    shown(&meta.source_path)
                );
                return Ok(ArchiveRef {
                    archive_id: key,
                    size,
                    tree_hash: part.tree_hash,
                    description: None,
                });
            }
        };
        let (sse, kms_key) = self.encryption();
        let mut metadata = Self::metadata(meta);
        metadata.insert(TREE_HASH_TAG.to_owned(), part.tree_hash.to_hex());
        let checksum = crc64(&part.data);
        let out = self
            .client()
            .await?
            .put_object()
            .bucket(self.bucket())
            .key(&key)
            .storage_class(self.class_for(meta))
            .set_metadata(Some(metadata))
            .tagging(format!("{TREE_HASH_TAG}={}", part.tree_hash.to_hex()))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(&checksum)
            .body(SdkByteStream::from(part.data))
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("uploading {key}"), e))?;
        check_crc(&key, out.checksum_crc64_nvme(), &checksum)?;
        Ok(ArchiveRef {
            archive_id: key,
            size,
            tree_hash: part.tree_hash,
            description: None,
        })
    }

    /// Continues `resume` (token `<upload id>\n<key>`) if S3 still has it, or starts a new
    /// upload. What S3 holds comes from ListParts, or, when S3's answer cannot be read, from the
    /// receipts recorded by the earlier run.
    pub(crate) async fn start_or_resume(
        &self,
        meta: &ArchiveMeta,
        resume: Option<&Resume>,
    ) -> Result<Opened<OpenedUpload>> {
        let opened = |upload_id: &str, key: &str, stored: StoredParts, newly_known: bool| Opened {
            upload: OpenedUpload {
                upload_id: upload_id.to_owned(),
                key: key.to_owned(),
                stored,
                whole: Mutex::new(WholeCrc::default()),
                part_checksums: Mutex::default(),
            },
            newly_known: newly_known.then(|| format!("{upload_id}\n{key}")),
        };
        let receipts = resume.map(|r| r.receipts.as_slice()).unwrap_or_default();
        if let Some((upload_id, key)) = resume.and_then(|r| r.token.split_once('\n')) {
            match self.stored_parts(key, upload_id).await {
                Ok(stored) => {
                    tracing::info!(
                        "{}: resuming upload {upload_id}: S3 already has {} part(s)",
                        shown(&meta.source_path),
                        stored.len()
                    );
                    return Ok(opened(upload_id, key, stored, false));
                }
                Err(Error::NotFound { .. }) => tracing::warn!(
                    "{}: earlier upload {upload_id} no longer exists; starting over",
                    shown(&meta.source_path)
                ),
                Err(e) if e.is_temporary() => return Err(e),
                Err(e) if !receipts.is_empty() => {
                    // Some S3 stand-ins answer ListParts in a form the SDK cannot read; the
                    // receipts recorded part by part say the same.
                    tracing::warn!(
                        "{}: cannot list the parts of earlier upload {upload_id} ({e}); resuming \
                         from the {} part(s) recorded in the ledger",
                        shown(&meta.source_path),
                        receipts.len()
                    );
                    return Ok(opened(upload_id, key, parse_receipts(receipts), false));
                }
                Err(e) => {
                    tracing::warn!(
                        "{}: cannot list the parts of earlier upload {upload_id} ({e}); starting over",
                        shown(&meta.source_path)
                    );
                    let token = format!("{upload_id}\n{key}");
                    if let Err(abort) = self.abort_upload(&token).await {
                        tracing::warn!("could not abort upload {upload_id}: {abort}");
                    }
                }
            }
        }
        let key = self.fresh_key(meta).await?;
        let (sse, kms_key) = self.encryption();
        let out = self
            .client()
            .await?
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(&key)
            .storage_class(self.class_for(meta))
            .set_metadata(Some(Self::metadata(meta)))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("starting a multipart upload of {key}"), e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| remote("S3 returned no upload id".into(), false))?
            .to_owned();
        Ok(opened(&upload_id, &key, StoredParts::new(), true))
    }

    pub(crate) async fn stored_parts(&self, key: &str, upload_id: &str) -> Result<StoredParts> {
        let client = self.client().await?;
        let mut stored = StoredParts::new();
        let mut marker: Option<String> = None;
        loop {
            let out = client
                .list_parts()
                .bucket(self.bucket())
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| {
                    ERRORS.map_missing(
                        "listing the parts of an earlier upload",
                        &format!("multipart upload {upload_id}"),
                        e,
                    )
                })?;
            for part in out.parts() {
                if let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) {
                    let size = part.size().unwrap_or(0) as u64;
                    stored.insert(
                        number,
                        (
                            size,
                            etag.to_owned(),
                            part.checksum_crc64_nvme().map(str::to_owned),
                        ),
                    );
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(stored);
            }
            marker = out.next_part_number_marker().map(str::to_owned);
        }
    }
}

/// An open multipart upload of this run.
pub struct OpenedUpload {
    upload_id: String,
    key: String,
    /// What S3 already holds of it.
    stored: StoredParts,
    /// The whole object's CRC64NVME, every part's joined in order.
    whole: Mutex<WholeCrc>,
    /// Each part's CRC64NVME, taken when the part was joined into `whole`, until it is sent.
    part_checksums: Mutex<std::collections::HashMap<i32, String>>,
}

/// A whole object's CRC64NVME, built from its parts' checksums (CRCs combine without the
/// bytes, so a part stored by an earlier run counts by the checksum S3 holds for it).
#[derive(Default)]
struct WholeCrc(Option<u64>);

impl WholeCrc {
    fn join(&mut self, part: u64, len: u64) {
        use crc_fast::{checksum_combine, CrcAlgorithm::Crc64Nvme};
        self.0 = Some(match self.0 {
            None => part,
            Some(whole) => checksum_combine(Crc64Nvme, whole, part, len),
        });
    }

    fn finish(&self) -> u64 {
        self.0
            .unwrap_or_else(|| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, b""))
    }
}

impl OpenedUpload {
    fn token(&self) -> String {
        format!("{}\n{}", self.upload_id, self.key)
    }
}

#[async_trait]
impl MultipartStore for S3Archiver {
    type Upload = OpenedUpload;
    type Receipt = CompletedPart;

    fn backend(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> UploadLimits {
        UploadLimits {
            max_parts: self.settings.max_parts,
            concurrency: self.settings.connection.concurrency,
            // S3 knows nothing of tree hashes, so the parts' hashes are checked here.
            verify_part_hashes: true,
        }
    }

    async fn put_whole(&self, meta: &ArchiveMeta, part: Part) -> Result<ArchiveRef> {
        self.put_single(meta, part).await
    }

    async fn open(
        &self,
        meta: &ArchiveMeta,
        _part_size: u64,
        resume: Option<&Resume>,
    ) -> Result<Opened<OpenedUpload>> {
        self.start_or_resume(meta, resume).await
    }

    /// Also joins every part, in order, into the whole object's checksum. A held part (an
    /// earlier run's, without its bytes) counts by the checksum S3 reports for it.
    fn already_stored(&self, upload: &OpenedUpload, part: &Part) -> Option<CompletedPart> {
        let number = part_number(part);
        let stored = upload
            .stored
            .get(&number)
            .filter(|(size, _, _)| *size == part.len());
        let (checksum, crc) = match (part.held, stored) {
            (Some(_), Some((_, _, Some(crc)))) => (crc.clone(), decode_crc(crc)?),
            // The driver reports a held part that is not there.
            (Some(_), _) => return None,
            (None, _) => {
                let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &part.data);
                (encode_crc(crc), crc)
            }
        };
        upload.whole.lock().expect("crc lock").join(crc, part.len());
        if let Some((_, etag, stored_crc)) = stored {
            if stored_crc.as_deref() == Some(checksum.as_str()) {
                return Some(
                    CompletedPart::builder()
                        .part_number(number)
                        .e_tag(etag)
                        .checksum_crc64_nvme(checksum)
                        .build(),
                );
            }
        }
        // To be sent: `put_part` takes the checksum from here instead of a second pass.
        upload
            .part_checksums
            .lock()
            .expect("crc lock")
            .insert(number, checksum);
        None
    }

    async fn put_part(
        &self,
        upload: &OpenedUpload,
        part: Part,
    ) -> Result<StoredPart<CompletedPart>> {
        let (key, size, number) = (&upload.key, part.data.len(), part_number(&part));
        let taken = upload
            .part_checksums
            .lock()
            .expect("crc lock")
            .remove(&number);
        let checksum = taken.unwrap_or_else(|| crc64(&part.data));
        let out = self
            .client()
            .await?
            .upload_part()
            .bucket(self.bucket())
            .key(key)
            .upload_id(&upload.upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(&checksum)
            .body(SdkByteStream::from(part.data))
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("uploading part {number} of {key}"), e))?;
        check_crc(
            &format!("part {number}"),
            out.checksum_crc64_nvme(),
            &checksum,
        )?;
        self.parts_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(StoredPart {
            // Some S3 stand-ins answer ListParts in a form the SDK cannot read: the receipts
            // let a later run resume anyway.
            note: out
                .e_tag()
                .map(|etag| format!("{etag}\t{checksum}\t{size}")),
            receipt: CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .checksum_crc64_nvme(checksum)
                .build(),
        })
    }

    async fn complete(
        &self,
        upload: &OpenedUpload,
        receipts: Vec<CompletedPart>,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<ArchiveRef> {
        let key = &upload.key;
        let checksum = encode_crc(upload.whole.lock().expect("crc lock").finish());
        let client = self.client().await?;
        let out = client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(&upload.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(receipts))
                    .build(),
            )
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc64_nvme(&checksum)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("completing the upload of {key}"), e))?;
        check_crc(key, out.checksum_crc64_nvme(), &checksum)?;
        self.tag_tree_hash(key, tree_hash).await?;
        Ok(ArchiveRef {
            archive_id: key.clone(),
            size,
            tree_hash,
            description: None,
        })
    }

    /// The upload is gone from S3's open uploads, and an object of the recorded size is at its
    /// key (keys are chosen free, so it is the one this upload made): completed. Its tree-hash
    /// tag is set if the run stopped before setting it.
    async fn complete_again(
        &self,
        _meta: &ArchiveMeta,
        resume: &Resume,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<Option<ArchiveRef>> {
        let Some((upload_id, key)) = resume.token.split_once('\n') else {
            return Ok(None);
        };
        match self.stored_parts(key, upload_id).await {
            // Still open: not completed, so it is continued.
            Ok(_) => return Ok(None),
            Err(e) if e.is_temporary() => return Err(e),
            Err(_) => {}
        }
        let client = self.client().await?;
        let head = match client
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(e) if ERRORS.is_not_found(&e) => return Ok(None),
            Err(e) => return Err(ERRORS.map(&format!("checking {key}"), e)),
        };
        if head.content_length().map(|len| len as u64) != Some(size) {
            return Ok(None);
        }
        let tagged = self.tree_hash_tag(key).await.ok().flatten();
        match tagged {
            Some(tag) if tag != tree_hash.to_hex() => return Ok(None),
            Some(_) => {}
            None => self.tag_tree_hash(key, tree_hash).await?,
        }
        Ok(Some(ArchiveRef {
            archive_id: key.to_owned(),
            size,
            tree_hash,
            description: None,
        }))
    }

    async fn abort(&self, upload: &OpenedUpload) -> Result<()> {
        self.abort_upload(&upload.token()).await
    }
}

impl S3Archiver {
    /// Tags an object with its tree hash (after the upload: S3 computes nothing like it).
    async fn tag_tree_hash(&self, key: &str, tree_hash: TreeHash) -> Result<()> {
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .tag_set(
                aws_sdk_s3::types::Tag::builder()
                    .key(TREE_HASH_TAG)
                    .value(tree_hash.to_hex())
                    .build()
                    .expect("key and value are set"),
            )
            .build()
            .expect("tag set is set");
        self.client()
            .await?
            .put_object_tagging()
            .bucket(self.bucket())
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map(drop)
            .map_err(|e| ERRORS.map(&format!("tagging {key} with its tree hash"), e))
    }
}

/// S3 numbers parts from 1.
fn part_number(part: &Part) -> i32 {
    i32::try_from(part.index + 1).expect("the driver keeps part counts within max_parts")
}

/// Receipts written by `upload_part` (`ETag \t CRC64 \t size`) back into stored parts.
pub(crate) fn parse_receipts(receipts: &[(u64, String)]) -> StoredParts {
    receipts
        .iter()
        .filter_map(|(number, receipt)| {
            let mut fields = receipt.split('\t');
            let (etag, crc, size) = (fields.next()?, fields.next()?, fields.next()?.parse().ok()?);
            Some((
                i32::try_from(*number).ok()?,
                (size, etag.to_owned(), Some(crc.to_owned())),
            ))
        })
        .collect()
}

pub(crate) fn check_crc(what: &str, reported: Option<&str>, ours: &str) -> Result<()> {
    match reported {
        Some(theirs) if theirs != ours => Err(Error::Integrity {
            backend: NAME,
            archive_id: what.to_owned(),
            expected: ours.to_owned(),
            actual: theirs.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Part checksums joined in order give the whole object's, as S3 computes it, with or
    /// without the bytes of the earlier parts.
    #[test]
    fn joined_part_checksums_give_the_whole_objects_crc() {
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = WholeCrc::default();
        for part in data.chunks(1_500_000) {
            let crc = decode_crc(&crate::crc64(part)).unwrap();
            whole.join(crc, part.len() as u64);
        }
        assert_eq!(encode_crc(whole.finish()), crate::crc64(&data));
        assert_eq!(
            WholeCrc::default().finish(),
            decode_crc(&crate::crc64(b"")).unwrap()
        );
        // The published check value of CRC-64/NVME.
        assert_eq!(
            crate::crc64(b"123456789"),
            crate::encode_crc(0xae8b_1486_0a79_9888)
        );
    }

    /// Metadata stays within S3's 2 KB: many recipients, then a long fingerprint and name, give
    /// way; the layers never do, and a path that fits is kept.
    #[test]
    fn metadata_gives_way_in_order_to_fit_s3s_two_kilobytes() {
        let recipient = format!("age1{}", "q".repeat(58));
        let mut meta = ArchiveMeta {
            source_path: "/data/photos".into(),
            name: "photos.tar".into(),
            kind: SourceKind::Directory,
            fingerprint: "v1:".to_owned() + &"ab".repeat(32),
            size_hint: 0,
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            encoding: glacier_backup_archiver::Encoding {
                compression: glacier_backup_archiver::Compression::Zstd(Some(3)),
                encrypted: true,
                recipients: vec![recipient.clone(); 3],
            },
            index_of: None,
            indexed_tree_hash: None,
        };
        let few = S3Archiver::metadata(&meta);
        assert!(few.contains_key("gb-recipients"));
        meta.encoding.recipients = vec![recipient; 40];
        let many = S3Archiver::metadata(&meta);
        assert!(metadata_size(&many) <= METADATA_BUDGET);
        assert!(!many.contains_key("gb-recipients"));
        for kept in ["gb-encoding", "gb-fingerprint", "gb-source-path", "gb-name"] {
            assert!(many.contains_key(kept), "{kept}");
        }
        meta.source_path = format!("/{}", "日本".repeat(300)).into();
        let long = S3Archiver::metadata(&meta);
        assert!(metadata_size(&long) <= METADATA_BUDGET);
        assert!(!long.contains_key("gb-source-path"));
        assert_eq!(long["gb-encoding"], "zstd3+age");
    }
}
