//! Multipart uploads started and not finished, by source path: the upload token, the parts
//! the backend confirmed, and what it was being completed as, so the next run resumes it.

use std::path::Path;

use glacier_backup_archiver::Encoding;
use rusqlite::{params, OptionalExtension};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::sql::{rfc3339, sqlite_error, SqlPath};
use super::{Ledger, LedgerError, PendingUpload};

impl Ledger {
    /// How many uploads were interrupted and wait to be continued.
    pub fn pending_uploads_count(&self) -> Result<u64, LedgerError> {
        self.conn
            .query_row("SELECT count(*) FROM pending_uploads", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sqlite_error(
                &self.path,
                "cannot count the interrupted uploads",
            ))
    }

    /// The unfinished upload of `path`, if one was recorded.
    pub fn pending_upload(&self, path: &Path) -> Result<Option<PendingUpload>, LedgerError> {
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

    /// Records an upload that has started, replacing any earlier one of the same path.
    pub fn record_pending(&mut self, pending: &PendingUpload) -> Result<(), LedgerError> {
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

    /// Forgets the pending upload of `path`, and its parts.
    pub fn clear_pending(&mut self, path: &Path) -> Result<(), LedgerError> {
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

    /// Notes that the pending upload of `path` is being completed as an archive of this size
    /// and tree hash, so a run stopped before the answer can ask to complete it again.
    pub fn record_completing(
        &mut self,
        path: &Path,
        size: u64,
        tree_hash: glacier_backup_archiver::TreeHash,
    ) -> Result<(), LedgerError> {
        self.note_completing(Completing::Upload, &SqlPath(path), size, tree_hash)
    }

    /// Records a part of the pending upload of `path` as stored, with the backend's receipt.
    pub fn record_part(
        &mut self,
        path: &Path,
        number: u64,
        receipt: &str,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO pending_parts (path, number, receipt) VALUES (?1, ?2, ?3)",
                params![SqlPath(path), number as i64, receipt],
            )
            .map(|_| ())
            .map_err(sqlite_error(&self.path, "cannot record a stored part"))
    }

    /// The parts recorded for the pending upload of `path`.
    pub fn pending_parts(&self, path: &Path) -> Result<Vec<(u64, String)>, LedgerError> {
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
}

/// The two kinds of upload in progress, each kept in its own table: a backup's (by source
/// path) and a copy's (by the archive copied).
pub(super) enum Completing {
    Upload,
    Move,
}

impl Ledger {
    /// Notes that the upload in progress keyed by `key` is being completed as an archive of
    /// this size and tree hash, so a run stopped before the answer can complete it again.
    pub(super) fn note_completing(
        &mut self,
        kind: Completing,
        key: &dyn rusqlite::ToSql,
        size: u64,
        tree_hash: glacier_backup_archiver::TreeHash,
    ) -> Result<(), LedgerError> {
        let (sql, context) = match kind {
            Completing::Upload => (
                "UPDATE pending_uploads SET complete_size = ?2, complete_tree_hash = ?3 \
                 WHERE path = ?1",
                "cannot record a completing upload",
            ),
            Completing::Move => (
                "UPDATE moves SET complete_size = ?2, complete_tree_hash = ?3 \
                 WHERE archive_id = ?1",
                "cannot record a completing copy",
            ),
        };
        self.conn
            .execute(sql, params![key, size as i64, tree_hash.to_hex()])
            .map(drop)
            .map_err(sqlite_error(&self.path, context))
    }
}
