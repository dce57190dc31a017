//! The SQLite ledger, compatible with the Python tool's `uploads(path, name, archive_id,
//! uploaded_date)` table: rows of the Python tool count as uploads, new columns are added by
//! migration and the Python tool's columns are still filled, so nothing is ever dropped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use glacier_backup_archiver::{Compression, Encoding, ListedArchive, Listing, SourceKind};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, ToSql, TransactionBehavior};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    Ledger, LedgerError, Moved, PendingUpload, Retrieval, UploadRecord, PYTHON_TOOL_BACKEND,
};

mod moves;

/// Schema versions, kept in `PRAGMA user_version`; the Python tool's database is version 0.
const MIGRATIONS: &[&str] = &[
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
];

const COLUMNS: &str = "path, name, archive_id, uploaded_date, backend, kind, size, tree_hash, \
                       fingerprint, started_at, uploaded_at, description, compression, level, \
                       encryption, recipients, plain_size";

/// A ledger in one SQLite file.
#[derive(Debug)]
pub struct SqliteLedger {
    conn: Connection,
    path: PathBuf,
}

impl SqliteLedger {
    /// Opens and migrates the ledger at `path`, and checks it can be written, so a backup
    /// never stores an archive it then cannot record. A missing file is created whole (mode
    /// 0600, migrated under a temporary name, then linked into place), so no run ever finds a
    /// half-made ledger; an existing one readable by others is made private.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_ledger_directory(path, parent)?;
        }
        match std::fs::metadata(path) {
            Ok(meta) => {
                refuse_empty_file(path, &meta)?;
                make_private(path, &meta);
            }
            // Created private (0600).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_new(path)?,
            Err(e) => return Err(io(e)),
        }
        let conn = Connection::open(path).map_err(sqlite_error(path, "cannot open"))?;
        // A pending upload's seal decrypts its archive: once the upload is recorded and the
        // seal deleted, its bytes must not linger in the file's free pages.
        conn.pragma_update(None, "secure_delete", true)
            .map_err(sqlite_error(path, "cannot set secure_delete"))?;
        let mut ledger = SqliteLedger {
            conn,
            path: path.to_path_buf(),
        };
        ledger.migrate()?;
        ledger.check_writable()?;
        Ok(ledger)
    }

    /// The ledger at `path` read in place, without a copy, for listings whose memory must stay
    /// flat in the ledger's size: a connection that cannot write. A ledger of an older schema
    /// (or none) is read as [`SqliteLedger::snapshot`] reads it.
    pub fn reader(path: &Path) -> Result<Self, LedgerError> {
        let Ok(meta) = std::fs::metadata(path) else {
            return Self::snapshot(path);
        };
        refuse_empty_file(path, &meta)?;
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sqlite_error(path, "cannot open read-only"))?;
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sqlite_error(path, "cannot read the schema version"))?;
        if version != MIGRATIONS.len() {
            return Self::snapshot(path);
        }
        Ok(SqliteLedger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// A read-only snapshot of the ledger at `path` (empty if the file does not exist), for dry
    /// runs: the file is never created, migrated or locked, and what a dry run records goes
    /// to the copy in memory.
    pub fn snapshot(path: &Path) -> Result<Self, LedgerError> {
        let conn = Connection::open_in_memory().map_err(sqlite_error(path, "cannot open"))?;
        let mut ledger = SqliteLedger {
            conn,
            path: path.to_path_buf(),
        };
        if let Ok(meta) = std::fs::metadata(path) {
            refuse_empty_file(path, &meta)?;
            let source = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(sqlite_error(path, "cannot open read-only"))?;
            ledger.conn = copy_into_memory(&source, path)?;
        }
        ledger.migrate()?;
        Ok(ledger)
    }

    /// An empty ledger in memory (tests, library use).
    pub fn in_memory() -> Result<Self, LedgerError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(sqlite_error(&path, "cannot open"))?;
        let mut ledger = SqliteLedger { conn, path };
        ledger.migrate()?;
        Ok(ledger)
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the schema up to date in one exclusive transaction that re-reads the version
    /// first: two runs that start together on an old or new ledger upgrade it once, not twice.
    fn migrate(&mut self) -> Result<(), LedgerError> {
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

    /// Reads a page of rows at a time, each page its own short read: a slow reader (`list` into
    /// a pager) never holds the ledger's read lock, which would stop a running backup from
    /// recording its uploads. With `with_moves`, each row comes with its moved mark.
    fn page_uploads(
        &self,
        with_moves: bool,
        each: &mut dyn FnMut(UploadRecord, Option<Moved>) -> bool,
    ) -> Result<(), LedgerError> {
        const PAGE: i64 = 1000;
        let columns: Vec<String> = COLUMNS
            .split(',')
            .map(|c| format!("uploads.{}", c.trim()))
            .collect();
        let rowid_column = columns.len();
        let (moved_columns, join) = if with_moves {
            (
                ", moved.destination, moved.key, moved.moved_at, moved.source_deleted_at",
                " LEFT JOIN moved ON moved.archive_id = uploads.archive_id",
            )
        } else {
            ("", "")
        };
        let sql = format!(
            "SELECT {}, uploads.rowid{moved_columns} FROM uploads{join} \
             WHERE uploads.rowid > ?1 ORDER BY uploads.rowid LIMIT {PAGE}",
            columns.join(", ")
        );
        let read = |row: &Row<'_>| -> rusqlite::Result<(UploadRecord, i64, Option<Moved>)> {
            let upload = read_row(row)?;
            let rowid = row.get(rowid_column)?;
            let moved = match with_moves {
                true => row
                    .get::<_, Option<String>>(rowid_column + 1)?
                    .map(|destination| -> rusqlite::Result<Moved> {
                        Ok(Moved {
                            archive_id: upload.archive_id.clone(),
                            destination,
                            key: row.get(rowid_column + 2)?,
                            moved_at: parse_time(row.get(rowid_column + 3)?)
                                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                            source_deleted_at: parse_time(row.get(rowid_column + 4)?),
                        })
                    })
                    .transpose()?,
                false => None,
            };
            Ok((upload, rowid, moved))
        };
        let failed = sqlite_error(&self.path, "cannot list uploads");
        let mut after = i64::MIN;
        loop {
            let page: Vec<(UploadRecord, i64, Option<Moved>)> = self
                .conn
                .prepare_cached(&sql)
                .and_then(|mut stmt| stmt.query_map(params![after], read)?.collect())
                .map_err(&failed)?;
            let Some(&(_, last, _)) = page.last() else {
                return Ok(());
            };
            after = last;
            for (upload, _, moved) in page {
                if !each(upload, moved) {
                    return Ok(());
                }
            }
        }
    }

    /// Runs `write` in one transaction: all of it is kept, or none. `context` names the
    /// operation in the error.
    fn in_transaction(
        &mut self,
        context: &'static str,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sqlite_error(&path, "cannot start a transaction"))?;
        write(&tx)
            .and_then(|()| tx.commit())
            .map_err(sqlite_error(&path, context))
    }

    /// Writes the schema version back unchanged: SQLite then needs its journal beside the
    /// file and a writable file, exactly what recording an upload needs.
    fn check_writable(&mut self) -> Result<(), LedgerError> {
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

/// A 0-byte file is what a truncated or clobbered ledger looks like; reading it as "nothing
/// uploaded yet" would upload everything again, so it is refused.
fn refuse_empty_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), LedgerError> {
    if meta.is_dir() {
        return Err(LedgerError::Incompatible {
            path: path.to_path_buf(),
            message: "is a directory, not a ledger file; set [main] ledger to a file path".into(),
        });
    }
    if meta.len() == 0 {
        return Err(LedgerError::Incompatible {
            path: path.to_path_buf(),
            message: "the file is empty (0 bytes), so it cannot say what was uploaded; restore it \
                      from a copy, or delete it and run `inventory --rebuild-ledger`"
                .into(),
        });
    }
    Ok(())
}

/// Creates a migrated ledger at `path` without a moment where `path` exists half-made. Another
/// run creating it at the same time wins harmlessly: its file is used.
fn create_new(path: &Path) -> Result<(), LedgerError> {
    let io = |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    // tempfile creates with mode 0600: private from the first byte.
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(io)?;
    {
        let conn = Connection::open(temp.path()).map_err(sqlite_error(path, "cannot create"))?;
        let mut fresh = SqliteLedger {
            conn,
            path: path.to_path_buf(),
        };
        fresh.migrate()?;
    }
    match temp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A file system that can neither rename without replacing nor hard-link: a plain
        // rename, unless another run made the ledger meanwhile.
        Err(e) if !path.exists() => e.file.persist(path).map(drop).map_err(|e| io(e.error)),
        Err(_) => Ok(()),
    }
}

/// The Python tool left its ledger readable by everyone; ours are 0600. Said once, since the
/// file stays private afterwards.
fn make_private(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)) {
        Ok(()) => tracing::info!(
            "ledger {}: made private (mode {:04o} -> {:04o}); it lists every path backed up",
            crate::shown(path),
            mode,
            mode & 0o700
        ),
        Err(e) => tracing::warn!(
            "ledger {} is readable by others (mode {mode:04o}) and cannot be made private: {e}",
            crate::shown(path)
        ),
    }
}

fn copy_into_memory(source: &Connection, path: &Path) -> Result<Connection, LedgerError> {
    let mut memory = Connection::open_in_memory().map_err(sqlite_error(path, "cannot open"))?;
    {
        let backup = rusqlite::backup::Backup::new(source, &mut memory)
            .map_err(sqlite_error(path, "cannot read"))?;
        backup
            .run_to_completion(1024, std::time::Duration::ZERO, None)
            .map_err(sqlite_error(path, "cannot read"))?;
    }
    Ok(memory)
}

/// Adds an upload's row and forgets its pending upload, inside the caller's transaction.
fn insert_upload(tx: &rusqlite::Transaction<'_>, upload: &UploadRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO uploads ({COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        SqlPath(&upload.path),
        upload.name,
        upload.archive_id,
        upload.uploaded_at.map(|t| t.unix_timestamp()),
        upload.backend,
        upload.kind.map(SourceKind::as_str),
        upload.size.map(|s| s as i64),
        upload.tree_hash.map(|h| h.to_hex()),
        upload.fingerprint,
        upload.started_at.map(rfc3339),
        upload.uploaded_at.map(rfc3339),
        upload.description,
        upload.encoding.compression.as_str(),
        upload.encoding.compression.level(),
        upload.encoding.encrypted.then_some("age"),
        upload.encoding.recipients_list(),
        upload.plain_size.map(|s| s as i64),
    ])?;
    tx.prepare_cached("DELETE FROM pending_uploads WHERE path = ?1")?
        .execute(params![SqlPath(&upload.path)])?;
    tx.prepare_cached("DELETE FROM pending_parts WHERE path = ?1")?
        .execute(params![SqlPath(&upload.path)])?;
    tx.prepare_cached("DELETE FROM naming WHERE archive_id = ?1")?
        .execute(params![upload.archive_id])?;
    Ok(())
}

impl Ledger for SqliteLedger {
    fn latest_upload(&self, path: &Path) -> Result<Option<UploadRecord>, LedgerError> {
        let sql =
            format!("SELECT {COLUMNS} FROM uploads WHERE path = ?1 ORDER BY rowid DESC LIMIT 1");
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row(params![SqlPath(path)], read_row).optional())
            .map_err(sqlite_error(&self.path, "cannot look up an upload"))
    }

    fn record_upload(&mut self, upload: &UploadRecord) -> Result<(), LedgerError> {
        self.record_uploads(std::slice::from_ref(upload))
    }

    fn record_uploads(&mut self, uploads: &[UploadRecord]) -> Result<(), LedgerError> {
        self.in_transaction("cannot record an upload", |tx| {
            uploads
                .iter()
                .try_for_each(|upload| insert_upload(tx, upload))
        })
    }

    fn record_naming(&mut self, archive_ids: &[String]) -> Result<(), LedgerError> {
        self.in_transaction("cannot note the archives about to be named", |tx| {
            let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO naming VALUES (?1)")?;
            archive_ids
                .iter()
                .try_for_each(|id| insert.execute(params![id]).map(drop))
        })
    }

    fn unrecorded_names(&self) -> Result<Vec<String>, LedgerError> {
        self.conn
            .prepare_cached(
                "SELECT archive_id FROM naming WHERE archive_id NOT IN \
                 (SELECT archive_id FROM uploads WHERE archive_id IS NOT NULL) \
                 ORDER BY archive_id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(sqlite_error(
                &self.path,
                "cannot read the archives being named",
            ))
    }

    fn forget_naming(&mut self) -> Result<(), LedgerError> {
        self.in_transaction("cannot forget the archives being named", |tx| {
            tx.execute("DELETE FROM naming", []).map(drop)
        })
    }

    fn pending_upload(&self, path: &Path) -> Result<Option<PendingUpload>, LedgerError> {
        self.conn
            .prepare_cached(
                "SELECT backend, token, part_size, fingerprint, started_at, complete_size, \
                 complete_tree_hash, encoding, recipients, seal FROM pending_uploads \
                 WHERE path = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![SqlPath(path)], |row| {
                    let started: String = row.get(4)?;
                    Ok(PendingUpload {
                        path: path.to_path_buf(),
                        backend: row.get(0)?,
                        token: row.get(1)?,
                        part_size: row.get::<_, i64>(2)? as u64,
                        fingerprint: row.get(3)?,
                        started_at: OffsetDateTime::parse(&started, &Rfc3339)
                            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                        completing: row
                            .get::<_, Option<i64>>(5)?
                            .zip(row.get::<_, Option<String>>(6)?)
                            .and_then(|(size, hash)| Some((size as u64, hash.parse().ok()?))),
                        encoding: {
                            let tag = row.get::<_, Option<String>>(7)?.unwrap_or_default();
                            // A tag this build does not know: the upload cannot be repeated,
                            // so it is given up (its fingerprint cannot match).
                            let mut encoding = Encoding::from_tag(&tag).unwrap_or(Encoding {
                                encrypted: true,
                                ..Encoding::plain()
                            });
                            encoding.recipients = Encoding::parse_recipients(
                                &row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                            );
                            encoding
                        },
                        seal: row.get(9)?,
                    })
                })
                .optional()
            })
            .map_err(sqlite_error(&self.path, "cannot look up a pending upload"))
    }

    fn record_pending(&mut self, pending: &PendingUpload) -> Result<(), LedgerError> {
        self.in_transaction("cannot record a pending upload", |tx| {
            // A new upload of the path: parts recorded for an earlier one no longer apply.
            tx.execute(
                "DELETE FROM pending_parts WHERE path = ?1",
                params![SqlPath(&pending.path)],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO pending_uploads \
                 (path, backend, token, part_size, fingerprint, started_at, encoding, \
                 recipients, seal) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    SqlPath(&pending.path),
                    pending.backend,
                    pending.token,
                    pending.part_size as i64,
                    pending.fingerprint,
                    rfc3339(pending.started_at),
                    pending.encoding.tag(),
                    pending.encoding.recipients_list(),
                    pending.seal,
                ],
            )?;
            Ok(())
        })
    }

    fn clear_pending(&mut self, path: &Path) -> Result<(), LedgerError> {
        self.in_transaction("cannot forget a pending upload", |tx| {
            tx.execute(
                "DELETE FROM pending_uploads WHERE path = ?1",
                params![SqlPath(path)],
            )?;
            tx.execute(
                "DELETE FROM pending_parts WHERE path = ?1",
                params![SqlPath(path)],
            )?;
            Ok(())
        })
    }

    fn record_completing(
        &mut self,
        path: &Path,
        size: u64,
        tree_hash: glacier_backup_archiver::TreeHash,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE pending_uploads SET complete_size = ?2, complete_tree_hash = ?3 \
                 WHERE path = ?1",
                params![SqlPath(path), size as i64, tree_hash.to_hex()],
            )
            .map(|_| ())
            .map_err(sqlite_error(
                &self.path,
                "cannot record a completing upload",
            ))
    }

    fn record_part(&mut self, path: &Path, number: u64, receipt: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO pending_parts (path, number, receipt) VALUES (?1, ?2, ?3)",
                params![SqlPath(path), number as i64, receipt],
            )
            .map(|_| ())
            .map_err(sqlite_error(&self.path, "cannot record a stored part"))
    }

    fn pending_parts(&self, path: &Path) -> Result<Vec<(u64, String)>, LedgerError> {
        self.conn
            .prepare_cached(
                "SELECT number, receipt FROM pending_parts WHERE path = ?1 ORDER BY number",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![SqlPath(path)], |row| {
                    Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
                })?
                .collect()
            })
            .map_err(sqlite_error(&self.path, "cannot read stored parts"))
    }

    fn uploads(&self) -> Result<Vec<UploadRecord>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM uploads ORDER BY rowid");
        self.conn
            .prepare(&sql)
            .and_then(|mut stmt| stmt.query_map([], read_row)?.collect())
            .map_err(sqlite_error(&self.path, "cannot list uploads"))
    }

    /// Reads a page of rows at a time, each page its own short read: a slow reader (`list` into
    /// a pager) never holds the ledger's read lock, which would stop a running backup from
    /// recording its uploads.
    fn each_upload(&self, each: &mut dyn FnMut(UploadRecord) -> bool) -> Result<(), LedgerError> {
        self.page_uploads(false, &mut |upload, _| each(upload))
    }

    fn complete_upload(
        &mut self,
        archive_id: &str,
        size: u64,
        tree_hash: glacier_backup_archiver::TreeHash,
    ) -> Result<usize, LedgerError> {
        self.conn
            .execute(
                "UPDATE uploads SET size = ?2, tree_hash = ?3
                 WHERE archive_id = ?1 AND (size IS NULL OR tree_hash IS NULL)",
                params![archive_id, size as i64, tree_hash.to_hex()],
            )
            .map_err(sqlite_error(&self.path, "cannot complete an upload row"))
    }

    fn retrieval(&self, archive_id: Option<&str>) -> Result<Option<Retrieval>, LedgerError> {
        self.conn
            .query_row(
                "SELECT request_id, tier, requested_at FROM retrievals WHERE archive_id = ?1",
                params![archive_id.unwrap_or_default()],
                |row| {
                    Ok(Retrieval {
                        archive_id: archive_id.map(str::to_owned),
                        request_id: row.get(0)?,
                        tier: row.get(1)?,
                        requested_at: parse_time(row.get(2)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    })
                },
            )
            .optional()
            .map_err(sqlite_error(&self.path, "cannot read a retrieval"))
    }

    fn record_retrieval(&mut self, retrieval: &Retrieval) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO retrievals (archive_id, request_id, tier, requested_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    retrieval.archive_id.as_deref().unwrap_or_default(),
                    retrieval.request_id,
                    retrieval.tier,
                    rfc3339(retrieval.requested_at)
                ],
            )
            .map(|_| ())
            .map_err(sqlite_error(&self.path, "cannot record a retrieval"))
    }

    fn clear_retrieval(&mut self, archive_id: Option<&str>) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "DELETE FROM retrievals WHERE archive_id = ?1",
                params![archive_id.unwrap_or_default()],
            )
            .map(|_| ())
            .map_err(sqlite_error(&self.path, "cannot forget a retrieval"))
    }

    fn record_inventory(&mut self, listing: &Listing) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sqlite_error(&path, "cannot record the inventory"))?;
        let write = || -> rusqlite::Result<()> {
            tx.execute_batch("DELETE FROM inventories; DELETE FROM inventory_archives;")?;
            tx.execute(
                "INSERT INTO inventories (taken_at, fetched_at) VALUES (?1, ?2)",
                params![
                    listing.taken_at.map(rfc3339),
                    rfc3339(OffsetDateTime::now_utc())
                ],
            )?;
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO inventory_archives (archive_id, size, tree_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for archive in &listing.archives {
                insert.execute(params![
                    archive.archive_id,
                    archive.size as i64,
                    archive.tree_hash.map(|h| h.to_hex()),
                    archive.created_at.map(rfc3339)
                ])?;
            }
            Ok(())
        };
        write()
            .and_then(|()| tx.commit())
            .map_err(sqlite_error(&path, "cannot record the inventory"))
    }

    fn last_inventory(&self) -> Result<Option<Listing>, LedgerError> {
        let read = || -> rusqlite::Result<Option<Listing>> {
            let Some(taken_at) = self
                .conn
                .query_row("SELECT taken_at FROM inventories", [], |row| {
                    row.get::<_, Option<String>>(0)
                })
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = self.conn.prepare(
                "SELECT archive_id, size, tree_hash, created_at FROM inventory_archives
                 ORDER BY archive_id",
            )?;
            let archives = stmt
                .query_map([], |row| {
                    Ok(ListedArchive {
                        tree_hash: row
                            .get::<_, Option<String>>(2)?
                            .and_then(|h| h.parse().ok()),
                        created_at: parse_time(row.get(3)?),
                        ..ListedArchive::new(row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(Listing {
                archives,
                taken_at: parse_time(taken_at),
                incomplete: Vec::new(),
            }))
        };
        read().map_err(sqlite_error(&self.path, "cannot read the inventory"))
    }
}

/// The layers a row records; rows from before compression existed (and the Python tool's) are
/// plain.
fn row_encoding(
    compression: Option<String>,
    level: Option<i64>,
    encryption: Option<String>,
    recipients: Option<String>,
) -> Encoding {
    let level = level.and_then(|l| i32::try_from(l).ok());
    Encoding {
        compression: Compression::parse(compression.as_deref().unwrap_or("none"), level)
            // A compression this build does not know: not plain, so never read as plain.
            .unwrap_or(Compression::Zstd(level)),
        encrypted: encryption.is_some_and(|e| !e.is_empty()),
        recipients: Encoding::parse_recipients(&recipients.unwrap_or_default()),
    }
}

fn parse_time(text: Option<String>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&text?, &Rfc3339).ok()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .expect("every OffsetDateTime formats as RFC 3339")
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<UploadRecord> {
    let text = |i: usize| -> rusqlite::Result<Option<String>> {
        Ok(match row.get_ref(i)? {
            ValueRef::Null => None,
            ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Real(f) => Some(f.to_string()),
        })
    };
    let path = match row.get_ref(0)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => PathBuf::from(OsStr::from_bytes(t)),
        _ => PathBuf::new(),
    };
    let uploaded_at = parse_time(text(10)?).or_else(|| python_tool_date(row.get_ref(3).ok()?));
    Ok(UploadRecord {
        path,
        name: text(1)?.unwrap_or_default(),
        archive_id: text(2)?.unwrap_or_default(),
        description: text(11)?,
        backend: text(4)?.unwrap_or_else(|| PYTHON_TOOL_BACKEND.to_owned()),
        kind: text(5)?.as_deref().and_then(SourceKind::parse),
        size: row.get::<_, Option<i64>>(6)?.map(|s| s as u64),
        tree_hash: text(7)?.and_then(|h| h.parse().ok()),
        fingerprint: text(8)?,
        started_at: parse_time(text(9)?),
        uploaded_at,
        encoding: row_encoding(text(12)?, row.get(13)?, text(14)?, text(15)?),
        plain_size: row.get::<_, Option<i64>>(16)?.map(|s| s as u64),
    })
}

/// The Python tool stored `int(time.time())`, or nothing at all (a bug in its `mark_uploaded`).
fn python_tool_date(value: ValueRef<'_>) -> Option<OffsetDateTime> {
    let seconds = match value {
        ValueRef::Integer(n) => n as f64,
        ValueRef::Real(f) => f,
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok()?,
        _ => return None,
    };
    OffsetDateTime::from_unix_timestamp(seconds as i64).ok()
}

/// Paths are stored as text, like the Python tool did; a path that is not UTF-8 is stored as its
/// raw bytes (a blob) so that two such paths never collide.
struct SqlPath<'a>(&'a Path);

impl ToSql for SqlPath<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0.to_str() {
            Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            None => ToSqlOutput::Owned(Value::Blob(self.0.as_os_str().as_bytes().to_vec())),
        })
    }
}

/// Creates the ledger's directory when it is missing (the default place, or a new one named
/// in the config), saying so; a part of the way that is a file is the config's mistake.
pub(super) fn create_ledger_directory(path: &Path, parent: &Path) -> Result<(), LedgerError> {
    // The nearest part of the way that exists: the directory itself, or where it would go.
    if let Some(found) = parent.ancestors().find(|p| p.exists()) {
        if !found.is_dir() {
            return Err(not_a_directory(path, found));
        }
        if found == parent {
            return Ok(());
        }
    }
    std::fs::create_dir_all(parent).map_err(|source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tracing::info!("created directory {} for the ledger", crate::shown(parent));
    Ok(())
}

fn not_a_directory(path: &Path, found: &Path) -> LedgerError {
    LedgerError::Incompatible {
        path: path.to_path_buf(),
        message: format!(
            "{} is a file, not a directory; set [main] ledger to a file in a directory",
            crate::shown(found)
        ),
    }
}

/// SQLite's answer for a file that is not a database: the config names the wrong file.
fn not_a_database(path: &Path) -> LedgerError {
    LedgerError::Incompatible {
        path: path.to_path_buf(),
        message: "is not an SQLite database (a glacier-backup or Python tool ledger); set \
                  [main] ledger to the ledger file, or move this file aside to start a new one"
            .into(),
    }
}

/// A failed write: the ledger (or the directory SQLite puts its journal in) is read-only or
/// otherwise unwritable, which the user can fix; other SQLite errors stay as they are.
fn write_error(path: &Path, context: &'static str, source: rusqlite::Error) -> LedgerError {
    use rusqlite::ErrorCode::{CannotOpen, NotADatabase, ReadOnly, SystemIoFailure};
    match source.sqlite_error_code() {
        Some(NotADatabase) => not_a_database(path),
        Some(ReadOnly | CannotOpen | SystemIoFailure) => LedgerError::Unwritable {
            path: path.to_path_buf(),
            source,
        },
        _ => LedgerError::Sqlite {
            path: path.to_path_buf(),
            context,
            source,
        },
    }
}

fn sqlite_error(path: &Path, context: &'static str) -> impl Fn(rusqlite::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => not_a_database(&path),
        _ => LedgerError::Sqlite {
            path: path.clone(),
            context,
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, id: &str) -> UploadRecord {
        let now = OffsetDateTime::now_utc();
        UploadRecord {
            path: path.into(),
            name: "n".into(),
            archive_id: id.into(),
            description: None,
            backend: "local".into(),
            kind: Some(SourceKind::File),
            size: Some(3),
            tree_hash: Some(glacier_backup_archiver::treehash::tree_hash(b"abc")),
            fingerprint: Some("v1:x".into()),
            started_at: Some(now),
            uploaded_at: Some(now),
            encoding: Encoding {
                compression: Compression::Zstd(Some(7)),
                encrypted: true,
                recipients: vec!["age1a".into(), "age1b".into()],
            },
            plain_size: Some(10),
        }
    }

    #[test]
    fn python_tool_database_rows_are_honoured_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("glacier.myvault.sqlite3");
        {
            let python_tool = Connection::open(&path).unwrap();
            python_tool.execute_batch(
                "CREATE TABLE \"uploads\" (path text, name text, archive_id text, uploaded_date integer);
                 INSERT INTO uploads VALUES ('/data/a', 'a', 'ID-A', 1700000000);
                 INSERT INTO uploads VALUES ('/data/b', 'b.tar', 'ID-B', NULL);",
            )
            .unwrap();
        }
        let mut ledger = SqliteLedger::open(&path).unwrap();
        let a = ledger.latest_upload(Path::new("/data/a")).unwrap().unwrap();
        assert_eq!(a.archive_id, "ID-A");
        assert_eq!(a.uploaded_at.unwrap().unix_timestamp(), 1_700_000_000);
        assert_eq!(a.fingerprint, None);
        assert_eq!(a.backend, "glacier");
        let b = ledger.latest_upload(Path::new("/data/b")).unwrap().unwrap();
        assert_eq!((b.archive_id.as_str(), b.uploaded_at), ("ID-B", None));
        assert!(ledger
            .latest_upload(Path::new("/data/c"))
            .unwrap()
            .is_none());

        ledger.record_upload(&record("/data/a", "L1")).unwrap();
        drop(ledger);
        // The Python tool's own query still works on the migrated file and sees every row.
        let python_tool = Connection::open(&path).unwrap();
        let count: i64 = python_tool
            .query_row(
                "SELECT count(*) FROM uploads WHERE uploaded_date IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(count, 2);
        let ledger = SqliteLedger::open(&path).unwrap();
        assert_eq!(ledger.uploads().unwrap().len(), 3);
    }

    #[test]
    fn latest_upload_wins_and_round_trips_every_field() {
        let mut ledger = SqliteLedger::in_memory().unwrap();
        let first = record("/x", "one");
        let mut second = record("/x", "two");
        second.started_at = second.started_at.map(|t| t.replace_nanosecond(0).unwrap());
        second.uploaded_at = second.uploaded_at.map(|t| t.replace_nanosecond(0).unwrap());
        ledger.record_upload(&first).unwrap();
        ledger.record_upload(&second).unwrap();
        assert_eq!(
            ledger.latest_upload(Path::new("/x")).unwrap().unwrap(),
            second
        );
    }

    #[test]
    fn pending_uploads_are_kept_until_the_upload_is_recorded() {
        let mut ledger = SqliteLedger::in_memory().unwrap();
        let pending = PendingUpload {
            path: "/x".into(),
            backend: "glacier".into(),
            token: "upload-1".into(),
            part_size: 8 << 20,
            fingerprint: "v1:f".into(),
            started_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
            completing: None,
            encoding: Encoding::from_tag("zstd3+age").unwrap(),
            seal: Some(vec![1, 2, 3]),
        };
        ledger.record_pending(&pending).unwrap();
        assert_eq!(
            ledger.pending_upload(Path::new("/x")).unwrap().as_ref(),
            Some(&pending),
            "layers and seal come back"
        );
        let hash = glacier_backup_archiver::treehash::tree_hash(b"archive");
        ledger.record_completing(Path::new("/x"), 7, hash).unwrap();
        assert_eq!(
            ledger
                .pending_upload(Path::new("/x"))
                .unwrap()
                .unwrap()
                .completing,
            Some((7, hash))
        );
        let replaced = PendingUpload {
            token: "upload-2".into(),
            ..pending.clone()
        };
        ledger.record_pending(&replaced).unwrap();
        assert_eq!(
            ledger.pending_upload(Path::new("/x")).unwrap(),
            Some(replaced),
            "a new upload starts with nothing being completed"
        );
        ledger.record_upload(&record("/x", "done")).unwrap();
        assert_eq!(ledger.pending_upload(Path::new("/x")).unwrap(), None);
        assert!(ledger.pending_parts(Path::new("/x")).unwrap().is_empty());
        ledger.record_pending(&pending).unwrap();
        ledger.clear_pending(Path::new("/x")).unwrap();
        assert_eq!(ledger.pending_upload(Path::new("/x")).unwrap(), None);
    }

    /// The seal of a finished upload (its archive's file key) is gone from the file itself,
    /// not only from the table.
    #[test]
    fn a_recorded_uploads_seal_leaves_no_trace_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let secret: Vec<u8> = b"SEAL-".iter().copied().chain(0..200u8).collect();
        let mut ledger = SqliteLedger::open(&path).unwrap();
        ledger
            .record_pending(&PendingUpload {
                path: "/x".into(),
                backend: "glacier".into(),
                token: "upload-1".into(),
                part_size: 8 << 20,
                fingerprint: "v1:f".into(),
                started_at: OffsetDateTime::now_utc(),
                completing: None,
                encoding: Encoding::from_tag("age").unwrap(),
                seal: Some(secret.clone()),
            })
            .unwrap();
        let holds = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret);
        assert!(holds(&std::fs::read(&path).unwrap()), "written to the file");
        ledger.record_upload(&record("/x", "ID")).unwrap();
        drop(ledger);
        assert!(!holds(&std::fs::read(&path).unwrap()), "still in the file");
    }

    #[test]
    fn retrievals_and_the_last_inventory_are_kept_until_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.sqlite3");
        let mut ledger = SqliteLedger::open(&file).unwrap();
        assert_eq!(
            ledger.last_inventory().unwrap().map(|l| l.archives.len()),
            None
        );
        let job = Retrieval {
            archive_id: Some("archive-1".into()),
            request_id: Some("job-7".into()),
            tier: "bulk".into(),
            requested_at: time::macros::datetime!(2026-11-26 05:00 UTC),
        };
        let inventory_job = Retrieval {
            archive_id: None,
            request_id: Some("job-8".into()),
            ..job.clone()
        };
        ledger.record_retrieval(&job).unwrap();
        ledger.record_retrieval(&inventory_job).unwrap();
        let mut listing = Listing {
            archives: vec![ListedArchive::new("archive-1", 10)],
            taken_at: Some(time::macros::datetime!(2026-11-25 06:00 UTC)),
            incomplete: Vec::new(),
        };
        ledger.record_inventory(&listing).unwrap();
        drop(ledger);

        let mut ledger = SqliteLedger::open(&file).unwrap();
        assert_eq!(ledger.retrieval(Some("archive-1")).unwrap(), Some(job));
        assert_eq!(ledger.retrieval(None).unwrap(), Some(inventory_job));
        assert_eq!(ledger.retrieval(Some("other")).unwrap(), None);
        ledger.clear_retrieval(None).unwrap();
        assert_eq!(ledger.retrieval(None).unwrap(), None);
        let kept = ledger.last_inventory().unwrap().unwrap();
        assert_eq!(kept.archives, listing.archives);
        assert_eq!(kept.taken_at, listing.taken_at);
        listing.archives.clear();
        ledger.record_inventory(&listing).unwrap();
        assert_eq!(ledger.last_inventory().unwrap().unwrap().archives, []);
    }

    #[test]
    fn non_utf8_paths_do_not_collide() {
        let mut ledger = SqliteLedger::in_memory().unwrap();
        let a = PathBuf::from(OsStr::from_bytes(b"/d/\xff"));
        let b = PathBuf::from(OsStr::from_bytes(b"/d/\xfe"));
        let mut rec = record("", "A");
        rec.path = a.clone();
        ledger.record_upload(&rec).unwrap();
        assert!(ledger.latest_upload(&a).unwrap().is_some());
        assert!(ledger.latest_upload(&b).unwrap().is_none());
        assert_eq!(ledger.uploads().unwrap()[0].path, a);
    }

    #[test]
    fn lookups_use_the_index() {
        let ledger = SqliteLedger::in_memory().unwrap();
        let plan: String = ledger
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT * FROM uploads WHERE path = '/x' ORDER BY rowid DESC LIMIT 1",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("uploads_by_path"), "{plan}");
    }

    #[test]
    fn file_is_private_and_snapshot_never_writes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        let snapshot = SqliteLedger::snapshot(&path).unwrap();
        assert!(snapshot.uploads().unwrap().is_empty());
        assert!(!path.exists(), "a snapshot must not create the file");
        let mut ledger = SqliteLedger::open(&path).unwrap();
        ledger.record_upload(&record("/x", "one")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let snapshot = SqliteLedger::snapshot(&path).unwrap();
        assert_eq!(snapshot.uploads().unwrap().len(), 1);
    }

    /// Rows come a page at a time, in order, all of them, and a reader can stop early; a
    /// reader of a current ledger reads it in place and cannot write to it.
    #[test]
    fn each_upload_pages_through_every_row_and_a_snapshot_reads_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        let mut ledger = SqliteLedger::open(&path).unwrap();
        for n in 0..2500 {
            ledger
                .record_upload(&record(&format!("/p{n}"), &format!("id{n}")))
                .unwrap();
        }
        let snapshot = SqliteLedger::reader(&path).unwrap();
        let mut seen = Vec::new();
        snapshot
            .each_upload(&mut |u| {
                seen.push(u.archive_id);
                true
            })
            .unwrap();
        let expected: Vec<String> = (0..2500).map(|n| format!("id{n}")).collect();
        assert_eq!(seen, expected);
        let mut first_three = Vec::new();
        snapshot
            .each_upload(&mut |u| {
                first_three.push(u.archive_id);
                first_three.len() < 3
            })
            .unwrap();
        assert_eq!(first_three, ["id0", "id1", "id2"]);
        // Read in place: what the file gets after the snapshot was taken shows, and nothing
        // can be written through it.
        ledger.record_upload(&record("/late", "late")).unwrap();
        assert_eq!(snapshot.uploads().unwrap().len(), 2501);
        let mut snapshot = snapshot;
        assert!(snapshot.record_upload(&record("/x", "nope")).is_err());
    }

    #[test]
    fn an_empty_ledger_file_is_refused_not_read_as_nothing_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        std::fs::write(&path, b"").unwrap();
        for result in [SqliteLedger::open(&path), SqliteLedger::snapshot(&path)] {
            let err = result.unwrap_err();
            assert!(err.is_setup(), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("l.sqlite3") && text.contains("empty"),
                "{text}"
            );
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as found");
    }

    #[test]
    fn a_directory_as_ledger_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let err = SqliteLedger::open(dir.path()).unwrap_err();
        assert!(err.is_setup(), "{err}");
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn a_ledger_readable_by_others_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        drop(SqliteLedger::open(&path).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(SqliteLedger::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_ledger_that_cannot_be_written_is_found_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        drop(SqliteLedger::open(&path).unwrap());
        // SQLite cannot create its rollback journal where a directory takes the name: the
        // same failure as a read-only directory, and one that holds for root too.
        std::fs::create_dir(dir.path().join("l.sqlite3-journal")).unwrap();
        let err = SqliteLedger::open(&path).unwrap_err();
        assert!(matches!(err, LedgerError::Unwritable { .. }), "{err}");
        assert!(err.is_setup());
        assert!(err.to_string().contains("l.sqlite3"), "{err}");
    }

    #[test]
    fn runs_starting_together_create_and_upgrade_a_ledger_once() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("l.sqlite3");
            if round % 2 == 1 {
                // The Python tool's schema, upgraded by both at once.
                let conn = Connection::open(&path).unwrap();
                conn.execute_batch(
                    "CREATE TABLE uploads (path text, name text, archive_id text, uploaded_date integer);",
                )
                .unwrap();
            }
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteLedger::open(&path).map(|_| ())
                    })
                })
                .collect();
            for thread in threads {
                thread
                    .join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(leftovers, 1, "round {round}: temporary files left");
        }
    }
}
