//! Restores: pick uploads from the ledger, make cold archives readable (recording each request
//! in the ledger, so a later run checks on it instead of asking again), download them in ranged
//! chunks that survive an interruption, check the tree hash, and put them back (files renamed
//! into place, directories extracted safely).

use std::path::{Path, PathBuf};
use std::time::Instant;

use glacier_backup_archiver::{ArchiveRef, Archiver, RestoreOptions, RestoreState, SourceKind};
use time::OffsetDateTime;

use crate::shown;

use crate::ledger::{Ledger, LedgerError, Retrieval, UploadRecord};

/// Bytes asked for per ranged request: small enough that an interruption loses little, large
/// enough that requests stay few. A multiple of 1 MiB, so Glacier returns a tree hash for it.
pub const DOWNLOAD_CHUNK: u64 = 64 << 20;

/// Where restored archives go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Under this directory: `DIR/<file name>`, `DIR/<dir name>/...`.
    Into(PathBuf),
    /// Back where they were backed up from.
    InPlace,
}

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Source paths: each path's latest upload, and the latest upload of everything below it.
    pub paths: Vec<PathBuf>,
    /// Archive ids or keys, restored whatever their path.
    pub archive_ids: Vec<String>,
    /// Where the restored files go.
    pub destination: Destination,
    /// Restore the uploads current at this time instead of the latest.
    pub at: Option<OffsetDateTime>,
    /// Replace existing files even when they are newer than the restored ones.
    pub force: bool,
    /// Make device files found in directory archives (root only); otherwise they are skipped
    /// with a warning.
    pub devices: bool,
    /// Retrieval tier and how long restored copies stay readable.
    pub options: RestoreOptions,
    /// Poll until cold archives are readable (instead of returning after requesting), until
    /// this moment at the latest.
    pub deadline: Option<Instant>,
    /// Bytes per ranged request ([`DOWNLOAD_CHUNK`]; a multiple of 1 MiB).
    pub chunk_size: u64,
    /// Where download progress goes (nowhere when `None`).
    pub progress: Option<crate::progress::SharedProgress>,
    /// The identities that open encrypted archives (`--identity`, `[encryption]
    /// identity_file`).
    pub identities: Option<std::sync::Arc<crate::codec::Identities>>,
    /// Restore encrypted archives of rebuilt rows that carry no authentication stanza (made
    /// before `authentication_key_file` was set, or by someone else).
    pub trust_destination: bool,
    /// Restore only the entries of directory uploads that match this glob (`--include`),
    /// fetching only the spans that hold them.
    pub include: Option<crate::catalog::Pattern>,
}

impl RestoreRequest {
    /// A request that restores nothing yet into `destination`: name `paths` or `archive_ids`.
    /// The rest is the binary's default: the latest uploads, existing newer files kept, the
    /// standard tier, no waiting for retrievals, 64 MiB ranged requests, no progress, no
    /// identities.
    pub fn new(destination: Destination) -> Self {
        RestoreRequest {
            paths: Vec::new(),
            archive_ids: Vec::new(),
            destination,
            at: None,
            force: false,
            devices: false,
            options: RestoreOptions::default(),
            deadline: None,
            chunk_size: DOWNLOAD_CHUNK,
            progress: None,
            identities: None,
            trust_destination: false,
            include: None,
        }
    }
}

/// A restore that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Nothing in the ledger matches.
    #[error("nothing to restore: no upload in the ledger matches {0}")]
    NothingMatches(String),
    /// The upload current at the time asked for was deleted by `prune`.
    #[error("{0}")]
    Pruned(crate::prune::PrunedUpload),
    /// The archive asked for was deleted by `prune`.
    #[error("archive {archive_id} was pruned; `list` shows the uploads kept")]
    PrunedArchive {
        /// The archive.
        archive_id: String,
    },
}

/// What happened to one archive.
#[derive(Debug)]
pub enum Outcome {
    /// Restored to this path; `rejected` archive entries were refused as unsafe, `kept`
    /// existing entries were left alone because they are newer.
    Restored {
        /// Where it went.
        path: PathBuf,
        /// Unsafe entries that were skipped.
        rejected: usize,
        /// Existing newer entries left in place.
        kept: usize,
        /// The entries restored, when only part of a directory upload was asked for.
        partial: Option<usize>,
    },
    /// A retrieval is under way; run again later.
    Pending,
    /// It failed, and why.
    Failed(RestoreFailure),
}

mod decode;
mod download;
pub mod extract;
mod failure;
pub mod partial;
mod place;
pub(crate) mod retrieval;
mod run;
mod select;

use download::{download, Checked};
pub use failure::RestoreFailure;
pub use place::is_root;
use place::{final_name, place};
use retrieval::{ask, readable};
pub use run::{expected_wait, restore_all, whole, RestoreReport};
pub use select::{parse_time, select};

fn archive_ref(row: &UploadRecord) -> Result<ArchiveRef, RestoreFailure> {
    row.archive().ok_or(RestoreFailure::Unverifiable)
}

/// Where one upload goes: the archive to read, the directory it is restored into, and the
/// path it ends up at there.
struct Placement {
    archive: ArchiveRef,
    dir: PathBuf,
    target: PathBuf,
}

impl Placement {
    fn of(row: &UploadRecord, destination: &Destination) -> Result<Self, RestoreFailure> {
        let archive = archive_ref(row)?;
        let dir = match destination {
            Destination::Into(dir) => dir.clone(),
            Destination::InPlace => row
                .path
                .parent()
                .map(Path::to_path_buf)
                .ok_or(RestoreFailure::NoParent)?,
        };
        let target = dir.join(final_name(row));
        Ok(Placement {
            archive,
            dir,
            target,
        })
    }
}

/// Restores one upload. `known` is the archive's state from [`request_retrieval`] earlier in
/// this run, carried forward so nothing is asked twice; without it, a retrieval is requested
/// first when the archive is cold.
pub async fn restore_one(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    row: &UploadRecord,
    request: &RestoreRequest,
    known: Option<RestoreState>,
) -> Outcome {
    let Placement {
        archive,
        dir,
        target,
    } = match Placement::of(row, &request.destination)
        .and_then(|placement| decode::check_identity(row, request).map(|()| placement))
    {
        Ok(placement) => placement,
        Err(message) => return Outcome::Failed(message),
    };
    if let Some(plan) = partial::plan_row(ledger, row, request) {
        let restored = match plan {
            Ok(plan) => partial::restore(archiver, ledger, row, plan, request, known).await,
            Err(failure) => Err(failure),
        };
        return restored.unwrap_or_else(Outcome::Failed);
    }
    if let Some(newer) = kept_file(row, &target, request) {
        tracing::warn!("{newer}; --force replaces it");
        return Outcome::Restored {
            path: target,
            rejected: 0,
            kept: 1,
            partial: None,
        };
    }
    match readable(archiver, ledger, &archive, request, known).await {
        Ok(true) => {}
        Ok(false) => return Outcome::Pending,
        Err(message) => return Outcome::Failed(message),
    }
    let result = async {
        std::fs::create_dir_all(&dir).map_err(RestoreFailure::io("create", &dir))?;
        let progress = crate::progress::or_none(&request.progress);
        let item = progress.item(&shown(&row.path), archive.size);
        // A plain file's download becomes the restored file; any other is read once, and
        // one the destination keeps as a file here is read where it is.
        let becomes_the_file = row.kind != Some(SourceKind::Directory) && row.encoding.is_plain();
        let stored = (!becomes_the_file)
            .then(|| archiver.open_stored(&archive))
            .flatten();
        let downloaded = match stored {
            Some(file) => download::check_stored(file?, &archive, &*item).await?,
            None => Checked::Partial(
                download(
                    archiver,
                    &archive,
                    &dir,
                    request.chunk_size,
                    &*item,
                    becomes_the_file,
                )
                .await?,
            ),
        };
        place(row, downloaded, &dir, &target, request).await
    }
    .await;
    match result {
        Ok(outcome) => match ledger.clear_retrieval(Some(&archive.archive_id)) {
            Ok(()) => outcome,
            Err(e) => Outcome::Failed(e.into()),
        },
        Err(message) => Outcome::Failed(message),
    }
}

/// Why a file upload will not be restored over what is at `target`: that was changed after
/// the upload (and `--force` was not given). Directory archives decide entry by entry.
fn kept_file(row: &UploadRecord, target: &Path, request: &RestoreRequest) -> Option<String> {
    if row.kind == Some(SourceKind::Directory) || request.force {
        return None;
    }
    let meta = std::fs::symlink_metadata(target).ok()?;
    let modified = OffsetDateTime::from(meta.modified().ok()?);
    let keep = match row.stored_at() {
        Some(stored) => modified >= stored,
        None => true,
    };
    keep.then(|| {
        format!(
            "{} was modified at {}, after this upload: kept",
            shown(target),
            crate::display_time(modified)
        )
    })
}

/// Asks for the retrieval of one upload's archive when it is cold, without waiting: a caller
/// restoring many archives asks for all of them first, so they are prepared side by side.
/// Returns the archive's state, to hand to [`restore_one`] (`NotRequested` when nothing was
/// asked because the file will be kept).
pub async fn request_retrieval(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    row: &UploadRecord,
    request: &RestoreRequest,
) -> Result<RestoreState, RestoreFailure> {
    let placement = Placement::of(row, &request.destination)?;
    // Nothing is retrieved (and paid for) that the identity given cannot open.
    decode::check_identity(row, request)?;
    if let Some(plan) = partial::plan_row(ledger, row, request) {
        return partial::request(archiver, ledger, &plan?, request).await;
    }
    if !archiver.capabilities().needs_restore {
        return Ok(RestoreState::Ready);
    }
    // No retrieval (and its cost) for a file that will be kept anyway.
    if kept_file(row, &placement.target, request).is_some() {
        return Ok(RestoreState::NotRequested);
    }
    ask(archiver, ledger, &placement.archive, &request.options).await
}

#[cfg(test)]
mod tests {
    use super::download::partial_path;
    use super::*;
    use crate::ledger::Ledger;
    use futures::StreamExt;
    use glacier_backup_archiver::conformance::{meta, sample};
    use glacier_backup_archiver::parts::parts_from_bytes;
    use glacier_backup_archiver::{
        ByteRange, ByteStream, Capabilities, Listing, MemoryArchiver, PartStream, PutOptions,
    };
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A memory archiver whose reads break once after `fail_after` bytes, which counts the
    /// bytes it serves, and which, when `cold`, makes archives wait for a retrieval (counted)
    /// that never finishes.
    #[derive(Debug)]
    struct Staged {
        inner: MemoryArchiver,
        fail_after: AtomicU64,
        served: AtomicU64,
        cold: bool,
        requests: AtomicU64,
        /// restore_state calls.
        states: AtomicU64,
    }

    impl Staged {
        fn new(cold: bool) -> Self {
            Staged {
                inner: MemoryArchiver::new(),
                fail_after: AtomicU64::new(u64::MAX),
                served: AtomicU64::new(0),
                cold,
                requests: AtomicU64::new(0),
                states: AtomicU64::new(0),
            }
        }
    }

    #[async_trait::async_trait]
    impl Archiver for Staged {
        fn name(&self) -> &'static str {
            "staged"
        }
        fn target(&self) -> String {
            "staged".into()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                needs_restore: self.cold,
                ..self.inner.capabilities()
            }
        }
        async fn check(&self) -> glacier_backup_archiver::Result<()> {
            Ok(())
        }
        async fn put(
            &self,
            meta: &glacier_backup_archiver::ArchiveMeta,
            options: &PutOptions,
            parts: PartStream,
        ) -> glacier_backup_archiver::Result<ArchiveRef> {
            self.inner.put(meta, options, parts).await
        }
        async fn request_restore(
            &self,
            _archive: &ArchiveRef,
            _options: &RestoreOptions,
        ) -> glacier_backup_archiver::Result<RestoreState> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            Ok(RestoreState::InProgress { request_id: None })
        }
        async fn restore_state(
            &self,
            archive: &ArchiveRef,
            request: Option<&str>,
        ) -> glacier_backup_archiver::Result<RestoreState> {
            self.states.fetch_add(1, Ordering::SeqCst);
            if !self.cold {
                return self.inner.restore_state(archive, request).await;
            }
            Ok(match self.requests.load(Ordering::SeqCst) {
                0 => RestoreState::NotRequested,
                _ => RestoreState::InProgress { request_id: None },
            })
        }
        async fn get(
            &self,
            archive: &ArchiveRef,
            range: Option<ByteRange>,
        ) -> glacier_backup_archiver::Result<ByteStream> {
            let len = range.as_ref().map_or(archive.size, |r| r.end - r.start);
            let budget = self.fail_after.load(Ordering::SeqCst);
            if budget < len {
                self.fail_after.store(u64::MAX, Ordering::SeqCst);
                let data: Vec<u8> = self
                    .inner
                    .get(archive, range)
                    .await?
                    .next()
                    .await
                    .unwrap()?
                    .to_vec();
                self.served.fetch_add(budget, Ordering::SeqCst);
                let first = bytes::Bytes::copy_from_slice(&data[..budget as usize]);
                return Ok(futures::stream::iter([
                    Ok(first),
                    Err(glacier_backup_archiver::Error::Remote {
                        backend: "staged",
                        message: "connection reset".into(),
                        temporary: true,
                        source: None,
                    }),
                ])
                .boxed());
            }
            self.fail_after.fetch_sub(len.min(budget), Ordering::SeqCst);
            self.served.fetch_add(len, Ordering::SeqCst);
            self.inner.get(archive, range).await
        }
        async fn list(&self) -> glacier_backup_archiver::Result<Listing> {
            self.inner.list().await
        }
    }

    #[tokio::test]
    async fn the_state_asked_for_in_the_request_step_is_carried_into_the_restore() {
        let archiver = Staged::new(true);
        let data = sample(3000, 4);
        let row = stored(&archiver, &data).await;
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::in_memory().unwrap();
        let request = request(dir.path());
        let state = request_retrieval(&archiver, &mut ledger, &row, &request)
            .await
            .unwrap();
        let outcome = restore_one(&archiver, &mut ledger, &row, &request, Some(state)).await;
        assert!(matches!(outcome, Outcome::Pending), "{outcome:?}");
        assert_eq!(
            archiver.states.load(Ordering::SeqCst),
            1,
            "state asked once"
        );
        assert_eq!(
            archiver.requests.load(Ordering::SeqCst),
            1,
            "retrieval asked once"
        );
    }

    #[tokio::test]
    async fn no_retrieval_is_asked_for_a_file_that_will_be_kept() {
        let dir = tempfile::tempdir().unwrap();
        let archiver = Staged::new(true);
        let stored = stored(&archiver, &sample(1000, 1)).await;
        // Uploaded an hour ago, edited since.
        let an_hour_before = stored.started_at.map(|t| t - time::Duration::hours(1));
        let row = UploadRecord {
            started_at: an_hour_before,
            uploaded_at: an_hour_before,
            ..stored
        };
        std::fs::write(dir.path().join("disk.img"), b"edited since").unwrap();
        let mut ledger = Ledger::in_memory().unwrap();
        let request = request(dir.path());
        let asked = request_retrieval(&archiver, &mut ledger, &row, &request).await;
        assert!(
            matches!(asked, Ok(RestoreState::NotRequested)),
            "nothing asked for a file that will be kept: {asked:?}"
        );
        let outcome = restore_one(&archiver, &mut ledger, &row, &request, None).await;
        assert!(
            matches!(outcome, Outcome::Restored { kept: 1, .. }),
            "{outcome:?}"
        );
        assert_eq!(archiver.requests.load(Ordering::SeqCst), 0);

        let forced = RestoreRequest {
            force: true,
            ..request
        };
        let asked = request_retrieval(&archiver, &mut ledger, &row, &forced).await;
        assert!(
            matches!(asked, Ok(RestoreState::InProgress { .. })),
            "asked for, not ready yet: {asked:?}"
        );
        assert_eq!(archiver.requests.load(Ordering::SeqCst), 1);
        assert!(ledger.retrieval(Some(&row.archive_id)).unwrap().is_some());
    }

    fn request(to: &Path) -> RestoreRequest {
        RestoreRequest {
            chunk_size: 1 << 20,
            ..RestoreRequest::new(Destination::Into(to.to_path_buf()))
        }
    }

    async fn stored(archiver: &Staged, data: &bytes::Bytes) -> UploadRecord {
        let meta = meta("disk.img", data.len() as u64);
        let archive = archiver
            .put(
                &meta,
                &PutOptions::default(),
                parts_from_bytes(data.clone(), 1 << 20),
            )
            .await
            .unwrap();
        UploadRecord {
            path: meta.source_path.clone(),
            name: meta.name.clone(),
            archive_id: archive.archive_id,
            description: None,
            backend: "staged".into(),
            kind: Some(SourceKind::File),
            size: Some(archive.size),
            tree_hash: Some(archive.tree_hash),
            fingerprint: None,
            started_at: Some(meta.started_at),
            uploaded_at: Some(meta.started_at),
            encoding: Default::default(),
            plain_size: None,
        }
    }

    #[tokio::test]
    async fn an_interrupted_download_continues_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let archiver = Staged::new(false);
        let data = sample((3 << 20) + 12_345, 3);
        let row = stored(&archiver, &data).await;
        let mut ledger = Ledger::in_memory().unwrap();
        archiver
            .fail_after
            .store((1 << 20) + 500_000, Ordering::SeqCst);

        let first = restore_one(&archiver, &mut ledger, &row, &request(dir.path()), None).await;
        let Outcome::Failed(message) = first else {
            panic!("{first:?}")
        };
        assert!(
            message.to_string().contains("run again to continue"),
            "{message}"
        );
        let target = dir.path().join("disk.img");
        assert!(!target.exists(), "nothing under the final name");

        let before = archiver.served.load(Ordering::SeqCst);
        let second = restore_one(&archiver, &mut ledger, &row, &request(dir.path()), None).await;
        assert!(matches!(second, Outcome::Restored { .. }), "{second:?}");
        assert!(std::fs::read(&target).unwrap() == data);
        let fetched_again = archiver.served.load(Ordering::SeqCst) - before;
        assert_eq!(
            fetched_again,
            data.len() as u64 - (1 << 20),
            "only the rest"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["disk.img"], "no partial file left");
    }

    /// A destination that refuses for good (here: an archive shorter than the ledger says) is
    /// a failure to look into, not an interrupted download to run again.
    #[tokio::test]
    async fn an_archive_shorter_than_recorded_is_not_an_interrupted_download() {
        let dir = tempfile::tempdir().unwrap();
        let archiver = Staged::new(false);
        let data = sample(2 << 20, 5);
        let mut row = stored(&archiver, &data).await;
        row.size = Some(3 << 20);
        let mut ledger = Ledger::in_memory().unwrap();
        let outcome = restore_one(&archiver, &mut ledger, &row, &request(dir.path()), None).await;
        let Outcome::Failed(message) = outcome else {
            panic!("{outcome:?}")
        };
        let message = message.to_string();
        assert!(message.contains("outside archive"), "{message}");
        assert!(!message.contains("run again"), "{message}");
        assert!(!dir.path().join("disk.img").exists());
    }

    #[tokio::test]
    async fn a_damaged_partial_download_is_caught_and_thrown_away() {
        let dir = tempfile::tempdir().unwrap();
        let archiver = Staged::new(false);
        let data = sample(3 << 20, 4);
        let row = stored(&archiver, &data).await;
        let mut ledger = Ledger::in_memory().unwrap();
        archiver.fail_after.store(2 << 20, Ordering::SeqCst);
        let first = restore_one(&archiver, &mut ledger, &row, &request(dir.path()), None).await;
        assert!(matches!(first, Outcome::Failed(_)), "{first:?}");
        let partial = partial_path(dir.path(), &row.archive_id);
        let mut bytes = std::fs::read(&partial).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&partial, bytes).unwrap();

        let second = restore_one(&archiver, &mut ledger, &row, &request(dir.path()), None).await;
        let Outcome::Failed(message) = second else {
            panic!("{second:?}")
        };
        assert!(
            matches!(message, RestoreFailure::Mismatch { .. }),
            "{message}"
        );
        assert!(
            message.to_string().contains("does not match the ledger"),
            "{message}"
        );
        assert!(!partial.exists() && !dir.path().join("disk.img").exists());
        let third = restore_one(&archiver, &mut ledger, &row, &request(dir.path()), None).await;
        assert!(matches!(third, Outcome::Restored { .. }), "{third:?}");
        assert!(std::fs::read(dir.path().join("disk.img")).unwrap() == data);
    }
}
