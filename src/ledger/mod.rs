//! The ledger: what was uploaded, where it went, and the source's state at the time, in one
//! SQLite file that the Python tool's ledgers open as they are (see `schema.rs`).
//!
//! There is one [`Ledger`] type, not a trait: every verb needs the same SQLite file, and its
//! tests use [`Ledger::in_memory`].

mod lock;
mod moves;
mod open;
mod pending;
mod pruned;
mod retrievals;
mod schema;
mod snapshot;
mod sql;
#[cfg(test)]
mod tests;
mod uploads;

use std::path::{Path, PathBuf};

use glacier_backup_archiver::{Encoding, SourceKind, TreeHash};
use time::OffsetDateTime;

pub use lock::{lock_path, LedgerLock, LockError};
pub use pruned::{Brief, PruneMark};

/// Backend assumed for rows written by the Python tool, which only knew Glacier vaults.
pub const PYTHON_TOOL_BACKEND: &str = "glacier";

/// One upload as the ledger records it. Fields after `archive_id` may be missing on rows the
/// Python tool wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Source path.
    pub path: PathBuf,
    /// Archive name (Glacier description for the Python tool).
    pub name: String,
    /// Archive id or key in the backend.
    pub archive_id: String,
    /// What the backend stored beside the archive (the Glacier description), if anything.
    pub description: Option<String>,
    /// Backend name.
    pub backend: String,
    /// File or directory.
    pub kind: Option<SourceKind>,
    /// Archive size in bytes.
    pub size: Option<u64>,
    /// SHA-256 tree hash of the archive.
    pub tree_hash: Option<TreeHash>,
    /// Source fingerprint taken before archiving.
    pub fingerprint: Option<String>,
    /// When the upload started.
    pub started_at: Option<OffsetDateTime>,
    /// When the backend confirmed the archive.
    pub uploaded_at: Option<OffsetDateTime>,
    /// Layers on the stored bytes (compression and level, encryption and its recipients).
    pub encoding: Encoding,
    /// The archive's own size before compression and encryption, when they were applied.
    pub plain_size: Option<u64>,
}

impl UploadRecord {
    /// The archive with what it is checked against (size and tree hash); `None` when the row
    /// lacks them (the Python tool's, before an inventory completes it).
    pub fn archive(&self) -> Option<glacier_backup_archiver::ArchiveRef> {
        Some(glacier_backup_archiver::ArchiveRef {
            archive_id: self.archive_id.clone(),
            size: self.size?,
            tree_hash: self.tree_hash?,
            description: self.description.clone(),
        })
    }

    /// When the archive was stored, as well as the row knows (the Python tool recorded no start).
    pub fn stored_at(&self) -> Option<OffsetDateTime> {
        self.uploaded_at.or(self.started_at)
    }
}

/// A multipart upload that was started and not finished, kept so a later run can continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Source path.
    pub path: PathBuf,
    /// Backend name.
    pub backend: String,
    /// The backend's token for the upload (Glacier: the multipart upload id).
    pub token: String,
    /// Part size the upload was started with; a resumed stream must use the same.
    pub part_size: u64,
    /// The source's fingerprint when the upload started; resume only if it is unchanged.
    pub fingerprint: String,
    /// When the upload started.
    pub started_at: OffsetDateTime,
    /// Size and tree hash, once every part was stored and the upload was being completed.
    pub completing: Option<(u64, TreeHash)>,
    /// Layers on the stored bytes, which a resumed upload must apply the same way.
    pub encoding: Encoding,
    /// What encryption needs to repeat its bytes (the age file key and header): secret, kept
    /// only until the upload is recorded.
    pub seal: Option<Vec<u8>>,
}

/// A retrieval asked of a cold backend and not yet known to be finished, kept so a later run
/// checks on it instead of asking again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrieval {
    /// The archive, or `None` for the destination's inventory.
    pub archive_id: Option<String>,
    /// The backend's reference (a Glacier job id), when it gives one.
    pub request_id: Option<String>,
    /// Retrieval tier asked for (`expedited`, `standard`, `bulk`).
    pub tier: String,
    /// When it was asked for.
    pub requested_at: OffsetDateTime,
}

/// A copy of an archive to another destination (`migrate`) that started and did not finish,
/// kept in the source's ledger so a later run continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The archive in the source.
    pub archive_id: String,
    /// The destination, as its target names it (`s3.<bucket>`).
    pub destination: String,
    /// The destination's upload token.
    pub token: String,
    /// Part size the upload was started with.
    pub part_size: u64,
    /// Size and tree hash, once every part was stored and the upload was being completed.
    pub completing: Option<(u64, TreeHash)>,
    /// The parts the destination confirmed.
    pub parts: Vec<MovePart>,
}

/// A part of a [`Move`] the destination holds: enough to count it without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovePart {
    /// Part number, from 1.
    pub number: u64,
    /// Its length.
    pub size: u64,
    /// Its tree hash, taken from the bytes read from the source.
    pub tree_hash: TreeHash,
    /// The destination's receipt.
    pub receipt: String,
}

/// An archive `migrate` copied to another destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The archive in the source.
    pub archive_id: String,
    /// The destination, as its target names it (`s3.<bucket>`).
    pub destination: String,
    /// Its id or key there.
    pub key: String,
    /// When the copy was complete and recorded.
    pub moved_at: OffsetDateTime,
    /// When the source's copy was deleted (`--delete-source`), if it was.
    pub source_deleted_at: Option<OffsetDateTime>,
}

/// Rows split by [`Ledger::split_moved_away`].
#[derive(Debug, Default)]
pub struct MovedAway {
    /// Rows whose archive is still here.
    pub here: Vec<UploadRecord>,
    /// Rows whose archive was moved and deleted here, with where it went.
    pub gone: Vec<(UploadRecord, Moved)>,
}

/// The ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed; `context` names the file and the operation.
    #[error("ledger {path}: {context}: {source}")]
    Sqlite {
        /// The ledger file.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file exists but is not a ledger this tool can use.
    #[error("ledger {path}: {message}")]
    Incompatible {
        /// The ledger file.
        path: PathBuf,
        /// Why, and what to do.
        message: String,
    },
    /// The ledger cannot be written: found before anything is uploaded.
    #[error(
        "ledger {path} cannot be written ({source}); nothing was uploaded. Make the file and \
         its directory writable (SQLite writes a journal beside the file), or set [main] ledger \
         to a writable place"
    )]
    Unwritable {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The ledger file or its directory could not be created.
    #[error("ledger {path}: {source}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LedgerError {
    /// Whether the user must fix something about the ledger file itself (exit 2), rather than
    /// a failure during the run.
    pub fn is_setup(&self) -> bool {
        match self {
            LedgerError::Unwritable { .. } | LedgerError::Incompatible { .. } => true,
            LedgerError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::IsADirectory
            ),
            LedgerError::Sqlite { .. } => false,
        }
    }
}

/// What was uploaded, in one SQLite file. Lookups by path never scan.
///
/// A ledger describes one destination (the default file name includes it), so lookups go by
/// path alone, as the Python tool's did: a row written by the Python tool counts whatever
/// backend reads it.
#[derive(Debug)]
pub struct Ledger {
    conn: rusqlite::Connection,
    path: PathBuf,
    /// A snapshot's catalogs stay in the file, attached as `origin` (see [`Ledger::snapshot`]).
    catalogs_attached: bool,
}

impl Ledger {
    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
