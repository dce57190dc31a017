//! Retrieval and inventory jobs: started once, found again (recorded, or on the vault's job
//! list), and read.

use crate::*;

impl GlacierArchiver {
    /// The retrieval job for `archive_id` (its `range` only, or the whole archive for `None`)
    /// that is most useful now: one that succeeded, else one in progress. Looks at jobs this
    /// process knows (started, recorded in the ledger, or seen) first, then, once per run, at
    /// the vault's job list.
    pub(crate) async fn find_job(
        &self,
        archive_id: &str,
        range: Option<&ByteRange>,
    ) -> Result<Option<(String, StatusCode)>> {
        let key = job_key(archive_id, range);
        let known = self.jobs.lock().expect("jobs lock").get(&key).cloned();
        if let Some(job_id) = known {
            match self.job_status(&job_id).await? {
                Some(status) if status != StatusCode::Failed => return Ok(Some((job_id, status))),
                _ => self.jobs.lock().expect("jobs lock").remove(&key),
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
                let retrieval = job.action() == Some(&ActionCode::ArchiveRetrieval);
                let range = listed_range(job)?;
                job.archive_id()
                    .filter(|_| retrieval)
                    .map(|id| job_key(id, range.as_ref()))
            })
            .await?;
        let mut jobs = self.jobs.lock().expect("jobs lock");
        for (key, (job_id, _)) in &listed {
            jobs.entry(key.clone()).or_insert_with(|| job_id.clone());
        }
        Ok(listed.get(&key).cloned())
    }

    /// The state of the retrieval of `range` of an archive (or all of it): the job an earlier
    /// run started (`request`) if it has not failed, else the one `find_job` finds.
    pub(crate) async fn job_state(
        &self,
        archive: &ArchiveRef,
        range: Option<&ByteRange>,
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
                        .insert(job_key(&archive.archive_id, range), job_id.to_owned());
                    return Ok(state_of(Some((job_id.to_owned(), status))));
                }
            }
        }
        Ok(state_of(self.find_job(&archive.archive_id, range).await?))
    }

    /// The succeeded job whose output holds `range` of `archive_id`: the whole archive's, or
    /// one retrieved for exactly that range; with the offset of its output in the archive.
    pub(crate) async fn job_holding(
        &self,
        archive_id: &str,
        range: &ByteRange,
    ) -> Result<Option<(String, u64)>> {
        if let Some((id, StatusCode::Succeeded)) = self.find_job(archive_id, None).await? {
            return Ok(Some((id, 0)));
        }
        match self.find_job(archive_id, Some(range)).await? {
            Some((id, StatusCode::Succeeded)) => Ok(Some((id, range.start))),
            _ => Ok(None),
        }
    }

    /// The vault's most useful job for each key `key_of` gives (jobs it gives none are left
    /// out): one that succeeded (the newest), else one in progress; failed jobs never.
    pub(crate) async fn best_jobs<K: Eq + std::hash::Hash>(
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
    pub(crate) async fn start_job(
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
    pub(crate) async fn job_status(&self, job_id: &str) -> Result<Option<StatusCode>> {
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
    pub(crate) async fn read_inventory(&self, job_id: &str) -> Result<Listing> {
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

pub(crate) type InitiateJobFailure = aws_sdk_glacier::error::SdkError<
    aws_sdk_glacier::operation::initiate_job::InitiateJobError,
    aws_sdk_glacier::config::http::HttpResponse,
>;

pub(crate) fn state_of(job: Option<(String, StatusCode)>) -> RestoreState {
    match job {
        Some((_, StatusCode::Succeeded)) => RestoreState::Ready,
        Some((id, _)) => RestoreState::InProgress {
            request_id: Some(id),
        },
        None => RestoreState::NotRequested,
    }
}

/// How a retrieval job is known: by its archive, and its range when it is not the whole
/// archive.
pub(crate) fn job_key(archive_id: &str, range: Option<&ByteRange>) -> String {
    match range {
        None => archive_id.to_owned(),
        Some(range) => format!("{archive_id} bytes={}-{}", range.start, range.end),
    }
}

/// A listed retrieval job's range: `Some(None)` for the whole archive (Glacier lists a whole
/// retrieval as `0-<size - 1>`), `None` for a range it cannot read.
fn listed_range(job: &GlacierJobDescription) -> Option<Option<ByteRange>> {
    let Some(text) = job.retrieval_byte_range() else {
        return Some(None);
    };
    let (start, end) = text.split_once('-')?;
    let range = start.parse::<u64>().ok()?..end.parse::<u64>().ok()?.checked_add(1)?;
    let whole = range.start == 0 && job.archive_size_in_bytes() == i64::try_from(range.end).ok();
    Some((!whole).then_some(range))
}
