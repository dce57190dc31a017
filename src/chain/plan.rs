//! A chain as the ledger records it, and whether the next upload continues it.

use time::OffsetDateTime;

use super::{Changes, Composed};
use crate::catalog::{CatalogError, Cataloged};
use crate::config::ChainPolicy;
use crate::ledger::{Ledger, LedgerError, UploadRecord};

/// The longest chain followed: a guard against a ledger whose base links loop.
const MAX_LENGTH: usize = 100_000;

/// The uploads of a chain, its full first, each with its catalog.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Oldest first.
    pub uploads: Vec<(UploadRecord, Cataloged)>,
}

/// Why a chain cannot be followed to its full.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An upload of the chain, or its catalog, is missing from the ledger.
    #[error(
        "the chain of increments is broken: {missing} is not in the ledger; run `inventory \
         --rebuild-ledger` to bring its row back from the destination"
    )]
    Broken {
        /// The archive missing.
        missing: String,
    },
}

impl Chain {
    /// The chain ending at `last`'s archive, followed through each increment's base; `None`
    /// when `last` has no catalog (the Python tool's and earlier uploads are not chained).
    pub fn ending_at(ledger: &Ledger, last: &UploadRecord) -> Result<Option<Chain>, ChainError> {
        let Some(catalog) = ledger.cataloged(&last.archive_id)? else {
            return Ok(None);
        };
        let mut uploads = vec![(last.clone(), catalog)];
        while let Some(base) = uploads.last().and_then(|(_, c)| c.base.clone()) {
            let broken = || ChainError::Broken {
                missing: base.clone(),
            };
            if uploads.len() >= MAX_LENGTH || uploads.iter().any(|(u, _)| u.archive_id == base) {
                return Err(broken());
            }
            let row = ledger.upload_of(&base)?.ok_or_else(broken)?;
            let catalog = ledger.cataloged(&base)?.ok_or_else(broken)?;
            uploads.push((row, catalog));
        }
        uploads.reverse();
        Ok(Some(Chain { uploads }))
    }

    /// An archive of the chain that `listing` (an inventory of the destination) shows gone or
    /// different, though it was stored before the listing was taken: the chain is broken.
    pub fn lost_in(&self, listing: &crate::archiver::Listing) -> Option<String> {
        let rows: Vec<UploadRecord> = self.uploads.iter().map(|(u, _)| u.clone()).collect();
        let report = crate::inventory::reconcile(&rows, listing);
        report
            .missing
            .first()
            .map(|row| row.archive_id.clone())
            .or_else(|| {
                report
                    .mismatched
                    .first()
                    .map(|(row, _)| row.archive_id.clone())
            })
    }

    /// The last upload's tree (see [`Composed`]).
    pub fn state(&self) -> Result<Composed<'_>, CatalogError> {
        let catalogs: Vec<&[u8]> = self
            .uploads
            .iter()
            .map(|(_, c)| c.entries.as_slice())
            .collect();
        Composed::new(&catalogs)
    }

    /// The archive of the chain's last upload.
    pub fn last(&self) -> &UploadRecord {
        &self.uploads.last().expect("a chain has its full").0
    }

    /// Whether an increment may be based on this chain under `policy` at `now`: each upload
    /// has a catalog with stamps and a layout (so each entry is found and fetched alone), the
    /// full is younger than `full_after_days`, and the increments add up to less than
    /// `full_when_changed_percent` of the full's size. Says why not.
    pub fn continues(&self, policy: &ChainPolicy, now: OffsetDateTime) -> Result<(), String> {
        let (full, _) = &self.uploads[0];
        if let Some(old) = self
            .uploads
            .iter()
            .find(|(_, c)| !c.entries.starts_with(crate::catalog::MAGIC) || c.layout.is_none())
        {
            return Err(format!(
                "the upload at {} has no catalog an increment can be based on",
                when(&old.0)
            ));
        }
        let age = full.uploaded_at.map(|at| (now - at).whole_days());
        if age.is_none_or(|days| days >= policy.full_after_days as i64) {
            return Err(format!(
                "its full upload ({}) is {} days old or more (full_after_days)",
                when(full),
                policy.full_after_days
            ));
        }
        let full_size = full.size.unwrap_or(0);
        let increments: u64 = self.uploads[1..]
            .iter()
            .map(|(u, _)| u.size.unwrap_or(0))
            .sum();
        if increments * 100 >= full_size * policy.full_when_changed_percent {
            return Err(format!(
                "its increments add up to {}% of its full upload or more \
                 (full_when_changed_percent)",
                policy.full_when_changed_percent
            ));
        }
        Ok(())
    }
}

fn when(upload: &UploadRecord) -> String {
    upload
        .uploaded_at
        .map_or_else(|| "an unknown time".into(), crate::display_time)
}

/// What the next upload of a chained directory is: an increment of `base` holding `changes`.
#[derive(Debug, Clone)]
pub struct Increment {
    /// The archive of the upload the changes are since.
    pub base: String,
    /// What changed.
    pub changes: std::sync::Arc<Changes>,
}

/// Why an upload's entries cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum EntriesError {
    /// The chain cannot be followed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A catalog is damaged.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::DamagedCatalog),
}

/// Calls `each` with every entry of the tree `upload` holds, its path a source path: its
/// catalog's entries, or for an increment its chain's state. A directory's size is 0 (an
/// increment's directory holds its dumpdir, which is not the directory's contents). Returns
/// `false`, calling nothing, when the upload has no catalog.
pub fn each_entry_of(
    ledger: &Ledger,
    upload: &UploadRecord,
    each: &mut dyn FnMut(crate::catalog::Entry),
) -> Result<bool, EntriesError> {
    use crate::catalog::{source_path, DamagedCatalog, Entry, EntryKind};
    let damaged = |source| DamagedCatalog {
        archive_id: upload.archive_id.clone(),
        source,
    };
    let Some(chain) = Chain::ending_at(ledger, upload)? else {
        return Ok(false);
    };
    for held in chain.state().map_err(damaged)? {
        let entry = held.map_err(damaged)?.entry;
        let size = match entry.kind {
            EntryKind::Directory => 0,
            _ => entry.size,
        };
        let path = source_path(upload, &entry.path);
        each(Entry {
            path,
            size,
            ..entry
        });
    }
    Ok(true)
}
