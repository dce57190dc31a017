//! Opening a ledger: created whole and private, upgraded once, checked writable; or read in
//! place, or as a snapshot in memory for dry runs.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::schema::MIGRATIONS;
use super::sql::sqlite_error;
use super::{snapshot, Ledger, LedgerError};

impl Ledger {
    /// Opens and migrates the ledger at `path`, and checks it can be written, so a backup
    /// never stores an archive it then cannot record. A missing file is created whole (mode
    /// 0600, migrated under a temporary name, then linked into place), so no run ever finds a
    /// half-made ledger; an existing one readable by others is made private.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_ledger_directory(path, parent)?;
        }
        match std::fs::metadata(path) {
            Ok(meta) => {
                refuse_empty_file(path, &meta)?;
                make_private(path, &meta);
            }
            // Created private (0600).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_new(path)?,
            Err(e) => return Err(io(e)),
        }
        let conn = Connection::open(path).map_err(sqlite_error(path, "cannot open"))?;
        // A pending upload's seal decrypts its archive: once the upload is recorded and the
        // seal deleted, its bytes must not linger in the file's free pages.
        conn.pragma_update(None, "secure_delete", true)
            .map_err(sqlite_error(path, "cannot set secure_delete"))?;
        let mut ledger = Ledger {
            conn,
            path: path.to_path_buf(),
            catalogs_attached: false,
        };
        ledger.migrate()?;
        ledger.check_writable()?;
        Ok(ledger)
    }

    /// The ledger at `path` read in place, without a copy, for listings whose memory must stay
    /// flat in the ledger's size: a connection that cannot write. A ledger of an older schema
    /// (or none) is read as [`Ledger::snapshot`] reads it.
    pub fn reader(path: &Path) -> Result<Self, LedgerError> {
        let Ok(meta) = std::fs::metadata(path) else {
            return Self::snapshot(path);
        };
        refuse_empty_file(path, &meta)?;
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sqlite_error(path, "cannot open read-only"))?;
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sqlite_error(path, "cannot read the schema version"))?;
        if version != MIGRATIONS.len() {
            return Self::snapshot(path);
        }
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
            catalogs_attached: false,
        })
    }

    /// A read-only snapshot of the ledger at `path` (empty if the file does not exist), for dry
    /// runs: the file is never created, migrated or locked, and what a dry run records goes
    /// to the copy in memory. Catalogs are not copied (they are most of a large ledger): they
    /// are read from the file, attached read-only.
    pub fn snapshot(path: &Path) -> Result<Self, LedgerError> {
        let conn = Connection::open_in_memory().map_err(sqlite_error(path, "cannot open"))?;
        let mut ledger = Ledger {
            conn,
            path: path.to_path_buf(),
            catalogs_attached: false,
        };
        if let Ok(meta) = std::fs::metadata(path) {
            refuse_empty_file(path, &meta)?;
            ledger.catalogs_attached = snapshot::copy_into_memory(&ledger.conn, path)?;
        }
        ledger.migrate()?;
        Ok(ledger)
    }

    /// An empty ledger in memory (tests, library use).
    pub fn in_memory() -> Result<Self, LedgerError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(sqlite_error(&path, "cannot open"))?;
        let mut ledger = Ledger {
            conn,
            path,
            catalogs_attached: false,
        };
        ledger.migrate()?;
        Ok(ledger)
    }
}

/// A 0-byte file is what a truncated or clobbered ledger looks like; reading it as "nothing
/// uploaded yet" would upload everything again, so it is refused.
fn refuse_empty_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), LedgerError> {
    if meta.is_dir() {
        return Err(LedgerError::Incompatible {
            path: path.to_path_buf(),
            message: "is a directory, not a ledger file; set [main] ledger to a file path".into(),
        });
    }
    if meta.len() == 0 {
        return Err(LedgerError::Incompatible {
            path: path.to_path_buf(),
            message: "the file is empty (0 bytes), so it cannot say what was uploaded; restore it \
                      from a copy, or delete it and run `inventory --rebuild-ledger`"
                .into(),
        });
    }
    Ok(())
}

/// Creates a migrated ledger at `path` without a moment where `path` exists half-made. Another
/// run creating it at the same time wins harmlessly: its file is used.
fn create_new(path: &Path) -> Result<(), LedgerError> {
    let io = |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    // tempfile creates with mode 0600: private from the first byte.
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(io)?;
    {
        let conn = Connection::open(temp.path()).map_err(sqlite_error(path, "cannot create"))?;
        let mut fresh = Ledger {
            conn,
            path: path.to_path_buf(),
            catalogs_attached: false,
        };
        fresh.migrate()?;
    }
    match temp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A file system that can neither rename without replacing nor hard-link: a plain
        // rename, unless another run made the ledger meanwhile.
        Err(e) if !path.exists() => e.file.persist(path).map(drop).map_err(|e| io(e.error)),
        Err(_) => Ok(()),
    }
}

/// The Python tool left its ledger readable by everyone; ours are 0600. Said once, since the
/// file stays private afterwards.
fn make_private(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)) {
        Ok(()) => tracing::info!(
            "ledger {}: made private (mode {:04o} -> {:04o}); it lists every path backed up",
            crate::shown(path),
            mode,
            mode & 0o700
        ),
        Err(e) => tracing::warn!(
            "ledger {} is readable by others (mode {mode:04o}) and cannot be made private: {e}",
            crate::shown(path)
        ),
    }
}

/// Creates the ledger's directory when it is missing (the default place, or a new one named
/// in the config), saying so; a part of the way that is a file is the config's mistake.
pub(super) fn create_ledger_directory(path: &Path, parent: &Path) -> Result<(), LedgerError> {
    // The nearest part of the way that exists: the directory itself, or where it would go.
    if let Some(found) = parent.ancestors().find(|p| p.exists()) {
        if !found.is_dir() {
            return Err(not_a_directory(path, found));
        }
        if found == parent {
            return Ok(());
        }
    }
    std::fs::create_dir_all(parent).map_err(|source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tracing::info!("created directory {} for the ledger", crate::shown(parent));
    Ok(())
}

fn not_a_directory(path: &Path, found: &Path) -> LedgerError {
    LedgerError::Incompatible {
        path: path.to_path_buf(),
        message: format!(
            "{} is a file, not a directory; set [main] ledger to a file in a directory",
            crate::shown(found)
        ),
    }
}
