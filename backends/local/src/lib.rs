//! Stores archives as files under a local directory (a second disk, a NAS mount).
//!
//! Plain `std::fs` rather than `object_store`'s local store: we need what it does not offer in
//! one place, a no-clobber publish (`tempfile`'s `persist_noclobber`, a link that fails if the
//! name exists) of a file made durable before it gets its name, so that a crash never leaves a
//! partial archive under a final name, and a flush of the names afterwards so that none is lost.
//!
//! Both wait for [`Archiver::sync`], where many archives share them: `put` writes an archive
//! in `.incoming` and reserves its name; `sync` flushes the file system (`syncfs`: the bytes of
//! every archive written since), links each archive under its name, and flushes again (the
//! names). An archive is readable once `sync` returned; the engine records archives only then.
//! One `syncfs` for a batch instead of an fsync for every file and every new directory is
//! what lets small files go up at the file system's pace.
//!
//! Layout: `<directory>/<source path>/<UTC time>[.tar]`, each component percent-encoded (see
//! [`glacier_backup_archiver::keys`]); uploads in progress live in `<directory>/.incoming/`.

#![warn(missing_docs)]

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use futures::StreamExt;
use glacier_backup_archiver::bandwidth::cut;
use glacier_backup_archiver::keys::{index_key, indexed_by, key_for};
use glacier_backup_archiver::parts::PartChecker;
use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_archiver::shown;
use glacier_backup_archiver::treehash::TreeHasher;
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, Bandwidth, ByteRange, ByteStream, Capabilities, Error,
    InventoryState, ListedArchive, Listing, PartStream, PutOptions, RestoreState, Result,
};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

const NAME: &str = "local";
const INCOMING: &str = ".incoming";
const PARTIAL_PREFIX: &str = "upload-";
const PARTIAL_SUFFIX: &str = ".partial";

/// Settings of the `[local]` section.
pub const SETTINGS: &[&str] = &["directory", "create_directory"];

/// The local-directory archiver.
#[derive(Debug, Clone)]
pub struct LocalArchiver {
    root: PathBuf,
    create_directory: bool,
    /// Device and inode of `root` when `check` found it: a root that is gone or replaced
    /// (unmounted) later in the run fails the upload instead of being written to again.
    identity: Arc<OnceLock<(u64, u64)>>,
    /// Archives written and not yet named: what the next `sync` makes durable and names.
    unnamed: Arc<Mutex<Unnamed>>,
    /// The run's limits: a directory on a network mount shares the uplink too.
    bandwidth: Bandwidth,
}

impl LocalArchiver {
    /// Archives go under `root`; with `create_directory`, `check` creates it when missing
    /// (otherwise a missing directory is an error, so an unmounted disk is noticed).
    pub fn new(root: impl Into<PathBuf>, create_directory: bool) -> Self {
        LocalArchiver {
            root: root.into(),
            create_directory,
            identity: Arc::default(),
            unnamed: Arc::default(),
            bandwidth: Bandwidth::default(),
        }
    }

    /// Builds the archiver from a `[local]` config section.
    pub fn from_settings(section: &Section) -> Result<Self, SettingsError> {
        // A misspelt key is the likelier mistake than a missing one: report it first.
        section.reject_unknown(SETTINGS)?;
        let root = section.path("directory")?.ok_or_else(|| {
            section.error(
                None,
                "missing setting \"directory\": name the directory archives are written to",
            )
        })?;
        let create = section.bool("create_directory")?.unwrap_or(false);
        Ok(Self::new(root, create))
    }

    fn write_piece(&self, temp: &mut NamedTempFile, piece: &[u8]) -> Result<()> {
        temp.write_all(piece)
            .map_err(|e| self.io_error("cannot write", temp.path(), e))
    }

    /// Writes and reads archives within `bandwidth`'s limits.
    pub fn with_bandwidth(mut self, bandwidth: Bandwidth) -> Self {
        self.bandwidth = bandwidth;
        self
    }

    /// The directory archives go under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io_error(&self, what: impl std::fmt::Display, path: &Path, source: io::Error) -> Error {
        Error::io(NAME, format!("{what} {}: {source}", shown(path)), source)
    }

    /// Maps an archive id to its file, refusing ids that would leave the root.
    fn archive_path(&self, archive_id: &str) -> Result<PathBuf> {
        let relative = Path::new(archive_id);
        let safe = !archive_id.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(n) if n != INCOMING));
        if !safe {
            return Err(Error::NotFound {
                backend: NAME,
                archive_id: archive_id.to_owned(),
            });
        }
        Ok(self.root.join(relative))
    }

    fn open_archive(&self, archive_id: &str) -> Result<File> {
        let path = self.archive_path(archive_id)?;
        match File::open(&path) {
            Ok(file) if file.metadata().map(|m| m.is_file()).unwrap_or(false) => Ok(file),
            Ok(_) => Err(Error::NotFound {
                backend: NAME,
                archive_id: archive_id.to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                backend: NAME,
                archive_id: archive_id.to_owned(),
            }),
            Err(e) => Err(self.io_error("cannot open archive", &path, e)),
        }
    }

    /// Fails unless the root is the directory `check` found (or, before any `check`, exists):
    /// the configured directory itself is only ever created by `check`, and only with
    /// `create_directory`, so an unmounted or removed destination is never silently remade.
    fn ensure_root(&self) -> Result<()> {
        let vanished = |detail| self.vanished(detail);
        match (fs::metadata(&self.root), self.identity.get()) {
            (Ok(meta), Some(&(dev, ino)))
                if meta.is_dir() && (meta.dev(), meta.ino()) != (dev, ino) =>
            {
                Err(vanished("was replaced by another directory"))
            }
            (Ok(meta), _) if meta.is_dir() => Ok(()),
            (Ok(_), _) => Err(vanished("is no longer a directory")),
            (Err(_), _) => Err(vanished("vanished")),
        }
    }

    fn vanished(&self, detail: &str) -> Error {
        Error::Io {
            backend: NAME,
            context: format!(
                "the destination directory {} {detail} during the run, so nothing more is \
                 written there; mount the disk again (or restore the directory) and run again",
                shown(&self.root)
            ),
            source: io::Error::from(io::ErrorKind::NotFound),
        }
    }

    /// Creates `dir` and its missing parents below the root, never the root itself.
    fn create_below_root(&self, dir: &Path) -> Result<()> {
        self.ensure_root()?;
        self.create_dir_and_parents(dir)
    }

    /// Creates `dir`, deepest first: usually only the last directory is new, and every mkdir
    /// takes its parent's lock, which parallel uploads into one tree contend for. Stops at the
    /// root, which is never created here.
    fn create_dir_and_parents(&self, dir: &Path) -> Result<()> {
        let Some(parent) = dir
            .parent()
            .filter(|_| dir != self.root && dir.starts_with(&self.root))
        else {
            return Ok(());
        };
        let mut created = fs::create_dir(dir);
        if matches!(&created, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            self.create_dir_and_parents(parent)?;
            created = fs::create_dir(dir);
        }
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self.io_error("cannot create directory", dir, e)),
        }
    }

    /// Partial files in `.incoming` that no running upload holds: what a killed run left.
    fn stale_partials(&self) -> Vec<(PathBuf, u64)> {
        let Ok(entries) = fs::read_dir(self.root.join(INCOMING)) else {
            return Vec::new();
        };
        let mut stale = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX)) {
                continue;
            }
            // Every upload holds a lock on its partial file while it writes; one we can lock
            // belongs to nobody.
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if file.try_lock().is_ok() {
                stale.push((path, file.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
        stale.sort();
        stale
    }

    /// A name for an archive of `key` that no archive has and no unnamed one reserved:
    /// `key`, or `key.1`, `key.2`... (a later upload never replaces an earlier one).
    fn reserve_name(&self, key: &str, temp: NamedTempFile) -> Result<String> {
        let mut unnamed = self.unnamed.lock().expect("unnamed lock");
        for attempt in 0..1000 {
            let id = match attempt {
                0 => key.to_owned(),
                n => format!("{key}.{n}"),
            };
            let taken = unnamed.archives.iter().any(|(_, reserved)| *reserved == id)
                || fs::symlink_metadata(self.root.join(&id)).is_ok();
            if !taken {
                unnamed.archives.push((temp, id.clone()));
                return Ok(id);
            }
        }
        Err(self.io_error(
            "no free archive name beside",
            &self.root.join(key),
            io::Error::from(io::ErrorKind::AlreadyExists),
        ))
    }

    /// Makes the unnamed archives `archive_ids` durable, then names them, then makes the names
    /// durable; the other unnamed ones wait for a later call (their rows are not about to be
    /// recorded, so naming them now could leave archives nobody records). An error leaves the
    /// rest of the batch unnamed and removed: their uploads are not recorded, and the next run
    /// sends them again.
    fn name_unnamed(&self, archive_ids: &[String]) -> Result<()> {
        let archives = {
            let mut unnamed = self.unnamed.lock().expect("unnamed lock");
            let (batch, rest) = std::mem::take(&mut unnamed.archives)
                .into_iter()
                .partition(|(_, id)| archive_ids.contains(id));
            unnamed.archives = rest;
            batch
        };
        if archives.is_empty() {
            return Ok(());
        }
        self.ensure_root()?;
        self.sync_file_system()?;
        for (temp, id) in archives {
            let path = self.root.join(&id);
            self.create_below_root(path.parent().unwrap_or(&self.root))?;
            temp.persist_noclobber(&path).map_err(|e| {
                self.io_error(
                    "cannot name archive (did another run write here at the same time?)",
                    &path,
                    e.error,
                )
            })?;
        }
        self.sync_file_system()
    }

    /// Flushes everything written to the destination's file system: one call for a batch of
    /// archives, their directories and their names.
    fn sync_file_system(&self) -> Result<()> {
        File::open(&self.root)
            .and_then(|root| rustix::fs::syncfs(&root).map_err(io::Error::from))
            .map_err(|e| self.io_error("cannot flush the file system of", &self.root, e))
    }
}

/// Archives written in `.incoming` (each holding its lock) with the names they will get.
#[derive(Debug, Default)]
struct Unnamed {
    archives: Vec<(NamedTempFile, String)>,
}

#[async_trait]
impl Archiver for LocalArchiver {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `local.<directory name>-<8 hex digits of the full path>`: readable, and distinct for two
    /// directories with the same last component.
    fn target(&self) -> String {
        use std::os::unix::ffi::OsStrExt;
        let digest = Sha256::digest(self.root.as_os_str().as_bytes());
        let base = self
            .root
            .file_name()
            .map(|n| glacier_backup_archiver::keys::encode_component(n.as_bytes()))
            .unwrap_or_else(|| "root".into());
        format!("local.{base}-{}", hex::encode(&digest[..4]))
    }

    fn local_directory(&self) -> Option<PathBuf> {
        Some(self.root.clone())
    }

    /// None under a download limit: read in place, the archive would bypass it (a directory
    /// on a network mount is read over the network), so it is read through `get`.
    fn open_stored(&self, archive: &ArchiveRef) -> Option<Result<std::fs::File>> {
        if self.bandwidth.download.is_limited() {
            return None;
        }
        Some(self.open_archive(&archive.archive_id))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_restore: false,
            resumable_uploads: false,
            listable: true,
            ranged_reads: true,
            ranged_retrievals: false,
            stores_empty_archives: true,
            batched_durability: true,
            needs_index: false,
        }
    }

    async fn check(&self) -> Result<()> {
        let this = self.clone();
        blocking(move || {
            match fs::metadata(&this.root) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(Error::Config {
                        backend: NAME,
                        message: format!(
                            "[local] directory {} is not a directory",
                            shown(&this.root)
                        ),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && this.create_directory => {
                    fs::create_dir_all(&this.root)
                        .map_err(|e| this.io_error("cannot create", &this.root, e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::Config {
                        backend: NAME,
                        message: format!(
                            "[local] directory {} does not exist; create it (or mount the disk), \
                             or set create_directory = true",
                            shown(&this.root)
                        ),
                    })
                }
                Err(e) => return Err(this.io_error("cannot access", &this.root, e)),
            }
            let meta = fs::metadata(&this.root)
                .map_err(|e| this.io_error("cannot access", &this.root, e))?;
            let _ = this.identity.set((meta.dev(), meta.ino()));
            this.create_below_root(&this.root.join(INCOMING))?;
            // Runs hold the ledger lock while they check, so no other run of this ledger is
            // writing; partial files of runs of other ledgers are locked and left alone.
            let stale = this.stale_partials();
            for (path, _) in &stale {
                fs::remove_file(path).map_err(|e| this.io_error("cannot remove", path, e))?;
            }
            if !stale.is_empty() {
                let bytes: u64 = stale.iter().map(|(_, size)| size).sum();
                tracing::info!(
                    "removed {} partial upload file(s) ({bytes} bytes) left in {} by interrupted runs",
                    stale.len(),
                    shown(this.root.join(INCOMING))
                );
            }
            Ok(())
        })
        .await
    }

    /// Nothing to resume or abort: an unfinished local upload is a temporary file, deleted when
    /// it fails and ignored when a crash leaves it.
    async fn put(
        &self,
        meta: &ArchiveMeta,
        _options: &PutOptions,
        mut parts: PartStream,
    ) -> Result<ArchiveRef> {
        let incoming = self.root.join(INCOMING);
        let temp = {
            let this = self.clone();
            blocking(move || {
                if this.identity.get().is_some() {
                    // `check` made `.incoming`; without it this is not the directory checked
                    // (an empty mount point looks like a directory too).
                    this.ensure_root()?;
                    if !incoming.is_dir() {
                        return Err(this.vanished("lost its .incoming directory"));
                    }
                } else {
                    this.create_below_root(&incoming)?;
                }
                let temp = tempfile::Builder::new()
                    .prefix(PARTIAL_PREFIX)
                    .suffix(PARTIAL_SUFFIX)
                    .tempfile_in(&incoming)
                    .map_err(|e| {
                        this.io_error("cannot create a temporary file in", &incoming, e)
                    })?;
                // Held until the upload ends: tells `check` of a later run this file is live.
                temp.as_file()
                    .try_lock()
                    .map_err(|e| this.io_error("cannot lock", temp.path(), e.into()))?;
                Ok(temp)
            })
            .await?
        };
        // The temporary file is deleted when dropped, so every early return below leaves nothing.
        let (mut temp, mut checker) = (temp, PartChecker::new(NAME, true));
        while let Some(part) = parts.next().await {
            let part = part?;
            let data = part.data.clone();
            checker = blocking(move || checker.accept(&part).map(|()| checker)).await?;
            // Unlimited, the part is one piece.
            for piece in cut(data, self.bandwidth.upload.piece()) {
                self.bandwidth.upload.take(piece.len()).await;
                let this = self.clone();
                temp = blocking(move || this.write_piece(&mut temp, &piece).map(|()| temp)).await?;
            }
        }
        let key = match &meta.index_of {
            Some(archive) => index_key(archive),
            None => key_for(meta),
        };
        let this = self.clone();
        // Named by `sync`, once its bytes are durable.
        let archive_id = blocking(move || this.reserve_name(&key, temp)).await?;
        Ok(ArchiveRef {
            archive_id,
            size: checker.size(),
            tree_hash: checker.tree_hash(),
            description: None,
        })
    }

    async fn sync(&self, archive_ids: &[String]) -> Result<()> {
        let this = self.clone();
        let archive_ids = archive_ids.to_vec();
        blocking(move || this.name_unnamed(&archive_ids)).await
    }

    /// Removes the archive's file (never what a link there points to), and flushes the name's
    /// removal.
    async fn delete(&self, archive: &ArchiveRef) -> Result<()> {
        let this = self.clone();
        let archive_id = archive.archive_id.clone();
        blocking(move || {
            let path = this.archive_path(&archive_id)?;
            let not_found = || Error::NotFound {
                backend: NAME,
                archive_id: archive_id.clone(),
            };
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => {}
                Ok(_) => return Err(not_found()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
                Err(e) => return Err(this.io_error("cannot stat", &path, e)),
            }
            fs::remove_file(&path).map_err(|e| this.io_error("cannot remove", &path, e))?;
            this.sync_file_system()
        })
        .await
    }

    async fn restore_state(
        &self,
        archive: &ArchiveRef,
        _request: Option<&str>,
    ) -> Result<RestoreState> {
        self.open_archive(&archive.archive_id)?;
        Ok(RestoreState::Ready)
    }

    async fn get(&self, archive: &ArchiveRef, range: Option<ByteRange>) -> Result<ByteStream> {
        let mut file = self.open_archive(&archive.archive_id)?;
        let path = self.archive_path(&archive.archive_id)?;
        let len = file
            .metadata()
            .map_err(|e| self.io_error("cannot stat", &path, e))?
            .len();
        let range = Error::check_range(NAME, &archive.archive_id, range, len)?;
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| self.io_error("cannot seek in", &path, e))?;
        let reader =
            tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), range.end - range.start);
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20).map(move |r| {
            r.map_err(|e| Error::io(NAME, format!("cannot read {}: {e}", shown(&path)), e))
        });
        Ok(self.bandwidth.download.limit_stream(stream.boxed()))
    }

    /// The listing, with every archive's tree hash re-computed from the disk: a rebuilt ledger
    /// then has what restores check against, and a reconciliation sees changed bytes.
    async fn inventory(&self, _request: Option<&str>) -> Result<InventoryState> {
        let mut listing = self.list().await?;
        listing.incomplete = self
            .stale_partials()
            .into_iter()
            .map(|(path, size)| {
                let id = path.strip_prefix(&self.root).unwrap_or(&path);
                ListedArchive::new(id.to_string_lossy(), size)
            })
            .collect();
        let this = self.clone();
        let indexes = std::mem::take(&mut listing.indexes);
        let hashed = blocking(move || {
            let mut archives = listing.archives;
            archives.extend(indexes);
            for archive in &mut archives {
                let path = this.archive_path(&archive.archive_id)?;
                let mut file = this.open_archive(&archive.archive_id)?;
                let mut hasher = TreeHasher::new();
                let mut buffer = vec![0; 1 << 20];
                loop {
                    match io::Read::read(&mut file, &mut buffer) {
                        Ok(0) => break,
                        Ok(n) => hasher.update(&buffer[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(this.io_error("cannot read", &path, e)),
                    }
                }
                archive.size = hasher.len();
                archive.tree_hash = Some(hasher.finish());
            }
            Ok(archives)
        })
        .await?;
        let (indexes, archives) = hashed.into_iter().partition(|a| a.index_of.is_some());
        listing.archives = archives;
        listing.indexes = indexes;
        Ok(InventoryState::Ready(listing))
    }

    /// Taken at the time the walk starts: an archive named later (an upload of a run going on
    /// meanwhile) may be missing from it, and its row is newer than the listing.
    async fn list(&self) -> Result<Listing> {
        let this = self.clone();
        blocking(move || {
            let taken_at = std::time::SystemTime::now();
            let mut archives = Vec::new();
            let mut pending = vec![this.root.clone()];
            while let Some(dir) = pending.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound && dir == this.root => break,
                    Err(e) => return Err(this.io_error("cannot list", &dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| this.io_error("cannot list", &dir, e))?;
                    let path = entry.path();
                    let meta = entry
                        .metadata()
                        .map_err(|e| this.io_error("cannot stat", &path, e))?;
                    if meta.is_dir() {
                        if dir != this.root || entry.file_name() != INCOMING {
                            pending.push(path);
                        }
                    } else if meta.is_file() {
                        let id = path
                            .strip_prefix(&this.root)
                            .expect("listed below the root")
                            .to_string_lossy()
                            .into_owned();
                        archives.push(ListedArchive {
                            origin: glacier_backup_archiver::origin::from_key(&id),
                            created_at: meta.modified().ok().map(Into::into),
                            index_of: indexed_by(&id).map(str::to_owned),
                            ..ListedArchive::new(id, meta.len())
                        });
                    }
                }
            }
            archives.sort_by(|a, b| a.archive_id.cmp(&b.archive_id));
            Ok(Listing {
                archives,
                taken_at: Some(taken_at.into()),
                incomplete: Vec::new(),
                indexes: Vec::new(),
            }
            .split_indexes())
        })
        .await
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

#[cfg(test)]
mod tests;
