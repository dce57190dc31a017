//! Retrievals asked of a cold destination (never asked twice), and its latest inventory.

use glacier_backup_archiver::{ListedArchive, Listing};
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use super::sql::{parse_time, rfc3339, sqlite_error};
use super::{Ledger, LedgerError, Retrieval};

impl Ledger {
    /// The retrieval recorded for an archive (`None`: for the inventory).
    pub fn retrieval(&self, archive_id: Option<&str>) -> Result<Option<Retrieval>, LedgerError> {
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

    /// Retrievals asked for and not yet cleared: how many of archives (or their ranges), and
    /// whether one is the inventory's.
    pub fn retrievals_pending(&self) -> Result<(u64, bool), LedgerError> {
        self.conn
            .query_row(
                "SELECT count(*) FILTER (WHERE archive_id != ''), \
                 count(*) FILTER (WHERE archive_id = '') FROM retrievals",
                [],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? > 0)),
            )
            .map_err(sqlite_error(&self.path, "cannot count the retrievals"))
    }

    /// Records a retrieval, replacing an earlier one of the same archive.
    pub fn record_retrieval(&mut self, retrieval: &Retrieval) -> Result<(), LedgerError> {
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

    /// Forgets the retrieval of an archive (`None`: of the inventory).
    pub fn clear_retrieval(&mut self, archive_id: Option<&str>) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "DELETE FROM retrievals WHERE archive_id = ?1",
                params![archive_id.unwrap_or_default()],
            )
            .map(|_| ())
            .map_err(sqlite_error(&self.path, "cannot forget a retrieval"))
    }

    /// Keeps `listing` as the destination's latest inventory (ids, sizes, tree hashes, times),
    /// for checks that cannot ask the backend at once.
    pub fn record_inventory(&mut self, listing: &Listing) -> Result<(), LedgerError> {
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
                "INSERT OR REPLACE INTO inventory_archives
                 (archive_id, size, tree_hash, created_at, index_of) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            // Indexes too, marked with their archive: `verify --remote` looks for them.
            for archive in listing.archives.iter().chain(&listing.indexes) {
                insert.execute(params![
                    archive.archive_id,
                    archive.size as i64,
                    archive.tree_hash.map(|h| h.to_hex()),
                    archive.created_at.map(rfc3339),
                    archive.index_of
                ])?;
            }
            Ok(())
        };
        write()
            .and_then(|()| tx.commit())
            .map_err(sqlite_error(&path, "cannot record the inventory"))
    }

    /// The inventory kept by [`Ledger::record_inventory`], if any.
    pub fn last_inventory(&self) -> Result<Option<Listing>, LedgerError> {
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
                "SELECT archive_id, size, tree_hash, created_at, index_of FROM inventory_archives
                 ORDER BY archive_id",
            )?;
            let archives = stmt
                .query_map([], |row| {
                    Ok(ListedArchive {
                        tree_hash: row
                            .get::<_, Option<String>>(2)?
                            .and_then(|h| h.parse().ok()),
                        created_at: parse_time(row.get(3)?),
                        index_of: row.get(4)?,
                        ..ListedArchive::new(row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let listing = Listing {
                archives,
                taken_at: parse_time(taken_at),
                incomplete: Vec::new(),
                indexes: Vec::new(),
            };
            Ok(Some(listing.split_indexes()))
        };
        read().map_err(sqlite_error(&self.path, "cannot read the inventory"))
    }
}
