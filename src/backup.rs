//! A backup run: for each candidate, decide whether it needs uploading, stream it to the
//! archiver, and record it in the ledger once the archiver confirms it.

use crate::shown;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use glacier_backup_archiver::parts::PartChecker;
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, Error as ArchiverError, OnFailure, PutOptions, Resume,
    UploadEvent,
};
use time::OffsetDateTime;

use crate::candidate::SourceError;
use crate::candidate::{Candidate, Scan};
use crate::ledger::{Ledger, LedgerError, PendingUpload, UploadRecord};
use crate::resolve::Planned;
use crate::stream::archive_parts;

/// How a run behaves.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only report what would be uploaded.
    pub dry_run: bool,
    /// Stop after this many successful uploads (the Python tool stopped after one).
    pub max_uploads: Option<usize>,
    /// Where progress goes (nowhere when `None`).
    pub progress: Option<crate::progress::SharedProgress>,
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
    /// The archive was stored but could not be recorded: the user must know its id.
    #[error("{path} was stored as {archive_id:?} but the ledger could not record it: {source}")]
    Unrecorded {
        /// The source.
        path: PathBuf,
        /// Where it went.
        archive_id: String,
        /// Why recording failed.
        source: LedgerError,
    },
}

/// Decides whether `planned` needs uploading. Returns the scan when one was taken, so it is
/// not taken twice.
pub fn decide(
    planned: &Planned,
    ledger: &dyn Ledger,
) -> Result<(Decision, Option<Scan>), CandidateError> {
    let candidate = &planned.candidate;
    let Some(last) = ledger.latest_upload(candidate.source_path())? else {
        return Ok((Decision::New, None));
    };
    if !planned.upload_if_changed {
        return Ok((
            Decision::UpToDate {
                at: last.uploaded_at,
                checked: false,
            },
            None,
        ));
    }
    let scan = candidate.scan()?;
    let decision = if changed_since(&last, &scan) {
        Decision::Changed {
            since: last.uploaded_at,
        }
    } else {
        Decision::UpToDate {
            at: last.uploaded_at,
            checked: true,
        }
    };
    Ok((decision, Some(scan)))
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
    /// The archive is empty and the backend cannot store empty archives.
    #[error("the {backend} backend cannot store 0-byte archives")]
    Empty {
        /// Backend name.
        backend: &'static str,
    },
    /// The backend's account of the archive differs from what was sent.
    #[error("the backend reports {what} {reported} but {sent} was sent; nothing was recorded")]
    Mismatch {
        /// `size` or `tree hash`.
        what: &'static str,
        /// What the backend said.
        reported: String,
        /// What the engine sent.
        sent: String,
    },
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

/// Backs up every planned candidate. Candidate failures are reported and the run goes on;
/// ledger failures stop it.
pub async fn run_backup(
    planned: &[Planned],
    ledger: &mut dyn Ledger,
    archiver: &dyn Archiver,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let mut report = RunReport::default();
    let progress = crate::progress::or_none(&options.progress);
    progress.batch(planned.len());
    for (i, item) in planned.iter().enumerate() {
        // Whatever happens to this candidate below, it is done with when the loop moves on.
        let _done = ItemDone(progress.as_ref());
        if options
            .max_uploads
            .is_some_and(|max| report.uploaded.len() >= max)
        {
            report.deferred = planned[i..]
                .iter()
                .map(|p| p.candidate.source_path().to_path_buf())
                .collect();
            tracing::info!(
                "stopping after {} upload(s) (--max-uploads); {} candidate(s) left for the next run",
                report.uploaded.len(),
                report.deferred.len()
            );
            break;
        }
        let path = item.candidate.source_path().to_path_buf();
        let (decision, scan) = match decide(item, ledger) {
            Ok(d) => d,
            Err(CandidateError::Ledger(e)) => return Err(e.into()),
            Err(e) => {
                tracing::error!("{}: {e}", shown(&path));
                report.failed.push((path, e.to_string()));
                continue;
            }
        };
        if let Decision::UpToDate { .. } = decision {
            tracing::debug!("{}: {decision}", shown(&path));
            report.up_to_date.push((path, decision));
            continue;
        }
        if options.dry_run {
            // A scan reads no contents: sizes for the cost estimate (where storage is priced)
            // and for the empty check.
            let unstorable = may_be_unstorable(item.candidate.as_ref(), archiver);
            let size = match &scan {
                Some(scan) => Ok(scan.size_estimate),
                None if unstorable || archiver.storage_class().is_some() => {
                    item.candidate.scan().map(|scan| scan.size_estimate)
                }
                None => Ok(0),
            };
            // The real run skips empty files a backend cannot store; say the same here.
            if unstorable {
                if let Ok(0) = size {
                    tracing::info!(
                        "would skip {}: it is empty, and the {} backend cannot store 0-byte \
                         archives",
                        shown(&path),
                        archiver.name()
                    );
                    report.empty_skipped.push(path);
                    continue;
                }
            }
            tracing::info!(
                "would upload {} ({}): {decision}",
                shown(&path),
                item.candidate.kind().as_str()
            );
            report.uploaded.push(Uploaded {
                path,
                decision,
                record: None,
                estimated_size: size.unwrap_or(0),
            });
            continue;
        }
        tracing::info!("uploading {} ({decision})", shown(&path));
        let started = Instant::now();
        match upload(item.candidate.clone(), scan, archiver, ledger, &progress).await {
            Ok(record) => {
                let seconds = started.elapsed().as_secs_f64();
                ledger
                    .record_upload(&record)
                    .map_err(|source| RunError::Unrecorded {
                        path: path.clone(),
                        archive_id: record.archive_id.clone(),
                        source,
                    })?;
                tracing::info!(
                    "uploaded {} as {} ({} in {seconds:.1}s, tree hash {})",
                    shown(&path),
                    record.archive_id,
                    crate::display_size(record.size.unwrap_or(0)),
                    record.tree_hash.map(|h| h.to_hex()).unwrap_or_default()
                );
                report.uploaded.push(Uploaded {
                    path,
                    decision,
                    record: Some(record),
                    estimated_size: 0,
                });
            }
            Err(CandidateError::Ledger(e)) => return Err(e.into()),
            Err(CandidateError::Empty { backend }) => {
                tracing::warn!(
                    "skipping {}: it is empty, and the {backend} backend cannot store 0-byte \
                     archives (there is nothing in it to lose)",
                    shown(&path)
                );
                report.empty_skipped.push(path);
            }
            Err(e) => {
                tracing::error!("failed to back up {}: {}", shown(&path), error_chain(&e));
                report.failed.push((path, error_chain(&e)));
            }
        }
    }
    Ok(report)
}

/// Tells the progress display an item is finished when dropped: on every path out of a loop
/// iteration.
struct ItemDone<'a>(&'a dyn crate::progress::Progress);

impl Drop for ItemDone<'_> {
    fn drop(&mut self) {
        self.0.item_done();
    }
}

/// Whether `candidate`, when empty, is an archive `archiver` cannot store (a file to a Glacier
/// vault; a directory's tar is never empty). One rule for the run and its dry run.
fn may_be_unstorable(candidate: &dyn Candidate, archiver: &dyn Archiver) -> bool {
    candidate.kind() == glacier_backup_archiver::SourceKind::File
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
    archiver: &dyn Archiver,
    ledger: &mut dyn Ledger,
) -> Result<Option<PendingUpload>, CandidateError> {
    let Some(pending) = ledger.pending_upload(path)? else {
        return Ok(None);
    };
    let age = OffsetDateTime::now_utc() - pending.started_at;
    let reason = if pending.backend != archiver.name() || !archiver.capabilities().resumable_uploads
    {
        "it was made with another backend"
    } else if pending.fingerprint != fingerprint {
        "the source changed since"
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
    ledger.clear_pending(path)?;
    Ok(None)
}

/// Streams one candidate to the archiver and returns the ledger row to write. Multipart uploads
/// are recorded in `ledger` as soon as they start, so that an interrupted one is resumed by the
/// next run of the unchanged source.
pub async fn upload(
    candidate: Arc<dyn Candidate>,
    scan: Option<Scan>,
    archiver: &dyn Archiver,
    ledger: &mut dyn Ledger,
    progress: &crate::progress::SharedProgress,
) -> Result<UploadRecord, CandidateError> {
    let scan = match scan {
        Some(scan) => scan,
        None => {
            let c = candidate.clone();
            tokio::task::spawn_blocking(move || c.scan())
                .await
                .expect("scan does not panic")?
        }
    };
    if scan.size_estimate == 0 && may_be_unstorable(candidate.as_ref(), archiver) {
        return Err(CandidateError::Empty {
            backend: archiver.name(),
        });
    }
    let path = candidate.source_path().to_path_buf();
    progress.item(&shown(&path), scan.size_estimate);
    let fingerprint = scan.fingerprint.to_string();
    let resume = resumable_upload(&path, &fingerprint, archiver, ledger).await?;
    let part_size = match &resume {
        Some(pending) => pending.part_size,
        None => archiver.part_size(scan.size_estimate),
    };
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let resume = match resume {
        Some(pending) => Some(Resume {
            receipts: ledger.pending_parts(&path)?,
            token: pending.token,
            completing: pending.completing,
        }),
        None => None,
    };
    // A resumable backend's uploads are recorded as they go, so a failed one is kept for the
    // next run to continue; any other failed upload is aborted.
    let resumable = archiver.capabilities().resumable_uploads;
    let options = PutOptions {
        resume,
        events: resumable.then_some(events_tx),
        on_failure: if resumable {
            OnFailure::Keep
        } else {
            OnFailure::Abort
        },
    };
    let started_at = OffsetDateTime::now_utc();
    let meta = ArchiveMeta {
        source_path: path.clone(),
        name: candidate.archive_name(),
        kind: candidate.kind(),
        fingerprint: fingerprint.clone(),
        size_hint: scan.size_estimate,
        started_at,
    };
    let part_bytes = usize::try_from(part_size).expect("part sizes fit in memory");
    // The engine keeps its own account of what it sent, to check the backend's answer.
    let sent = Arc::new(Mutex::new(PartChecker::new("engine", false)));
    let tally = sent.clone();
    let shown_progress = progress.clone();
    let parts = archive_parts(candidate.clone(), part_bytes)
        .inspect(move |part| {
            if let Ok(part) = part {
                // The stream is built in order by construction, so this cannot fail.
                let _ = tally.lock().expect("tally lock").accept(part);
                // Parts are taken as the backend sends them: the bytes taken are (within the
                // few parts in flight) the bytes sent.
                shown_progress.advance(part.data.len() as u64);
            }
        })
        .boxed();
    let stored: ArchiveRef = {
        let put = archiver.put(&meta, &options, parts);
        tokio::pin!(put);
        loop {
            tokio::select! {
                result = &mut put => break result?,
                Some(event) = events_rx.recv() => match event {
                    UploadEvent::Started(token) => ledger.record_pending(&PendingUpload {
                        path: path.clone(),
                        backend: archiver.name().to_owned(),
                        token,
                        part_size,
                        fingerprint: fingerprint.clone(),
                        started_at,
                        completing: None,
                    })?,
                    UploadEvent::Completing { size, tree_hash, recorded } => {
                        ledger.record_completing(&path, size, tree_hash)?;
                        recorded.done();
                    }
                    UploadEvent::PartStored { number, receipt } => {
                        ledger.record_part(&path, number, &receipt)?
                    }
                },
            }
        }
    };
    let sent = sent.lock().expect("tally lock");
    if stored.size != sent.size() {
        return Err(CandidateError::Mismatch {
            what: "size",
            reported: stored.size.to_string(),
            sent: sent.size().to_string(),
        });
    }
    if stored.tree_hash != sent.tree_hash() {
        return Err(CandidateError::Mismatch {
            what: "tree hash",
            reported: stored.tree_hash.to_hex(),
            sent: sent.tree_hash().to_hex(),
        });
    }
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
