//! How rows are written and read: the upload columns, paths as text or raw bytes, times,
//! the Python tool's dates, and SQLite's errors turned into ones that say what to fix.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use glacier_backup_archiver::{Compression, Encoding, SourceKind};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Row, ToSql};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Ledger, LedgerError, UploadRecord, PYTHON_TOOL_BACKEND};

pub(super) const COLUMNS: &str =
    "path, name, archive_id, uploaded_date, backend, kind, size, tree_hash, \
                       fingerprint, started_at, uploaded_at, description, compression, level, \
                       encryption, recipients, plain_size";

/// Rows read per page by [`Ledger::in_pages`].
pub(super) const PAGE: i64 = 1000;

/// [`COLUMNS`] named with their table, for queries that join another, and how many they are
/// (the index of the first column after them).
pub(super) fn uploads_columns() -> (String, usize) {
    let columns: Vec<String> = COLUMNS
        .split(',')
        .map(|c| format!("uploads.{}", c.trim()))
        .collect();
    (columns.join(", "), columns.len())
}

impl Ledger {
    /// Runs `write` in one transaction: all of it is kept, or none. `context` names the
    /// operation in the error.
    pub(super) fn in_transaction(
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
}

/// The layers a row records; rows from before compression existed (and the Python tool's) are
/// plain.
pub(super) fn row_encoding(
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

pub(super) fn parse_time(text: Option<String>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&text?, &Rfc3339).ok()
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .expect("every OffsetDateTime formats as RFC 3339")
}

/// Column `i` as text, whatever SQLite stored there (the Python tool's rows are loose).
pub(super) fn text_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    })
}

/// Column `i` as a path: text, or the raw bytes of a path that is not UTF-8 (see [`SqlPath`]).
pub(super) fn path_at(row: &Row<'_>, i: usize) -> rusqlite::Result<PathBuf> {
    Ok(match row.get_ref(i)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => PathBuf::from(OsStr::from_bytes(t)),
        _ => PathBuf::new(),
    })
}

/// When a row's archive was confirmed stored: `uploaded_at` (column `uploaded_at`), or the
/// Python tool's `uploaded_date` (column `date`).
pub(super) fn uploaded_at(
    row: &Row<'_>,
    uploaded_at: usize,
    date: usize,
) -> rusqlite::Result<Option<OffsetDateTime>> {
    Ok(
        parse_time(text_at(row, uploaded_at)?)
            .or_else(|| python_tool_date(row.get_ref(date).ok()?)),
    )
}

pub(super) fn read_row(row: &Row<'_>) -> rusqlite::Result<UploadRecord> {
    let text = |i: usize| text_at(row, i);
    let path = path_at(row, 0)?;
    let uploaded_at = uploaded_at(row, 10, 3)?;
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
pub(super) fn python_tool_date(value: ValueRef<'_>) -> Option<OffsetDateTime> {
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
pub(super) struct SqlPath<'a>(pub(super) &'a Path);

impl ToSql for SqlPath<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0.to_str() {
            Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            None => ToSqlOutput::Owned(Value::Blob(self.0.as_os_str().as_bytes().to_vec())),
        })
    }
}

/// SQLite's answer for a file that is not a database: the config names the wrong file.
pub(super) fn not_a_database(path: &Path) -> LedgerError {
    LedgerError::Incompatible {
        path: path.to_path_buf(),
        message: "is not an SQLite database (a glacier-backup or Python tool ledger); set \
                  [main] ledger to the ledger file, or move this file aside to start a new one"
            .into(),
    }
}

/// A failed write: the ledger (or the directory SQLite puts its journal in) is read-only or
/// otherwise unwritable, which the user can fix; other SQLite errors stay as they are.
pub(super) fn write_error(
    path: &Path,
    context: &'static str,
    source: rusqlite::Error,
) -> LedgerError {
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

pub(super) fn sqlite_error(
    path: &Path,
    context: &'static str,
) -> impl Fn(rusqlite::Error) -> LedgerError {
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
