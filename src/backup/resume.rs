//! What an earlier run left: an unfinished upload of the same source to continue (or give
//! up), the journal that lets the next run continue this one, and archives a killed run named
//! without recording them.

use glacier_backup_archiver::{ArchiveRef, Archiver, Encoding, Error as ArchiverError, TreeHash};

use super::record::SharedLedger;
use super::{CandidateError, RunError};
use crate::codec::Seal;
use crate::ledger::{Ledger, LedgerError, PendingUpload};
use crate::shown;
use crate::upload::UploadJournal;

/// How long an unfinished Glacier-style upload is worth resuming; the service may drop idle
/// uploads after about a day.
const RESUME_WINDOW: time::Duration = time::Duration::hours(24);

/// Decides what to do with an earlier unfinished upload of the same path: the upload to
/// continue, or `None` after giving it up.
pub(super) async fn resumable_upload(
    path: &std::path::Path,
    fingerprint: &str,
    encoding: &Encoding,
    archiver: &dyn Archiver,
    ledger: &SharedLedger<'_>,
) -> Result<Option<PendingUpload>, CandidateError> {
    let Some(pending) = ledger.with(|l| l.pending_upload(path))? else {
        return Ok(None);
    };
    let age = crate::clock::now() - pending.started_at;
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

/// A backup's upload journaled in the ledger by its source path (`pending_uploads`,
/// `pending_parts`), so the next run of the unchanged source resumes it.
pub(super) struct PendingJournal<'l, 'a> {
    pub(super) ledger: &'l SharedLedger<'a>,
    /// The row to record when the upload starts; its token is filled in then.
    pub(super) pending: PendingUpload,
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
