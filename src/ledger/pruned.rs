//! What `prune` deleted, and what it is deleting: each archive noted before its deletion is
//! asked for, and marked deleted once the destination confirms. Upload rows stay as history,
//! but every lookup of what the destination holds leaves noted archives out.

use std::collections::HashMap;

use rusqlite::params;
use time::OffsetDateTime;

use super::sql::{parse_time, path_at, rfc3339, sqlite_error, text_at, uploaded_at, PAGE};
use super::{Ledger, LedgerError};

/// An upload's prune mark: when the destination confirmed its deletion (`None`: asked for,
/// not yet confirmed).
pub type PruneMark = Option<OffsetDateTime>;

/// The SQL condition that leaves out the rows of archives `prune` deleted or is deleting.
pub(super) const NOT_PRUNED: &str = "uploads.archive_id NOT IN (SELECT archive_id FROM pruned)";

/// An upload row as `prune` weighs it: a ledger of 200,000 rows read into little memory.
#[derive(Debug, Clone)]
pub struct Brief {
    /// Source path.
    pub path: std::path::PathBuf,
    /// Archive id or key.
    pub archive_id: String,
    /// When it was stored ([`super::UploadRecord::stored_at`]).
    pub stored_at: Option<OffsetDateTime>,
    /// Archive size.
    pub size: Option<u64>,
    /// Backend name.
    pub backend: String,
}

impl Ledger {
    /// Every upload not pruned, oldest first, in brief, a page of rows per short read.
    pub fn each_brief(&self, each: &mut dyn FnMut(Brief)) -> Result<(), LedgerError> {
        let sql = format!(
            "SELECT rowid, path, archive_id, uploaded_date, backend, size, started_at, \
             uploaded_at FROM uploads WHERE rowid > ?1 AND {NOT_PRUNED} ORDER BY rowid \
             LIMIT {PAGE}"
        );
        let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, Brief)> {
            let brief = Brief {
                path: path_at(row, 1)?,
                archive_id: text_at(row, 2)?.unwrap_or_default(),
                stored_at: uploaded_at(row, 7, 3)?.or(parse_time(text_at(row, 6)?)),
                size: row.get::<_, Option<i64>>(5)?.map(|s| s as u64),
                backend: text_at(row, 4)?.unwrap_or_else(|| super::PYTHON_TOOL_BACKEND.into()),
            };
            Ok((row.get(0)?, brief))
        };
        self.in_pages(&sql, read, &mut |brief| {
            each(brief);
            true
        })
    }

    /// Notes that the deletion of `archive_id` is about to be asked for: from now on the
    /// archive counts as gone, and an interrupted prune finishes it before anything else.
    pub fn record_pruning(
        &mut self,
        archive_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO pruned (archive_id, started_at) VALUES (?1, ?2)",
                params![archive_id, rfc3339(at)],
            )
            .map(drop)
            .map_err(sqlite_error(
                &self.path,
                "cannot note an archive being pruned",
            ))
    }

    /// Marks `archive_id` deleted at `at`: the destination confirmed it (or had it no more).
    pub fn record_pruned(
        &mut self,
        archive_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT INTO pruned (archive_id, started_at, deleted_at) VALUES (?1, ?2, ?2)
                 ON CONFLICT (archive_id) DO UPDATE SET deleted_at = ?2",
                params![archive_id, rfc3339(at)],
            )
            .map(drop)
            .map_err(sqlite_error(&self.path, "cannot mark an archive pruned"))
    }

    /// Every increment's base, by the increment's archive: the chains prune keeps whole.
    pub fn chain_bases(&self) -> Result<HashMap<String, String>, LedgerError> {
        let read = |schema: &str| -> Result<HashMap<String, String>, LedgerError> {
            self.conn
                .prepare(&format!(
                    "SELECT archive_id, base FROM {schema}.catalogs WHERE base IS NOT NULL"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect()
                })
                .map_err(sqlite_error(&self.path, "cannot read the chains"))
        };
        let mut bases = read("main")?;
        // A snapshot's catalogs stay in the file (see `Ledger::snapshot`).
        if self.catalogs_attached {
            bases.extend(read(super::snapshot::ORIGIN)?);
        }
        Ok(bases)
    }

    /// Archives whose deletion was asked for by a prune that did not see it confirmed.
    pub fn pruning_unfinished(&self) -> Result<Vec<String>, LedgerError> {
        self.conn
            .prepare("SELECT archive_id FROM pruned WHERE deleted_at IS NULL ORDER BY rowid")
            .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
            .map_err(sqlite_error(
                &self.path,
                "cannot read the archives being pruned",
            ))
    }

    /// Every archive prune deleted or is deleting, with when the deletion was confirmed.
    pub fn pruned(&self) -> Result<HashMap<String, Option<OffsetDateTime>>, LedgerError> {
        self.conn
            .prepare("SELECT archive_id, deleted_at FROM pruned")
            .and_then(|mut stmt| {
                stmt.query_map([], |row| {
                    let at: Option<String> = row.get(1)?;
                    Ok((row.get(0)?, parse_time(at)))
                })?
                .collect()
            })
            .map_err(sqlite_error(&self.path, "cannot read the pruned archives"))
    }

    /// Every upload row of `path`, oldest first, pruned ones included, each with its prune
    /// mark (`Some(None)`: being deleted): the history `restore --at` looks a time up in.
    pub fn history_of(
        &self,
        path: &std::path::Path,
    ) -> Result<Vec<(super::UploadRecord, Option<PruneMark>)>, LedgerError> {
        use super::sql::{read_row, uploads_columns, SqlPath};
        let (columns, at) = uploads_columns();
        let sql = format!(
            "SELECT {columns}, pruned.archive_id IS NOT NULL, pruned.deleted_at FROM uploads \
             LEFT JOIN pruned ON pruned.archive_id = uploads.archive_id \
             WHERE uploads.path = ?1 ORDER BY uploads.rowid"
        );
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(params![SqlPath(path)], |row| {
                    let upload = read_row(row)?;
                    let pruned: bool = row.get(at)?;
                    // Being pruned (no time yet) counts: the archive may be gone already.
                    let deleted_at = parse_time(row.get(at + 1)?);
                    Ok((upload, pruned.then_some(deleted_at)))
                })?
                .collect()
            })
            .map_err(sqlite_error(&self.path, "cannot look up uploads"))
    }
}
