//! The seam between glacier-backup's engine and its storage backends.
//!
//! A backend implements [`Archiver`]; the engine hands it archives as a stream of tree-hashed
//! [`Part`]s and records the [`ArchiveRef`] it returns. Backends know nothing of candidates or the
//! ledger. Every backend runs the same behaviour tests from [`conformance`] (feature
//! `conformance`).

#![warn(missing_docs)]

pub mod bandwidth;
pub mod encoding;
mod error;
pub mod keys;
mod memory;
pub mod multipart;
pub mod origin;
pub mod parts;
pub mod settings;
pub mod shown;
pub mod treehash;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use bandwidth::Bandwidth;
pub use encoding::{Compression, Encoding};
pub use error::{BoxError, Error, Result};
pub use memory::MemoryArchiver;
pub use multipart::{OnFailure, PutOptions, Resume};
pub use shown::{shown, shown_bytes};
pub use treehash::TreeHash;
pub use types::*;

use async_trait::async_trait;

/// Part size used when a backend has no constraint of its own: large enough for throughput,
/// small enough that a few parts in flight stay well inside the memory budget.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;

/// A place archives go to and come back from.
///
/// # Behaviour every implementation guarantees (checked by [`conformance`])
/// - `put` is atomic: when it returns an error, or the part stream yields one, no archive is
///   visible to `get` or `list` under a final id. A later `put` of the same name never replaces an
///   earlier archive.
/// - `put` verifies that the part hashes it was given match the bytes (all but those their maker
///   hashed from the bytes themselves, [`Part::hash_from_data`]: one hash pass per byte), and
///   returns the tree hash of the whole archive, which the caller compares with its own.
/// - `get` returns exactly the stored bytes (or the requested range of them), or
///   [`Error::NeedsRestore`] when the archive must be restored first.
#[async_trait]
pub trait Archiver: Send + Sync + std::fmt::Debug {
    /// Short backend name (`local`, `glacier`, `s3`), recorded in the ledger.
    fn name(&self) -> &'static str;

    /// Identifies this destination (vault, bucket, directory) in file names: printable, no
    /// slashes. The default ledger file is `<target>.sqlite3`.
    fn target(&self) -> String;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// The storage class archives go to, as prices tell them apart: `vault` for a Glacier
    /// vault, an S3 storage class (`GLACIER`, `DEEP_ARCHIVE`...), `None` where storage has no
    /// class (a local directory).
    fn storage_class(&self) -> Option<String> {
        None
    }

    /// The part size to use for an archive of about `size_hint` bytes: a power-of-two number of
    /// MiB, so that part tree hashes combine into the archive's.
    fn part_size(&self, size_hint: u64) -> u64 {
        let _ = size_hint;
        DEFAULT_PART_SIZE
    }

    /// Parts this backend sends at once. With the part size it bounds the memory a multipart
    /// upload holds, and it is the engine's budget for small archives sent in parallel.
    fn upload_concurrency(&self) -> usize {
        1
    }

    /// The directory on this machine where archives are stored, if any, so the engine can keep
    /// it out of the archives it makes.
    fn local_directory(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// The archive's own file, opened, when this backend keeps archives as files on this machine
    /// (a local directory): a restore that must read the whole archive anyway checks and reads
    /// it there instead of copying it first. `None` for every remote backend.
    fn open_stored(&self, _archive: &ArchiveRef) -> Option<Result<std::fs::File>> {
        None
    }

    /// Checks, before any upload, that the destination exists and is usable. Errors say what to
    /// fix.
    async fn check(&self) -> Result<()>;

    /// Stores one archive from its parts and returns where it went. `options` say how: an
    /// upload to resume, where progress goes, and whether a failed upload is kept. Multipart
    /// backends hand all of it to [`multipart::put`].
    async fn put(
        &self,
        meta: &ArchiveMeta,
        options: &PutOptions,
        parts: PartStream,
    ) -> Result<ArchiveRef>;

    /// Makes the archives `archive_ids` (as `put` returned them) durable and readable, for a
    /// backend with [`Capabilities::batched_durability`]: after it returns, a crash loses none
    /// of them. Other archives `put` returned stay as they are, for a later `sync`: the caller
    /// names exactly what it noted before (and records right after).
    async fn sync(&self, archive_ids: &[String]) -> Result<()> {
        let _ = archive_ids;
        Ok(())
    }

    /// Gives up an interrupted upload (a token from [`UploadEvent::Started`]), freeing what
    /// it holds. An upload that no longer exists is not an error.
    async fn abort_upload(&self, token: &str) -> Result<()> {
        let _ = token;
        Ok(())
    }

    /// Deletes an archive for good (`migrate --delete-source` does, once its copy elsewhere is
    /// verified). An archive that is already gone is [`Error::NotFound`].
    async fn delete(&self, archive: &ArchiveRef) -> Result<()> {
        let _ = archive;
        Err(Error::Unsupported {
            backend: self.name(),
            operation: "deleting an archive",
        })
    }

    /// On a backend with [`Capabilities::needs_index`]: the archives of `meta`'s source that a
    /// run stopped between storing them and their index left behind, older than the backend's
    /// grace by `meta.started_at` (so another machine's upload between the two is never
    /// named). The caller deletes those no ledger records.
    async fn unindexed(&self, meta: &ArchiveMeta) -> Result<Vec<String>> {
        let _ = meta;
        Ok(Vec::new())
    }

    /// What the backend holds under `archive_id` now: its size, and its tree hash where the
    /// backend keeps one. The default looks it up in [`Archiver::list`].
    async fn describe(&self, archive_id: &str) -> Result<ListedArchive> {
        self.list()
            .await?
            .archives
            .into_iter()
            .find(|archive| archive.archive_id == archive_id)
            .ok_or_else(|| Error::NotFound {
                backend: self.name(),
                archive_id: archive_id.to_owned(),
            })
    }

    /// Asks for a cold archive to be made readable. The default, for backends that are always
    /// readable, just reports the archive's state (so an unknown archive is still `NotFound`).
    async fn request_restore(
        &self,
        archive: &ArchiveRef,
        options: &RestoreOptions,
    ) -> Result<RestoreState> {
        let _ = options;
        self.restore_state(archive, None).await
    }

    /// Whether cold archives here can be retrieved at this tier (S3 DEEP_ARCHIVE has no
    /// expedited retrievals), so a request can be refused before anything is asked.
    fn offers_tier(&self, tier: RestoreTier) -> bool {
        let _ = tier;
        true
    }

    /// Whether an archive can be read now. `request` is the id of a retrieval an earlier run
    /// asked for (from [`RestoreState::InProgress`], kept by the caller): it is checked first,
    /// so nothing is asked twice.
    async fn restore_state(
        &self,
        archive: &ArchiveRef,
        request: Option<&str>,
    ) -> Result<RestoreState>;

    /// Whether `range` of an archive can be read now, on a backend with
    /// [`Capabilities::ranged_retrievals`]: a retrieval of the whole archive, or of that range
    /// (`request`, from an earlier [`RestoreState::InProgress`], checked first). Others answer
    /// for the whole archive.
    async fn range_state(
        &self,
        archive: &ArchiveRef,
        range: &ByteRange,
        request: Option<&str>,
    ) -> Result<RestoreState> {
        let _ = range;
        self.restore_state(archive, request).await
    }

    /// Reads an archive back, whole or the given byte range.
    async fn get(&self, archive: &ArchiveRef, range: Option<ByteRange>) -> Result<ByteStream>;

    /// Every complete archive the backend holds, at once (backends that cannot answer at once
    /// return [`Error::Unsupported`] and offer [`Archiver::inventory`]).
    async fn list(&self) -> Result<Listing>;

    /// Every archive, with its [`origin`] where this tool stored one, for reconciling with the
    /// ledger or rebuilding it. Backends that list through a job (a Glacier vault) start one,
    /// or pick up `request` (the id of an earlier [`InventoryState::Pending`]) and stay pending
    /// until it is done; they never start a second job while one is under way.
    async fn inventory(&self, request: Option<&str>) -> Result<InventoryState> {
        let _ = request;
        self.list().await.map(InventoryState::Ready)
    }
}
