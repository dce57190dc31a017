//! Values that cross the seam between the engine and a backend.

use std::ops::Range;
use std::path::PathBuf;

use bytes::Bytes;
use futures::stream::BoxStream;
use time::OffsetDateTime;

use crate::origin::Origin;
use crate::treehash::TreeHash;
use crate::Error;

/// What kind of source an archive was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A single file, stored as its bytes.
    File,
    /// A directory, stored as a tar archive.
    Directory,
}

impl SourceKind {
    /// `file` or `directory`, as stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Directory => "directory",
        }
    }

    /// Inverse of [`SourceKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(SourceKind::File),
            "directory" => Some(SourceKind::Directory),
            _ => None,
        }
    }
}

/// Everything a backend may want to store beside an archive so the ledger can be rebuilt from
/// the backend alone.
#[derive(Debug, Clone)]
pub struct ArchiveMeta {
    /// Absolute source path on the machine that made the backup.
    pub source_path: PathBuf,
    /// Printable-ASCII archive name (the Python tool's naming: file name, or dir name + `.tar`).
    pub name: String,
    /// File or directory.
    pub kind: SourceKind,
    /// The source's change fingerprint, taken before archiving.
    pub fingerprint: String,
    /// Expected archive size, used to choose part sizes; the real stream may differ a little.
    pub size_hint: u64,
    /// When the upload started.
    pub started_at: OffsetDateTime,
    /// Layers on the stored bytes (compression, encryption), kept in the name and metadata.
    pub encoding: crate::Encoding,
    /// When this is the index of another archive (that archive's id): the backend stores it
    /// beside that one, readable at once, and lists it among [`Listing::indexes`].
    pub index_of: Option<String>,
    /// For an index: its archive's tree hash, which a backend that cannot keep it on the
    /// archive itself (a blob's metadata is fixed when the blob is made, before the hash of a
    /// multipart upload is known) keeps with the index instead.
    pub indexed_tree_hash: Option<TreeHash>,
}

/// Progress of a resumable upload, reported while `put` runs (see
/// [`PutOptions::events`](crate::multipart::PutOptions::events)).
#[derive(Debug, Clone)]
pub enum UploadEvent {
    /// A multipart upload started; the token names it to `resume` and `abort_upload`.
    Started(String),
    /// A part is stored; `receipt` is what the backend needs to finish without sending it again.
    PartStored {
        /// Part number, as the backend counts them.
        number: u64,
        /// Backend-specific note (S3: ETag, checksum and size).
        receipt: String,
    },
    /// Every part is stored and the upload is about to be completed as an archive of this size
    /// and tree hash. The backend waits for `recorded` before asking, so that a run stopped
    /// while the answer is on its way leaves a note to ask again with, not a duplicate.
    Completing {
        /// Archive size in bytes.
        size: u64,
        /// Tree hash of the whole archive.
        tree_hash: TreeHash,
        /// Signalled by the caller once the event is recorded.
        recorded: Recorded,
    },
}

/// The caller's answer to an event the backend must not act on before it is recorded.
#[derive(Debug, Clone)]
pub struct Recorded(std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>);

impl Recorded {
    /// A signal and the receiver the backend awaits.
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Recorded(std::sync::Arc::new(std::sync::Mutex::new(Some(tx)))),
            rx,
        )
    }

    /// Tells the backend the event is recorded.
    pub fn done(&self) {
        if let Some(tx) = self.0.lock().expect("recorded lock").take() {
            // The backend gave up waiting (its put was dropped): nothing to tell.
            let _ = tx.send(());
        }
    }
}

/// One piece of an archive, already tree-hashed.
#[derive(Debug, Clone)]
pub struct Part {
    /// 0-based position in the archive.
    pub index: u64,
    /// Byte offset of `data` in the archive.
    pub offset: u64,
    /// The bytes: exactly the part size for every part but the last.
    pub data: Bytes,
    /// Tree hash of `data` alone.
    pub tree_hash: TreeHash,
    /// Whether `tree_hash` was computed from `data` by the code that made this part (the
    /// engine's stream, [`Part::hashed`]): a backend that checks part hashes then need not hash
    /// the bytes a second time. A part from anywhere else says `false` and is checked.
    pub hash_from_data: bool,
    /// `Some(length)`: an earlier run stored this part in the upload being resumed, so it comes
    /// without its bytes (`data` is empty) and with the tree hash recorded when it was sent.
    /// The backend must find it in that upload, or fail with [`Error::PartNotHeld`]. A copy
    /// between backends resumes this way without reading its source again.
    pub held: Option<u64>,
}

impl Part {
    /// A part of `data`, its tree hash computed here.
    pub fn hashed(index: u64, offset: u64, data: Bytes) -> Self {
        Part {
            index,
            offset,
            tree_hash: crate::treehash::tree_hash(&data),
            data,
            hash_from_data: true,
            held: None,
        }
    }

    /// A part an earlier run stored: `len` bytes with this tree hash, not sent again.
    pub fn held(index: u64, offset: u64, len: u64, tree_hash: TreeHash) -> Self {
        Part {
            index,
            offset,
            data: Bytes::new(),
            tree_hash,
            hash_from_data: true,
            held: Some(len),
        }
    }

    /// The part's length: its bytes, or the recorded length of a held part.
    pub fn len(&self) -> u64 {
        self.held.unwrap_or(self.data.len() as u64)
    }

    /// Whether the part has no bytes at all (an empty archive's one part).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The archive's bytes, in order, as parts of the size the backend asked for. At least one part
/// is always sent, possibly empty. An `Err` item means the source failed: store nothing.
pub type PartStream = BoxStream<'static, Result<Part, Error>>;

/// Bytes read back from a backend.
pub type ByteStream = BoxStream<'static, Result<Bytes, Error>>;

/// Where an archive went, as confirmed by the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRef {
    /// Backend-assigned (Glacier) or backend-chosen (S3 key, local relative path) identifier.
    pub archive_id: String,
    /// Archive size in bytes.
    pub size: u64,
    /// SHA-256 tree hash of the whole archive.
    pub tree_hash: TreeHash,
    /// Metadata stored with the archive, where the backend keeps some (a Glacier description).
    pub description: Option<String>,
}

/// What a backend can do; callers and tests consult this instead of guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Reading needs a restore request and a wait first.
    pub needs_restore: bool,
    /// Failed uploads can be resumed by a later run.
    pub resumable_uploads: bool,
    /// `list` answers immediately (not through a job).
    pub listable: bool,
    /// `get` honours byte ranges.
    pub ranged_reads: bool,
    /// A cold archive's retrieval can be asked for a byte range alone
    /// ([`RestoreOptions::range`]), billed by the range (a Glacier vault); without it a
    /// retrieval makes the whole archive readable.
    pub ranged_retrievals: bool,
    /// A 0-byte archive can be stored (Glacier vaults refuse them).
    pub stores_empty_archives: bool,
    /// `put` leaves making an archive durable, and readable under its id, to
    /// [`Archiver::sync`](crate::Archiver::sync), so that many archives share one flush: the
    /// engine records an archive only after a `sync`, rows in batches.
    pub batched_durability: bool,
    /// Archives are whole only with their index: the backend keeps a multipart archive's tree
    /// hash nowhere but in the index's metadata (an Azure blob's metadata is fixed when the
    /// upload starts, before the hash is known). The engine stores an index beside every
    /// archive (a file's too), and an archive whose index cannot be stored is deleted and its
    /// upload failed.
    pub needs_index: bool,
}

/// How urgently a cold archive should be made readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreTier {
    /// Minutes, most expensive.
    Expedited,
    /// Hours.
    #[default]
    Standard,
    /// Many hours, cheapest.
    Bulk,
}

impl RestoreTier {
    /// `expedited`, `standard` or `bulk`, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreTier::Expedited => "expedited",
            RestoreTier::Standard => "standard",
            RestoreTier::Bulk => "bulk",
        }
    }
}

/// Options for [`Archiver::request_restore`](crate::Archiver::request_restore).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Retrieval tier.
    pub tier: RestoreTier,
    /// How long a restored copy stays readable, where the backend asks.
    pub days: Option<u32>,
    /// Only these bytes, on a backend with [`Capabilities::ranged_retrievals`]: whole MiB from
    /// a MiB boundary, or to the archive's end. `get` then reads inside it.
    pub range: Option<ByteRange>,
}

/// Whether an archive can be read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreState {
    /// `get` works now.
    Ready,
    /// A restore was requested and has not finished.
    InProgress {
        /// Backend reference for the request (a job id), if any.
        request_id: Option<String>,
    },
    /// Nothing was requested yet, and the archive is cold.
    NotRequested,
}

/// A byte range to read, `start..end`.
pub type ByteRange = Range<u64>;

/// One archive as the backend lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedArchive {
    /// Identifier usable with `get`.
    pub archive_id: String,
    /// Size in bytes.
    pub size: u64,
    /// Tree hash, when the backend stores one.
    pub tree_hash: Option<TreeHash>,
    /// When the backend stored it, if it says.
    pub created_at: Option<OffsetDateTime>,
    /// The metadata text stored with it (a Glacier description), shown for archives that are
    /// not ours.
    pub description: Option<String>,
    /// Where it came from, when this tool wrote it and the backend kept that (filled by
    /// [`Archiver::inventory`](crate::Archiver::inventory); `list` may leave it out).
    pub origin: Option<Origin>,
    /// For an index, the archive it describes.
    pub index_of: Option<String>,
}

impl ListedArchive {
    /// An archive known only by id and size.
    pub fn new(archive_id: impl Into<String>, size: u64) -> Self {
        ListedArchive {
            archive_id: archive_id.into(),
            size,
            tree_hash: None,
            created_at: None,
            description: None,
            origin: None,
            index_of: None,
        }
    }
}

/// The archives a backend holds.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Every complete archive (never partial uploads), sorted by id.
    pub archives: Vec<ListedArchive>,
    /// When the listing was taken, if it is older than the call (a vault inventory lags by up
    /// to a day, so archives stored after it are missing from it for a reason).
    pub taken_at: Option<OffsetDateTime>,
    /// Leftovers of uploads that never finished (a local destination's partial files), by
    /// name and size: not archives, reported so the user knows where space went.
    pub incomplete: Vec<ListedArchive>,
    /// The indexes beside archives (each names its archive in `index_of`): not archives of
    /// their own, so never among `archives`.
    pub indexes: Vec<ListedArchive>,
}

impl Listing {
    /// A listing taken at `taken_at` of what a backend holds (archives and indexes, each with
    /// `index_of` set), sorted by id, the indexes apart.
    pub fn taken(mut archives: Vec<ListedArchive>, taken_at: OffsetDateTime) -> Self {
        archives.sort_by(|a, b| a.archive_id.cmp(&b.archive_id));
        Listing {
            archives,
            taken_at: Some(taken_at),
            incomplete: Vec::new(),
            indexes: Vec::new(),
        }
        .split_indexes()
    }

    /// Moves the indexes among `archives` (those with `index_of`) to `indexes`.
    pub fn split_indexes(mut self) -> Self {
        let (indexes, archives) = self
            .archives
            .into_iter()
            .partition(|archive| archive.index_of.is_some());
        self.archives = archives;
        self.indexes.extend::<Vec<_>>(indexes);
        self
    }
}

/// The answer to [`Archiver::inventory`](crate::Archiver::inventory).
#[derive(Debug, Clone)]
pub enum InventoryState {
    /// The inventory, complete.
    Ready(Listing),
    /// The backend is preparing it; ask again later with this request id.
    Pending {
        /// Backend reference for the request (a job id).
        request_id: String,
    },
}
