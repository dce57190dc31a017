//! The index beside each directory archive at the destination (see [`crate::catalog::Index`]):
//! stored right after its archive, through the same upload owner.

use glacier_backup_archiver::Archiver;

use crate::catalog::{store_index, Cataloged};
use crate::codec::{Format, Seal};
use crate::ledger::UploadRecord;
use crate::shown;

/// Stores the index of `record`'s archive and notes its id in `catalog`. A failure costs only
/// the index: it is warned about, the archive is recorded without one (restorable whole and
/// by entry from this ledger), and `verify --remote` names it.
pub(super) async fn put_index(
    archiver: &dyn Archiver,
    record: &UploadRecord,
    mut catalog: Cataloged,
    format: &Format,
) -> Cataloged {
    // Encrypted like its archive, and proving (as the archive does) that these backups wrote it.
    let seal = match record.encoding.encrypted {
        true => match Seal::authenticated(&format.recipients, format.authentication.as_ref()) {
            Ok(seal) => Some(seal),
            Err(e) => {
                tracing::warn!("{}: no index stored: {e}", shown(&record.path));
                return catalog;
            }
        },
        false => None,
    };
    match store_index(archiver, record, &catalog, seal.as_ref()).await {
        Ok(index_id) => catalog.index_id = Some(index_id),
        Err(message) => tracing::warn!(
            "{}: the archive is stored, but its index could not be ({message}); a ledger \
             rebuilt from the destination will know this upload only as a whole",
            shown(&record.path)
        ),
    }
    catalog
}
