//! Upload rows: recorded once the destination confirms, looked up by path, read in pages;
//! and the names a batching backend is about to give, noted before it gives them.

use std::path::Path;

use glacier_backup_archiver::SourceKind;
use rusqlite::{params, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::catalog::Cataloged;

use super::pruned::NOT_PRUNED;
use super::sql::{
    parse_time, read_row, rfc3339, sqlite_error, uploads_columns, SqlPath, COLUMNS, PAGE,
};
use super::{Ledger, LedgerError, Moved, UploadRecord};

/// Adds an archive's catalog, and forgets the note that its index was about to be named (as
/// the row forgets its archive's), inside the caller's transaction.
fn insert_catalog(
    tx: &rusqlite::Transaction<'_>,
    archive_id: &str,
    catalog: &Cataloged,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO catalogs (archive_id, entries, layout, index_id, base) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        archive_id,
        catalog.entries,
        catalog.layout,
        catalog.index_id,
        catalog.base
    ])?;
    if let Some(index) = &catalog.index_id {
        tx.prepare_cached("DELETE FROM naming WHERE archive_id = ?1")?
            .execute(params![index])?;
    }
    Ok(())
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

impl Ledger {
    /// The most recent upload of `path`.
    pub fn latest_upload(&self, path: &Path) -> Result<Option<UploadRecord>, LedgerError> {
        let sql =
            format!("SELECT {COLUMNS} FROM uploads WHERE path = ?1 AND {NOT_PRUNED} ORDER BY rowid DESC LIMIT 1");
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row(params![SqlPath(path)], read_row).optional())
            .map_err(sqlite_error(&self.path, "cannot look up an upload"))
    }

    /// The upload of archive `archive_id` (its latest row, should there be several).
    pub fn upload_of(&self, archive_id: &str) -> Result<Option<UploadRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM uploads WHERE archive_id = ?1 AND {NOT_PRUNED} \
             ORDER BY rowid DESC LIMIT 1"
        );
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row(params![archive_id], read_row).optional())
            .map_err(sqlite_error(&self.path, "cannot look up an upload"))
    }

    /// Records a completed upload, atomically, and forgets any pending upload of that path.
    pub fn record_upload(&mut self, upload: &UploadRecord) -> Result<(), LedgerError> {
        self.record_uploads(std::slice::from_ref(upload))
    }

    /// Records several uploads at once: all of them, or none.
    pub fn record_uploads(&mut self, uploads: &[UploadRecord]) -> Result<(), LedgerError> {
        let uncataloged: Vec<_> = uploads.iter().map(|upload| (upload, None)).collect();
        self.record_cataloged(&uncataloged)
    }

    /// Records several uploads at once, each with its catalog where it has one (see
    /// [`crate::catalog`]): all of them, or none.
    pub fn record_cataloged(
        &mut self,
        uploads: &[(&UploadRecord, Option<&Cataloged>)],
    ) -> Result<(), LedgerError> {
        self.in_transaction("cannot record an upload", |tx| {
            uploads.iter().try_for_each(|(upload, catalog)| {
                insert_upload(tx, upload)?;
                if let Some(catalog) = catalog {
                    insert_catalog(tx, &upload.archive_id, catalog)?;
                }
                Ok(())
            })
        })
    }

    /// The catalog of archive `archive_id` (the compact form, see [`crate::catalog::Decoder`]),
    /// if one was recorded.
    pub fn catalog(&self, archive_id: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.catalog_column::<Vec<u8>>(archive_id, "entries")
    }

    /// The catalog, layout and index of archive `archive_id`, if a catalog was recorded.
    pub fn cataloged(&self, archive_id: &str) -> Result<Option<Cataloged>, LedgerError> {
        let Some(entries) = self.catalog(archive_id)? else {
            return Ok(None);
        };
        let layout = self.catalog_column::<Option<Vec<u8>>>(archive_id, "layout")?;
        Ok(Some(Cataloged {
            entries,
            layout: layout.flatten(),
            index_id: self.catalog_index(archive_id)?.flatten(),
            base: self.catalog_base(archive_id)?.flatten(),
        }))
    }

    /// Whether archive `archive_id` has a catalog (`None` when not), and then its base when it
    /// is an increment: read without loading the catalog.
    pub fn catalog_base(&self, archive_id: &str) -> Result<Option<Option<String>>, LedgerError> {
        self.catalog_column::<Option<String>>(archive_id, "base")
    }

    /// Whether archive `archive_id` has a catalog (`None` when not), and then the id of its
    /// index at the destination: read without loading the catalog itself.
    pub fn catalog_index(&self, archive_id: &str) -> Result<Option<Option<String>>, LedgerError> {
        self.catalog_column::<Option<String>>(archive_id, "index_id")
    }

    /// Records the catalog of an archive already in the ledger (a rebuilt row's, from its
    /// index at the destination).
    pub fn record_catalog(
        &mut self,
        archive_id: &str,
        catalog: &Cataloged,
    ) -> Result<(), LedgerError> {
        self.in_transaction("cannot record a catalog", |tx| {
            insert_catalog(tx, archive_id, catalog)
        })
    }

    /// One column of an archive's catalog row (`None` when it has no catalog); read column by
    /// column, so a listing that needs the entries never loads the leaves.
    fn catalog_column<T: rusqlite::types::FromSql>(
        &self,
        archive_id: &str,
        column: &'static str,
    ) -> Result<Option<T>, LedgerError> {
        let read = |schema: &str| {
            self.conn
                .prepare_cached(&format!(
                    "SELECT {column} FROM {schema}.catalogs WHERE archive_id = ?1"
                ))
                .and_then(|mut stmt| stmt.query_row(params![archive_id], |r| r.get(0)).optional())
                .map_err(sqlite_error(&self.path, "cannot read a catalog"))
        };
        let recorded = read("main")?;
        if recorded.is_some() || !self.catalogs_attached {
            return Ok(recorded);
        }
        // A snapshot's catalogs, read from the file (see `Ledger::snapshot`).
        read("origin")
    }

    /// Notes archives a batching backend is about to name (see [`Archiver::sync`]), before it
    /// names them; recording an archive's row forgets its note in the same transaction.
    ///
    /// [`Archiver::sync`]: glacier_backup_archiver::Archiver::sync
    pub fn record_naming(&mut self, archive_ids: &[String]) -> Result<(), LedgerError> {
        self.in_transaction("cannot note the archives about to be named", |tx| {
            let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO naming VALUES (?1)")?;
            archive_ids
                .iter()
                .try_for_each(|id| insert.execute(params![id]).map(drop))
        })
    }

    /// Archives noted by [`Ledger::record_naming`] that no row records: a run stopped between
    /// naming them and recording them.
    pub fn unrecorded_names(&self) -> Result<Vec<String>, LedgerError> {
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

    /// Forgets every note of [`Ledger::record_naming`].
    pub fn forget_naming(&mut self) -> Result<(), LedgerError> {
        self.in_transaction("cannot forget the archives being named", |tx| {
            tx.execute("DELETE FROM naming", []).map(drop)
        })
    }

    /// Every upload, oldest first.
    pub fn uploads(&self) -> Result<Vec<UploadRecord>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM uploads WHERE {NOT_PRUNED} ORDER BY rowid");
        self.conn
            .prepare(&sql)
            .and_then(|mut stmt| stmt.query_map([], read_row)?.collect())
            .map_err(sqlite_error(&self.path, "cannot list uploads"))
    }

    /// Every upload, oldest first, handed to `each` one at a time, so memory stays flat in the
    /// ledger's size; `each` returns `false` to stop early.
    ///
    /// Reads a page of rows at a time, each page its own short read: a slow reader (`list` into
    /// a pager) never holds the ledger's read lock, which would stop a running backup from
    /// recording its uploads.
    pub fn each_upload(
        &self,
        each: &mut dyn FnMut(UploadRecord) -> bool,
    ) -> Result<(), LedgerError> {
        self.page_uploads(false, false, &mut |upload, _| each(upload))
    }

    /// Fills in the size and tree hash of rows of `archive_id` that lack them (rows the Python
    /// tool wrote), from what the destination says; returns how many rows changed.
    pub fn complete_upload(
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

    /// Reads a page of rows at a time, each page its own short read: a slow reader (`list` into
    /// a pager) never holds the ledger's read lock, which would stop a running backup from
    /// recording its uploads. With `with_moves`, each row comes with its moved mark; with
    /// `history`, rows of archives `prune` deleted come too.
    pub(super) fn page_uploads(
        &self,
        with_moves: bool,
        history: bool,
        each: &mut dyn FnMut(UploadRecord, Option<Moved>) -> bool,
    ) -> Result<(), LedgerError> {
        let (columns, rowid_column) = uploads_columns();
        let (moved_columns, join) = if with_moves {
            (
                ", moved.destination, moved.key, moved.moved_at, moved.source_deleted_at",
                " LEFT JOIN moved ON moved.archive_id = uploads.archive_id",
            )
        } else {
            ("", "")
        };
        let live = match history {
            true => String::new(),
            false => format!(" AND {NOT_PRUNED}"),
        };
        let sql = format!(
            "SELECT {columns}, uploads.rowid{moved_columns} FROM uploads{join} \
             WHERE uploads.rowid > ?1{live} ORDER BY uploads.rowid LIMIT {PAGE}"
        );
        let read = |row: &Row<'_>| -> rusqlite::Result<(i64, (UploadRecord, Option<Moved>))> {
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
            Ok((rowid, (upload, moved)))
        };
        self.in_pages(&sql, read, &mut |(upload, moved)| each(upload, moved))
    }

    /// Runs `sql`, whose `?1` is the rowid the page starts after, a page at a time: `read`
    /// gives each row's rowid and item, `each` takes the items in order (`false` stops). Each
    /// page is its own short read, so a slow `each` never holds the ledger's read lock.
    pub(super) fn in_pages<T>(
        &self,
        sql: &str,
        read: impl Fn(&Row<'_>) -> rusqlite::Result<(i64, T)>,
        each: &mut dyn FnMut(T) -> bool,
    ) -> Result<(), LedgerError> {
        let mut after = i64::MIN;
        loop {
            let page: Vec<(i64, T)> = self
                .conn
                .prepare_cached(sql)
                .and_then(|mut stmt| stmt.query_map(params![after], &read)?.collect())
                .map_err(sqlite_error(&self.path, "cannot list uploads"))?;
            let Some(&(last, _)) = page.last() else {
                return Ok(());
            };
            after = last;
            for (_, item) in page {
                if !each(item) {
                    return Ok(());
                }
            }
        }
    }
}
