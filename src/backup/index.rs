//! The index beside each directory archive at the destination (see [`crate::catalog::Index`]):
//! stored right after its archive, through the same upload owner.

use glacier_backup_archiver::{ArchiveRef, Archiver};

use crate::catalog::{store_index, Cataloged};
use crate::codec::{Format, Seal};
use crate::ledger::UploadRecord;
use crate::shown;

use super::CandidateError;

/// Stores the index of `record`'s archive and notes its id in `catalog`. A failure costs only
/// the index: it is warned about, the archive is recorded without one (restorable whole and
/// by entry from this ledger), and `verify --remote` names it.
pub(super) async fn put_index(
    archiver: &dyn Archiver,
    record: &UploadRecord,
    mut catalog: Cataloged,
    format: &Format,
) -> Cataloged {
    match sealed_index(archiver, record, &catalog, format).await {
        Ok(index_id) => catalog.index_id = Some(index_id),
        Err(message) => tracing::warn!(
            "{}: the archive is stored, but its index could not be ({message}); a ledger \
             rebuilt from the destination will know this upload only as a whole",
            shown(&record.path)
        ),
    }
    catalog
}

/// For a backend that keeps an archive whole only with its index
/// ([`Capabilities::needs_index`](glacier_backup_archiver::Capabilities::needs_index)): stores
/// the index of `record`'s archive, a file's too (with no entries, so it carries the tree
/// hash alone); when it cannot be stored, deletes the archive and fails the upload, so that
/// no archive is left without its index. `catalog` comes back with the index's id; a file's
/// index is not recorded (the backend deletes an index with its archive).
pub(super) async fn put_required_index(
    archiver: &dyn Archiver,
    record: &UploadRecord,
    catalog: Option<Cataloged>,
    format: &Format,
) -> Result<Option<Cataloged>, CandidateError> {
    let no_entries = Cataloged::default();
    let indexed = catalog.as_ref().unwrap_or(&no_entries);
    match sealed_index(archiver, record, indexed, format).await {
        Ok(index_id) => Ok(catalog.map(|catalog| Cataloged {
            index_id: Some(index_id),
            ..catalog
        })),
        Err(message) => {
            let archive = ArchiveRef {
                archive_id: record.archive_id.clone(),
                size: 0,
                // Only the id is needed to delete it.
                tree_hash: glacier_backup_archiver::TreeHash::empty(),
                description: record.description.clone(),
            };
            if let Err(e) = archiver.delete(&archive).await {
                tracing::warn!(
                    "{}: archive {} has no index and could not be deleted ({}); delete it by \
                     hand",
                    shown(&record.path),
                    record.archive_id,
                    crate::error_chain(&e)
                );
            }
            Err(CandidateError::NoIndex(message))
        }
    }
}

/// Stores the index, encrypted like its archive and proving (as the archive does) that these
/// backups wrote it: its id, or why it could not be stored.
async fn sealed_index(
    archiver: &dyn Archiver,
    record: &UploadRecord,
    catalog: &Cataloged,
    format: &Format,
) -> Result<String, String> {
    let seal = match record.encoding.encrypted {
        true => Seal::authenticated(&format.recipients, format.authentication.as_ref())
            .map(Some)
            .map_err(|e| e.to_string())?,
        false => None,
    };
    store_index(archiver, record, catalog, seal.as_ref()).await
}

/// On a backend with [`Capabilities::needs_index`](glacier_backup_archiver::Capabilities::needs_index):
/// deletes the archives of `meta`'s source that a stopped run stored without their index and
/// no ledger row records (every archive there gets its index before its row, so these were
/// never recorded anywhere). One the ledger records, whose index was lost since, is kept and
/// warned about.
pub(super) async fn remove_unindexed(
    archiver: &dyn Archiver,
    ledger: &super::record::SharedLedger<'_>,
    meta: &glacier_backup_archiver::ArchiveMeta,
) -> Result<(), CandidateError> {
    for archive_id in archiver.unindexed(meta).await? {
        if ledger.with(|l| l.records_archive(&archive_id))? {
            tracing::warn!(
                "{}: archive {archive_id} has lost its index at the destination; it is kept, \
                 but a ledger rebuilt from there will not know it (back the path up again to \
                 store a new archive with its index)",
                shown(&meta.source_path)
            );
            continue;
        }
        tracing::warn!(
            "{}: deleting {archive_id}: a run stopped between storing it and its index, and \
             the ledger does not record it",
            shown(&meta.source_path)
        );
        let archive = ArchiveRef {
            archive_id,
            size: 0,
            tree_hash: glacier_backup_archiver::TreeHash::empty(),
            description: None,
        };
        match archiver.delete(&archive).await {
            Ok(()) | Err(glacier_backup_archiver::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
