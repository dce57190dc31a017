//! One run at a time per ledger: an advisory lock on `<ledger>.lock`, released by the OS when
//! the process ends however it ends (unlike a stale PID file).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("backup already in progress (another run holds {0})")]
    Busy(PathBuf),
    /// The ledger's directory is not one (the config names a file under a file).
    #[error(transparent)]
    Directory(#[from] super::LedgerError),
    /// The lock file could not be opened.
    #[error("cannot open lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct LedgerLock {
    _file: File,
    path: PathBuf,
}

/// The lock file of a ledger: `<ledger>.lock`.
pub fn lock_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl LedgerLock {
    /// Takes the lock for `ledger` without waiting.
    pub fn acquire(ledger: &Path) -> Result<Self, LockError> {
        let path = lock_path(ledger);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = ledger.parent().filter(|p| !p.as_os_str().is_empty()) {
            super::open::create_ledger_directory(ledger, parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(LedgerLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(LockError::Busy(path)),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_ledger_is_refused_other_ledgers_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sqlite3");
        let first = LedgerLock::acquire(&a).unwrap();
        assert!(matches!(LedgerLock::acquire(&a), Err(LockError::Busy(_))));
        let _other = LedgerLock::acquire(&dir.path().join("b.sqlite3")).unwrap();
        drop(first);
        LedgerLock::acquire(&a).unwrap();
    }
}
