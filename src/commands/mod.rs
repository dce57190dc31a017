//! The subcommands, and what they share: exit outcomes, errors that pick the exit code, and
//! how paths given on the command line are read.

pub mod backup;
pub mod find;
pub mod inventory;
pub mod list;
pub mod ls;
pub mod migrate;
pub mod prune;
pub mod restore;
pub mod stats;
pub mod verify;

use glacier_backup::shown;
use std::path::{Path, PathBuf};

use anyhow::Context;
use std::sync::Arc;

use glacier_backup::archiver::{Archiver, Error as ArchiverError};
use glacier_backup::backends::BackendError;
use glacier_backup::config::Config;
use glacier_backup::ledger::{Ledger, LedgerLock, LockError};

/// How the process ends.
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: something failed and was reported.
    Failed,
    /// Exit 3: nothing failed, but work waits on cold storage (a retrieval or an inventory
    /// job); the same command finishes it later.
    Pending,
    /// Exit 129, 130 or 143: stopped by a signal, cleanly.
    Interrupted(Stop),
}

impl Outcome {
    /// How a run over many archives ends: failed if any failed, else pending if any waits for
    /// a retrieval, else success.
    pub fn of(failed: usize, pending: usize) -> Outcome {
        if failed > 0 {
            Outcome::Failed
        } else if pending > 0 {
            Outcome::Pending
        } else {
            Outcome::Success
        }
    }
}

/// A request to stop: the signals a user, a terminal or a service manager sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGHUP: the terminal went away.
    Hangup,
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: `kill`, `timeout`, systemd.
    Terminate,
}

impl Stop {
    /// 128 + the signal's number, as shells report a process a signal ended.
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Hangup => 129,
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }

    /// How the warning names it.
    pub fn name(self) -> &'static str {
        match self {
            Stop::Hangup => "SIGHUP",
            Stop::Interrupt => "Ctrl-C",
            Stop::Terminate => "SIGTERM",
        }
    }
}

/// Resolves when this run is asked to stop (Ctrl-C, SIGTERM, SIGHUP). Only the commands that
/// can stop cleanly wait on it: while one does, these signals no longer end the process
/// abruptly, so the command drops what is in flight and returns.
pub async fn stop_requested() -> Stop {
    use tokio::signal::unix::{signal, SignalKind};
    async fn next(stream: Option<&mut tokio::signal::unix::Signal>) {
        match stream {
            Some(stream) => {
                stream.recv().await;
            }
            // Not installed: wait on the others.
            None => std::future::pending().await,
        }
    }
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut hangup = signal(SignalKind::hangup()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Stop::Interrupt,
        _ = next(terminate.as_mut()) => Stop::Terminate,
        _ = next(hangup.as_mut()) => Stop::Hangup,
    }
}

/// How a command that stops cleanly ends on a signal: a warning that says what is `kept` for
/// the next run, and with `--json` the one document naming the command and the signal.
pub fn stopped(json: bool, command: &str, stop: Stop, kept: &str) -> Result<Outcome, Fatal> {
    tracing::warn!("stopped by {}: {kept}", stop.name());
    if json {
        print_json(&serde_json::json!({
            "command": command,
            "interrupted": stop.name(),
        }))?;
    }
    Ok(Outcome::Interrupted(stop))
}

/// An error that decides the exit code.
pub enum Fatal {
    /// Usage or configuration: exit 2.
    Config(anyhow::Error),
    /// Another run holds the ledger's lock: exit 11.
    Busy(anyhow::Error),
    /// Anything else: exit 1.
    Failure(anyhow::Error),
}

/// What every command opens first: the configured destination's archiver and its ledger
/// file. Building it contacts nothing and creates nothing.
pub struct Session {
    /// The configured backend.
    pub archiver: Arc<dyn Archiver>,
    /// Its ledger file (which may not exist yet).
    pub ledger_file: PathBuf,
}

impl Session {
    /// The archiver named by the config, and the ledger file that goes with it.
    pub fn open(config: &Config) -> Result<Self, Fatal> {
        let archiver = config.open_archiver()?;
        let ledger_file = config.ledger_path(&archiver.target(), home_config_dir().as_deref());
        tracing::debug!("ledger: {}", shown(&ledger_file));
        Ok(Session {
            archiver,
            ledger_file,
        })
    }

    /// The ledger, for a command that records what it does: created when missing (a machine
    /// that lost it). Not locked: restores and inventories may wait for hours and must not
    /// keep backups out meanwhile; what they write (retrievals) is theirs alone, and SQLite
    /// keeps each write whole. A dry run gets a private in-memory copy.
    pub fn ledger(&self, dry_run: bool) -> Result<Ledger, Fatal> {
        Ok(if dry_run {
            Ledger::snapshot(&self.ledger_file)?
        } else {
            Ledger::open(&self.ledger_file)?
        })
    }

    /// Keeps other runs off the ledger while this one writes upload rows.
    pub fn lock(&self) -> Result<LedgerLock, Fatal> {
        Ok(LedgerLock::acquire(&self.ledger_file)?)
    }
}

impl From<BackendError> for Fatal {
    /// The configured backend cannot be built: a configuration problem.
    fn from(error: BackendError) -> Self {
        Fatal::Config(error.into())
    }
}

impl From<ArchiverError> for Fatal {
    /// A backend's settings are wrong (exit 2), or it failed (exit 1).
    fn from(error: ArchiverError) -> Self {
        match error {
            ArchiverError::Config { .. } => Fatal::Config(error.into()),
            other => Fatal::Failure(other.into()),
        }
    }
}

impl From<glacier_backup::config::ConfigError> for Fatal {
    /// The config file cannot be used.
    fn from(error: glacier_backup::config::ConfigError) -> Self {
        Fatal::Config(error.into())
    }
}

impl From<glacier_backup::backup::RunError> for Fatal {
    /// The ledger stopped the run: as [`LedgerError`](glacier_backup::ledger::LedgerError)
    /// decides, or exit 1 for an archive stored but not recorded.
    fn from(error: glacier_backup::backup::RunError) -> Self {
        match error {
            glacier_backup::backup::RunError::Ledger(e) => e.into(),
            other => Fatal::Failure(other.into()),
        }
    }
}

impl From<glacier_backup::restore::RestoreError> for Fatal {
    /// Nothing matches what was asked (exit 2), or the ledger cannot be read.
    fn from(error: glacier_backup::restore::RestoreError) -> Self {
        match error {
            glacier_backup::restore::RestoreError::Ledger(e) => e.into(),
            other => Fatal::Config(other.into()),
        }
    }
}

impl From<LockError> for Fatal {
    /// Another run holds the ledger (exit 11), or its lock file cannot be made.
    fn from(error: LockError) -> Self {
        match error {
            LockError::Busy(_) => Fatal::Busy(error.into()),
            LockError::Directory(e) => e.into(),
            other => Fatal::Failure(other.into()),
        }
    }
}

impl From<glacier_backup::ledger::LedgerError> for Fatal {
    /// A ledger the user must fix (unwritable, empty, not a ledger) exits 2; a failure while
    /// using it exits 1.
    fn from(error: glacier_backup::ledger::LedgerError) -> Self {
        if error.is_setup() {
            Fatal::Config(error.into())
        } else {
            Fatal::Failure(error.into())
        }
    }
}

/// Where the config, the default log file and ledgers live: `$XDG_CONFIG_HOME/glacier_backup`,
/// else `$HOME/.config/glacier_backup`, where the Python tool kept them.
pub fn home_config_dir() -> Option<PathBuf> {
    let python_tool = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".config").join(CONFIG_DIR));
    // The XDG base directory rules: only an absolute XDG_CONFIG_HOME counts.
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(CONFIG_DIR));
    match (xdg, python_tool) {
        // The Python tool's files are still found when the XDG place holds no config.
        (Some(xdg), Some(old))
            if !xdg.join(CONFIG_FILE).exists() && old.join(CONFIG_FILE).exists() =>
        {
            Some(old)
        }
        (Some(xdg), _) => Some(xdg),
        (None, old) => old,
    }
}

/// The directory of the config, the default log file and ledgers, under the config home.
const CONFIG_DIR: &str = "glacier_backup";
/// The default config file's name in it.
pub const CONFIG_FILE: &str = "glacier_backup.conf";

/// An absolute form of a `-p` path, as config sections write paths: no trailing slash, and
/// `..` resolved (through the file system, as the shell would have).
pub fn command_line_path(path: &Path) -> Result<PathBuf, Fatal> {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::path::absolute(path)
        .with_context(|| format!("-p {}: cannot make the path absolute", shown(path)))
        .map_err(Fatal::Config)?;
    let absolute = if absolute
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        std::fs::canonicalize(&absolute).unwrap_or(absolute)
    } else {
        absolute
    };
    let bytes = absolute.as_os_str().as_bytes();
    let end = bytes.iter().rposition(|&b| b != b'/').map_or(1, |i| i + 1);
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes[..end])))
}

/// `path` with `.` and `..` components folded away, without consulting the file system.
pub fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Prints `document` on stdout, the one JSON document of a `--json` run. A reader that went
/// away (`| head`) is not an error.
pub fn print_json(document: &serde_json::Value) -> Result<(), Fatal> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(document).expect("JSON values serialize");
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Fatal::Failure(e.into())),
        _ => Ok(()),
    }
}

/// A JSON object with `path` (and `path_base64` when needed) set.
pub fn with_path(path: &Path, mut object: serde_json::Value) -> serde_json::Value {
    set_path_json(&mut object, "path", path);
    object
}

/// Sets `key` to `path` in a JSON object: as text, and when the path is not UTF-8 (JSON text
/// cannot hold its bytes) also as `<key>_base64`, the exact bytes.
pub fn set_path_json(object: &mut serde_json::Value, key: &str, path: &Path) {
    use base64::Engine;
    use std::os::unix::ffi::OsStrExt;
    object[key] = path.to_string_lossy().into();
    if path.to_str().is_none() {
        object[format!("{key}_base64")] = base64::engine::general_purpose::STANDARD
            .encode(path.as_os_str().as_bytes())
            .into();
    }
}

/// One archive's entry in a `--json` document (restore, migrate): its path, id, size and
/// outcome, with `details` added.
pub(crate) fn archive_json(
    row: &glacier_backup::ledger::UploadRecord,
    outcome: &str,
    details: serde_json::Value,
) -> serde_json::Value {
    let mut entry = with_path(
        &row.path,
        serde_json::json!({
            "archive_id": row.archive_id,
            "size": row.size,
            "outcome": outcome,
        }),
    );
    if let (Some(entry), serde_json::Value::Object(details)) = (entry.as_object_mut(), details) {
        entry.extend(details);
    }
    entry
}

/// A catalog entry in a `--json` document (`ls`, `find`): path, kind, size, mode, owner, time
/// and a link's target.
pub(crate) fn catalog_entry_json(entry: &glacier_backup::catalog::Entry) -> serde_json::Value {
    let mtime = time::OffsetDateTime::from_unix_timestamp(entry.mtime)
        .ok()
        .map(glacier_backup::display_time);
    let mut value = with_path(
        &entry.path,
        serde_json::json!({
            "kind": entry.kind.as_str(),
            "size": entry.size,
            "mode": format!("{:04o}", entry.mode),
            "uid": entry.uid,
            "gid": entry.gid,
            "mtime": mtime,
        }),
    );
    if let Some(target) = &entry.link {
        set_path_json(&mut value, "link", target);
    }
    // Kept with `verify_content`: what `sha256sum` of the restored file prints.
    if let Some(digest) = &entry.sha256 {
        value["sha256"] = hex::encode(digest).into();
    }
    value
}

/// Says so when an interrupted prune left deletions unconfirmed: their archives count as gone
/// (restores and backups leave them out) until a prune finishes them.
pub(crate) fn warn_unfinished_prune(ledger: &Ledger) -> Result<(), Fatal> {
    let unfinished = ledger.pruning_unfinished()?;
    if !unfinished.is_empty() {
        tracing::warn!(
            "an interrupted prune left {} deletion(s) unconfirmed (first: {}); run `prune` to \
             finish them",
            unfinished.len(),
            unfinished[0]
        );
    }
    Ok(())
}

/// The destination's inventory for `inventory` and `migrate --all` (see
/// [`glacier_backup::inventory::fetch`]); `None` while its job runs, said on stderr (and as a
/// `--json` document).
pub(crate) async fn fetch_inventory(
    cli: &crate::cli::Cli,
    wait: Option<std::time::Duration>,
    archiver: &dyn glacier_backup::archiver::Archiver,
    ledger: &mut Ledger,
) -> Result<Option<glacier_backup::archiver::Listing>, Fatal> {
    use glacier_backup::inventory::{fetch, FetchError, Fetched};
    let progress =
        glacier_backup::progress::or_none(&crate::progress_view::shared(cli.progress, cli.quiet));
    match fetch(archiver, ledger, cli.dryrun, wait, &progress).await {
        Ok(Fetched::Ready(listing)) => Ok(Some(listing)),
        Ok(Fetched::Pending { request_id }) => {
            tracing::info!("run `glacier-backup inventory` again later (or add --wait)");
            if cli.json {
                print_json(&serde_json::json!({ "pending": true, "request_id": request_id }))?;
            }
            Ok(None)
        }
        Err(FetchError::Archiver(e)) => Err(e.into()),
        Err(FetchError::Ledger(e)) => Err(e.into()),
        Err(e @ FetchError::NoneYet) => Err(Fatal::Failure(e.into())),
    }
}

/// The ledger file of `config`'s destination, found without contacting it, in any build: the
/// Python tool's naming for a vault when the glacier backend is not compiled in.
pub fn ledger_for(config: &Config) -> Result<PathBuf, Fatal> {
    let target = match config.open_archiver() {
        Ok(archiver) => archiver.target(),
        Err(glacier_backup::backends::BackendError::NotCompiled { .. })
            if config.backend == "glacier" =>
        {
            format!(
                "glacier.{}",
                config.vault_name.as_deref().unwrap_or("default")
            )
        }
        Err(e) => return Err(Fatal::Config(e.into())),
    };
    Ok(config.ledger_path(&target, home_config_dir().as_deref()))
}
