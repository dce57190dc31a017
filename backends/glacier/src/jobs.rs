//! Retrieval and inventory jobs: started once, found again (recorded, or on the vault's job
//! list), and read.

use crate::*;

impl GlacierArchiver {
    /// The retrieval job for `archive_id` that is most useful now: one that succeeded, else one
    /// in progress. Looks at jobs this process knows (started, recorded in the ledger, or seen)
    /// first, then, once per run, at the vault's job list.
    pub(crate) async fn find_job(&self, archive_id: &str) -> Result<Option<(String, StatusCode)>> {
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
