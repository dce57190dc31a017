//! What long operations report as they go, for a progress display. The engine and the restore
//! call these; the binary draws them (bars on a terminal, a line now and then in a log). Every
//! method does nothing by default.

use std::sync::Arc;

/// Receives a backup's or a restore's progress.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A batch of `items` starts: the candidates of a backup, the archives of a restore.
    fn batch(&self, items: usize) {
        let _ = items;
    }

    /// Work on one item starts: what it is, and about how many bytes it takes (a directory's
    /// size is estimated by its scan). Several items may be under way at once (a backup sends
    /// small candidates in parallel): each reports its bytes through its own handle, and its
    /// work ends when the handle is dropped.
    fn item(&self, label: &str, bytes: u64) -> Box<dyn ItemProgress> {
        let _ = (label, bytes);
        Box::new(NoProgress)
    }

    /// An item of the batch is finished, whatever its outcome (also one that needed no work).
    fn item_done(&self) {}

    /// Waiting on cold storage: what is awaited, and when the next check is.
    fn waiting(&self, what: &str, next_check: std::time::Duration) {
        let _ = (what, next_check);
    }
}

/// The bytes of one item under way (see [`Progress::item`]).
pub trait ItemProgress: Send + Sync {
    /// `bytes` more of this item are done.
    fn advance(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// Shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

impl ItemProgress for NoProgress {}

/// The progress sink of a run: shared by the engine and whoever draws it.
pub type SharedProgress = Arc<dyn Progress>;

/// Nothing to show: the default of runs and restores.
pub fn none() -> SharedProgress {
    Arc::new(NoProgress)
}

/// The sink a run or restore was given, or one that shows nothing.
pub fn or_none(progress: &Option<SharedProgress>) -> SharedProgress {
    progress.clone().unwrap_or_else(none)
}
