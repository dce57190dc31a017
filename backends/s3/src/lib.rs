//! Stores archives as objects in an S3 bucket, in a cold storage class (GLACIER, DEEP_ARCHIVE,
//! GLACIER_IR) or a warm one, with `aws-sdk-s3`.
//!
//! Keys are `<prefix><source path>/<UTC time>[.tar]`. Metadata (`x-amz-meta-gb-*`) carries the
//! source path, kind, fingerprint and start time; the tree hash, known only once every part has
//! gone up, is an object tag (`gb-tree-hash`). Integrity: every part and the whole object carry a
//! CRC64NVME checksum that S3 verifies (full-object type for multipart uploads). Multipart uploads
//! are resumable like Glacier's: ListParts says which parts S3 has, and parts whose CRC matches
//! are not sent again.

#![warn(missing_docs)]

mod errors;
mod settings;

use errors::ERRORS;
use glacier_backup_archiver::shown;
use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart, GlacierJobParameters,
    RestoreRequest, ServerSideEncryption, StorageClass, Tier,
};
use aws_sdk_s3::Client;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures::StreamExt;
use glacier_backup_archiver::keys::archive_key;
use glacier_backup_archiver::origin::Origin;
use glacier_backup_archiver::parts::{
    shape, upload_concurrently, verified_download, PartChecker, Shape,
};
use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, ByteRange, ByteStream, Capabilities, Error, InventoryState,
    ListedArchive, Listing, Part, PartStream, RestoreOptions, RestoreState, RestoreTier, Result,
    SourceKind, UploadEvent,
};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

pub use settings::{is_cold, Encryption, S3Settings, SETTINGS, STORAGE_CLASSES};

/// Backend name.
pub const NAME: &str = "s3";
/// Tag holding the archive's SHA-256 tree hash.
pub const TREE_HASH_TAG: &str = "gb-tree-hash";
/// Days a restored copy stays readable when the caller does not say.
const DEFAULT_RESTORE_DAYS: i32 = 7;

/// The S3 archiver.
#[derive(Debug)]
pub struct S3Archiver {
    settings: S3Settings,
    client: tokio::sync::OnceCell<Client>,
    parts_sent: std::sync::atomic::AtomicU64,
}

/// What S3 already holds of an interrupted upload: part number -> (size, ETag, CRC64 base64).
type StoredParts = HashMap<i32, (u64, String, Option<String>)>;

fn crc64(data: &[u8]) -> String {
    let mut digest = crc64fast_nvme::Digest::new();
    digest.write(data);
    BASE64.encode(digest.sum64().to_be_bytes())
}

fn remote(message: String, temporary: bool) -> Error {
    Error::Remote {
        backend: NAME,
        message,
        temporary,
        source: None,
    }
}

/// Metadata values travel as HTTP headers: ASCII only, so everything else is percent-encoded.
fn header_safe(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

impl S3Archiver {
    /// An archiver for these settings. Nothing is contacted until it is used.
    pub fn new(settings: S3Settings) -> Self {
        S3Archiver {
            settings,
            client: tokio::sync::OnceCell::new(),
            parts_sent: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Multipart parts sent by this archiver so far (parts found already stored are not sent).
    pub fn parts_sent(&self) -> u64 {
        self.parts_sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Builds the archiver from the `[s3]` section.
    pub fn from_section(section: &Section) -> Result<Self, SettingsError> {
        S3Settings::from_section(section).map(Self::new)
    }

    /// The settings in use.
    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    async fn client(&self) -> Result<&Client> {
        self.client
            .get_or_try_init(|| async {
                let shared = self.settings.connection.load(NAME, "s3").await?;
                // Downloads are checked against the archive's tree hash instead; the SDK's own
                // response check trips over whole-object checksums sent with ranged reads.
                let config = aws_sdk_s3::config::Builder::from(&shared)
                    .force_path_style(self.settings.force_path_style)
                    .response_checksum_validation(
                        aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                    )
                    .build();
                Ok(Client::from_conf(config))
            })
            .await
    }

    fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    fn metadata(meta: &ArchiveMeta) -> HashMap<String, String> {
        use std::os::unix::ffi::OsStrExt;
        let path = percent_encoding::percent_encode(
            meta.source_path.as_os_str().as_bytes(),
            NON_ALPHANUMERIC,
        );
        HashMap::from([
            ("gb-source-path".to_owned(), path.to_string()),
            ("gb-kind".to_owned(), meta.kind.as_str().to_owned()),
            ("gb-name".to_owned(), header_safe(&meta.name)),
            ("gb-fingerprint".to_owned(), header_safe(&meta.fingerprint)),
            (
                "gb-started-at".to_owned(),
                meta.started_at.unix_timestamp().to_string(),
            ),
        ])
    }

    fn encryption(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.settings.encryption {
            None => (None, None),
            Some(Encryption::Aes256) => (Some(ServerSideEncryption::Aes256), None),
            Some(Encryption::Kms(key)) => (Some(ServerSideEncryption::AwsKms), key.clone()),
        }
    }

    /// A key for a new archive that no object has yet (`.1`, `.2`... appended if needed).
    async fn fresh_key(&self, meta: &ArchiveMeta) -> Result<String> {
        let base = format!(
            "{}{}",
            self.settings.prefix,
            archive_key(
                &meta.source_path,
                meta.started_at,
                meta.kind == SourceKind::Directory
            )
        );
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
                Ok(_) => key = format!("{base}.{n}"),
                Err(e) if ERRORS.is_not_found(&e) => return Ok(key),
                Err(e) => return Err(ERRORS.map(&format!("checking key {key}"), e)),
            }
        }
        Err(remote(format!("no free key near {base}"), false))
    }

    async fn put_single(&self, meta: &ArchiveMeta, part: Part) -> Result<ArchiveRef> {
        PartChecker::new(NAME, true).accept(&part)?;
        let key = self.fresh_key(meta).await?;
        let (sse, kms_key) = self.encryption();
        let mut metadata = Self::metadata(meta);
        metadata.insert(TREE_HASH_TAG.to_owned(), part.tree_hash.to_hex());
        let checksum = crc64(&part.data);
        let size = part.data.len() as u64;
        let out = self
            .client()
            .await?
            .put_object()
            .bucket(self.bucket())
            .key(&key)
            .storage_class(StorageClass::from(self.settings.storage_class.as_str()))
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

    /// Continues the upload named by `meta.resume` (`<upload id>\n<key>`) if S3 still has it,
    /// or starts a new one and reports its token on `meta.upload_events`. What S3 holds comes
    /// from ListParts, or, when S3's answer cannot be read, from the receipts recorded by the
    /// earlier run.
    async fn start_or_resume(&self, meta: &ArchiveMeta) -> Result<(String, String, StoredParts)> {
        if let Some((upload_id, key)) = meta.resume.as_deref().and_then(|t| t.split_once('\n')) {
            match self.stored_parts(key, upload_id).await {
                Ok(stored) => {
                    tracing::info!(
                        "{}: resuming upload {upload_id}: S3 already has {} part(s)",
                        shown(&meta.source_path),
                        stored.len()
                    );
                    return Ok((upload_id.to_owned(), key.to_owned(), stored));
                }
                Err(Error::NotFound { .. }) => tracing::warn!(
                    "{}: earlier upload {upload_id} no longer exists; starting over",
                    shown(&meta.source_path)
                ),
                Err(e) if e.is_temporary() => return Err(e),
                Err(e) if !meta.resume_receipts.is_empty() => {
                    // Some S3 stand-ins answer ListParts in a form the SDK cannot read; the
                    // receipts recorded part by part say the same.
                    tracing::warn!(
                        "{}: cannot list the parts of earlier upload {upload_id} ({e}); resuming \
                         from the {} part(s) recorded in the ledger",
                        shown(&meta.source_path),
                        meta.resume_receipts.len()
                    );
                    return Ok((
                        upload_id.to_owned(),
                        key.to_owned(),
                        parse_receipts(&meta.resume_receipts),
                    ));
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
            .storage_class(StorageClass::from(self.settings.storage_class.as_str()))
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
        if let Some(tx) = &meta.upload_events {
            // A closed channel means nobody records resumable uploads; nothing to do about it.
            let _ = tx.send(UploadEvent::Started(format!("{upload_id}\n{key}")));
        }
        Ok((upload_id, key, StoredParts::new()))
    }

    async fn stored_parts(&self, key: &str, upload_id: &str) -> Result<StoredParts> {
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

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: Part,
        checksum: String,
        events: Option<&tokio::sync::mpsc::UnboundedSender<UploadEvent>>,
    ) -> Result<CompletedPart> {
        let size = part.data.len();
        let number = i32::try_from(part.index + 1).expect("at most 10,000 parts");
        let out = self
            .client()
            .await?
            .upload_part()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
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
        if let (Some(tx), Some(etag)) = (events, out.e_tag()) {
            let _ = tx.send(UploadEvent::PartStored {
                number: number as u64,
                receipt: format!("{etag}\t{checksum}\t{size}"),
            });
        }
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .checksum_crc64_nvme(checksum)
            .build())
    }

    async fn put_multipart(&self, meta: &ArchiveMeta, parts: PartStream) -> Result<ArchiveRef> {
        let (upload_id, key, stored) = self.start_or_resume(meta).await?;
        // S3 knows nothing of tree hashes, so the parts' hashes are checked here.
        let mut checker = PartChecker::new(NAME, true);
        let mut whole = crc64fast_nvme::Digest::new();
        let mut completed: Vec<CompletedPart> = Vec::new();
        let mut skipped = 0u64;
        let max_parts = self.settings.max_parts;
        let outcome = upload_concurrently(parts, self.settings.connection.concurrency, |part| {
            checker.accept(&part)?;
            if part.index >= max_parts {
                return Err(remote(
                    format!(
                        "the archive outgrew {max_parts} parts of {} bytes; set a larger [s3] part_size",
                        part.data.len()
                    ),
                    false,
                ));
            }
            whole.write(&part.data);
            let checksum = crc64(&part.data);
            let number = i32::try_from(part.index + 1).expect("part count is limited above");
            if let Some((size, etag, stored_crc)) = stored.get(&number) {
                if *size == part.data.len() as u64 && stored_crc.as_deref() == Some(checksum.as_str()) {
                    completed.push(
                        CompletedPart::builder()
                            .part_number(number)
                            .e_tag(etag)
                            .checksum_crc64_nvme(checksum)
                            .build(),
                    );
                    skipped += 1;
                    return Ok(None);
                }
            }
            Ok(Some(self.upload_part(&key, &upload_id, part, checksum, meta.upload_events.as_ref())))
        })
        .await;
        let outcome = outcome.map(|uploaded| completed.extend(uploaded));
        if let Err(e) = outcome {
            if meta.upload_events.is_none() {
                if let Err(abort) = self.abort_upload(&format!("{upload_id}\n{key}")).await {
                    tracing::warn!("could not abort upload {upload_id}: {abort}");
                }
            }
            return Err(e);
        }
        if skipped > 0 {
            tracing::info!("{skipped} part(s) were already in S3 and were not sent again");
        }
        completed.sort_by_key(|p| p.part_number());
        let checksum = BASE64.encode(whole.sum64().to_be_bytes());
        let client = self.client().await?;
        let out = client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc64_nvme(&checksum)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("completing the upload of {key}"), e))?;
        check_crc(&key, out.checksum_crc64_nvme(), &checksum)?;
        let tree_hash = checker.tree_hash();
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
        client
            .put_object_tagging()
            .bucket(self.bucket())
            .key(&key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("tagging {key} with its tree hash"), e))?;
        Ok(ArchiveRef {
            archive_id: key,
            size: checker.size(),
            tree_hash,
            description: None,
        })
    }

    /// Fills in a listed object's origin and tree hash.
    async fn describe(&self, mut archive: ListedArchive) -> Result<ListedArchive> {
        let key = archive.archive_id.clone();
        let client = self.client().await?;
        let head = client
            .head_object()
            .bucket(self.bucket())
            .key(&key)
            .send()
            .await
            .map_err(|e| ERRORS.map(&format!("reading the metadata of {key}"), e))?;
        let metadata = head.metadata().cloned().unwrap_or_default();
        archive.origin = origin_from_metadata(&metadata);
        let mut tree_hash = metadata.get(TREE_HASH_TAG).cloned();
        if tree_hash.is_none() && archive.origin.is_some() {
            // Tags of archived objects cannot always be read (moto refuses for DEEP_ARCHIVE);
            // the hash is then unknown, which is not an error.
            if let Ok(tags) = client
                .get_object_tagging()
                .bucket(self.bucket())
                .key(&key)
                .send()
                .await
            {
                tree_hash = tags
                    .tag_set()
                    .iter()
                    .find(|t| t.key() == TREE_HASH_TAG)
                    .map(|t| t.value().to_owned());
            }
        }
        archive.tree_hash = tree_hash.and_then(|h| h.parse().ok());
        Ok(archive)
    }

    /// The object's restore state from HEAD: `x-amz-restore`, or its class when it has none.
    async fn head_state(&self, key: &str) -> Result<RestoreState> {
        let head = self
            .client()
            .await?
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map_err(|e| ERRORS.map_missing(&format!("checking {key}"), key, e))?;
        Ok(match head.restore() {
            Some(r) if r.contains("ongoing-request=\"true\"") => {
                RestoreState::InProgress { request_id: None }
            }
            Some(_) => RestoreState::Ready,
            None => {
                let class = head
                    .storage_class()
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default();
                if is_cold(&class) {
                    RestoreState::NotRequested
                } else {
                    RestoreState::Ready
                }
            }
        })
    }
}

/// Reads back what [`S3Archiver::metadata`] wrote; `None` for objects this tool did not write.
fn origin_from_metadata(metadata: &HashMap<String, String>) -> Option<Origin> {
    use std::os::unix::ffi::OsStrExt;
    let path: Vec<u8> =
        percent_encoding::percent_decode_str(metadata.get("gb-source-path")?).collect();
    if !path.starts_with(b"/") {
        return None;
    }
    // Written percent-encoded by `header_safe`.
    let text = |key: &str| {
        metadata.get(key).map(|value| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    };
    Some(Origin {
        name: text("gb-name").unwrap_or_default(),
        source_path: std::ffi::OsStr::from_bytes(&path).into(),
        kind: SourceKind::parse(metadata.get("gb-kind")?)?,
        fingerprint: text("gb-fingerprint"),
        started_at: metadata
            .get("gb-started-at")
            .and_then(|t| t.parse().ok())
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()),
    })
}

/// Receipts written by `upload_part` (`ETag \t CRC64 \t size`) back into stored parts.
fn parse_receipts(receipts: &[(u64, String)]) -> StoredParts {
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

fn check_crc(what: &str, reported: Option<&str>, ours: &str) -> Result<()> {
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

#[async_trait]
impl Archiver for S3Archiver {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `s3.<bucket>`, plus the prefix (encoded) when there is one, so two configs sharing a
    /// bucket under different prefixes keep separate ledgers.
    fn target(&self) -> String {
        let prefix = self.settings.prefix.trim_end_matches('/');
        if prefix.is_empty() {
            format!("s3.{}", self.bucket())
        } else {
            format!(
                "s3.{}.{}",
                self.bucket(),
                glacier_backup_archiver::keys::encode_component(prefix.as_bytes())
            )
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_restore: self.settings.cold(),
            resumable_uploads: true,
            listable: true,
            ranged_reads: true,
            stores_empty_archives: true,
        }
    }

    fn part_size(&self, size_hint: u64) -> u64 {
        self.settings.part_size_for(size_hint)
    }

    async fn check(&self) -> Result<()> {
        let result = self
            .client()
            .await?
            .head_bucket()
            .bucket(self.bucket())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if ERRORS.is_not_found(&e) => Err(Error::Config {
                backend: NAME,
                message: format!(
                    "bucket {:?} does not exist (or is in another region); create it or fix \
                     [s3] bucket / region",
                    self.bucket()
                ),
            }),
            Err(e) => Err(ERRORS.map(&format!("checking bucket {:?}", self.bucket()), e)),
        }
    }

    async fn put(&self, meta: &ArchiveMeta, parts: PartStream) -> Result<ArchiveRef> {
        match shape(NAME, parts).await? {
            Shape::Single(part) if meta.resume.is_none() => self.put_single(meta, part).await,
            Shape::Single(part) => {
                let one = futures::stream::iter([Ok(part)]).boxed();
                self.put_multipart(meta, one).await
            }
            Shape::Multipart(all) => self.put_multipart(meta, all).await,
        }
    }

    async fn abort_upload(&self, token: &str) -> Result<()> {
        let Some((upload_id, key)) = token.split_once('\n') else {
            return Ok(());
        };
        let result = self
            .client()
            .await?
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if ERRORS.is_not_found(&e) => Ok(()),
            Err(e) => Err(ERRORS.map(&format!("aborting upload {upload_id}"), e)),
        }
    }

    async fn request_restore(
        &self,
        archive: &ArchiveRef,
        options: &RestoreOptions,
    ) -> Result<RestoreState> {
        let state = self.head_state(&archive.archive_id).await?;
        if state != RestoreState::NotRequested {
            return Ok(state);
        }
        let tier = match options.tier {
            tier if !self.offers_tier(tier) => {
                return Err(Error::Unsupported {
                    backend: NAME,
                    operation: "the expedited tier for DEEP_ARCHIVE objects (use standard or bulk)",
                })
            }
            RestoreTier::Expedited => Tier::Expedited,
            RestoreTier::Standard => Tier::Standard,
            RestoreTier::Bulk => Tier::Bulk,
        };
        let days = options
            .days
            .map(|d| d.min(i32::MAX as u32) as i32)
            .unwrap_or(DEFAULT_RESTORE_DAYS);
        let request = RestoreRequest::builder()
            .days(days)
            .glacier_job_parameters(
                GlacierJobParameters::builder()
                    .tier(tier)
                    .build()
                    .expect("tier is set"),
            )
            .build();
        let result = self
            .client()
            .await?
            .restore_object()
            .bucket(self.bucket())
            .key(&archive.archive_id)
            .restore_request(request)
            .send()
            .await;
        match result {
            Ok(_) => self.head_state(&archive.archive_id).await,
            Err(e) if glacier_backup_aws::error_code(&e) == Some("RestoreAlreadyInProgress") => {
                Ok(RestoreState::InProgress { request_id: None })
            }
            Err(e) => Err(ERRORS.map_missing(
                &format!("requesting a restore of {}", archive.archive_id),
                &archive.archive_id,
                e,
            )),
        }
    }

    fn offers_tier(&self, tier: RestoreTier) -> bool {
        !(tier == RestoreTier::Expedited && self.settings.storage_class == "DEEP_ARCHIVE")
    }

    async fn restore_state(
        &self,
        archive: &ArchiveRef,
        _request: Option<&str>,
    ) -> Result<RestoreState> {
        self.head_state(&archive.archive_id).await
    }

    async fn get(&self, archive: &ArchiveRef, range: Option<ByteRange>) -> Result<ByteStream> {
        let range = Error::check_range(NAME, &archive.archive_id, range, archive.size)?;
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let whole = range.start == 0 && range.end == archive.size;
        let out = self
            .client()
            .await?
            .get_object()
            .bucket(self.bucket())
            .key(&archive.archive_id)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| match glacier_backup_aws::error_code(&e) {
                Some("InvalidObjectState") => Error::NeedsRestore {
                    backend: NAME,
                    archive_id: archive.archive_id.clone(),
                },
                _ => ERRORS.map_missing(
                    &format!("downloading {}", archive.archive_id),
                    &archive.archive_id,
                    e,
                ),
            })?;
        let body = futures::stream::unfold(out.body, |mut body| async move {
            let item = body.next().await?;
            Some((
                item.map_err(|e| remote(format!("downloading: {e}"), true)),
                body,
            ))
        })
        .boxed();
        Ok(verified_download(
            NAME,
            archive.archive_id.clone(),
            body,
            range.end - range.start,
            whole.then_some(archive.tree_hash),
        ))
    }

    async fn list(&self) -> Result<Listing> {
        let client = self.client().await?;
        let mut archives = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = client
                .list_objects_v2()
                .bucket(self.bucket())
                .prefix(&self.settings.prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| ERRORS.map("listing the bucket", e))?;
            for object in out.contents() {
                if let Some(key) = object.key() {
                    archives.push(ListedArchive {
                        created_at: object
                            .last_modified()
                            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
                        ..ListedArchive::new(key, object.size().unwrap_or(0).max(0) as u64)
                    });
                }
            }
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        archives.sort_by(|a, b| a.archive_id.cmp(&b.archive_id));
        Ok(Listing {
            archives,
            taken_at: None,
            incomplete: Vec::new(),
        })
    }

    /// The listing, with each object's origin from its metadata and its tree hash from its
    /// metadata or tag (a few requests in flight at once: one HEAD, sometimes one tag read, per
    /// object).
    async fn inventory(&self, _request: Option<&str>) -> Result<InventoryState> {
        let listing = self.list().await?;
        let archives = futures::stream::iter(listing.archives)
            .map(|archive| self.describe(archive))
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(InventoryState::Ready(Listing {
            archives,
            taken_at: listing.taken_at,
            incomplete: Vec::new(),
        }))
    }
}
