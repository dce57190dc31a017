//! `ls`: a backed-up directory's contents as of an upload, read from the ledger's catalogs
//! alone (no network, nothing retrieved).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use glacier_backup_archiver::SourceKind;
use time::OffsetDateTime;

use super::{Entry, EntryKind};
use crate::ledger::{Ledger, LedgerError, UploadRecord};
use crate::shown;

/// What `ls` found: the upload it read and the entries listed.
#[derive(Debug)]
pub struct Listing {
    /// The directory upload whose catalog was read.
    pub upload: UploadRecord,
    /// The path listed, inside that upload.
    pub path: PathBuf,
    /// The path's entries (its children for a directory, itself for anything else), their
    /// paths as source paths.
    pub entries: Vec<Entry>,
}

/// Why nothing can be listed.
#[derive(Debug, thiserror::Error)]
pub enum LsError {
    /// No directory upload holds the path (at that time).
    #[error("{}: no directory upload holds it{}; `list` shows what was backed up", shown(.path), .at.map(|t| format!(" as of {}", crate::display_time(t))).unwrap_or_default())]
    NoUpload {
        /// The path asked for.
        path: PathBuf,
        /// The time asked for.
        at: Option<OffsetDateTime>,
    },
    /// The upload was made without a catalog (by the Python tool, or before catalogs).
    #[error("{}: its upload {archive_id} has no catalog (made by the Python tool or an earlier version): its contents are unknown without restoring it whole", shown(.path))]
    Unknown {
        /// The directory upload.
        path: PathBuf,
        /// Its archive.
        archive_id: String,
    },
    /// The upload holds no such entry.
    #[error("{}: not in the upload of {} ({archive_id})", shown(.path), shown(.upload_path))]
    NotInUpload {
        /// The path asked for.
        path: PathBuf,
        /// The directory upload read.
        upload_path: PathBuf,
        /// Its archive.
        archive_id: String,
    },
    /// The upload current at the time asked for was deleted by `prune`.
    #[error("{0}")]
    Pruned(crate::prune::PrunedUpload),
    /// The ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The catalog is damaged, or an increment's chain cannot be followed.
    #[error(transparent)]
    Catalog(#[from] crate::chain::EntriesError),
}

/// Lists `path` (a backed-up directory or anything inside one) as the latest directory upload
/// holding it had it, or the one current at `at`.
pub fn list(ledger: &Ledger, path: &Path, at: Option<OffsetDateTime>) -> Result<Listing, LsError> {
    let upload = match holding_upload(ledger, path, at) {
        Ok(upload) => upload,
        // Every upload then may have been pruned: say so, rather than that none was made.
        Err(none @ LsError::NoUpload { .. }) => {
            for holder in path.ancestors() {
                if let Some(pruned) = crate::prune::pruned_at(ledger, holder, at)? {
                    return Err(LsError::Pruned(pruned));
                }
            }
            return Err(none);
        }
        Err(e) => return Err(e),
    };
    // The kept upload found may be older than the one current then, which prune deleted.
    if let Some(pruned) = crate::prune::pruned_at(ledger, &upload.path, at)? {
        return Err(LsError::Pruned(pruned));
    }
    let mut itself = None;
    let mut children = Vec::new();
    // As path equality has it: no trailing `/`, no `.` components.
    let normalized: PathBuf = path.components().collect();
    let wanted = normalized.as_os_str().as_bytes();
    let cataloged = crate::chain::each_entry_of(ledger, &upload, &mut |entry| {
        // Compared as bytes: path components cost more than decoding the entry.
        let name = entry.path.as_os_str().as_bytes();
        match name.strip_prefix(wanted) {
            Some([]) => itself = Some(entry),
            Some([b'/', rest @ ..]) if !rest.contains(&b'/') && !rest.is_empty() => {
                children.push(entry)
            }
            _ => {}
        }
    })?;
    if !cataloged {
        return Err(LsError::Unknown {
            path: upload.path.clone(),
            archive_id: upload.archive_id.clone(),
        });
    }
    let entries = match itself {
        Some(entry) if entry.kind != EntryKind::Directory => vec![entry],
        Some(_) => children,
        None => {
            return Err(LsError::NotInUpload {
                path: path.to_path_buf(),
                upload_path: upload.path.clone(),
                archive_id: upload.archive_id.clone(),
            })
        }
    };
    Ok(Listing {
        upload,
        path: path.to_path_buf(),
        entries,
    })
}

/// The latest directory upload (at `at`) of `path` or of the nearest directory above it that
/// was backed up whole. Rows of unknown kind (the Python tool's) count as directories, so that
/// `ls` says their contents are unknown rather than that nothing holds them. The ledger is read
/// a page at a time: memory stays flat in its size.
fn holding_upload(
    ledger: &Ledger,
    path: &Path,
    at: Option<OffsetDateTime>,
) -> Result<UploadRecord, LsError> {
    let mut best: Option<UploadRecord> = None;
    ledger.each_upload(&mut |row| {
        let holds = row.kind != Some(SourceKind::File) && path.starts_with(&row.path);
        let current = at.is_none_or(|at| row.stored_at().is_some_and(|t| t <= at));
        let deeper_or_later = best
            .as_ref()
            .is_none_or(|b| row.path.components().count() >= b.path.components().count());
        if holds && current && deeper_or_later {
            best = Some(row);
        }
        true
    })?;
    best.ok_or_else(|| LsError::NoUpload {
        path: path.to_path_buf(),
        at,
    })
}
