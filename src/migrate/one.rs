//! One archive moved: made readable, copied (`copy.rs`), recorded in both ledgers, and with
//! `--delete-source` the source's copy deleted once the destination's is checked.

use std::sync::Arc;

use glacier_backup_archiver::{ArchiveRef, Archiver, Error as ArchiverError, RestoreOptions};
use time::OffsetDateTime;

use crate::ledger::{Ledger, LedgerError, Moved, UploadRecord};
use crate::restore::retrieval::{wait_readable, Wait};

use super::copy::copy;
use super::{archive_of, kind_of, MoveFailure, MoveOutcome, MoveRequest};

/// Asks for a cold archive's retrieval (recorded in the ledger, never asked twice) without
/// waiting: a run moving many archives asks for all of them first, so they are prepared side
/// by side.
pub async fn prepare(
    source: &dyn Archiver,
    ledger: &mut Ledger,
    row: &UploadRecord,
    options: &RestoreOptions,
) -> Result<(), MoveFailure> {
    if source.capabilities().needs_restore {
        let archive = archive_of(row)?;
        crate::restore::retrieval::ask(source, ledger, &archive, options).await?;
    }
    Ok(())
}

/// Moves one upload's archive from `source` to `destination`. `moved` is what the source's
/// ledger says of it already.
pub async fn move_one(
    source: &Arc<dyn Archiver>,
    destination: &dyn Archiver,
    source_ledger: &mut Ledger,
    destination_ledger: &mut Ledger,
    row: &UploadRecord,
    request: &MoveRequest,
    moved: Option<&Moved>,
) -> MoveOutcome {
    let result = async {
        let archive = archive_of(row)?;
        if let Some(moved) = moved {
            if request.delete_source && moved.source_deleted_at.is_none() {
                delete_source(&**source, destination, source_ledger, &archive, moved).await?;
            }
            return Ok(MoveOutcome::AlreadyMoved(moved.key.clone()));
        }
        let wait = Wait {
            options: &request.options,
            deadline: request.deadline,
            progress: crate::progress::or_none(&request.progress),
        };
        if !wait_readable(&**source, source_ledger, &archive, &wait, None).await? {
            return Ok(MoveOutcome::Pending);
        }
        let stored = copy(source, destination, source_ledger, &archive, row, request).await?;
        let catalog = source_ledger.cataloged(&archive.archive_id)?;
        record_copy(
            destination_ledger,
            destination,
            row,
            &stored,
            catalog.as_ref(),
        )?;
        let moved = Moved {
            archive_id: archive.archive_id.clone(),
            destination: destination.target(),
            key: stored.archive_id.clone(),
            moved_at: OffsetDateTime::now_utc(),
            source_deleted_at: None,
        };
        source_ledger.record_moved(&moved)?;
        source_ledger.clear_retrieval(Some(&archive.archive_id))?;
        if request.delete_source {
            delete_source(&**source, destination, source_ledger, &archive, &moved).await?;
        }
        Ok(MoveOutcome::Moved(stored.archive_id))
    }
    .await;
    result.unwrap_or_else(MoveOutcome::Failed)
}

/// The destination's row: the source's, but for where the archive now is, with the source's
/// catalog (the stored bytes are the same, so its offsets and leaves hold). Written once: a run
/// stopped between this and marking the source's row finds it here and does not add another.
fn record_copy(
    ledger: &mut Ledger,
    destination: &dyn Archiver,
    row: &UploadRecord,
    stored: &ArchiveRef,
    catalog: Option<&crate::catalog::Cataloged>,
) -> Result<(), LedgerError> {
    let known = ledger.uploads_of(&row.path)?;
    if known.iter().any(|r| r.archive_id == stored.archive_id) {
        return Ok(());
    }
    let copy = UploadRecord {
        archive_id: stored.archive_id.clone(),
        description: stored.description.clone(),
        backend: destination.name().to_owned(),
        kind: Some(kind_of(row)),
        size: Some(stored.size),
        tree_hash: Some(stored.tree_hash),
        ..row.clone()
    };
    ledger.record_cataloged(&[(&copy, catalog)])
}

/// Deletes the source's archive once the destination's copy is checked: its size by the
/// destination's own account (S3: HEAD) and its tree hash by what the destination keeps of it
/// (S3: the object's tag). Anything missing or different keeps the source's archive.
async fn delete_source(
    source: &dyn Archiver,
    destination: &dyn Archiver,
    source_ledger: &mut Ledger,
    archive: &ArchiveRef,
    moved: &Moved,
) -> Result<(), MoveFailure> {
    let copy = destination.describe(&moved.key).await?;
    if copy.size != archive.size || copy.tree_hash != Some(archive.tree_hash) {
        return Err(MoveFailure::CopyMismatch {
            key: moved.key.clone(),
            size: copy.size,
            expected_size: archive.size,
            tree_hash: copy
                .tree_hash
                .map_or_else(|| "unknown".to_owned(), |h| h.to_hex()),
            expected_tree_hash: archive.tree_hash,
        });
    }
    match source.delete(archive).await {
        Ok(()) | Err(ArchiverError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        "{}: deleted from {} (its copy is {})",
        archive.archive_id,
        source.name(),
        moved.key
    );
    source_ledger.record_moved(&Moved {
        source_deleted_at: Some(OffsetDateTime::now_utc()),
        ..moved.clone()
    })?;
    Ok(())
}
