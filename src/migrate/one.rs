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
        // A run stopped after recording the copy wrote its index already.
        let recorded = destination_ledger
            .uploads_of(&row.path)?
            .iter()
            .any(|r| r.archive_id == stored.archive_id);
        let catalog = match recorded {
            true => None,
            false => {
                let catalog = match source_ledger.cataloged(&archive.archive_id)? {
                    Some(catalog) => Some(based_on_copy(source_ledger, catalog)?),
                    None => None,
                };
                indexed_copy(destination, row, &stored, catalog, request).await?
            }
        };
        if !recorded {
            record_copy(
                destination_ledger,
                destination,
                row,
                &stored,
                catalog.as_ref(),
            )?;
        }
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

/// An increment's catalog with its base named as the destination knows it: the key of the
/// base's copy (rows move oldest first, so the base moved before it). A base not moved keeps
/// its source name, and the destination's chain says it is broken rather than restore a part
/// of the tree as if it were whole.
fn based_on_copy(
    source_ledger: &Ledger,
    catalog: crate::catalog::Cataloged,
) -> Result<crate::catalog::Cataloged, crate::ledger::LedgerError> {
    let base = match catalog.base {
        Some(base) => Some(
            source_ledger
                .moved_of(&base)?
                .map_or(base, |moved| moved.key),
        ),
        None => None,
    };
    Ok(crate::catalog::Cataloged { base, ..catalog })
}

/// The source's catalog for the copy (if it has one), with an index written beside the copy
/// at the destination. Elsewhere a failure costs only the index, as at backup; on a
/// destination that keeps an archive whole only with its index
/// ([`Capabilities::needs_index`](glacier_backup_archiver::Capabilities::needs_index)) every
/// copy gets one (a file's with no entries), and a copy whose index cannot be stored is
/// deleted again.
async fn indexed_copy(
    destination: &dyn Archiver,
    row: &UploadRecord,
    stored: &ArchiveRef,
    catalog: Option<crate::catalog::Cataloged>,
    request: &MoveRequest,
) -> Result<Option<crate::catalog::Cataloged>, MoveFailure> {
    let required = destination.capabilities().needs_index;
    if catalog.is_none() && !required {
        return Ok(None);
    }
    let catalog = catalog.map(|catalog| crate::catalog::Cataloged {
        index_id: None,
        ..catalog
    });
    let no_entries = crate::catalog::Cataloged::default();
    let indexed = catalog.as_ref().unwrap_or(&no_entries);
    match index_at_destination(destination, row, stored, indexed, request).await {
        Ok(id) => Ok(catalog.map(|catalog| crate::catalog::Cataloged {
            index_id: Some(id),
            ..catalog
        })),
        Err(e) if required => {
            if let Err(delete) = destination.delete(stored).await {
                tracing::warn!(
                    "{}: the copy {} has no index and could not be deleted ({}); delete it by \
                     hand",
                    crate::shown(&row.path),
                    stored.archive_id,
                    crate::error_chain(&delete)
                );
            }
            Err(MoveFailure::NoIndex(e))
        }
        Err(e) => {
            tracing::warn!(
                "{}: copied, but no index could be stored beside the copy ({e}); a ledger \
                 rebuilt from the destination will know it only as a whole",
                crate::shown(&row.path)
            );
            Ok(catalog)
        }
    }
}

/// Writes the copy's index (encrypted to the archive's recipients, proven with
/// `request.authentication` when given): its id.
async fn index_at_destination(
    destination: &dyn Archiver,
    row: &UploadRecord,
    stored: &ArchiveRef,
    catalog: &crate::catalog::Cataloged,
    request: &MoveRequest,
) -> Result<String, String> {
    let copy = copy_row(destination, row, stored);
    let seal = match copy.encoding.encrypted {
        false => None,
        true => Some(index_seal(&copy, request)?),
    };
    crate::catalog::store_index(destination, &copy, catalog, seal.as_ref()).await
}

/// The seal of an encrypted archive's index: to the recipients its row records.
fn index_seal(row: &UploadRecord, request: &MoveRequest) -> Result<crate::codec::Seal, String> {
    let recipients = row
        .encoding
        .recipients
        .iter()
        .map(|r| crate::codec::keys::parse_recipient(r))
        .collect::<Result<Vec<_>, _>>()?;
    if recipients.is_empty() {
        return Err("the ledger does not know the archive's recipients".into());
    }
    crate::codec::Seal::authenticated(&recipients, request.authentication.as_ref())
        .map_err(|e| e.to_string())
}

/// The destination's row of a copy: the source's, but for where the archive now is.
fn copy_row(destination: &dyn Archiver, row: &UploadRecord, stored: &ArchiveRef) -> UploadRecord {
    UploadRecord {
        archive_id: stored.archive_id.clone(),
        description: stored.description.clone(),
        backend: destination.name().to_owned(),
        kind: Some(kind_of(row)),
        size: Some(stored.size),
        tree_hash: Some(stored.tree_hash),
        ..row.clone()
    }
}

/// The destination's row, with the source's catalog (the stored bytes are the same, so its
/// offsets and leaves hold) and the copy's index. Written once: a run stopped between this and
/// marking the source's row finds it there and does not add another.
fn record_copy(
    ledger: &mut Ledger,
    destination: &dyn Archiver,
    row: &UploadRecord,
    stored: &ArchiveRef,
    catalog: Option<&crate::catalog::Cataloged>,
) -> Result<(), LedgerError> {
    ledger.record_cataloged(&[(&copy_row(destination, row, stored), catalog)])
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
