//! The index beside each directory archive at the destination (see [`crate::catalog::Index`]):
//! stored right after its archive, through the same upload owner.

use glacier_backup_archiver::parts::parts_from_bytes;
use glacier_backup_archiver::{ArchiveMeta, Archiver, Encoding, SourceKind};
use time::OffsetDateTime;

use crate::catalog::{seal_index, Cataloged, Index};
use crate::codec::{Format, Seal};
use crate::ledger::UploadRecord;
use crate::shown;
use crate::upload::put_journaled;

/// Stores the index of `record`'s archive and notes its id in `catalog`. A failure costs only
/// the index: it is warned about, the archive is recorded without one (restorable whole and
/// by entry from this ledger), and `verify --remote` names it.
pub(super) async fn put_index(
    archiver: &dyn Archiver,
    record: &UploadRecord,
    mut catalog: Cataloged,
    format: &Format,
) -> Cataloged {
    match store(archiver, record, &catalog, format).await {
        Ok(index_id) => catalog.index_id = Some(index_id),
        Err(message) => tracing::warn!(
            "{}: the archive is stored, but its index could not be ({message}); a ledger \
             rebuilt from the destination will know this upload only as a whole",
            shown(&record.path)
        ),
    }
    catalog
}

async fn store(
    archiver: &dyn Archiver,
    record: &UploadRecord,
    catalog: &Cataloged,
    format: &Format,
) -> Result<String, String> {
    let plain = Index::encode(record, catalog);
    // Encrypted like its archive, and proving (as the archive does) that these backups wrote it.
    let seal = match record.encoding.encrypted {
        true => Some(
            Seal::authenticated(&format.recipients, format.authentication.as_ref())
                .map_err(|e| e.to_string())?,
        ),
        false => None,
    };
    let stored = seal_index(&plain, seal.as_ref()).map_err(|e| e.to_string())?;
    let size = stored.len() as u64;
    let meta = ArchiveMeta {
        source_path: record.path.clone(),
        name: format!("{}.index", record.name),
        kind: SourceKind::File,
        fingerprint: String::new(),
        size_hint: size,
        started_at: OffsetDateTime::now_utc(),
        encoding: Encoding {
            recipients: record.encoding.recipients.clone(),
            ..Encoding::plain()
        },
        index_of: Some(record.archive_id.clone()),
    };
    let parts = parts_from_bytes(stored.into(), archiver.part_size(size));
    put_journaled(archiver, &meta, None, parts, None)
        .await
        .map(|index| index.archive_id)
        .map_err(|e| crate::error_chain(&e))
}
