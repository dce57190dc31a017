//! What `migrate` records in the source's ledger: the copy under way of each archive (its
//! upload token and the parts the destination holds, so an interrupted copy continues without
//! reading them again), and each archive moved.

use std::path::Path;

use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use super::pending::Completing;
use super::pruned::NOT_PRUNED;
use super::sql::{parse_time, read_row, rfc3339, sqlite_error, SqlPath, COLUMNS};
use super::{Ledger, LedgerError, Move, MovePart, Moved, MovedAway, UploadRecord};

impl Ledger {
    /// Every upload, oldest first (pruned ones too), with where its archive was moved if it
    /// was: what `list` shows, in one query per page of rows (the moved mark joined in, not
    /// looked up per row; not joined at all in the many ledgers that record no move).
    pub fn each_upload_with_moves(
        &self,
        each: &mut dyn FnMut(UploadRecord, Option<Moved>) -> bool,
    ) -> Result<(), LedgerError> {
        let any_moved: bool = self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM moved)", [], |row| row.get(0))
            .map_err(sqlite_error(&self.path, "cannot read the moved archives"))?;
        self.page_uploads(any_moved, true, each)
    }

    /// Every upload of `path`, oldest first.
    pub fn uploads_of(&self, path: &Path) -> Result<Vec<UploadRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM uploads WHERE path = ?1 AND {NOT_PRUNED} ORDER BY rowid"
        );
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_map(params![SqlPath(path)], read_row)?.collect())
            .map_err(sqlite_error(&self.path, "cannot look up uploads"))
    }

    /// Whether any row, pruned or not, records the archive `archive_id`.
    pub fn records_archive(&self, archive_id: &str) -> Result<bool, LedgerError> {
        self.conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM uploads WHERE archive_id = ?1)")
            .and_then(|mut stmt| stmt.query_row(params![archive_id], |row| row.get(0)))
            .map_err(sqlite_error(&self.path, "cannot look up an archive"))
    }

    /// The copy of `archive_id` an earlier run started, with its stored parts.
    pub fn move_in_progress(&self, archive_id: &str) -> Result<Option<Move>, LedgerError> {
        let read = || -> rusqlite::Result<Option<Move>> {
            let Some(mut found) = self
                .conn
                .query_row(
                    "SELECT destination, token, part_size, complete_size, complete_tree_hash \
                     FROM moves WHERE archive_id = ?1",
                    params![archive_id],
                    |row| {
                        Ok(Move {
                            archive_id: archive_id.to_owned(),
                            destination: row.get(0)?,
                            token: row.get(1)?,
                            part_size: row.get::<_, i64>(2)? as u64,
                            completing: row
                                .get::<_, Option<i64>>(3)?
                                .zip(row.get::<_, Option<String>>(4)?)
                                .and_then(|(size, hash)| Some((size as u64, hash.parse().ok()?))),
                            parts: Vec::new(),
                        })
                    },
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = self.conn.prepare_cached(
                "SELECT number, size, tree_hash, receipt FROM move_parts WHERE archive_id = ?1 \
                 ORDER BY number",
            )?;
            let rows = stmt
                .query_map(params![archive_id], |row| {
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        row.get::<_, i64>(1)? as u64,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // A hash that does not parse is a part to send again.
            found.parts = rows
                .into_iter()
                .filter_map(|(number, size, hash, receipt)| {
                    Some(MovePart {
                        number,
                        size,
                        tree_hash: hash.parse().ok()?,
                        receipt,
                    })
                })
                .collect();
            Ok(Some(found))
        };
        read().map_err(sqlite_error(&self.path, "cannot read a copy in progress"))
    }

    /// Records a copy that started (a new upload), forgetting parts of an earlier one.
    pub fn record_move_started(
        &mut self,
        archive_id: &str,
        destination: &str,
        token: &str,
        part_size: u64,
    ) -> Result<(), LedgerError> {
        self.in_transaction("cannot record a copy in progress", |tx| {
            tx.execute(
                "DELETE FROM move_parts WHERE archive_id = ?1",
                params![archive_id],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO moves (archive_id, destination, token, part_size) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![archive_id, destination, token, part_size as i64],
            )?;
            Ok(())
        })
    }

    /// Records a part the destination confirmed.
    pub fn record_move_part(
        &mut self,
        archive_id: &str,
        part: &MovePart,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO move_parts (archive_id, number, size, tree_hash, receipt) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    archive_id,
                    part.number as i64,
                    part.size as i64,
                    part.tree_hash.to_hex(),
                    part.receipt
                ],
            )
            .map(drop)
            .map_err(sqlite_error(&self.path, "cannot record a copied part"))
    }

    /// Notes that the copy is being completed as an archive of this size and tree hash.
    pub fn record_move_completing(
        &mut self,
        archive_id: &str,
        size: u64,
        tree_hash: glacier_backup_archiver::TreeHash,
    ) -> Result<(), LedgerError> {
        self.note_completing(Completing::Move, &archive_id, size, tree_hash)
    }

    /// Forgets the copy in progress of `archive_id` (given up, or started over).
    pub fn clear_move(&mut self, archive_id: &str) -> Result<(), LedgerError> {
        self.in_transaction("cannot forget a copy in progress", |tx| {
            forget_move(tx, archive_id)
        })
    }

    /// Records an archive as moved, and forgets its copy in progress, at once.
    pub fn record_moved(&mut self, moved: &Moved) -> Result<(), LedgerError> {
        self.in_transaction("cannot record a moved archive", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO moved (archive_id, destination, key, moved_at, \
                 source_deleted_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    moved.archive_id,
                    moved.destination,
                    moved.key,
                    rfc3339(moved.moved_at),
                    moved.source_deleted_at.map(rfc3339)
                ],
            )?;
            forget_move(tx, &moved.archive_id)
        })
    }

    /// Sets apart the rows whose archive `migrate --delete-source` deleted from this
    /// destination, with where each went: those are not missing, and are restored from the
    /// other destination.
    pub fn split_moved_away(&self, rows: Vec<UploadRecord>) -> Result<MovedAway, LedgerError> {
        let mut split = MovedAway::default();
        for row in rows {
            match self.moved_of(&row.archive_id)? {
                Some(moved) if moved.source_deleted_at.is_some() => split.gone.push((row, moved)),
                _ => split.here.push(row),
            }
        }
        Ok(split)
    }

    /// What was recorded of `archive_id` being moved, if it was.
    pub fn moved_of(&self, archive_id: &str) -> Result<Option<Moved>, LedgerError> {
        self.conn
            .prepare_cached(
                "SELECT destination, key, moved_at, source_deleted_at FROM moved \
                 WHERE archive_id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![archive_id], |row| {
                    Ok(Moved {
                        archive_id: archive_id.to_owned(),
                        destination: row.get(0)?,
                        key: row.get(1)?,
                        moved_at: parse_time(row.get(2)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                        source_deleted_at: parse_time(row.get(3)?),
                    })
                })
                .optional()
            })
            .map_err(sqlite_error(&self.path, "cannot read a moved archive"))
    }

    /// Every archive recorded as moved, by source archive id.
    pub fn moved(&self) -> Result<std::collections::HashMap<String, Moved>, LedgerError> {
        let read = || -> rusqlite::Result<_> {
            let mut stmt = self.conn.prepare(
                "SELECT archive_id, destination, key, moved_at, source_deleted_at FROM moved",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(Moved {
                    archive_id: row.get(0)?,
                    destination: row.get(1)?,
                    key: row.get(2)?,
                    moved_at: parse_time(row.get(3)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    source_deleted_at: parse_time(row.get(4)?),
                })
            })?;
            rows.map(|row| row.map(|moved| (moved.archive_id.clone(), moved)))
                .collect()
        };
        read().map_err(sqlite_error(&self.path, "cannot read the moved archives"))
    }
}

fn forget_move(tx: &rusqlite::Transaction<'_>, archive_id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM moves WHERE archive_id = ?1",
        params![archive_id],
    )?;
    tx.execute(
        "DELETE FROM move_parts WHERE archive_id = ?1",
        params![archive_id],
    )?;
    Ok(())
}
