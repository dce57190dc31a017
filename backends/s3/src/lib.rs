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
mod read;
mod settings;
mod upload;

use errors::ERRORS;
use glacier_backup_archiver::shown;
use glacier_backup_archiver::Bandwidth;
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
use glacier_backup_archiver::keys::{index_key, indexed_by, key_for};
use glacier_backup_archiver::multipart;
use glacier_backup_archiver::origin::Origin;
use glacier_backup_archiver::parts::verified_download;
use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, ByteRange, ByteStream, Capabilities, Error, InventoryState,
    ListedArchive, Listing, Part, PartStream, PutOptions, RestoreOptions, RestoreState,
    RestoreTier, Result, SourceKind,
};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

pub use glacier_backup_aws::{Connection, Credentials};
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
pub(crate) type StoredParts = HashMap<i32, (u64, String, Option<String>)>;

pub(crate) fn crc64(data: &[u8]) -> String {
    encode_crc(crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, data))
}

/// A CRC64NVME as S3 writes it: base64 of its big-endian bytes.
pub(crate) fn encode_crc(crc: u64) -> String {
    BASE64.encode(crc.to_be_bytes())
}

/// The inverse of [`encode_crc`], for checksums S3 reports.
pub(crate) fn decode_crc(text: &str) -> Option<u64> {
    let bytes: [u8; 8] = BASE64.decode(text).ok()?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub(crate) fn remote(message: String, temporary: bool) -> Error {
    Error::Remote {
        backend: NAME,
        message,
        temporary,
        source: None,
    }
}

/// S3's limit on an object's metadata (keys and values), less room for the tree hash a
/// single-part upload adds.
const METADATA_BUDGET: usize = 2048 - 128;

fn metadata_size(metadata: &HashMap<String, String>) -> usize {
    metadata.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Metadata values travel as HTTP headers: ASCII only, so everything else is percent-encoded.
pub(crate) fn header_safe(text: &str) -> String {
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

    /// Sends and receives within `bandwidth`'s limits.
    pub fn with_bandwidth(mut self, bandwidth: Bandwidth) -> Self {
        self.settings.connection.bandwidth = bandwidth;
        self
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
                    .interceptor(self.settings.connection.throttled())
                    .build();
                Ok(Client::from_conf(config))
            })
            .await
    }

    fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// The class an object is stored in: the configured one, but STANDARD for an index, which
    /// must be readable at once (it is small: a cold class would save cents and cost a
    /// retrieval before every browse of a lost ledger).
    fn class_for(&self, meta: &ArchiveMeta) -> StorageClass {
        match meta.index_of {
            Some(_) => StorageClass::Standard,
            None => StorageClass::from(self.settings.storage_class.as_str()),
        }
    }

    fn metadata(meta: &ArchiveMeta) -> HashMap<String, String> {
        use std::os::unix::ffi::OsStrExt;
        let path = percent_encoding::percent_encode(
            meta.source_path.as_os_str().as_bytes(),
            NON_ALPHANUMERIC,
        );
        let mut metadata = HashMap::from([
            ("gb-source-path".to_owned(), path.to_string()),
            ("gb-kind".to_owned(), meta.kind.as_str().to_owned()),
            ("gb-name".to_owned(), header_safe(&meta.name)),
            ("gb-fingerprint".to_owned(), header_safe(&meta.fingerprint)),
            (
                "gb-started-at".to_owned(),
                meta.started_at.unix_timestamp().to_string(),
            ),
        ]);
        if !meta.encoding.is_plain() {
            metadata.insert("gb-encoding".to_owned(), meta.encoding.tag());
        }
        if let Some(recipients) = meta.encoding.recipients_list() {
            metadata.insert("gb-recipients".to_owned(), header_safe(&recipients));
        }
        // S3 refuses an object whose metadata is over 2 KB. What a rebuilt ledger can do
        // without goes first; a path too long for it leaves an archive a rebuild cannot place.
        for optional in [
            "gb-recipients",
            "gb-fingerprint",
            "gb-name",
            "gb-source-path",
        ] {
            if metadata_size(&metadata) <= METADATA_BUDGET {
                break;
            }
            metadata.remove(optional);
            if optional == "gb-source-path" {
                tracing::warn!(
                    "{}: the source path is too long for S3's 2 KB of metadata; this archive \
                     is in the ledger, but a ledger rebuilt from the bucket will not know it",
                    glacier_backup_archiver::shown(&meta.source_path)
                );
            }
        }
        metadata
    }

    fn encryption(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.settings.encryption {
            None => (None, None),
            Some(Encryption::Aes256) => (Some(ServerSideEncryption::Aes256), None),
            Some(Encryption::Kms(key)) => (Some(ServerSideEncryption::AwsKms), key.clone()),
        }
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
            ranged_retrievals: false,
            stores_empty_archives: true,
            batched_durability: false,
            needs_index: false,
        }
    }

    fn part_size(&self, size_hint: u64) -> u64 {
        self.settings.part_size_for(size_hint)
    }

    fn upload_concurrency(&self) -> usize {
        glacier_backup_archiver::multipart::MultipartStore::limits(self).concurrency
    }

    fn storage_class(&self) -> Option<String> {
        Some(self.settings.storage_class.clone())
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

    async fn put(
        &self,
        meta: &ArchiveMeta,
        options: &PutOptions,
        parts: PartStream,
    ) -> Result<ArchiveRef> {
        multipart::put(self, meta, options, parts).await
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

    /// HEAD (size, metadata) and the tree-hash tag: what `--delete-source` checks a copy by.
    /// The tag, which is set once the upload is complete, wins over the hash in the metadata
    /// (single-part uploads carry both).
    /// DeleteObject: S3 answers the same whether or not the key was there, so an archive
    /// already gone counts as deleted.
    async fn delete(&self, archive: &ArchiveRef) -> Result<()> {
        let key = &archive.archive_id;
        self.client()
            .await?
            .delete_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map(drop)
            .map_err(|e| ERRORS.map_missing(&format!("deleting {key}"), key, e))
    }

    async fn describe(&self, archive_id: &str) -> Result<ListedArchive> {
        let client = self.client().await?;
        let head = client
            .head_object()
            .bucket(self.bucket())
            .key(archive_id)
            .send()
            .await
            .map_err(|e| ERRORS.map_missing(&format!("checking {archive_id}"), archive_id, e))?;
        let metadata = head.metadata().cloned().unwrap_or_default();
        let tagged = self.tree_hash_tag(archive_id).await?;
        let size = head.content_length().unwrap_or(0).max(0) as u64;
        Ok(ListedArchive {
            origin: read::origin_from_metadata(&metadata),
            tree_hash: tagged
                .or_else(|| metadata.get(TREE_HASH_TAG).cloned())
                .and_then(|h| h.parse().ok()),
            ..ListedArchive::new(archive_id.to_owned(), size)
        })
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

    /// Taken at the time the listing starts: an object completed later (by a run going on
    /// meanwhile) may be missing from it, and its row is newer than the listing.
    async fn list(&self) -> Result<Listing> {
        let taken_at = time::OffsetDateTime::now_utc();
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
                        index_of: indexed_by(key).map(str::to_owned),
                        ..ListedArchive::new(key, object.size().unwrap_or(0).max(0) as u64)
                    });
                }
            }
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(Listing::taken(archives, taken_at))
    }

    /// The listing, with each object's origin from its metadata and its tree hash from its
    /// metadata or tag (a few requests in flight at once: one HEAD, sometimes one tag read, per
    /// object).
    async fn inventory(&self, _request: Option<&str>) -> Result<InventoryState> {
        let listing = self.list().await?;
        let archives = futures::stream::iter(listing.archives)
            .map(|archive| self.describe_listed(archive))
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        // Indexes too: their tree hash checks them when they are read.
        let indexes = futures::stream::iter(listing.indexes)
            .map(|index| self.describe_listed(index))
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(InventoryState::Ready(Listing {
            archives,
            taken_at: listing.taken_at,
            incomplete: Vec::new(),
            indexes,
        }))
    }
}
