//! A backup run: for each candidate, decide whether it needs uploading, stream it to the
//! archiver, and record it in the ledger once the archiver confirms it.

use crate::shown;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, Encoding, Error as ArchiverError, Resume, TreeHash,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::candidate::SourceError;
use crate::candidate::{Candidate, Scan};
use crate::codec::{Layers, Seal};
use crate::ledger::{Ledger, LedgerError, PendingUpload, UploadRecord};
use crate::progress::ItemProgress;
use crate::resolve::Planned;
use crate::stream::encoded_parts;
use crate::upload::{put_journaled, UploadError, UploadJournal};

pub use crate::config::DEFAULT_PARALLEL_UPLOADS;

/// A backend that defers durability to [`Archiver::sync`] gets its rows committed after this
/// many archives or this long, whichever comes first: what a crash can cost is a batch of
/// uploads done again, never a row without its archive.
const BATCH_ROWS: usize = 100;
const BATCH_AGE: Duration = Duration::from_secs(1);

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Only report what would be uploaded.
    pub dry_run: bool,
    /// Stop after this many successful uploads (the Python tool stopped after one).
    pub max_uploads: Option<usize>,
    /// Where progress goes (nowhere when `None`).
    pub progress: Option<crate::progress::SharedProgress>,
    /// Candidates uploaded at once (at least 1). Archives of one part go up side by side within
    /// the backend's memory budget; a multipart archive, which fills that budget itself, goes
    /// alone.
    pub parallel_uploads: usize,
    /// Cancelled to stop the run: uploads under way are dropped (a resumable one is continued
    /// by the next run), what finished is recorded, and the report says it stopped.
    pub stop: CancellationToken,
    /// How new archives are compressed and encrypted (`[archive]`, `[encryption]`).
    pub format: crate::codec::Format,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            dry_run: false,
            max_uploads: None,
            progress: None,
            parallel_uploads: DEFAULT_PARALLEL_UPLOADS,
            stop: CancellationToken::new(),
            format: crate::codec::Format::default(),
        }
    }
}

/// Why a candidate is (or is not) uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Never uploaded before.
    New,
    /// Changed since the upload at this time (if known).
    Changed {
        /// When the previous upload happened.
        since: Option<OffsetDateTime>,
    },
    /// Already uploaded, and re-uploads are off or it did not change.
    UpToDate {
        /// When it was uploaded (if known).
        at: Option<OffsetDateTime>,
        /// Whether its state was compared (`upload_if_changed`).
        checked: bool,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |t: &Option<OffsetDateTime>| match t {
            Some(t) => crate::display_time(*t),
            None => "an unknown time".into(),
        };
        match self {
            Decision::New => f.write_str("new"),
            Decision::Changed { since } => write!(f, "changed since its upload at {}", when(since)),
            Decision::UpToDate { at, checked: true } => {
                write!(f, "unchanged since its upload at {}", when(at))
            }
            Decision::UpToDate { at, checked: false } => {
                write!(f, "already uploaded at {}", when(at))
            }
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Uploaded (or, in a dry run, would upload).
    pub uploaded: Vec<Uploaded>,
    /// Skipped as already uploaded: path and since when.
    pub up_to_date: Vec<(PathBuf, Decision)>,
    /// Failed: path and the error, as shown to the user.
    pub failed: Vec<(PathBuf, String)>,
    /// Candidates not looked at because `max_uploads` was reached.
    pub deferred: Vec<PathBuf>,
    /// Empty files the backend cannot store.
    pub empty_skipped: Vec<PathBuf>,
    /// The run was stopped ([`RunOptions::stop`]) before it looked at every candidate.
    pub stopped: bool,
}

/// A candidate uploaded by a run, or that a dry run would upload.
#[derive(Debug)]
pub struct Uploaded {
    /// The source.
    pub path: PathBuf,
    /// Why it was uploaded.
    pub decision: Decision,
    /// The ledger row written (none in a dry run).
    pub record: Option<UploadRecord>,
    /// In a dry run, the archive's estimated size (0 where the destination does not price
    /// storage, so nothing was scanned for it).
    pub estimated_size: u64,
}

/// Something that stops the whole run, not just one candidate.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The ledger cannot be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Archives were stored but could not be recorded: the user must know their ids.
    #[error("{} but the ledger could not record {}: {source}", stored_as(.stored), if .stored.len() == 1 { "it" } else { "them" })]
    Unrecorded {
        /// Each source and where it went.
        stored: Vec<(PathBuf, String)>,
        /// Why recording failed.
        source: LedgerError,
    },
    /// Archives an interrupted run stored without recording them could not be removed.
    #[error(
        "cannot remove an archive an interrupted run stored without recording it: {}; fix \
         the destination's permissions and run again",
        error_chain(.0)
    )]
    Cleanup(ArchiverError),
}

fn stored_as(stored: &[(PathBuf, String)]) -> String {
    let each: Vec<String> = stored
        .iter()
        .map(|(path, id)| format!("{} was stored as {id:?}", shown(path)))
        .collect();
    each.join("; ")
}

/// Decides whether `planned` needs uploading. Returns the scan when one was taken, so it is
/// not taken twice.
pub fn decide(
    planned: &Planned,
    ledger: &Ledger,
) -> Result<(Decision, Option<Scan>), CandidateError> {
    let last = ledger.latest_upload(planned.candidate.source_path())?;
    let scan = match &last {
        Some(_) if planned.upload_if_changed => Some(planned.candidate.scan()?),
        _ => None,
    };
    Ok((
        decision(last.as_ref(), planned.upload_if_changed, scan.as_ref()),
        scan,
    ))
}

/// The decision for a candidate whose latest upload is `last`: `scan` is needed only when
/// there is one and `upload_if_changed` is set.
fn decision(last: Option<&UploadRecord>, upload_if_changed: bool, scan: Option<&Scan>) -> Decision {
    match (last, scan) {
        (None, _) => Decision::New,
        (Some(last), Some(scan)) if upload_if_changed => {
            if changed_since(last, scan) {
                Decision::Changed {
                    since: last.uploaded_at,
                }
            } else {
                Decision::UpToDate {
                    at: last.uploaded_at,
                    checked: true,
                }
            }
        }
        (Some(last), _) => Decision::UpToDate {
            at: last.uploaded_at,
            checked: false,
        },
    }
}

/// Whether the source `scan` describes changed since the upload `last`: its fingerprint
/// differs, or, for a row of the Python tool (no fingerprint), something in it is newer than
/// the upload (the Python tool compared the mtime with the upload time; the newest mtime
/// anywhere in the tree also sees edits deep inside a directory). `backup` and `verify` share
/// this one rule, so a source one calls unchanged the other does too.
pub fn changed_since(last: &UploadRecord, scan: &Scan) -> bool {
    match (&last.fingerprint, last.uploaded_at) {
        (Some(recorded), _) => *recorded != scan.fingerprint.to_string(),
        (None, Some(at)) => scan.fingerprint.newest_mtime_ns > at.unix_timestamp_nanos(),
        (None, None) => true,
    }
}

/// One candidate could not be backed up.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The backend failed.
    #[error(transparent)]
    Backend(ArchiverError),
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The backend's account of the archive differs from what was sent.
    #[error(transparent)]
    Mismatch(crate::upload::Mismatch),
}

impl From<UploadError> for CandidateError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Archiver(e) => e.into(),
            UploadError::Journal(e) => CandidateError::Ledger(e),
            UploadError::Mismatch(mismatch) => CandidateError::Mismatch(mismatch),
        }
    }
}

impl From<ArchiverError> for CandidateError {
    fn from(e: ArchiverError) -> Self {
        match e {
            ArchiverError::Source(inner) => match inner.downcast::<SourceError>() {
                Ok(source) => CandidateError::Source(*source),
                Err(other) => CandidateError::Backend(ArchiverError::Source(other)),
            },
            other => CandidateError::Backend(other),
        }
    }
}

/// Backs up every planned candidate, several at once ([`RunOptions::parallel_uploads`]).
/// Candidate failures are reported and the run goes on; ledger failures stop it.
///
/// Everything runs in this one task: the uploads under way share the ledger through a
/// `RefCell` that is only ever borrowed between awaits, so rows are written in one place.
pub async fn run_backup(
    planned: &[Planned],
    ledger: &mut Ledger,
    archiver: &dyn Archiver,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    if !options.dry_run {
        remove_unrecorded(archiver, ledger).await?;
    }
    let progress = crate::progress::or_none(&options.progress);
    progress.batch(planned.len());
    let shared = SharedLedger::new(ledger);
    let mut run = Run {
        archiver,
        budget: archiver.upload_concurrency().max(1) as u64 * archiver.part_size(0),
        parallel: options.parallel_uploads.max(1),
        reserved: 0,
        running_paths: HashSet::new(),
        uploaded: Vec::new(),
        committed: 0,
        batch_started: Instant::now(),
        report: RunReport::default(),
    };
    let mut running = FuturesUnordered::new();
    let stop = &options.stop;
    let result = async {
        for (index, item) in planned.iter().enumerate() {
            let done = ItemDone(progress.clone());
            if let Some(max) = options.max_uploads {
                while run.uploaded() + running.len() >= max && !running.is_empty() {
                    run.wait_for_one(&mut running, &shared, stop).await?;
                }
                if run.uploaded() >= max {
                    run.defer(&planned[index..]);
                    break;
                }
            }
            let candidate = item.candidate.clone();
            let path = candidate.source_path().to_path_buf();
            // One upload of a path at a time, and its row in the ledger before the path is
            // looked at again (a library caller may list a path twice).
            while run.running_paths.contains(&path) {
                run.wait_for_one(&mut running, &shared, stop).await?;
            }
            if run.uncommitted().any(|(_, upload)| upload.path == path) {
                run.commit(&shared).await?;
            }
            let last = shared.with(|l| l.latest_upload(&path))?;
            if last.is_some() && !item.upload_if_changed {
                let decision = decision(last.as_ref(), false, None);
                tracing::debug!("{}: {decision}", shown(&path));
                run.report.up_to_date.push((path, decision));
                continue;
            }
            let unstorable = may_be_unstorable(candidate.as_ref(), archiver, &options.format);
            // A dry run scans (reads no contents) only for what it reports: a change, the
            // size where storage is priced, an empty file the backend cannot store.
            let needs_scan = !options.dry_run
                || last.is_some()
                || unstorable
                || archiver.storage_class().is_some();
            let scan = if needs_scan {
                let scanning = scan_of(candidate.clone());
                match run.meanwhile(&mut running, &shared, stop, scanning).await? {
                    Ok(scan) => Some(scan),
                    Err(e) => {
                        run.failed(path, &CandidateError::from(e));
                        continue;
                    }
                }
            } else {
                None
            };
            let decision = decision(last.as_ref(), item.upload_if_changed, scan.as_ref());
            if let Decision::UpToDate { .. } = decision {
                tracing::debug!("{}: {decision}", shown(&path));
                run.report.up_to_date.push((path, decision));
                continue;
            }
            let size = scan.as_ref().map_or(0, |scan| scan.size_estimate);
            if size == 0 && unstorable && scan.is_some() {
                run.empty(path, options.dry_run);
                continue;
            }
            if options.dry_run {
                tracing::info!(
                    "would upload {} ({}): {decision}",
                    shown(&path),
                    candidate.kind().as_str()
                );
                run.uploaded.push((
                    index,
                    Uploaded {
                        path,
                        decision,
                        record: None,
                        estimated_size: size,
                    },
                ));
                continue;
            }
            let scan = scan.expect("a real run always scans");
            let cost = run.memory_cost(size);
            while !running.is_empty()
                && (running.len() >= run.parallel || run.reserved + cost > run.budget)
            {
                run.wait_for_one(&mut running, &shared, stop).await?;
            }
            run.reserved += cost;
            run.running_paths.insert(path.clone());
            tracing::info!("uploading {} ({decision})", shown(&path));
            let progress = progress.clone();
            let shared = &shared;
            running.push(
                async move {
                    let _done = done;
                    let started = Instant::now();
                    let result = upload(
                        candidate,
                        scan,
                        archiver,
                        shared,
                        &progress,
                        &options.format,
                    )
                    .await;
                    Finished {
                        index,
                        path,
                        decision,
                        cost,
                        seconds: started.elapsed().as_secs_f64(),
                        result,
                    }
                }
                .boxed_local(),
            );
        }
        while !running.is_empty() {
            run.wait_for_one(&mut running, &shared, stop).await?;
        }
        Ok::<(), Halt>(())
    }
    .await;
    // Stopped or failed: uploads under way are dropped, and what finished before is committed.
    drop(running);
    let committed = run.commit(&shared).await;
    match result {
        Err(Halt::Stopped) => run.report.stopped = true,
        Err(Halt::Failed(e)) => return Err(e),
        Ok(()) => {}
    }
    committed?;
    Ok(run.into_report())
}

/// Removes the archives an earlier run had named at the destination but was stopped before
/// recording (noted by [`Ledger::record_naming`]): they are this tool's, nothing refers to
/// them, and the candidates they hold are uploaded again because no row records them.
pub async fn remove_unrecorded(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
) -> Result<(), RunError> {
    let names = ledger.unrecorded_names()?;
    let mut removed = 0;
    for archive_id in &names {
        let archive = ArchiveRef {
            archive_id: archive_id.clone(),
            size: 0,
            tree_hash: TreeHash::empty(),
            description: None,
        };
        match archiver.delete(&archive).await {
            Ok(()) => removed += 1,
            Err(ArchiverError::NotFound { .. }) => {}
            Err(e @ ArchiverError::Unsupported { .. }) => {
                tracing::warn!("{archive_id} was stored but never recorded, and stays: {e}")
            }
            Err(e) => return Err(RunError::Cleanup(e)),
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} archive(s) an interrupted run stored without recording them; \
             their sources are uploaded again"
        );
    }
    ledger.forget_naming()?;
    Ok(())
}

/// Why the run's loop ended early.
enum Halt {
    /// [`RunOptions::stop`] was cancelled.
    Stopped,
    /// Something that stops the whole run.
    Failed(RunError),
}

impl<E: Into<RunError>> From<E> for Halt {
    fn from(e: E) -> Self {
        Halt::Failed(e.into())
    }
}

/// A candidate's upload that ended, well or not.
struct Finished {
    index: usize,
    path: PathBuf,
    decision: Decision,
    /// Bytes of the memory budget it held.
    cost: u64,
    seconds: f64,
    result: Result<UploadRecord, CandidateError>,
}

type Running<'a> = FuturesUnordered<LocalBoxFuture<'a, Finished>>;

/// The state of a run: what is under way and what was done.
struct Run<'a> {
    archiver: &'a dyn Archiver,
    /// Bytes in flight allowed at once: the backend's parts in flight times its part size.
    budget: u64,
    parallel: usize,
    /// Bytes of the budget held by the uploads under way.
    reserved: u64,
    running_paths: HashSet<PathBuf>,
    /// Uploads done, with their planned positions (the report lists them in plan order).
    uploaded: Vec<(usize, Uploaded)>,
    /// How many of `uploaded` have their rows in the ledger: the rest wait for the backend's
    /// `sync` (see [`BATCH_ROWS`]).
    committed: usize,
    /// When the first of the uncommitted uploads finished.
    batch_started: Instant,
    /// Everything but the uploads.
    report: RunReport,
}

impl Run<'_> {
    fn uploaded(&self) -> usize {
        self.uploaded.len()
    }

    /// Uploads whose rows wait for the backend's `sync`.
    fn uncommitted(&self) -> impl Iterator<Item = &(usize, Uploaded)> {
        self.uploaded[self.committed..].iter()
    }

    /// What an archive of `size` bytes holds of the budget: its buffer when it fits in one
    /// part, the whole budget when it goes in several (the upload driver fills it).
    fn memory_cost(&self, size: u64) -> u64 {
        if size > self.archiver.part_size(size) {
            self.budget
        } else {
            size.max(crate::stream::MIN_BUFFER as u64).min(self.budget)
        }
    }

    /// Awaits `work` while the uploads under way go on, recording those that end.
    async fn meanwhile<T>(
        &mut self,
        running: &mut Running<'_>,
        ledger: &SharedLedger<'_>,
        stop: &CancellationToken,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Halt> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Err(Halt::Stopped),
                out = &mut work => return Ok(out),
                Some(finished) = running.next(), if !running.is_empty() => {
                    self.finish(finished, ledger).await?;
                }
            }
        }
    }

    /// Waits until one upload under way ends, and records it.
    async fn wait_for_one(
        &mut self,
        running: &mut Running<'_>,
        ledger: &SharedLedger<'_>,
        stop: &CancellationToken,
    ) -> Result<(), Halt> {
        let finished = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(Halt::Stopped),
            Some(finished) = running.next() => finished,
        };
        Ok(self.finish(finished, ledger).await?)
    }

    /// Records an upload that ended: its row (now, or with its batch), or its failure.
    async fn finish(
        &mut self,
        finished: Finished,
        ledger: &SharedLedger<'_>,
    ) -> Result<(), RunError> {
        let Finished {
            index,
            path,
            decision,
            cost,
            seconds,
            result,
        } = finished;
        self.reserved -= cost;
        self.running_paths.remove(&path);
        match result {
            Ok(record) => {
                tracing::info!(
                    "uploaded {} as {} ({} in {seconds:.1}s, tree hash {})",
                    shown(&path),
                    record.archive_id,
                    crate::display_size(record.size.unwrap_or(0)),
                    record.tree_hash.map(|h| h.to_hex()).unwrap_or_default()
                );
                if self.committed == self.uploaded.len() {
                    self.batch_started = Instant::now();
                }
                self.uploaded.push((
                    index,
                    Uploaded {
                        path,
                        decision,
                        record: Some(record),
                        estimated_size: 0,
                    },
                ));
                // A backend whose archives are durable when `put` returns has each row
                // committed at once; the others' rows wait for a batch.
                let due = !self.archiver.capabilities().batched_durability
                    || self.uploaded.len() - self.committed >= BATCH_ROWS
                    || self.batch_started.elapsed() >= BATCH_AGE;
                if due {
                    self.commit(ledger).await?;
                }
            }
            Err(CandidateError::Ledger(e)) => return Err(e.into()),
            Err(e) => self.failed(path, &e),
        }
        Ok(())
    }

    /// Makes the uncommitted uploads' archives durable, then commits their rows in one
    /// transaction, in plan order (a ledger that reads the same from run to run). An archive
    /// the backend cannot make durable is reported failed, and nothing of it recorded.
    async fn commit(&mut self, ledger: &SharedLedger<'_>) -> Result<(), RunError> {
        // A dry run's uploads have no rows to commit.
        if !self
            .uncommitted()
            .any(|(_, upload)| upload.record.is_some())
        {
            self.committed = self.uploaded.len();
            return Ok(());
        }
        // Noted before the backend names them: a run killed after the names and before the
        // rows leaves this note, and the next run removes what it names (see
        // `remove_unrecorded`).
        let naming: Vec<String> = self
            .uncommitted()
            .filter_map(|(_, upload)| upload.record.as_ref())
            .map(|record| record.archive_id.clone())
            .collect();
        if self.archiver.capabilities().batched_durability {
            ledger.with(|l| l.record_naming(&naming))?;
        }
        if let Err(e) = self.archiver.sync(&naming).await {
            let message = error_chain(&e);
            tracing::error!(
                "{} archive(s) could not be made durable, so they are not recorded and the \
                 next run uploads them again: {message}",
                self.uploaded.len() - self.committed
            );
            for (_, upload) in self.uploaded.drain(self.committed..) {
                self.report.failed.push((upload.path, message.clone()));
            }
            return Ok(());
        }
        self.uploaded[self.committed..].sort_by_key(|(index, _)| *index);
        // Stored means durable and readable, which for a batching backend is only now: a
        // listing taken before this time need not show these archives.
        let stored_at = OffsetDateTime::now_utc();
        for (_, upload) in &mut self.uploaded[self.committed..] {
            if let Some(record) = &mut upload.record {
                record.uploaded_at = Some(stored_at);
            }
        }
        let rows: Vec<UploadRecord> = self
            .uncommitted()
            .filter_map(|(_, upload)| upload.record.clone())
            .collect();
        self.committed = self.uploaded.len();
        ledger
            .with(|l| l.record_uploads(&rows))
            .map_err(|source| RunError::Unrecorded {
                stored: rows.into_iter().map(|r| (r.path, r.archive_id)).collect(),
                source,
            })
    }

    fn failed(&mut self, path: PathBuf, error: &CandidateError) {
        tracing::error!("failed to back up {}: {}", shown(&path), error_chain(error));
        self.report.failed.push((path, error_chain(error)));
    }

    fn empty(&mut self, path: PathBuf, dry_run: bool) {
        let backend = self.archiver.name();
        if dry_run {
            tracing::info!(
                "would skip {}: it is empty, and the {backend} backend cannot store 0-byte \
                 archives",
                shown(&path)
            );
        } else {
            tracing::warn!(
                "skipping {}: it is empty, and the {backend} backend cannot store 0-byte \
                 archives (there is nothing in it to lose)",
                shown(&path)
            );
        }
        self.report.empty_skipped.push(path);
    }

    fn defer(&mut self, rest: &[Planned]) {
        self.report.deferred = rest
            .iter()
            .map(|p| p.candidate.source_path().to_path_buf())
            .collect();
        tracing::info!(
            "stopping after {} upload(s) (--max-uploads); {} candidate(s) left for the next run",
            self.uploaded(),
            self.report.deferred.len()
        );
    }

    /// The report, uploads listed in plan order whatever order they finished in.
    fn into_report(mut self) -> RunReport {
        self.uploaded.sort_by_key(|(index, _)| *index);
        self.report.uploaded = self.uploaded.into_iter().map(|(_, u)| u).collect();
        self.report
    }
}

/// The run's ledger, shared by the uploads under way in the run's one task. Every use is a
/// synchronous call inside [`SharedLedger::with`], so no borrow is ever held across an await.
struct SharedLedger<'a>(RefCell<&'a mut Ledger>);

impl<'a> SharedLedger<'a> {
    /// Shares `ledger` for the length of a run.
    fn new(ledger: &'a mut Ledger) -> Self {
        SharedLedger(RefCell::new(ledger))
    }

    /// Calls `f` with the ledger.
    fn with<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

async fn scan_of(candidate: Arc<dyn Candidate>) -> Result<Scan, SourceError> {
    tokio::task::spawn_blocking(move || candidate.scan())
        .await
        .expect("scan does not panic")
}

/// A backup's upload journaled in the ledger by its source path (`pending_uploads`,
/// `pending_parts`), so the next run of the unchanged source resumes it.
struct PendingJournal<'l, 'a> {
    ledger: &'l SharedLedger<'a>,
    /// The row to record when the upload starts; its token is filled in then.
    pending: PendingUpload,
}

impl UploadJournal for PendingJournal<'_, '_> {
    fn started(&mut self, token: &str) -> Result<(), LedgerError> {
        self.pending.token = token.to_owned();
        self.ledger.with(|l| l.record_pending(&self.pending))
    }

    fn part_stored(&mut self, number: u64, receipt: &str) -> Result<(), LedgerError> {
        let path = &self.pending.path;
        self.ledger.with(|l| l.record_part(path, number, receipt))
    }

    fn completing(&mut self, size: u64, tree_hash: TreeHash) -> Result<(), LedgerError> {
        let path = &self.pending.path;
        self.ledger
            .with(|l| l.record_completing(path, size, tree_hash))
    }
}

/// Tells the progress display an item is finished when dropped: on every path out of a loop
/// iteration, and when an upload under way ends or is dropped.
struct ItemDone(crate::progress::SharedProgress);

impl Drop for ItemDone {
    fn drop(&mut self) {
        self.0.item_done();
    }
}

/// Whether `candidate`, when empty, is an archive `archiver` cannot store (a file to a Glacier
/// vault; a directory's tar is never empty, nor is a compressed or encrypted archive: a zstd
/// frame, an age header). One rule for the run and its dry run.
fn may_be_unstorable(
    candidate: &dyn Candidate,
    archiver: &dyn Archiver,
    format: &crate::codec::Format,
) -> bool {
    format.is_plain()
        && candidate.kind() == glacier_backup_archiver::SourceKind::File
        && !archiver.capabilities().stores_empty_archives
}

/// How long an unfinished Glacier-style upload is worth resuming; the service may drop idle
/// uploads after about a day.
const RESUME_WINDOW: time::Duration = time::Duration::hours(24);

/// Decides what to do with an earlier unfinished upload of the same path: the upload to
/// continue, or `None` after giving it up.
async fn resumable_upload(
    path: &std::path::Path,
    fingerprint: &str,
    encoding: &Encoding,
    archiver: &dyn Archiver,
    ledger: &SharedLedger<'_>,
) -> Result<Option<PendingUpload>, CandidateError> {
    let Some(pending) = ledger.with(|l| l.pending_upload(path))? else {
        return Ok(None);
    };
    let age = OffsetDateTime::now_utc() - pending.started_at;
    let reason = if pending.backend != archiver.name() || !archiver.capabilities().resumable_uploads
    {
        "it was made with another backend"
    } else if pending.fingerprint != fingerprint {
        "the source changed since"
    } else if pending.encoding != *encoding {
        // New recipients (a replaced key) or compression apply to every upload from now on.
        "[archive] or [encryption] changed since"
    } else if pending.encoding.encrypted
        && pending.seal.as_deref().and_then(Seal::from_bytes).is_none()
    {
        "its encryption key was not kept"
    } else if age >= RESUME_WINDOW && pending.completing.is_none() {
        // An upload that was being completed may well be an archive by now: asking to complete
        // it again is how to find out, however old it is.
        "it is more than a day old"
    } else {
        return Ok(Some(pending));
    };
    tracing::info!(
        "{}: starting over instead of resuming upload {}: {reason}",
        shown(path),
        pending.token
    );
    if pending.backend == archiver.name() {
        if let Err(e) = archiver.abort_upload(&pending.token).await {
            tracing::warn!("could not abort the earlier upload {}: {e}", pending.token);
        }
    }
    ledger.with(|l| l.clear_pending(path))?;
    Ok(None)
}

/// Streams one candidate to the archiver and returns the ledger row to write. Multipart uploads
/// are recorded in `ledger` as soon as they start, so that an interrupted one is resumed by the
/// next run of the unchanged source.
async fn upload(
    candidate: Arc<dyn Candidate>,
    scan: Scan,
    archiver: &dyn Archiver,
    ledger: &SharedLedger<'_>,
    progress: &crate::progress::SharedProgress,
    format: &crate::codec::Format,
) -> Result<UploadRecord, CandidateError> {
    let path = candidate.source_path().to_path_buf();
    let item: Arc<dyn ItemProgress> = progress.item(&shown(&path), scan.size_estimate).into();
    let fingerprint = scan.fingerprint.to_string();
    let encoding = format.encoding();
    let resume = resumable_upload(&path, &fingerprint, &encoding, archiver, ledger).await?;
    // A resumed upload writes its bytes again with the seal it started with.
    let seal = match (&resume, encoding.encrypted) {
        (_, false) => None,
        (Some(pending), true) => pending.seal.as_deref().and_then(Seal::from_bytes),
        (None, true) => Some(
            Seal::authenticated(&format.recipients, format.authentication.as_ref())
                .map_err(|e| CandidateError::Source(SourceError::Encode(e.to_string())))?,
        ),
    };
    // age adds 16 bytes per 64 KiB and a header: a part size chosen for the plain size must
    // still hold the stored one.
    let size_hint = match encoding.encrypted {
        true => scan.size_estimate + scan.size_estimate / 4096 + 4096,
        false => scan.size_estimate,
    };
    let layers = Layers::of(&encoding, seal.clone(), size_hint);
    let part_size = match &resume {
        Some(pending) => pending.part_size,
        None => archiver.part_size(size_hint),
    };
    let resume = match resume {
        Some(pending) => Some(Resume {
            receipts: ledger.with(|l| l.pending_parts(&path))?,
            token: pending.token,
            completing: pending.completing,
        }),
        None => None,
    };
    let started_at = OffsetDateTime::now_utc();
    let meta = ArchiveMeta {
        source_path: path.clone(),
        name: candidate.archive_name(),
        kind: candidate.kind(),
        fingerprint: fingerprint.clone(),
        size_hint,
        started_at,
        encoding: encoding.clone(),
    };
    let part_bytes = usize::try_from(part_size).expect("part sizes fit in memory");
    let layered = layers.is_some();
    let (parts, plain_size) = encoded_parts(candidate.clone(), part_bytes, size_hint, layers);
    let plain_so_far = plain_size.clone();
    let mut shown = 0;
    let parts = parts
        .inspect(move |part| {
            if let Ok(part) = part {
                // Parts are taken as the backend sends them: the bytes taken are (within the
                // few parts in flight) the bytes sent. Progress counts the source's bytes, which
                // the item's total is, not the compressed ones.
                let done = match layered {
                    true => plain_so_far.get(),
                    false => shown + part.data.len() as u64,
                };
                item.advance(done.saturating_sub(shown));
                shown = shown.max(done);
            }
        })
        .boxed();
    // A resumable backend's uploads are journaled as they go, so a failed one is kept for the
    // next run to continue; any other failed upload is aborted.
    let mut journal = PendingJournal {
        ledger,
        pending: PendingUpload {
            path: path.clone(),
            backend: archiver.name().to_owned(),
            token: String::new(),
            part_size,
            fingerprint: fingerprint.clone(),
            started_at,
            completing: None,
            encoding: encoding.clone(),
            seal: seal.as_ref().map(Seal::to_bytes),
        },
    };
    let journal = archiver
        .capabilities()
        .resumable_uploads
        .then_some(&mut journal as &mut dyn UploadJournal);
    let stored = put_journaled(archiver, &meta, resume, parts, journal).await?;
    Ok(UploadRecord {
        path: meta.source_path,
        name: meta.name,
        archive_id: stored.archive_id,
        description: stored.description,
        backend: archiver.name().to_owned(),
        kind: Some(meta.kind),
        size: Some(stored.size),
        tree_hash: Some(stored.tree_hash),
        fingerprint: Some(meta.fingerprint),
        started_at: Some(started_at),
        uploaded_at: Some(OffsetDateTime::now_utc()),
        plain_size: (!meta.encoding.is_plain()).then(|| plain_size.get()),
        encoding: meta.encoding,
    })
}

/// An error and its causes on one line, each cause once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
