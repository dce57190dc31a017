//! What `restore --at` and `ls --at` say of a time whose upload was pruned: which upload was
//! current then, when it was deleted, and the kept upload nearest to it.

use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::ledger::{Ledger, LedgerError, PruneMark};

/// The upload of a path current at a time, deleted by `prune`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedUpload {
    /// The source path.
    pub path: PathBuf,
    /// The time asked for (`None`: the latest).
    pub at: Option<OffsetDateTime>,
    /// Its archive.
    pub archive_id: String,
    /// When its deletion was confirmed (`None`: asked for, not yet confirmed).
    pub pruned_at: PruneMark,
    /// The kept upload nearest to the time asked for: archive and upload time.
    pub nearest: Option<(String, OffsetDateTime)>,
}

/// The upload of `path` current at `at` (the latest without one), when prune deleted it.
pub fn pruned_at(
    ledger: &Ledger,
    path: &Path,
    at: Option<OffsetDateTime>,
) -> Result<Option<PrunedUpload>, LedgerError> {
    let history = ledger.history_of(path)?;
    let current = history
        .iter()
        .rev()
        .find(|(row, _)| at.is_none_or(|at| row.stored_at().is_some_and(|t| t <= at)));
    let Some((row, Some(mark))) = current else {
        return Ok(None);
    };
    let wanted = at.or(row.stored_at()).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let nearest = history
        .iter()
        .filter(|(_, mark)| mark.is_none())
        .filter_map(|(row, _)| row.stored_at().map(|t| (row.archive_id.clone(), t)))
        .min_by_key(|(_, t)| (*t - wanted).abs());
    Ok(Some(PrunedUpload {
        path: path.to_path_buf(),
        at,
        archive_id: row.archive_id.clone(),
        pruned_at: *mark,
        nearest,
    }))
}

impl fmt::Display for PrunedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the upload of {}", crate::shown(&self.path))?;
        if let Some(at) = self.at {
            write!(f, " current at {}", crate::display_time(at))?;
        }
        write!(f, " ({}) was pruned ", self.archive_id)?;
        match self.pruned_at {
            Some(when) => write!(f, "at {}", crate::display_time(when))?,
            None => f.write_str("(its deletion was asked for)")?,
        }
        match &self.nearest {
            Some((archive, t)) => write!(
                f,
                "; the nearest upload kept is {archive} of {} (use --at {})",
                crate::display_time(*t),
                crate::display_time(*t)
            ),
            None => f.write_str("; no upload of it is kept"),
        }
    }
}
