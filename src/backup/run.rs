//! The run's loop: candidates decided in plan order, uploaded several at once within the
//! backend's memory budget, each ending upload handed to `record.rs`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use glacier_backup_archiver::Archiver;

use super::decision::{decision, may_be_unstorable};
use super::put::put_candidate;
use super::record::SharedLedger;
use super::resume::remove_unrecorded;
use super::state::{Finished, Halt, Run};
use super::{CandidateError, Decision, RunError, RunOptions, RunReport, Uploaded};
use crate::candidate::{Candidate, Scan, SourceError};
use crate::chain::{Chain, Increment};
use crate::ledger::Ledger;
use crate::progress::SharedProgress;
use crate::resolve::Planned;
use crate::shown;

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
    let mut run = Run::new(archiver, options, progress);
    let mut running = FuturesUnordered::new();
    let result = run.each_candidate(planned, &mut running, &shared).await;
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

/// A candidate's scan (none in a dry run that needs none), with its increment when its chain
/// goes on.
type Scanned = (Option<Scan>, Option<(Increment, Arc<dyn Candidate>)>);

/// Whether a chained directory's next upload continues its chain.
enum Continuing {
    /// Not chained, or its last upload is not part of a chain.
    NotChained,
    /// The chain goes on: the next upload is an increment of its last.
    Chain(Chain),
    /// A full upload starts a new chain, for this reason.
    NewFull(NewFull),
}

/// Why a chained directory's next upload is a full one.
struct NewFull {
    why: String,
    /// A broken chain (warned about) rather than the policy's choice.
    broken: bool,
}

impl Continuing {
    fn split(self) -> (Option<Chain>, Option<NewFull>) {
        match self {
            Continuing::NotChained => (None, None),
            Continuing::Chain(chain) => (Some(chain), None),
            Continuing::NewFull(new_full) => (None, Some(new_full)),
        }
    }
}

impl NewFull {
    fn log(&self) {
        match self.broken {
            true => tracing::warn!("{}", self.why),
            false => tracing::info!("{}", self.why),
        }
    }
}

/// A candidate decided for upload, with the scan its upload starts from, and what it is an
/// increment of (with the candidate that writes it) when it continues a chain.
struct ToUpload {
    decision: Decision,
    scan: Scan,
    increment: Option<(Increment, Arc<dyn Candidate>)>,
}

impl<'a> Run<'a> {
    fn new(archiver: &'a dyn Archiver, options: &'a RunOptions, progress: SharedProgress) -> Self {
        Run {
            archiver,
            options,
            progress,
            budget: archiver.upload_concurrency().max(1) as u64 * archiver.part_size(0),
            parallel: options.parallel_uploads.max(1),
            reserved: 0,
            running_paths: HashSet::new(),
            uploaded: Vec::new(),
            committed: 0,
            batch_started: Instant::now(),
            catalogs: Default::default(),
            report: RunReport::default(),
        }
    }

    /// Goes through the plan in order, starting each upload it decides on as the budget
    /// allows, and returns once every upload under way has ended.
    async fn each_candidate<'r>(
        &mut self,
        planned: &[Planned],
        running: &mut Running<'r>,
        ledger: &'r SharedLedger<'_>,
    ) -> Result<(), Halt>
    where
        'a: 'r,
    {
        for (index, item) in planned.iter().enumerate() {
            let done = ItemDone(self.progress.clone());
            if let Some(max) = self.options.max_uploads {
                while self.uploaded() + running.len() >= max && !running.is_empty() {
                    self.wait_for_one(running, ledger).await?;
                }
                if self.uploaded() >= max {
                    self.defer(&planned[index..]);
                    break;
                }
            }
            let path = item.candidate.source_path();
            // One upload of a path at a time, and its row in the ledger before the path is
            // looked at again (a library caller may list a path twice).
            while self.running_paths.contains(path) {
                self.wait_for_one(running, ledger).await?;
            }
            if self.uncommitted().any(|(_, upload)| upload.path == path) {
                self.commit(ledger).await?;
            }
            if let Some(to_upload) = self.consider(index, item, running, ledger).await? {
                self.start(index, item, to_upload, done, running, ledger)
                    .await?;
            }
        }
        while !running.is_empty() {
            self.wait_for_one(running, ledger).await?;
        }
        Ok(())
    }

    /// Decides on one candidate, scanning it while the uploads under way go on. Reports it
    /// (up to date, failed to scan, empty and unstorable, or a dry run's upload) and returns
    /// `None`, or returns what to upload.
    async fn consider(
        &mut self,
        index: usize,
        item: &Planned,
        running: &mut Running<'_>,
        ledger: &SharedLedger<'_>,
    ) -> Result<Option<ToUpload>, Halt> {
        let candidate = &item.candidate;
        let path = candidate.source_path().to_path_buf();
        let last = ledger.with(|l| l.latest_upload(&path))?;
        if last.is_some() && !item.upload_if_changed {
            self.up_to_date(path, decision(last.as_ref(), false, None));
            return Ok(None);
        }
        let (archiver, options) = (self.archiver, self.options);
        let unstorable = may_be_unstorable(candidate.as_ref(), archiver, &options.format);
        // A dry run scans (reads no contents) only for what it reports: a change, the
        // size where storage is priced, an empty file the backend cannot store.
        let needs_scan =
            !options.dry_run || last.is_some() || unstorable || archiver.storage_class().is_some();
        let (chain, new_full) = match (item.chain, &last, needs_scan) {
            (Some(policy), Some(last), true) => self.chain_of(item, last, policy, ledger)?,
            _ => Continuing::NotChained,
        }
        .split();
        let (scan, increment) = match needs_scan {
            true => match self.scan(item, chain, running, ledger).await? {
                Ok(scanned) => scanned,
                Err(e) => {
                    self.failed(path, &e);
                    return Ok(None);
                }
            },
            false => (None, None),
        };
        let mut decision = decision(last.as_ref(), item.upload_if_changed, scan.as_ref());
        // Metadata alone says unchanged; `verify_content` found bytes that changed.
        if let (Decision::UpToDate { at, .. }, Some((increment, _))) = (&decision, &increment) {
            if increment.changes.content_only > 0 {
                decision = Decision::Changed { since: *at };
            }
        }
        if let Decision::UpToDate { .. } = decision {
            self.up_to_date(path, decision);
            return Ok(None);
        }
        if let Some(new_full) = new_full {
            new_full.log();
        }
        // An increment's size is its own, not the whole tree's (progress, part size, costs).
        let size = match &increment {
            Some((increment, _)) => increment.changes.size_estimate,
            None => scan.as_ref().map_or(0, |scan| scan.size_estimate),
        };
        if size == 0 && unstorable && scan.is_some() {
            self.empty(path, options.dry_run);
            return Ok(None);
        }
        let scan = scan.map(|scan| Scan {
            size_estimate: size,
            ..scan
        });
        match (options.dry_run, scan) {
            (false, Some(scan)) => Ok(Some(ToUpload {
                decision,
                scan,
                increment,
            })),
            (true, _) => {
                let kind = match &increment {
                    Some(_) => "increment of a directory",
                    None => candidate.kind().as_str(),
                };
                tracing::info!("would upload {} ({kind}): {decision}", shown(&path));
                let estimated_size = size;
                let would = Uploaded {
                    path,
                    decision,
                    record: None,
                    estimated_size,
                };
                self.uploaded.push((index, would));
                Ok(None)
            }
            (false, None) => unreachable!("a real run always scans"),
        }
    }

    /// Whether the chain ending at `last` goes on under `policy` (an unchanged directory
    /// uploads nothing either way, so why a new full starts is told only once it is changed).
    fn chain_of(
        &self,
        item: &Planned,
        last: &crate::ledger::UploadRecord,
        policy: crate::config::ChainPolicy,
        ledger: &SharedLedger<'_>,
    ) -> Result<Continuing, crate::ledger::LedgerError> {
        let path = shown(item.candidate.source_path());
        let chain = match ledger.with(|l| Chain::ending_at(l, last)) {
            Ok(Some(chain)) => chain,
            Ok(None) => return Ok(Continuing::NotChained),
            Err(crate::chain::ChainError::Ledger(e)) => return Err(e),
            Err(broken) => {
                return Ok(Continuing::NewFull(NewFull {
                    why: format!("{path}: {broken}; a full upload starts a new chain"),
                    broken: true,
                }))
            }
        };
        if let Err(why) = chain.continues(&policy, self.options.now) {
            return Ok(Continuing::NewFull(NewFull {
                why: format!("{path}: a full upload starts a new chain: {why}"),
                broken: false,
            }));
        }
        // The last inventory kept in the ledger may show an archive of the chain lost.
        if let Some(lost) = ledger
            .with(|l| l.last_inventory())?
            .and_then(|listing| chain.lost_in(&listing))
        {
            return Ok(Continuing::NewFull(NewFull {
                why: format!(
                    "{path}: archive {lost} of its chain is missing or different at the \
                     destination (the last inventory); a full upload starts a new chain"
                ),
                broken: true,
            }));
        }
        Ok(Continuing::Chain(chain))
    }

    /// Scans a candidate while the uploads under way go on. A directory whose `chain` goes on
    /// is diffed against the chain's state in the same walk: its increment comes with the scan.
    async fn scan(
        &mut self,
        item: &Planned,
        chain: Option<Chain>,
        running: &mut Running<'_>,
        ledger: &SharedLedger<'_>,
    ) -> Result<Result<Scanned, CandidateError>, Halt> {
        if let Some(chain) = chain {
            let base = chain.last().archive_id.clone();
            let candidate = item.candidate.clone();
            let diffed = tokio::task::spawn_blocking(move || {
                let state = chain.state().map_err(crate::chain::DiffError::from)?;
                candidate.increment_over(state)
            });
            match self.meanwhile(running, ledger, diffed).await? {
                Ok(Ok(Some((scan, (changes, candidate))))) => {
                    let increment = (Increment { base, changes }, candidate);
                    return Ok(Ok((Some(scan), Some(increment))));
                }
                // Not a directory: scanned as any other candidate, below.
                Ok(Ok(None)) => {}
                // A catalog of the chain the ledger cannot read: the backup goes on as a new
                // full rather than failing on every run.
                Ok(Err(crate::chain::DiffError::Catalog(e))) => tracing::warn!(
                    "{}: a catalog of its chain cannot be read ({e}); a full upload starts a \
                     new chain if it changed",
                    shown(item.candidate.source_path())
                ),
                Ok(Err(e)) => return Ok(Err(CandidateError::Chain(e))),
                Err(panicked) => {
                    let e = SourceError::Encode(panicked.to_string());
                    return Ok(Err(CandidateError::Chain(e.into())));
                }
            }
        }
        let scanned = self
            .meanwhile(running, ledger, scan_of(item.candidate.clone()))
            .await?;
        Ok(scanned.map(|scan| (Some(scan), None)).map_err(Into::into))
    }

    /// Starts uploading a candidate once the budget has room for it (waiting for uploads under
    /// way to end), as one more future of `running`.
    async fn start<'r>(
        &mut self,
        index: usize,
        item: &Planned,
        to_upload: ToUpload,
        done: ItemDone,
        running: &mut Running<'r>,
        ledger: &'r SharedLedger<'_>,
    ) -> Result<(), Halt>
    where
        'a: 'r,
    {
        let ToUpload {
            decision,
            scan,
            increment,
        } = to_upload;
        let cost = self.memory_cost(scan.size_estimate);
        while !running.is_empty()
            && (running.len() >= self.parallel || self.reserved + cost > self.budget)
        {
            self.wait_for_one(running, ledger).await?;
        }
        let (candidate, increment) = match increment {
            Some((increment, candidate)) => (candidate, Some(increment)),
            None => (item.candidate.clone(), None),
        };
        let path = candidate.source_path().to_path_buf();
        self.reserved += cost;
        self.running_paths.insert(path.clone());
        match &increment {
            Some(increment) => tracing::info!(
                "uploading {} ({decision}) as an increment: {} files or links changed ({}{}), \
                 {} paths gone",
                shown(&path),
                increment.changes.stored.len(),
                crate::display_size(increment.changes.bytes),
                match increment.changes.content_only {
                    0 => String::new(),
                    n => format!("; {n} with only their bytes changed"),
                },
                increment.changes.deleted.len()
            ),
            None => tracing::info!("uploading {} ({decision})", shown(&path)),
        }
        let (archiver, options, progress) = (self.archiver, self.options, self.progress.clone());
        running.push(
            async move {
                let _done = done;
                let started = Instant::now();
                let base = increment.map(|i| i.base);
                let result =
                    put_candidate(candidate, scan, base, archiver, ledger, &progress, options)
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
        Ok(())
    }

    fn up_to_date(&mut self, path: PathBuf, decision: Decision) {
        tracing::debug!("{}: {decision}", shown(&path));
        self.report.up_to_date.push((path, decision));
    }
}

type Running<'a> = FuturesUnordered<LocalBoxFuture<'a, Finished>>;

impl Run<'_> {
    /// Awaits `work` while the uploads under way go on, recording those that end.
    async fn meanwhile<T>(
        &mut self,
        running: &mut Running<'_>,
        ledger: &SharedLedger<'_>,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Halt> {
        let stop = &self.options.stop;
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
    ) -> Result<(), Halt> {
        let finished = tokio::select! {
            biased;
            () = self.options.stop.cancelled() => return Err(Halt::Stopped),
            Some(finished) = running.next() => finished,
        };
        Ok(self.finish(finished, ledger).await?)
    }
}

async fn scan_of(candidate: Arc<dyn Candidate>) -> Result<Scan, SourceError> {
    tokio::task::spawn_blocking(move || candidate.scan())
        .await
        .expect("scan does not panic")
}

/// Tells the progress display an item is finished when dropped: on every path out of a loop
/// iteration, and when an upload under way ends or is dropped.
struct ItemDone(crate::progress::SharedProgress);

impl Drop for ItemDone {
    fn drop(&mut self) {
        self.0.item_done();
    }
}
