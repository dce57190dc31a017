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
mod payload;
mod settings;

use errors::ERRORS;
use glacier_backup_archiver::shown;
use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_glacier::primitives::ByteStream as SdkByteStream;
use aws_sdk_glacier::types::{ActionCode, GlacierJobDescription, JobParameters, StatusCode};
use aws_sdk_glacier::Client;
use futures::StreamExt;
use glacier_backup_archiver::origin;
use glacier_backup_archiver::parts::{shape, upload_concurrently, PartChecker, Shape};
use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_archiver::treehash::subtree_level;
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, ByteRange, ByteStream, Capabilities, Error, InventoryState,
    Listing, Part, PartStream, Recorded, RestoreOptions, RestoreState, RestoreTier, Result,
    TreeHash, UploadEvent,
};

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
    /// Retrieval jobs this process started or found, by archive id.
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

    fn description(&self, meta: &ArchiveMeta) -> String {
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
            origin::Shortfall::Fingerprint | origin::Shortfall::Name => tracing::debug!(
                "{}: description shortened to fit Glacier's 1,024 characters",
                shown(&meta.source_path)
            ),
            origin::Shortfall::None => {}
        }
        description
    }

    async fn upload_single(&self, description: String, part: Part) -> Result<ArchiveRef> {
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

    /// Continues the upload named by `meta.resume` if the vault still has it with the same part
    /// size, or starts a new one (reporting its id on `meta.upload_events`).
    async fn start_or_resume(
        &self,
        meta: &ArchiveMeta,
        part_size: u64,
        description: &str,
    ) -> Result<(String, StoredParts)> {
        if let Some(upload_id) = &meta.resume {
            match self.stored_parts(upload_id).await {
                Ok((size, stored)) if size == part_size => {
                    tracing::info!(
                        "{}: resuming upload {upload_id}: the vault already has {} part(s)",
                        shown(&meta.source_path),
                        stored.len()
                    );
                    return Ok((upload_id.clone(), stored));
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
            report_started(meta, &upload_id);
            return Ok((upload_id, stored));
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
        report_started(meta, &upload_id);
        // A start the SDK retried after losing the first reply left another upload open.
        for left in self.open_uploads_of(&meta.source_path).await? {
            if left.id != upload_id {
                self.abort_left_behind(meta, &left.id).await;
            }
        }
        Ok((upload_id, StoredParts::new()))
    }

    /// Multipart uploads of `meta`'s source that earlier runs started and nobody records (a
    /// start whose reply was lost, a run killed before recording it): the newest one made from
    /// the same source state with the same part size is continued, the others are aborted.
    async fn adopt_or_abort_left_behind(
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
            self.abort_left_behind(meta, &left.id).await;
        }
        Ok(adopted)
    }

    async fn abort_left_behind(&self, meta: &ArchiveMeta, upload_id: &str) {
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
    async fn open_uploads_of(&self, source: &std::path::Path) -> Result<Vec<OpenUpload>> {
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
    async fn stored_parts(&self, upload_id: &str) -> Result<(u64, StoredParts)> {
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

    async fn upload_part(&self, upload_id: &str, part: Part) -> Result<()> {
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

    async fn upload_multipart(
        &self,
        meta: &ArchiveMeta,
        description: String,
        mut parts: PartStream,
    ) -> Result<ArchiveRef> {
        if let Some(archive) = self
            .completed_earlier(meta, &description, &mut parts)
            .await?
        {
            return Ok(archive);
        }
        let mut parts = parts.peekable();
        let part_size = match std::pin::Pin::new(&mut parts).peek().await {
            Some(Ok(first)) => first.data.len() as u64,
            _ => 0,
        };
        if subtree_level(part_size).is_none() || part_size > settings::MAX_PART_SIZE {
            return Err(remote(
                &format!("part size {part_size} is not a power-of-two number of MiB up to 4 GiB"),
                false,
            ));
        }
        let (upload_id, stored) = self.start_or_resume(meta, part_size, &description).await?;
        let mut checker = PartChecker::new(NAME, false);
        let mut skipped = 0u64;
        let max_parts = self.settings.max_parts;
        let outcome = upload_concurrently(
            parts.boxed(),
            self.settings.connection.concurrency,
            |part| {
                checker.accept(&part)?;
                if part.index >= max_parts {
                    return Err(remote(
                        &format!(
                            "the archive outgrew {max_parts} parts of {part_size} bytes; set a \
                         larger [glacier] part_size"
                        ),
                        false,
                    ));
                }
                if stored.get(&part.offset) == Some(&(part.data.len() as u64, part.tree_hash)) {
                    skipped += 1;
                    return Ok(None);
                }
                Ok(Some(self.upload_part(&upload_id, part)))
            },
        )
        .await;
        if let Err(e) = outcome {
            if meta.upload_events.is_none() {
                // Nobody recorded the upload for a later resume: do not leave it behind.
                if let Err(abort) = self.abort_upload(&upload_id).await {
                    tracing::warn!("could not abort upload {upload_id}: {abort}");
                }
            }
            return Err(e);
        }
        if skipped > 0 {
            tracing::info!("{skipped} part(s) were already in the vault and were not sent again");
        }
        let tree_hash = checker.tree_hash();
        if let Some(tx) = &meta.upload_events {
            // Recorded before asking: a run stopped while Glacier answers then asks again
            // (Complete is idempotent) instead of uploading the archive a second time.
            let (recorded, done) = Recorded::new();
            let event = UploadEvent::Completing {
                size: checker.size(),
                tree_hash,
                recorded,
            };
            if tx.send(event).is_ok() {
                // An error means the caller is gone, and this upload with it.
                let _ = done.await;
            }
        }
        let archive_id = self.complete(&upload_id, checker.size(), tree_hash).await?;
        Ok(ArchiveRef {
            archive_id,
            size: checker.size(),
            tree_hash,
            description: Some(description),
        })
    }

    /// CompleteMultipartUpload: the archive id. Repeated for an upload already completed with
    /// the same size and tree hash, Glacier answers with the same archive.
    async fn complete(&self, upload_id: &str, size: u64, tree_hash: TreeHash) -> Result<String> {
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

    /// The archive an earlier run was completing when it stopped, if Glacier made it: the
    /// part stream is then read through (not sent), so the caller can check it gives the same
    /// bytes. `None`: the upload is gone (aborted, expired), and the stream is untouched.
    async fn completed_earlier(
        &self,
        meta: &ArchiveMeta,
        description: &str,
        parts: &mut PartStream,
    ) -> Result<Option<ArchiveRef>> {
        let (Some(upload_id), Some((size, tree_hash))) = (&meta.resume, meta.resume_completing)
        else {
            return Ok(None);
        };
        let archive_id = match self.complete(upload_id, size, tree_hash).await {
            Ok(archive_id) => archive_id,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        tracing::info!(
            "{}: the earlier run had completed upload {upload_id} as archive {archive_id}; \
             nothing is sent again",
            shown(&meta.source_path)
        );
        let mut checker = PartChecker::new(NAME, false);
        while let Some(part) = parts.next().await {
            checker.accept(&part?)?;
        }
        Ok(Some(ArchiveRef {
            archive_id,
            size: checker.size(),
            tree_hash: checker.tree_hash(),
            description: Some(description.to_owned()),
        }))
    }

    /// The retrieval job for `archive_id` that is most useful now: one that succeeded, else one
    /// in progress. Looks at jobs this process knows (started, recorded in the ledger, or seen)
    /// first, then, once per run, at the vault's job list.
    async fn find_job(&self, archive_id: &str) -> Result<Option<(String, StatusCode)>> {
        let known = self
            .jobs
            .lock()
            .expect("jobs lock")
            .get(archive_id)
            .cloned();
        if let Some(job_id) = known {
            match self.job_status(&job_id).await? {
                Some(status) if status != StatusCode::Failed => return Ok(Some((job_id, status))),
                _ => self.jobs.lock().expect("jobs lock").remove(archive_id),
            };
        }
        // The vault's job list is read once per run, for every archive at once: a restore of
        // many archives would otherwise page through it once per archive.
        if self
            .jobs_listed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(None);
        }
        let listed = self
            .best_jobs(|job| {
                let whole = job
                    .retrieval_byte_range()
                    .is_none_or(|r| r.starts_with("0-"));
                let retrieval = job.action() == Some(&ActionCode::ArchiveRetrieval);
                job.archive_id()
                    .filter(|_| retrieval && whole)
                    .map(str::to_owned)
            })
            .await?;
        let mut jobs = self.jobs.lock().expect("jobs lock");
        for (archive, (job_id, _)) in &listed {
            jobs.entry(archive.clone())
                .or_insert_with(|| job_id.clone());
        }
        Ok(listed.get(archive_id).cloned())
    }

    /// The vault's most useful job for each key `key_of` gives (jobs it gives none are left
    /// out): one that succeeded (the newest), else one in progress; failed jobs never.
    async fn best_jobs<K: Eq + std::hash::Hash>(
        &self,
        key_of: impl Fn(&GlacierJobDescription) -> Option<K>,
    ) -> Result<HashMap<K, (String, StatusCode)>> {
        let client = self.client().await?;
        let rank = |s: &StatusCode| match s {
            StatusCode::Succeeded => 2,
            StatusCode::Failed => 0,
            _ => 1,
        };
        let mut best: HashMap<K, (String, StatusCode, String)> = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let out = client
                .list_jobs()
                .account_id(self.account())
                .vault_name(self.vault())
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| ERRORS.map("listing retrieval jobs", e))?;
            for job in out.job_list() {
                let (Some(key), Some(id)) = (key_of(job), job.job_id()) else {
                    continue;
                };
                let status = job.status_code().cloned().unwrap_or(StatusCode::InProgress);
                let created = job.creation_date().unwrap_or_default().to_owned();
                let better = rank(&status) > 0
                    && best.get(&key).is_none_or(|(_, best_status, best_created)| {
                        (rank(&status), &created) > (rank(best_status), best_created)
                    });
                if better {
                    best.insert(key, (id.to_owned(), status, created));
                }
            }
            marker = out.marker().map(str::to_owned).filter(|m| !m.is_empty());
            if marker.is_none() {
                break;
            }
        }
        Ok(best
            .into_iter()
            .map(|(key, (id, status, _))| (key, (id, status)))
            .collect())
    }

    /// Starts a job and returns its id; `failed` says what a refusal means.
    async fn start_job(
        &self,
        params: JobParameters,
        failed: impl FnOnce(InitiateJobFailure) -> Error,
    ) -> Result<String> {
        let out = self
            .client()
            .await?
            .initiate_job()
            .account_id(self.account())
            .vault_name(self.vault())
            .job_parameters(params)
            .send()
            .await
            .map_err(failed)?;
        out.job_id()
            .map(str::to_owned)
            .ok_or_else(|| remote("the vault returned no job id", false))
    }

    /// The state of one job: `None` when the vault no longer has it.
    async fn job_status(&self, job_id: &str) -> Result<Option<StatusCode>> {
        let result = self
            .client()
            .await?
            .describe_job()
            .account_id(self.account())
            .vault_name(self.vault())
            .job_id(job_id)
            .send()
            .await;
        match result {
            Ok(job) => Ok(Some(
                job.status_code().cloned().unwrap_or(StatusCode::InProgress),
            )),
            Err(e) if ERRORS.is_not_found(&e) => Ok(None),
            Err(e) => Err(ERRORS.map("checking a job", e)),
        }
    }

    /// Downloads and reads a finished inventory job's output.
    async fn read_inventory(&self, job_id: &str) -> Result<Listing> {
        let out = self
            .client()
            .await?
            .get_job_output()
            .account_id(self.account())
            .vault_name(self.vault())
            .job_id(job_id)
            .send()
            .await
            .map_err(|e| ERRORS.map("downloading the vault inventory", e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| remote(&format!("downloading the vault inventory: {e}"), true))?
            .into_bytes();
        inventory::parse(&body).map_err(|e| {
            remote(
                &format!("the vault inventory (job {job_id}) cannot be read: {e}"),
                false,
            )
        })
    }
}

type InitiateJobFailure = aws_sdk_glacier::error::SdkError<
    aws_sdk_glacier::operation::initiate_job::InitiateJobError,
    aws_sdk_glacier::config::http::HttpResponse,
>;

/// The body's SHA-256, computed off the async threads.
async fn payload_sha256(body: bytes::Bytes) -> Result<String> {
    tokio::task::spawn_blocking(move || payload::payload_sha256(&body))
        .await
        .map_err(|e| remote(&format!("hashing a part: {e}"), false))
}

fn remote(message: &str, temporary: bool) -> Error {
    Error::Remote {
        backend: NAME,
        message: message.to_owned(),
        temporary,
        source: None,
    }
}

fn check_reported_hash(what: &str, reported: Option<&str>, ours: TreeHash) -> Result<()> {
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
fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

fn state_of(job: Option<(String, StatusCode)>) -> RestoreState {
    match job {
        Some((_, StatusCode::Succeeded)) => RestoreState::Ready,
        Some((id, _)) => RestoreState::InProgress {
            request_id: Some(id),
        },
        None => RestoreState::NotRequested,
    }
}

/// An open multipart upload of one source, as ListMultipartUploads describes it.
struct OpenUpload {
    id: String,
    part_size: u64,
    fingerprint: Option<String>,
    /// ISO 8601, so newer sorts later.
    created: String,
}

/// Tells the caller which upload `put` is continuing or started, so a later run can resume it.
fn report_started(meta: &ArchiveMeta, upload_id: &str) {
    if let Some(tx) = &meta.upload_events {
        // A closed channel means nobody records resumable uploads; nothing to do about it.
        let _ = tx.send(UploadEvent::Started(upload_id.to_owned()));
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
            stores_empty_archives: false,
        }
    }

    fn part_size(&self, size_hint: u64) -> u64 {
        self.settings.part_size_for(size_hint)
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

    async fn put(&self, meta: &ArchiveMeta, parts: PartStream) -> Result<ArchiveRef> {
        let description = self.description(meta);
        match shape(NAME, parts).await? {
            Shape::Single(part) if part.data.is_empty() => Err(Error::Unsupported {
                backend: NAME,
                operation: "storing a 0-byte archive (Glacier requires at least 1 byte)",
            }),
            Shape::Single(part) if meta.resume.is_none() => {
                self.upload_single(description, part).await
            }
            Shape::Single(part) => {
                let one = futures::stream::iter([Ok(part)]).boxed();
                self.upload_multipart(meta, description, one).await
            }
            Shape::Multipart(all) => self.upload_multipart(meta, description, all).await,
        }
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

    async fn request_restore(
        &self,
        archive: &ArchiveRef,
        options: &RestoreOptions,
    ) -> Result<RestoreState> {
        if let Some(job) = self.find_job(&archive.archive_id).await? {
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
            .build();
        let job_id = self
            .start_job(params, |e| {
                ERRORS.map_missing("requesting a retrieval job", &archive.archive_id, e)
            })
            .await?;
        self.jobs
            .lock()
            .expect("jobs lock")
            .insert(archive.archive_id.clone(), job_id.clone());
        Ok(RestoreState::InProgress {
            request_id: Some(job_id),
        })
    }

    async fn restore_state(
        &self,
        archive: &ArchiveRef,
        request: Option<&str>,
    ) -> Result<RestoreState> {
        if let Some(job_id) = request {
            // The job an earlier run started: if it has not failed, it is the one to use (and
            // `get` will find it here without listing the vault's jobs).
            if let Some(status) = self.job_status(job_id).await? {
                if status != StatusCode::Failed {
                    self.jobs
                        .lock()
                        .expect("jobs lock")
                        .insert(archive.archive_id.clone(), job_id.to_owned());
                    return Ok(state_of(Some((job_id.to_owned(), status))));
                }
            }
        }
        Ok(state_of(self.find_job(&archive.archive_id).await?))
    }

    async fn get(&self, archive: &ArchiveRef, range: Option<ByteRange>) -> Result<ByteStream> {
        let job_id = match self.find_job(&archive.archive_id).await? {
            Some((id, StatusCode::Succeeded)) => id,
            Some(_) | None => {
                return Err(Error::NeedsRestore {
                    backend: NAME,
                    archive_id: archive.archive_id.clone(),
                })
            }
        };
        let range = Error::check_range(NAME, &archive.archive_id, range, archive.size)?;
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
            .range(format!("bytes={}-{}", range.start, range.end - 1))
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

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("0-8388607"), Some((0, 8_388_607)));
        assert_eq!(parse_range("9-3"), None);
        assert_eq!(parse_range("x-3"), None);
    }

    /// An upload whose signature covers a payload hash that is not its body's is refused by a
    /// vault that checks signatures, as Glacier does; with the body's own hash it goes through.
    /// (The fake recomputes every request's SigV4 signature; see `fake_glacier::sigv4`.)
    #[tokio::test(flavor = "multi_thread")]
    async fn uploads_are_signed_over_their_own_sha256() {
        for (name, value) in [
            ("AWS_ACCESS_KEY_ID", fake_glacier::sigv4::ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", fake_glacier::sigv4::SECRET_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            ),
        ] {
            std::env::set_var(name, value);
        }
        let fake = fake_glacier::FakeGlacier::start();
        fake.create_vault("v");
        let mut settings = GlacierSettings::from_config(None, Some("v"), None).unwrap();
        settings.connection.region = Some("us-east-1".into());
        settings.connection.endpoint_url = Some(fake.endpoint.clone());
        settings.connection.max_attempts = 1;
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
