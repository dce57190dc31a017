//! Moving archives from one destination to another (`migrate`, a Glacier vault into S3): each
//! archive is made readable (a retrieval recorded in the source's ledger, as restores record
//! them), read in ranged parts straight into the destination's multipart upload, checked against
//! the recorded size and tree hash before the upload is completed, and recorded in both ledgers.
//! An interrupted copy continues where it stopped: the parts the destination confirmed are kept
//! in the source's ledger (number, length, tree hash, receipt) and are not read again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use futures::StreamExt;
use glacier_backup_archiver::treehash::TreeHashBuilder;
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, Error as ArchiverError, Listing, Part, PartStream,
    RestoreOptions, Resume, SourceKind, TreeHash,
};
use time::OffsetDateTime;

use crate::error_chain;
use crate::ledger::{Ledger, LedgerError, Move, MovePart, Moved, UploadRecord};
use crate::progress::SharedProgress;
use crate::restore::retrieval::{wait_readable, Wait};
use crate::restore::RestoreFailure;
use crate::upload::{put_journaled, UploadError, UploadJournal};

/// How to move archives.
#[derive(Debug, Clone)]
pub struct MoveRequest {
    /// Retrieval tier for the source's cold archives.
    pub options: RestoreOptions,
    /// Wait for retrievals until then; `None`: ask for them and return.
    pub deadline: Option<Instant>,
    /// Delete each source archive once its copy is verified in the destination.
    pub delete_source: bool,
    /// Where progress goes.
    pub progress: Option<SharedProgress>,
}

/// What happened to one archive.
#[derive(Debug)]
pub enum MoveOutcome {
    /// Copied, verified and recorded: its key in the destination.
    Moved(String),
    /// An earlier run moved it (and, with `--delete-source`, its source copy is now deleted).
    AlreadyMoved(String),
    /// Its retrieval is under way: run again later.
    Pending,
    /// It failed, and why; the next run continues.
    Failed(MoveFailure),
}

/// Why one archive was not moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveFailure {
    /// The row lacks the size and tree hash the copy is checked against.
    #[error(
        "the ledger row has no size or tree hash to check the copy against (the Python tool \
         wrote it); run `glacier-backup inventory --rebuild-ledger` first to fill them in"
    )]
    Unverifiable,
    /// Making the archive readable failed.
    #[error(transparent)]
    Retrieval(#[from] RestoreFailure),
    /// The source or the destination failed.
    #[error("{}", error_chain(.0))]
    Archiver(#[from] ArchiverError),
    /// A ledger could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The destination's account of the copy differs from what was sent to it.
    #[error(transparent)]
    Upload(crate::upload::Mismatch),
    /// The destination's copy is not what the source holds, so the source's was kept.
    #[error(
        "the copy at {key} does not match the archive (size {size} vs {expected_size}, tree \
         hash {tree_hash} vs {expected_tree_hash}); the source's archive was not deleted. \
         Check the copy under the destination's config (`restore --archive-id {key}` checks \
         its bytes against the ledger); the source's archive stays until they agree"
    )]
    CopyMismatch {
        /// The copy's key.
        key: String,
        /// The copy's size.
        size: u64,
        /// The archive's size.
        expected_size: u64,
        /// The copy's tree hash, as the destination tells it.
        tree_hash: String,
        /// The archive's.
        expected_tree_hash: TreeHash,
    },
}

/// The uploads to move, oldest first (so the destination's history reads as the source's), each
/// archive once, limited to `paths` and what lies below them when any are given.
pub fn select(uploads: Vec<UploadRecord>, paths: &[PathBuf]) -> Vec<UploadRecord> {
    let mut seen = std::collections::HashSet::new();
    uploads
        .into_iter()
        .filter(|row| paths.is_empty() || paths.iter().any(|p| row.path.starts_with(p)))
        .filter(|row| seen.insert(row.archive_id.clone()))
        .collect()
}

/// Rows for the archives of `listing` that no ledger row records (an archive of ours whose row
/// was lost, the Python tool's, another tool's), as the destination is told of them. An archive
/// without an origin of ours is named by its description (its id when it has none), at
/// `/<name>`, and is a directory archive when its name ends in `.tar`.
pub fn unrecorded_rows(
    listing: &Listing,
    recorded: &std::collections::HashSet<String>,
    backend: &str,
) -> Vec<UploadRecord> {
    listing
        .archives
        .iter()
        .filter(|archive| !recorded.contains(&archive.archive_id))
        .map(|archive| match &archive.origin {
            Some(origin) => crate::inventory::row_of(archive, origin, backend),
            None => {
                let described = archive
                    .description
                    .as_deref()
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .unwrap_or(&archive.archive_id)
                    .to_owned();
                UploadRecord {
                    path: PathBuf::from("/").join(described.trim_start_matches('/')),
                    name: described,
                    archive_id: archive.archive_id.clone(),
                    description: archive.description.clone(),
                    backend: backend.to_owned(),
                    kind: None,
                    size: Some(archive.size),
                    tree_hash: archive.tree_hash,
                    fingerprint: None,
                    started_at: None,
                    uploaded_at: archive.created_at,
                    encoding: Default::default(),
                    plain_size: None,
                }
            }
        })
        .collect()
}

/// What the source's ledger says of the row's archive having moved, if that settles it for
/// `destination`: moved there, or moved elsewhere and deleted here (nothing is left to copy).
/// An archive moved to another destination and still here is moved again.
pub fn moved_for<'a>(
    moved: &'a HashMap<String, Moved>,
    row: &UploadRecord,
    destination: &dyn Archiver,
) -> Option<&'a Moved> {
    moved
        .get(&row.archive_id)
        .filter(|mark| mark.destination == destination.target() || mark.source_deleted_at.is_some())
}

/// The archive as the destination is told of it: the source's path, name, kind, fingerprint
/// and layers, and its original upload time (which names its key).
pub fn meta_of(row: &UploadRecord, size: u64) -> ArchiveMeta {
    ArchiveMeta {
        source_path: row.path.clone(),
        name: row.name.clone(),
        kind: kind_of(row),
        fingerprint: row.fingerprint.clone().unwrap_or_default(),
        size_hint: size,
        started_at: row
            .started_at
            .or(row.uploaded_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        encoding: row.encoding.clone(),
    }
}

/// The Python tool recorded no kind: its directory archives are named `<dir>.tar`.
fn kind_of(row: &UploadRecord) -> SourceKind {
    row.kind.unwrap_or(if row.name.ends_with(".tar") {
        SourceKind::Directory
    } else {
        SourceKind::File
    })
}

/// The archive a row records, with what its copy is checked against.
fn archive_of(row: &UploadRecord) -> Result<ArchiveRef, MoveFailure> {
    row.archive().ok_or(MoveFailure::Unverifiable)
}

/// Asks for a cold archive's retrieval (recorded in the ledger, never asked twice) without
/// waiting: a run moving many archives asks for all of them first, so they are prepared side
/// by side.
pub async fn prepare(
    source: &dyn Archiver,
    ledger: &mut Ledger,
    row: &UploadRecord,
    options: &RestoreOptions,
) -> Result<(), MoveFailure> {
    if source.capabilities().needs_restore {
        let archive = archive_of(row)?;
        crate::restore::retrieval::ask(source, ledger, &archive, options).await?;
    }
    Ok(())
}

/// Moves one upload's archive from `source` to `destination`. `moved` is what the source's
/// ledger says of it already.
pub async fn move_one(
    source: &Arc<dyn Archiver>,
    destination: &dyn Archiver,
    source_ledger: &mut Ledger,
    destination_ledger: &mut Ledger,
    row: &UploadRecord,
    request: &MoveRequest,
    moved: Option<&Moved>,
) -> MoveOutcome {
    let result = async {
        let archive = archive_of(row)?;
        if let Some(moved) = moved {
            if request.delete_source && moved.source_deleted_at.is_none() {
                delete_source(&**source, destination, source_ledger, &archive, moved).await?;
            }
            return Ok(MoveOutcome::AlreadyMoved(moved.key.clone()));
        }
        let wait = Wait {
            options: &request.options,
            deadline: request.deadline,
            progress: crate::progress::or_none(&request.progress),
        };
        if !wait_readable(&**source, source_ledger, &archive, &wait, None).await? {
            return Ok(MoveOutcome::Pending);
        }
        let stored = copy(source, destination, source_ledger, &archive, row, request).await?;
        record_copy(destination_ledger, destination, row, &stored)?;
        let moved = Moved {
            archive_id: archive.archive_id.clone(),
            destination: destination.target(),
            key: stored.archive_id.clone(),
            moved_at: OffsetDateTime::now_utc(),
            source_deleted_at: None,
        };
        source_ledger.record_moved(&moved)?;
        source_ledger.clear_retrieval(Some(&archive.archive_id))?;
        if request.delete_source {
            delete_source(&**source, destination, source_ledger, &archive, &moved).await?;
        }
        Ok(MoveOutcome::Moved(stored.archive_id))
    }
    .await;
    result.unwrap_or_else(MoveOutcome::Failed)
}

/// The destination's row: the source's, but for where the archive now is. Written once: a run
/// stopped between this and marking the source's row finds it here and does not add another.
fn record_copy(
    ledger: &mut Ledger,
    destination: &dyn Archiver,
    row: &UploadRecord,
    stored: &ArchiveRef,
) -> Result<(), LedgerError> {
    let known = ledger.uploads_of(&row.path)?;
    if known.iter().any(|r| r.archive_id == stored.archive_id) {
        return Ok(());
    }
    ledger.record_upload(&UploadRecord {
        archive_id: stored.archive_id.clone(),
        description: stored.description.clone(),
        backend: destination.name().to_owned(),
        kind: Some(kind_of(row)),
        size: Some(stored.size),
        tree_hash: Some(stored.tree_hash),
        ..row.clone()
    })
}

/// Deletes the source's archive once the destination's copy is checked: its size by the
/// destination's own account (S3: HEAD) and its tree hash by what the destination keeps of it
/// (S3: the object's tag). Anything missing or different keeps the source's archive.
async fn delete_source(
    source: &dyn Archiver,
    destination: &dyn Archiver,
    source_ledger: &mut Ledger,
    archive: &ArchiveRef,
    moved: &Moved,
) -> Result<(), MoveFailure> {
    let copy = destination.describe(&moved.key).await?;
    if copy.size != archive.size || copy.tree_hash != Some(archive.tree_hash) {
        return Err(MoveFailure::CopyMismatch {
            key: moved.key.clone(),
            size: copy.size,
            expected_size: archive.size,
            tree_hash: copy
                .tree_hash
                .map_or_else(|| "unknown".to_owned(), |h| h.to_hex()),
            expected_tree_hash: archive.tree_hash,
        });
    }
    match source.delete(archive).await {
        Ok(()) | Err(ArchiverError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        "{}: deleted from {} (its copy is {})",
        archive.archive_id,
        source.name(),
        moved.key
    );
    source_ledger.record_moved(&Moved {
        source_deleted_at: Some(OffsetDateTime::now_utc()),
        ..moved.clone()
    })?;
    Ok(())
}

/// Copies the archive, continuing a copy an earlier run started. Parts recorded as stored that
/// the destination no longer holds are read again, in a fresh upload.
async fn copy(
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
    let state = (parts, TreeHashBuilder::new(), 0u64, false);
    futures::stream::unfold(state, move |(mut parts, mut tree, mut size, done)| {
        let archive = archive.clone();
        async move {
            if done {
                return None;
            }
            match parts.next().await {
                Some(Ok(part)) => {
                    size += part.len();
                    if let Err(e) = tree.push_part(part.len(), part.tree_hash) {
                        return Some((
                            Err(ArchiverError::Source(e.into())),
                            (parts, tree, size, true),
                        ));
                    }
                    Some((Ok(part), (parts, tree, size, false)))
                }
                Some(Err(e)) => Some((Err(e), (parts, tree, size, true))),
                None => {
                    let tree_hash = tree.finish();
                    if size == archive.size && tree_hash == archive.tree_hash {
                        return None;
                    }
                    let mismatch = ArchiverError::Integrity {
                        backend: "migrate",
                        archive_id: format!("{} ({size} bytes read)", archive.archive_id),
                        expected: archive.tree_hash.to_hex(),
                        actual: tree_hash.to_hex(),
                    };
                    Some((Err(mismatch), (parts, tree, size, true)))
                }
            }
        }
    })
    .boxed()
}
