//! Stores archives in an Amazon S3 Glacier vault with `aws-sdk-glacier`.
//!
//! An archive of one part goes up with UploadArchive; a larger one as a multipart upload whose
//! parts travel concurrently. The engine hands us parts already tree-hashed; the archive's tree
//! hash is combined from them and checked against the vault's answer. A multipart upload's id is
//! reported as soon as it starts, so an interrupted upload can be continued by a later run: the
//! parts the vault already holds (ListParts) are compared by tree hash and not sent again.
//! Reading is through retrieval jobs: request, wait, then ranged GetJobOutput.

#![warn(missing_docs)]

mod errors;
mod inventory;
mod jobs;
mod payload;
mod settings;
mod upload;

use errors::ERRORS;
use glacier_backup_archiver::shown;
use glacier_backup_archiver::Bandwidth;
use jobs::{job_key, state_of};
use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_glacier::primitives::ByteStream as SdkByteStream;
use aws_sdk_glacier::types::{ActionCode, GlacierJobDescription, JobParameters, StatusCode};
use aws_sdk_glacier::Client;
use futures::StreamExt;
use glacier_backup_archiver::multipart;
use glacier_backup_archiver::origin;
use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_archiver::treehash::subtree_level;
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, ByteRange, ByteStream, Capabilities, Error, InventoryState,
    Listing, Part, PartStream, PutOptions, RestoreOptions, RestoreState, RestoreTier, Result,
    TreeHash,
};

pub use glacier_backup_aws::{Connection, Credentials};
pub use settings::{check_vault_name, GlacierSettings, SETTINGS};

/// Backend name.
pub const NAME: &str = "glacier";
/// Glacier's limit on parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// The Glacier vault archiver.
#[derive(Debug)]
pub struct GlacierArchiver {
    settings: GlacierSettings,
    client: tokio::sync::OnceCell<Client>,
    /// Retrieval jobs this process started or found, by archive id and range (see `job_key`).
    jobs: Mutex<HashMap<String, String>>,
    /// Whether the vault's job list was read into `jobs` yet.
    jobs_listed: std::sync::atomic::AtomicBool,
}

/// What a vault already holds of an interrupted upload: part offset -> (length, tree hash).
type StoredParts = HashMap<u64, (u64, TreeHash)>;

impl GlacierArchiver {
    /// An archiver for these settings. Nothing is contacted until it is used.
    pub fn new(settings: GlacierSettings) -> Self {
        GlacierArchiver {
            settings,
            client: tokio::sync::OnceCell::new(),
            jobs: Mutex::new(HashMap::new()),
            jobs_listed: Default::default(),
        }
    }

    /// Builds the archiver from `[glacier]` and the `[main]` (or command-line) vault and account.
    pub fn from_config(
        section: Option<&Section>,
        main_vault: Option<&str>,
        main_account: Option<&str>,
    ) -> Result<Self, SettingsError> {
        GlacierSettings::from_config(section, main_vault, main_account).map(Self::new)
    }

    /// Sends and receives within `bandwidth`'s limits.
    pub fn with_bandwidth(mut self, bandwidth: Bandwidth) -> Self {
        self.settings.connection.bandwidth = bandwidth;
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &GlacierSettings {
        &self.settings
    }

    async fn client(&self) -> Result<&Client> {
        self.client
            .get_or_try_init(|| async {
                let config = self.settings.connection.load(NAME, "glacier").await?;
                let config = aws_sdk_glacier::config::Builder::from(&config)
                    .interceptor(payload::SkipSdkBodyHashing)
                    .interceptor(self.settings.connection.throttled())
                    .build();
                Ok(Client::from_conf(config))
            })
            .await
    }

    fn vault(&self) -> &str {
        &self.settings.vault_name
    }

    fn account(&self) -> &str {
        &self.settings.account_id
    }
}

pub(crate) fn remote(message: &str, temporary: bool) -> Error {
    Error::Remote {
        backend: NAME,
        message: message.to_owned(),
        temporary,
        source: None,
    }
}

#[async_trait]
impl Archiver for GlacierArchiver {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `glacier.<vault>`, so the ledger is the Python tool's `glacier.<vault>.sqlite3`.
    fn target(&self) -> String {
        format!("glacier.{}", self.vault())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_restore: true,
            resumable_uploads: true,
            listable: false,
            ranged_reads: true,
            ranged_retrievals: true,
            stores_empty_archives: false,
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
        Some("vault".into())
    }

    async fn check(&self) -> Result<()> {
        let result = self
            .client()
            .await?
            .describe_vault()
            .account_id(self.account())
            .vault_name(self.vault())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if ERRORS.is_not_found(&e) => Err(Error::Config {
                backend: NAME,
                message: format!(
                    "vault {:?} does not exist for account {} in this region; create it (AWS \
                     console, or `aws glacier create-vault --vault-name {} --account-id -`) or \
                     fix vault_name",
                    self.vault(),
                    self.account(),
                    self.vault()
                ),
            }),
            Err(e) => Err(ERRORS.map(&format!("checking vault {:?}", self.vault()), e)),
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
        let result = self
            .client()
            .await?
            .abort_multipart_upload()
            .account_id(self.account())
            .vault_name(self.vault())
            .upload_id(token)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if ERRORS.is_not_found(&e) => Ok(()),
            Err(e) => Err(ERRORS.map(&format!("aborting upload {token}"), e)),
        }
    }

    async fn delete(&self, archive: &ArchiveRef) -> Result<()> {
        let id = &archive.archive_id;
        self.client()
            .await?
            .delete_archive()
            .account_id(self.account())
            .vault_name(self.vault())
            .archive_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| ERRORS.map_missing("deleting an archive", id, e))
    }

    async fn request_restore(
        &self,
        archive: &ArchiveRef,
        options: &RestoreOptions,
    ) -> Result<RestoreState> {
        let range = options.range.as_ref();
        if let Some(job) = self.find_job(&archive.archive_id, range).await? {
            return Ok(state_of(Some(job)));
        }
        let tier = match options.tier {
            RestoreTier::Expedited => "Expedited",
            RestoreTier::Standard => "Standard",
            RestoreTier::Bulk => "Bulk",
        };
        let params = JobParameters::builder()
            .r#type("archive-retrieval")
            .archive_id(&archive.archive_id)
            .tier(tier)
            // Glacier's range is inclusive.
            .set_retrieval_byte_range(range.map(|r| format!("{}-{}", r.start, r.end - 1)))
            .build();
        let job_id = self
            .start_job(params, |e| {
                ERRORS.map_missing("requesting a retrieval job", &archive.archive_id, e)
            })
            .await?;
        self.jobs
            .lock()
            .expect("jobs lock")
            .insert(job_key(&archive.archive_id, range), job_id.clone());
        Ok(RestoreState::InProgress {
            request_id: Some(job_id),
        })
    }

    async fn restore_state(
        &self,
        archive: &ArchiveRef,
        request: Option<&str>,
    ) -> Result<RestoreState> {
        self.job_state(archive, None, request).await
    }

    async fn range_state(
        &self,
        archive: &ArchiveRef,
        range: &ByteRange,
        request: Option<&str>,
    ) -> Result<RestoreState> {
        // A whole retrieval under way or done serves every range.
        if let Some((id, status)) = self.find_job(&archive.archive_id, None).await? {
            return Ok(state_of(Some((id, status))));
        }
        self.job_state(archive, Some(range), request).await
    }

    async fn get(&self, archive: &ArchiveRef, range: Option<ByteRange>) -> Result<ByteStream> {
        let range = Error::check_range(NAME, &archive.archive_id, range, archive.size)?;
        let Some((job_id, output_start)) = self.job_holding(&archive.archive_id, &range).await?
        else {
            return Err(Error::NeedsRestore {
                backend: NAME,
                archive_id: archive.archive_id.clone(),
            });
        };
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let whole = range.start == 0 && range.end == archive.size;
        let out = self
            .client()
            .await?
            .get_job_output()
            .account_id(self.account())
            .vault_name(self.vault())
            .job_id(job_id)
            .range(format!(
                "bytes={}-{}",
                range.start - output_start,
                range.end - 1 - output_start
            ))
            .send()
            .await
            .map_err(|e| ERRORS.map("downloading the archive", e))?;
        // The vault sends a tree hash for tree-aligned ranges: check the bytes against ours for
        // the whole archive, against the vault's for a piece.
        let expected = if whole {
            Some(archive.tree_hash)
        } else {
            out.checksum().and_then(|h| h.parse().ok())
        };
        let body = futures::stream::unfold(out.body, |mut body| async move {
            let item = body.next().await?;
            Some((
                item.map_err(|e| remote(&format!("downloading: {e}"), true)),
                body,
            ))
        })
        .boxed();
        Ok(glacier_backup_archiver::parts::verified_download(
            NAME,
            archive.archive_id.clone(),
            body,
            range.end - range.start,
            expected,
        ))
    }

    async fn list(&self) -> Result<Listing> {
        Err(Error::Unsupported {
            backend: NAME,
            operation: "immediate listing (a vault is listed through an inventory job)",
        })
    }

    async fn inventory(&self, request: Option<&str>) -> Result<InventoryState> {
        let earlier = match request {
            Some(id) => self.job_status(id).await?.map(|s| (id.to_owned(), s)),
            None => None,
        };
        let job = match earlier {
            Some((id, status)) if status != StatusCode::Failed => Some((id, status)),
            _ => self
                .best_jobs(|job| {
                    (job.action() == Some(&ActionCode::InventoryRetrieval)).then_some(())
                })
                .await?
                .remove(&()),
        };
        match job {
            Some((id, StatusCode::Succeeded)) => {
                self.read_inventory(&id).await.map(InventoryState::Ready)
            }
            Some((request_id, _)) => Ok(InventoryState::Pending { request_id }),
            None => {
                let params = JobParameters::builder()
                    .r#type("inventory-retrieval")
                    .format("JSON")
                    .build();
                let request_id = self
                    .start_job(params, |e| ERRORS.map("requesting a vault inventory", e))
                    .await?;
                Ok(InventoryState::Pending { request_id })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::payload_sha256;

    /// An upload whose signature covers a payload hash that is not its body's is refused by a
    /// vault that checks signatures, as Glacier does; with the body's own hash it goes through.
    /// (The fake recomputes every request's SigV4 signature; see `fake_glacier::sigv4`.)
    #[tokio::test(flavor = "multi_thread")]
    async fn uploads_are_signed_over_their_own_sha256() {
        let fake = fake_glacier::FakeGlacier::start();
        fake.create_vault("v");
        let mut settings = GlacierSettings::from_config(None, Some("v"), None).unwrap();
        settings.connection.region = Some("us-east-1".into());
        settings.connection.endpoint_url = Some(fake.endpoint.clone());
        settings.connection.max_attempts = 1;
        settings.connection.credentials = Some(Credentials::new(
            fake_glacier::sigv4::ACCESS_KEY,
            fake_glacier::sigv4::SECRET_KEY,
            None,
            None,
            "tests",
        ));
        let archiver = GlacierArchiver::new(settings);
        let client = archiver.client().await.unwrap();
        let body = bytes::Bytes::from_static(b"the archive's bytes");
        let tree_hash = glacier_backup_archiver::treehash::tree_hash(&body);
        let upload = |signed_sha256: String| {
            client
                .upload_archive()
                .account_id("-")
                .vault_name("v")
                .checksum(tree_hash.to_hex())
                .body(SdkByteStream::from(body.clone()))
                .customize()
                .interceptor(payload::OwnPayloadSha256::new(signed_sha256))
                .send()
        };
        let other = bytes::Bytes::from_static(b"other bytes");
        let wrong = upload(payload_sha256(other).await.unwrap()).await;
        let error = wrong.expect_err("signed over another payload hash");
        assert_eq!(
            glacier_backup_aws::error_code(&error),
            Some("InvalidSignatureException"),
            "{error:?}"
        );
        assert!(fake.archives("v").is_empty());
        upload(payload_sha256(body.clone()).await.unwrap())
            .await
            .expect("signed over its own SHA-256");
        assert_eq!(fake.archives("v").len(), 1);
    }
}
