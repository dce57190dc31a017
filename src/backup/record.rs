//! Recording the uploads that end: a row at once where the backend's archives are durable
//! when `put` returns, or with its batch after `Archiver::sync` names it; a failure in the
//! report.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::state::{Finished, Run};
use super::{CandidateError, RunError, RunReport, Uploaded};
use crate::error_chain;
use crate::ledger::{Ledger, UploadRecord};
use crate::resolve::Planned;
use crate::shown;

/// A backend that defers durability to `Archiver::sync` gets its rows committed after this
/// many archives or this long, whichever comes first: what a crash can cost is a batch of
/// uploads done again, never a row without its archive.
const BATCH_ROWS: usize = 100;
const BATCH_AGE: Duration = Duration::from_secs(1);

impl Run<'_> {
    /// Records an upload that ended: its row (now, or with its batch), or its failure.
    pub(super) async fn finish(
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
            Ok((record, catalog)) => {
                if let Some(catalog) = catalog {
                    self.catalogs.insert(record.archive_id.clone(), catalog);
                }
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
    pub(super) async fn commit(&mut self, ledger: &SharedLedger<'_>) -> Result<(), RunError> {
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
        let mut naming: Vec<String> = self
            .uncommitted()
            .filter_map(|(_, upload)| upload.record.as_ref())
            .map(|record| record.archive_id.clone())
            .collect();
        // Their indexes are named with them (and forgotten with their catalogs).
        let indexes = naming
            .iter()
            .filter_map(|id| self.catalogs.get(id)?.index_id.clone());
        naming.extend(indexes.collect::<Vec<_>>());
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
                if let Some(record) = &upload.record {
                    self.catalogs.remove(&record.archive_id);
                }
                self.report.failed.push((upload.path, message.clone()));
            }
            return Ok(());
        }
        self.uploaded[self.committed..].sort_by_key(|(index, _)| *index);
        // Stored means durable and readable, which for a batching backend is only now: a
        // listing taken before this time need not show these archives.
        let stored_at = crate::clock::now();
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
        let catalogs = std::mem::take(&mut self.catalogs);
        let cataloged: Vec<_> = rows
            .iter()
            .map(|row| (row, catalogs.get(&row.archive_id)))
            .collect();
        ledger
            .with(|l| l.record_cataloged(&cataloged))
            .map_err(|source| RunError::Unrecorded {
                stored: rows.into_iter().map(|r| (r.path, r.archive_id)).collect(),
                source,
            })
    }

    pub(super) fn failed(&mut self, path: PathBuf, error: &CandidateError) {
        tracing::error!("failed to back up {}: {}", shown(&path), error_chain(error));
        self.report.failed.push((path, error_chain(error)));
    }

    pub(super) fn empty(&mut self, path: PathBuf, dry_run: bool) {
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

    pub(super) fn defer(&mut self, rest: &[Planned]) {
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
    pub(super) fn into_report(mut self) -> RunReport {
        self.uploaded.sort_by_key(|(index, _)| *index);
        self.report.uploaded = self.uploaded.into_iter().map(|(_, u)| u).collect();
        self.report
    }
}

/// The run's ledger, shared by the uploads under way in the run's one task. Every use is a
/// synchronous call inside [`SharedLedger::with`], so no borrow is ever held across an await.
pub(super) struct SharedLedger<'a>(RefCell<&'a mut Ledger>);

impl<'a> SharedLedger<'a> {
    /// Shares `ledger` for the length of a run.
    pub(super) fn new(ledger: &'a mut Ledger) -> Self {
        SharedLedger(RefCell::new(ledger))
    }

    /// Calls `f` with the ledger.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}
