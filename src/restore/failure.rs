//! Why one archive was not restored.

use std::io;
use std::path::PathBuf;

use glacier_backup_archiver::Error as ArchiverError;
use glacier_backup_archiver::TreeHash;

use super::extract::ExtractError;
use crate::error_chain;
use crate::ledger::LedgerError;
use crate::shown;

/// Why one archive was not restored. Each fails that archive and the restore goes on with the
/// others, except [`RestoreFailure::Ledger`]: a ledger that cannot be read or written stops the
/// whole restore, as it stops a backup.
#[derive(Debug, thiserror::Error)]
pub enum RestoreFailure {
    /// The ledger row lacks what a download is checked against.
    #[error(
        "the ledger row has no size or tree hash to check a download against (it was written \
         by the Python tool, or rebuilt from a destination that did not say); run \
         `glacier-backup inventory --rebuild-ledger` to fill them in from the destination"
    )]
    Unverifiable,
    /// `--in-place` for a path with no parent directory.
    #[error("has no parent directory to restore into; use --to")]
    NoParent,
    /// The backend failed while asked about or for the archive.
    #[error("{}", error_chain(.0))]
    Archiver(ArchiverError),
    /// The backend failed during the download; what arrived is kept for the next run.
    #[error(
        "{} (download stopped at {} of {}; run again to continue)",
        error_chain(source),
        crate::display_size(*have),
        crate::display_size(*size)
    )]
    Interrupted {
        /// Bytes downloaded so far.
        have: u64,
        /// The archive's size.
        size: u64,
        /// What failed.
        source: ArchiverError,
    },
    /// The download differs from what the ledger recorded; it was deleted.
    #[error(
        "{archive_id}: the download does not match the ledger (size {size} vs {expected_size}, \
         tree hash {tree_hash} vs {expected_tree_hash}); nothing was restored"
    )]
    Mismatch {
        /// The archive.
        archive_id: String,
        /// Bytes received.
        size: u64,
        /// Bytes recorded.
        expected_size: u64,
        /// Tree hash of what was received.
        tree_hash: TreeHash,
        /// Tree hash recorded.
        expected_tree_hash: TreeHash,
    },
    /// The destination's own check of a range failed (Glacier's tree hash of the range): the
    /// bytes received are not the archive's, so none of the download is kept.
    #[error(
        "{}; the partial download was deleted, and nothing was restored (run again to download \
         it anew)",
        error_chain(.0)
    )]
    DamagedInTransit(ArchiverError),
    /// A local file operation failed.
    #[error("cannot {what} {}: {source}", shown(path))]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The restored file could not be moved into place; the checked download is kept.
    #[error(
        "cannot put the file at {}: {source}; the download is kept as {}",
        shown(target),
        shown(kept)
    )]
    Placing {
        /// Where it should have gone.
        target: PathBuf,
        /// Where the download is.
        kept: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The archive is encrypted and cannot be opened with the identity given (or none was).
    #[error("{0}")]
    Decode(crate::codec::DecodeError),
    /// Decryption or decompression found the stored bytes altered (age's authentication or
    /// zstd's checksum failed); nothing was put in place.
    #[error(
        "{archive_id}: the archive is damaged or was tampered with ({detail}); nothing was \
         restored from it"
    )]
    Damaged {
        /// The archive.
        archive_id: String,
        /// What age or zstd said.
        detail: String,
    },
    /// An encrypted archive of a rebuilt row carries no proof that these backups wrote it.
    #[error(
        "{archive_id}: its row was rebuilt from the destination, and the archive carries no \
         proof that these backups wrote it (anyone with the public recipient can make a valid \
         age file); nothing was restored from it. Give the identity whose authentication key \
         the backups used, or, to restore it anyway, --trust-destination"
    )]
    Unproven {
        /// The archive.
        archive_id: String,
    },
    /// A partial restore of an upload that has no catalog to find entries by.
    // The path leads every failure's line already.
    #[error(
        "this upload has no catalog (it was made by the Python tool or before catalogs), so \
         single entries cannot be fetched from it; restore the whole directory instead"
    )]
    NoCatalog {
        /// The upload's source path.
        path: PathBuf,
    },
    /// The upload's catalog cannot be read or does not fit its archive.
    #[error(
        "{archive_id}: its catalog is damaged ({detail}); restore the whole directory instead"
    )]
    DamagedCatalog {
        /// The archive.
        archive_id: String,
        /// What is wrong.
        detail: String,
    },
    /// Nothing in the upload matches what a partial restore asked for.
    #[error(
        "nothing in the upload of {} matches {wanted}; see `glacier-backup ls` for what it holds",
        shown(path)
    )]
    NotInUpload {
        /// The upload's source path.
        path: PathBuf,
        /// What was asked for.
        wanted: String,
    },
    /// An increment's chain cannot be followed to its full upload.
    #[error("{}: {source}", shown(path))]
    Chain {
        /// The upload's source path.
        path: PathBuf,
        /// Why.
        source: Box<crate::chain::ChainError>,
    },
    /// A directory archive could not be extracted.
    #[error("{}", error_chain(.0))]
    Extract(ExtractError),
    /// The ledger failed: the restore stops.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<ArchiverError> for RestoreFailure {
    fn from(error: ArchiverError) -> Self {
        RestoreFailure::Archiver(error)
    }
}

impl RestoreFailure {
    /// An I/O failure on `path`.
    pub(super) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| RestoreFailure::Io { what, path, source }
    }
}
