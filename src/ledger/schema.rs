//! The schema: the Python tool's `uploads(path, name, archive_id, uploaded_date)` table and
//! every migration since, kept in `PRAGMA user_version` (the Python tool's database is version
//! 0). Columns are only ever added and the Python tool's still filled, so nothing is dropped.

use rusqlite::TransactionBehavior;

use super::sql::{sqlite_error, write_error};
use super::{Ledger, LedgerError};

/// Schema versions: version N is reached by running the first N.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything needed to verify and restore an upload, and an index for lookups by path.
    "CREATE TABLE IF NOT EXISTS uploads (path text, name text, archive_id text, uploaded_date integer);
     ALTER TABLE uploads ADD COLUMN backend TEXT;
     ALTER TABLE uploads ADD COLUMN kind TEXT;
     ALTER TABLE uploads ADD COLUMN size INTEGER;
     ALTER TABLE uploads ADD COLUMN tree_hash TEXT;
     ALTER TABLE uploads ADD COLUMN fingerprint TEXT;
     ALTER TABLE uploads ADD COLUMN started_at TEXT;
     ALTER TABLE uploads ADD COLUMN uploaded_at TEXT;
     CREATE INDEX IF NOT EXISTS uploads_by_path ON uploads (path);",
    // 2: the stored description, and multipart uploads in progress, so an interrupted one can
    // be resumed.
    "ALTER TABLE uploads ADD COLUMN description TEXT;
     CREATE TABLE pending_uploads (path, backend TEXT NOT NULL, token TEXT NOT NULL,
         part_size INTEGER NOT NULL, fingerprint TEXT NOT NULL, started_at TEXT NOT NULL);
     CREATE UNIQUE INDEX pending_by_path ON pending_uploads (path);
     CREATE TABLE pending_parts (path, number INTEGER NOT NULL, receipt TEXT NOT NULL);
     CREATE UNIQUE INDEX pending_parts_by_path ON pending_parts (path, number);",
    // 3: retrievals asked of cold backends (so a later run never asks twice), and the latest
    // inventory of the destination (a Glacier vault's comes from a job that takes hours).
    // An inventory retrieval has archive_id ''.
    "CREATE TABLE retrievals (archive_id TEXT NOT NULL PRIMARY KEY, request_id TEXT,
         tier TEXT NOT NULL, requested_at TEXT NOT NULL);
     CREATE TABLE inventories (taken_at TEXT, fetched_at TEXT NOT NULL);
     CREATE TABLE inventory_archives (archive_id TEXT NOT NULL PRIMARY KEY,
         size INTEGER NOT NULL, tree_hash TEXT, created_at TEXT);",
    // 4: what a multipart upload was being completed as, so a run killed while Glacier
    // answered asks again instead of uploading a duplicate.
    "ALTER TABLE pending_uploads ADD COLUMN complete_size INTEGER;
     ALTER TABLE pending_uploads ADD COLUMN complete_tree_hash TEXT;",
    // 5: compression and encryption: the layers of each upload (the recipients comma-separated)
    // and its size before them; a pending upload's layers and the seal that repeats its
    // encrypted bytes.
    "ALTER TABLE uploads ADD COLUMN compression TEXT;
     ALTER TABLE uploads ADD COLUMN level INTEGER;
     ALTER TABLE uploads ADD COLUMN encryption TEXT;
     ALTER TABLE uploads ADD COLUMN recipients TEXT;
     ALTER TABLE uploads ADD COLUMN plain_size INTEGER;
     ALTER TABLE pending_uploads ADD COLUMN encoding TEXT;
     ALTER TABLE pending_uploads ADD COLUMN recipients TEXT;
     ALTER TABLE pending_uploads ADD COLUMN seal BLOB;",
    // 6: archives moved to another destination (`migrate`): the copy under way, its stored
    // parts, and each archive moved (and whether the source's copy was deleted).
    "CREATE TABLE moves (archive_id TEXT NOT NULL PRIMARY KEY, destination TEXT NOT NULL,
         token TEXT NOT NULL, part_size INTEGER NOT NULL, complete_size INTEGER,
         complete_tree_hash TEXT);
     CREATE TABLE move_parts (archive_id TEXT NOT NULL, number INTEGER NOT NULL,
         size INTEGER NOT NULL, tree_hash TEXT NOT NULL, receipt TEXT NOT NULL,
         PRIMARY KEY (archive_id, number));
     CREATE TABLE moved (archive_id TEXT NOT NULL PRIMARY KEY, destination TEXT NOT NULL,
         key TEXT NOT NULL, moved_at TEXT NOT NULL, source_deleted_at TEXT);",
    // 7: archives a batching backend (local) is about to name, noted before it names them
    // and forgotten with their rows, so a run killed in between leaves a note of what to
    // remove instead of archives nobody knows.
    "CREATE TABLE naming (archive_id TEXT NOT NULL PRIMARY KEY);",
    // 8: what each directory archive holds (crate::catalog's compact form), written in the
    // same transaction as the archive's row.
    "CREATE TABLE catalogs (archive_id TEXT NOT NULL PRIMARY KEY, entries BLOB NOT NULL);",
    // 9: where each entry lies in the stored bytes, and what checks them.
    "ALTER TABLE catalogs ADD COLUMN layout BLOB;",
    // 10: the index stored beside the archive at the destination.
    "ALTER TABLE catalogs ADD COLUMN index_id TEXT;
     ALTER TABLE inventory_archives ADD COLUMN index_of TEXT;",
    // 11: incremental chains, each increment naming its base.
    "ALTER TABLE catalogs ADD COLUMN base TEXT;",
    // 12: archives `prune` deletes: noted before the deletion is asked (`deleted_at` empty),
    // marked once the destination confirms it. Their upload rows stay, as history.
    "CREATE TABLE pruned (archive_id TEXT NOT NULL PRIMARY KEY, started_at TEXT NOT NULL,
                          deleted_at TEXT);",
];

impl Ledger {
    /// Brings the schema up to date in one exclusive transaction that re-reads the version
    /// first: two runs that start together on an old or new ledger upgrade it once, not twice.
    pub(super) fn migrate(&mut self) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| write_error(&path, "cannot start a migration", source))?;
        let version: usize = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sqlite_error(&path, "cannot read the schema version"))?;
        if version > MIGRATIONS.len() {
            return Err(LedgerError::Incompatible {
                path,
                message: format!(
                    "written by a newer glacier-backup (schema {version}, this one knows up to {}); \
                     upgrade glacier-backup",
                    MIGRATIONS.len()
                ),
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(migration)
                .and_then(|()| tx.pragma_update(None, "user_version", i + 1))
                .map_err(|source| LedgerError::Incompatible {
                    path: path.clone(),
                    message: format!(
                        "cannot upgrade to schema {}: {source}; is this a glacier-backup ledger?",
                        i + 1
                    ),
                })?;
        }
        tx.commit()
            .map_err(|source| write_error(&path, "cannot save the schema upgrade", source))
    }

    /// Writes the schema version back unchanged: SQLite then needs its journal beside the
    /// file and a writable file, exactly what recording an upload needs.
    pub(super) fn check_writable(&mut self) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| write_error(&path, "cannot write", source))?;
        let version: usize = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sqlite_error(&path, "cannot read the schema version"))?;
        tx.pragma_update(None, "user_version", version)
            .and_then(|()| tx.commit())
            .map_err(|source| write_error(&path, "cannot write", source))
    }
}
