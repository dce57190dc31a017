//! Catalogs brought back from the indexes at the destination, for a rebuilt ledger: every
//! directory upload the ledger has no catalog for gets its index's, once the index is read,
//! decrypted, proven ours, checked by its own hash, and found to describe that very archive.

use futures::StreamExt;
use glacier_backup_archiver::{
    ArchiveRef, Archiver, ListedArchive, Listing, RestoreOptions, RestoreState, SourceKind,
};

use super::{open_index, Index};
use crate::codec::Identities;
use crate::ledger::{Ledger, LedgerError, UploadRecord};

/// What bringing catalogs back from the indexes did.
#[derive(Debug, Default)]
pub struct FromIndexes {
    /// Catalogs recorded.
    pub restored: usize,
    /// Indexes whose retrieval (a vault's) is under way: a later run reads them.
    pub pending: usize,
    /// Directory uploads with no index at the destination (the Python tool's, earlier ones):
    /// restorable whole, and `ls` says their contents are unknown.
    pub without_index: usize,
    /// Indexes refused, by archive, and why.
    pub refused: Vec<(String, String)>,
}

/// The indexes `listing` holds for the ledger's directory uploads without a catalog.
pub fn wanted<'a>(
    ledger: &Ledger,
    listing: &'a Listing,
) -> Result<Vec<(UploadRecord, Option<&'a ListedArchive>)>, LedgerError> {
    let mut wanted = Vec::new();
    for row in ledger.uploads()? {
        if row.kind != Some(SourceKind::Directory)
            || ledger.catalog_index(&row.archive_id)?.is_some()
        {
            continue;
        }
        let index = listing
            .indexes
            .iter()
            .find(|index| index.index_of.as_deref() == Some(row.archive_id.as_str()));
        wanted.push((row, index));
    }
    Ok(wanted)
}

/// Reads the index of every directory upload without a catalog and records its catalog. A
/// vault's indexes are retrieved first (asked once, at `options`' tier, recorded in the ledger
/// like any retrieval), waited for until `deadline`: those not ready count as pending.
pub async fn catalogs_from_indexes(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    listing: &Listing,
    options: &RestoreOptions,
    identities: Option<&Identities>,
    trust_destination: bool,
    deadline: Option<std::time::Instant>,
) -> Result<FromIndexes, LedgerError> {
    let mut report = FromIndexes::default();
    for (row, index) in wanted(ledger, listing)? {
        let Some(index) = index else {
            report.without_index += 1;
            continue;
        };
        let Some(tree_hash) = index.tree_hash else {
            report
                .refused
                .push((row.archive_id, "the destination gives no tree hash".into()));
            continue;
        };
        let index = ArchiveRef {
            archive_id: index.archive_id.clone(),
            size: index.size,
            tree_hash,
            description: index.description.clone(),
        };
        match readable(archiver, ledger, &index, options, deadline).await {
            Ok(true) => {}
            Ok(false) => {
                report.pending += 1;
                continue;
            }
            Err(crate::restore::RestoreFailure::Ledger(e)) => return Err(e),
            Err(e) => {
                report.refused.push((row.archive_id, e.to_string()));
                continue;
            }
        }
        let read = read_index(archiver, &index, &row, identities, trust_destination).await;
        match read {
            Ok(mut catalog) => {
                catalog.index_id = Some(index.archive_id.clone());
                ledger.record_catalog(&row.archive_id, &catalog)?;
                ledger.clear_retrieval(Some(&index.archive_id))?;
                report.restored += 1;
            }
            Err(reason) => report.refused.push((row.archive_id, reason)),
        }
    }
    Ok(report)
}

/// Whether the index can be read now: a cold one's retrieval asked for (once), and waited for
/// until `deadline`.
async fn readable(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    index: &ArchiveRef,
    options: &RestoreOptions,
    deadline: Option<std::time::Instant>,
) -> Result<bool, crate::restore::RestoreFailure> {
    use crate::restore::retrieval::{ask, wait_readable, Wait};
    if !archiver.capabilities().needs_restore {
        return Ok(true);
    }
    let state = ask(archiver, ledger, index, options).await?;
    if state == RestoreState::Ready {
        return Ok(true);
    }
    let wait = Wait {
        options,
        deadline,
        progress: crate::progress::or_none(&None),
    };
    wait_readable(archiver, ledger, index, &wait, Some(state)).await
}

/// The catalog in `index`, once it proves to be the index of `row`'s very archive.
async fn read_index(
    archiver: &dyn Archiver,
    index: &ArchiveRef,
    row: &UploadRecord,
    identities: Option<&Identities>,
    trust_destination: bool,
) -> Result<super::Cataloged, String> {
    let mut stream = archiver.get(index, None).await.map_err(|e| e.to_string())?;
    let mut stored = Vec::with_capacity(index.size as usize);
    while let Some(chunk) = stream.next().await {
        stored.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    let plain = open_index(&stored, identities, trust_destination).map_err(|e| e.to_string())?;
    let index = Index::decode(&plain, &row.backend).map_err(|e| e.to_string())?;
    if index.row.archive_id != row.archive_id {
        return Err(format!(
            "it describes another archive ({})",
            index.row.archive_id
        ));
    }
    let same_bytes = index.row.size == row.size
        && (row.tree_hash.is_none() || index.row.tree_hash == row.tree_hash);
    if !same_bytes {
        return Err(
            "the archive at the destination differs from what its index recorded (size \
                    or tree hash): one of them was changed after the backup"
                .into(),
        );
    }
    Ok(index.catalog)
}
