//! The copy itself: ranged reads from the source straight into the destination's upload,
//! continuing the parts an earlier run stored, checked against the row before completion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures::StreamExt;
use glacier_backup_archiver::parts::check_at_end;
use glacier_backup_archiver::treehash::TreeHashBuilder;
use glacier_backup_archiver::{
    ArchiveRef, Archiver, Error as ArchiverError, Part, PartStream, Resume, TreeHash,
};

use crate::ledger::{Ledger, LedgerError, Move, MovePart, UploadRecord};
use crate::progress::SharedProgress;
use crate::upload::{put_journaled, UploadError, UploadJournal};

use super::{meta_of, MoveFailure, MoveRequest};

/// Copies the archive, continuing a copy an earlier run started. Parts recorded as stored that
/// the destination no longer holds are read again, in a fresh upload.
pub(super) async fn copy(
    source: &Arc<dyn Archiver>,
    destination: &dyn Archiver,
    ledger: &mut Ledger,
    archive: &ArchiveRef,
    row: &UploadRecord,
    request: &MoveRequest,
) -> Result<ArchiveRef, MoveFailure> {
    let id = archive.archive_id.as_str();
    let part_size = destination.part_size(archive.size);
    let target = destination.target();
    let earlier = match ledger.move_in_progress(id)? {
        Some(earlier) if earlier.destination == target && earlier.part_size == part_size => {
            Some(earlier)
        }
        Some(earlier) => {
            tracing::info!(
                "{id}: the copy an earlier run started ({}, parts of {}) is given up: the \
                 destination or its part size changed",
                earlier.destination,
                crate::display_size(earlier.part_size)
            );
            if earlier.destination == target {
                let _ = destination.abort_upload(&earlier.token).await;
            }
            ledger.clear_move(id)?;
            None
        }
        None => None,
    };
    let attempt = || Copy {
        source: source.clone(),
        archive: archive.clone(),
        part_size,
        target: target.clone(),
        progress: crate::progress::or_none(&request.progress),
        label: crate::shown(&row.path),
    };
    let first = attempt()
        .run(destination, ledger, row, earlier.clone())
        .await;
    let result = match first {
        Err(MoveFailure::Archiver(ArchiverError::PartNotHeld { number, .. })) => {
            tracing::warn!(
                "{id}: part {number}, recorded as copied, is no longer in the destination's \
                 upload; reading the whole archive again"
            );
            // The upload the attempt went on with (the earlier one, or a new one when that was
            // gone) is kept; only the parts recorded for it are not trusted any more: each
            // part is read again, and those the destination holds are still not sent again.
            let current = ledger.move_in_progress(id)?;
            if let (Some(earlier), Some(current)) = (&earlier, &current) {
                if earlier.token != current.token {
                    let _ = destination.abort_upload(&earlier.token).await;
                }
            }
            let fresh = match current {
                Some(current) => {
                    ledger.record_move_started(id, &target, &current.token, part_size)?;
                    ledger.move_in_progress(id)?
                }
                None => None,
            };
            attempt().run(destination, ledger, row, fresh).await
        }
        other => other,
    };
    if let Err(MoveFailure::Archiver(ArchiverError::Integrity { .. })) = &result {
        // The bytes read are not the archive's: nothing of this upload is worth keeping.
        if let Some(started) = ledger.move_in_progress(id)? {
            let _ = destination.abort_upload(&started.token).await;
        }
        ledger.clear_move(id)?;
    }
    result
}

/// A copy's upload journaled in the source's ledger by the archive copied (`moves`,
/// `move_parts`), each part with the length and tree hash read, so a rerun neither reads nor
/// sends it again.
struct CopyJournal<'a> {
    ledger: &'a mut Ledger,
    archive_id: &'a str,
    target: &'a str,
    part_size: u64,
    read: Arc<Mutex<HashMap<u64, (u64, TreeHash)>>>,
}

impl UploadJournal for CopyJournal<'_> {
    fn started(&mut self, token: &str) -> Result<(), LedgerError> {
        self.ledger
            .record_move_started(self.archive_id, self.target, token, self.part_size)
    }

    fn part_stored(&mut self, number: u64, receipt: &str) -> Result<(), LedgerError> {
        let Some((size, tree_hash)) = self
            .read
            .lock()
            .expect("parts lock")
            .get(&(number - 1))
            .copied()
        else {
            return Ok(());
        };
        let part = MovePart {
            number,
            size,
            tree_hash,
            receipt: receipt.to_owned(),
        };
        self.ledger.record_move_part(self.archive_id, &part)
    }

    fn completing(&mut self, size: u64, tree_hash: TreeHash) -> Result<(), LedgerError> {
        self.ledger
            .record_move_completing(self.archive_id, size, tree_hash)
    }
}

/// One attempt at copying an archive.
struct Copy {
    source: Arc<dyn Archiver>,
    archive: ArchiveRef,
    part_size: u64,
    target: String,
    progress: SharedProgress,
    /// What the progress display calls it: the source path.
    label: String,
}

impl Copy {
    async fn run(
        self,
        destination: &dyn Archiver,
        ledger: &mut Ledger,
        row: &UploadRecord,
        earlier: Option<Move>,
    ) -> Result<ArchiveRef, MoveFailure> {
        let id = self.archive.archive_id.clone();
        let held: HashMap<u64, (u64, TreeHash)> = earlier
            .iter()
            .flat_map(|m| &m.parts)
            .map(|p| (p.number, (p.size, p.tree_hash)))
            .collect();
        if !held.is_empty() {
            tracing::info!(
                "{id}: continuing the copy an earlier run started; {} part(s) are already in \
                 the destination and are not read again",
                held.len()
            );
        }
        let resume = earlier.as_ref().map(|m| Resume {
            token: m.token.clone(),
            receipts: m
                .parts
                .iter()
                .map(|p| (p.number, p.receipt.clone()))
                .collect(),
            completing: m.completing,
        });
        // The length and tree hash of every part read in this attempt, for its receipt.
        let read: Arc<Mutex<HashMap<u64, (u64, TreeHash)>>> = Arc::default();
        let parts = self.parts(held, read.clone());
        let meta = meta_of(row, self.archive.size);
        let mut journal = CopyJournal {
            ledger,
            archive_id: &id,
            target: &self.target,
            part_size: self.part_size,
            read,
        };
        let stored = put_journaled(destination, &meta, resume, parts, Some(&mut journal))
            .await
            .map_err(|e| match e {
                UploadError::Archiver(e) => MoveFailure::Archiver(e),
                UploadError::Journal(e) => MoveFailure::Ledger(e),
                UploadError::Mismatch(mismatch) => MoveFailure::Upload(mismatch),
            })?;
        if stored.size != self.archive.size || stored.tree_hash != self.archive.tree_hash {
            return Err(MoveFailure::CopyMismatch {
                key: stored.archive_id,
                size: stored.size,
                expected_size: self.archive.size,
                tree_hash: stored.tree_hash.to_hex(),
                expected_tree_hash: self.archive.tree_hash,
            });
        }
        Ok(stored)
    }

    /// The archive as parts of the destination's size, read from the source a part per ranged
    /// request (two ahead of the upload), or held when an earlier run stored them. After the
    /// last part, the size and tree hash of everything are compared with the archive's: a
    /// mismatch ends the stream with an error, so the upload is never completed.
    fn parts(
        &self,
        held: HashMap<u64, (u64, TreeHash)>,
        read: Arc<Mutex<HashMap<u64, (u64, TreeHash)>>>,
    ) -> PartStream {
        let size = self.archive.size;
        let part_size = self.part_size.max(1);
        let count = size.div_ceil(part_size).max(1);
        let item = Arc::new(self.progress.item(&self.label, size));
        let (source, archive) = (self.source.clone(), self.archive.clone());
        let fetched = futures::stream::iter(0..count)
            .map(move |index| {
                let offset = index * part_size;
                let len = part_size.min(size - offset);
                let held = held.get(&(index + 1)).filter(|(l, _)| *l == len).copied();
                let (source, archive, read, item) =
                    (source.clone(), archive.clone(), read.clone(), item.clone());
                async move {
                    let part = match held {
                        Some((len, tree_hash)) => Part::held(index, offset, len, tree_hash),
                        None => {
                            let part = read_part(&*source, &archive, index, offset, len).await?;
                            read.lock()
                                .expect("parts lock")
                                .insert(index, (len, part.tree_hash));
                            part
                        }
                    };
                    item.advance(len);
                    Ok(part)
                }
            })
            .buffered(2)
            .boxed();
        checked(fetched, self.archive.clone())
    }
}

/// One part read from the source with a ranged request, and tree-hashed.
async fn read_part(
    source: &dyn Archiver,
    archive: &ArchiveRef,
    index: u64,
    offset: u64,
    len: u64,
) -> Result<Part, ArchiverError> {
    let range = (archive.size > 0).then_some(offset..offset + len);
    let mut body = source.get(archive, range).await?;
    let mut data = BytesMut::with_capacity(len as usize);
    while let Some(chunk) = body.next().await {
        data.extend_from_slice(&chunk?);
    }
    if data.len() as u64 != len {
        return Err(ArchiverError::Remote {
            backend: source.name(),
            message: format!(
                "reading {} at {offset}: got {} bytes, expected {len}",
                archive.archive_id,
                data.len()
            ),
            temporary: true,
            source: None,
        });
    }
    let data = data.freeze();
    tokio::task::spawn_blocking(move || Part::hashed(index, offset, data))
        .await
        .map_err(|e| ArchiverError::Source(e.into()))
}

/// Passes the parts through, and after the last one fails unless together they have the
/// archive's size and tree hash.
fn checked(parts: PartStream, archive: ArchiveRef) -> PartStream {
    let observe = |(tree, size): &mut (TreeHashBuilder, u64), part: &Part| {
        *size += part.len();
        tree.push_part(part.len(), part.tree_hash)
            .map_err(|e| ArchiverError::Source(e.into()))
    };
    check_at_end(
        parts,
        (TreeHashBuilder::new(), 0u64),
        observe,
        move |(tree, size)| {
            let tree_hash = tree.finish();
            (size != archive.size || tree_hash != archive.tree_hash).then(|| {
                ArchiverError::Integrity {
                    backend: "migrate",
                    archive_id: format!("{} ({size} bytes read)", archive.archive_id),
                    expected: archive.tree_hash.to_hex(),
                    actual: tree_hash.to_hex(),
                }
            })
        },
    )
}
