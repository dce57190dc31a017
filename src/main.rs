//! The `glacier-backup` command: parses arguments, loads the config, runs, and maps outcomes to
//! exit codes (0 all good, 1 something failed or another run is in progress, 2 usage or config).

mod cli;
mod logging;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use glacier_backup::archiver::Error as ArchiverError;
use glacier_backup::backends::{ledger_path, open_archiver, BackendError};
use glacier_backup::config::{self, Config, LogFile, PathRule};
use glacier_backup::ledger::{
    lock_path, Ledger, LedgerLock, LockError, SqliteLedger, UploadRecord,
};
use glacier_backup::run::{error_chain, run_backup, RunOptions};
use tracing_subscriber::filter::LevelFilter;

use cli::{Cli, Command, RestoreArgs, Tier};

/// How the process ends.
enum Outcome {
    Success,
    Failed,
    Interrupted,
}

/// An error that decides the exit code.
enum Fatal {
    /// Usage or configuration: exit 2.
    Config(anyhow::Error),
    /// Anything else: exit 1.
    Failure(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Fatal::Failure)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(Fatal::Config(e)) => {
            report(&e);
            ExitCode::from(2)
        }
        Err(Fatal::Failure(e)) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}

fn report(error: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", error_chain(error.as_ref()));
}

fn home_config_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".config").join("glacier_backup"))
}

/// Loads the config and applies the command line on top of it.
fn load_config(cli: &Cli) -> Result<Config, Fatal> {
    let home = home_config_dir();
    let path = match (&cli.config, &home) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(dir)) => Some(dir.join("glacier_backup.conf")),
        (None, None) => None,
    };
    let mut config = match path {
        Some(path) if cli.config.is_some() || path.exists() || cli.paths.is_empty() => {
            config::load(&path).map_err(|e| Fatal::Config(e.into()))?
        }
        Some(_) => Config::empty(),
        None if !cli.paths.is_empty() => Config::empty(),
        None => {
            return Err(Fatal::Config(anyhow::anyhow!(
                "HOME is not set, so there is no default config file; pass one with -c"
            )))
        }
    };
    if let Some(vault) = &cli.vault {
        config.vault_name = Some(vault.clone());
    }
    if let Some(account) = &cli.account {
        config.account_id = Some(account.clone());
    }
    if let Some(backend) = &cli.backend {
        config.backend = backend.clone();
    }
    if let Some(logfile) = &cli.logfile {
        config.logfile = if logfile.is_empty() {
            LogFile::Disabled
        } else {
            LogFile::Path(PathBuf::from(logfile))
        };
    }
    if !cli.paths.is_empty() {
        config.paths = cli
            .paths
            .iter()
            .map(|p| command_line_path(p).map(PathRule::single))
            .collect::<Result<_, Fatal>>()?;
    }
    Ok(config)
}

/// An absolute form of a `-p` path, as config sections write paths: no trailing slash, and
/// `..` resolved (through the file system, as the shell would have).
fn command_line_path(path: &Path) -> Result<PathBuf, Fatal> {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::path::absolute(path)
        .with_context(|| format!("-p {}: cannot make the path absolute", path.display()))
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
fn lexically_normal(path: &Path) -> PathBuf {
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

async fn run(cli: Cli) -> Result<Outcome, Fatal> {
    let config = load_config(&cli)?;
    let level = if cli.quiet {
        LevelFilter::WARN
    } else if cli.verbose {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let configured_log = match &config.logfile {
        LogFile::Disabled => None,
        LogFile::Path(p) => Some(p.clone()),
        LogFile::Default => home_config_dir().map(|d| d.join("glacier_backup.log")),
    };
    // A dry run writes nothing, the log file included.
    let logfile = configured_log.clone().filter(|_| !cli.dryrun);
    logging::init(level, logfile.as_deref())
        .with_context(|| {
            format!(
                "cannot open log file {}; fix the path, or disable the log file with -l ''",
                logfile.as_deref().unwrap_or(Path::new("")).display()
            )
        })
        .map_err(Fatal::Config)?;

    match cli.command {
        Some(Command::List { json }) => list(&config, json),
        Some(Command::Restore(ref args)) => restore(&cli, &config, args).await,
        Some(Command::Verify { remote, ref paths }) => verify(&config, remote, paths).await,
        Some(Command::Backup) | None => backup(&cli, &config, configured_log).await,
    }
}

fn ledger_for(config: &Config) -> Result<PathBuf, Fatal> {
    let target = match open_archiver(config) {
        Ok(archiver) => archiver.target(),
        // The seed's naming, known without the backend, so `list` works in any build.
        Err(BackendError::NotCompiled { .. }) if config.backend == "glacier" => format!(
            "glacier.{}",
            config.vault_name.as_deref().unwrap_or("default")
        ),
        Err(e) => return Err(Fatal::Config(e.into())),
    };
    Ok(ledger_path(config, &target, home_config_dir().as_deref()))
}

fn list(config: &Config, json: bool) -> Result<Outcome, Fatal> {
    let path = ledger_for(config)?;
    let ledger = SqliteLedger::snapshot(&path).map_err(|e| Fatal::Failure(e.into()))?;
    let uploads = ledger.uploads().map_err(|e| Fatal::Failure(e.into()))?;
    let mut out = std::io::stdout().lock();
    let written = if json {
        let rows: Vec<_> = uploads.iter().map(upload_json).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON values serialize")
        )
    } else if uploads.is_empty() {
        writeln!(out, "no uploads recorded in {}", path.display())
    } else {
        write_table(&mut out, &uploads)
    };
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Success),
        Err(e) => Err(Fatal::Failure(e.into())),
        Ok(()) => Ok(Outcome::Success),
    }
}

fn upload_json(u: &UploadRecord) -> serde_json::Value {
    let time = |t: Option<time::OffsetDateTime>| t.map(glacier_backup::display_time);
    serde_json::json!({
        "path": u.path.to_string_lossy(),
        "name": u.name,
        "archive_id": u.archive_id,
        "description": u.description,
        "backend": u.backend,
        "kind": u.kind.map(|k| k.as_str()),
        "size": u.size,
        "tree_hash": u.tree_hash.map(|h| h.to_hex()),
        "fingerprint": u.fingerprint,
        "started_at": time(u.started_at),
        "uploaded_at": time(u.uploaded_at),
    })
}

fn write_table(out: &mut dyn Write, uploads: &[UploadRecord]) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = uploads
        .iter()
        .map(|u| {
            [
                u.uploaded_at
                    .map(glacier_backup::display_time)
                    .unwrap_or_else(|| "-".into()),
                u.backend.clone(),
                u.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                u.path.to_string_lossy().into_owned(),
                u.archive_id.clone(),
            ]
        })
        .collect();
    let header = ["UPLOADED", "BACKEND", "SIZE", "PATH", "ARCHIVE ID"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

async fn restore(cli: &Cli, config: &Config, args: &RestoreArgs) -> Result<Outcome, Fatal> {
    use glacier_backup::archiver::{RestoreOptions, RestoreTier};
    use glacier_backup::restore::{restore_one, select, Outcome as Restored, RestoreRequest};
    let archiver = open_archiver(config).map_err(|e| Fatal::Config(e.into()))?;
    let ledger_file = ledger_path(config, &archiver.target(), home_config_dir().as_deref());
    if !ledger_file.exists() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "no ledger at {}: nothing was backed up with this configuration",
            ledger_file.display()
        )));
    }
    let to = args.to.clone().ok_or_else(|| {
        Fatal::Config(anyhow::anyhow!(
            "restore needs --to DIR: the directory to restore into"
        ))
    })?;
    if args.paths.is_empty() && args.archive_ids.is_empty() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "name what to restore: one or more PATHs as they were backed up, or --archive-id ID"
        )));
    }
    let request = RestoreRequest {
        paths: args
            .paths
            .iter()
            .map(|p| command_line_path(p))
            .collect::<Result<_, _>>()?,
        archive_ids: args.archive_ids.clone(),
        to: std::path::absolute(&to).unwrap_or(to),
        options: RestoreOptions {
            tier: match args.tier {
                Tier::Expedited => RestoreTier::Expedited,
                Tier::Standard => RestoreTier::Standard,
                Tier::Bulk => RestoreTier::Bulk,
            },
            days: Some(args.days),
        },
        wait: args
            .wait
            .then(|| std::time::Duration::from_secs(args.timeout)),
    };
    let ledger = SqliteLedger::snapshot(&ledger_file).map_err(|e| Fatal::Failure(e.into()))?;
    let rows = select(&ledger, &request).map_err(|e| Fatal::Config(e.into()))?;
    let total: u64 = rows.iter().filter_map(|r| r.size).sum();
    let wait = if archiver.capabilities().needs_restore {
        match args.tier {
            Tier::Expedited => "minutes",
            Tier::Standard => "hours (3-5 for Glacier, up to 12 for DEEP_ARCHIVE)",
            Tier::Bulk => "5-12 hours (up to 48 for DEEP_ARCHIVE)",
        }
    } else {
        "none"
    };
    tracing::info!(
        "plan: {} archive(s), {total} bytes, into {}; tier {:?}, expected wait {wait}",
        rows.len(),
        request.to.display(),
        args.tier
    );
    for row in &rows {
        tracing::info!("  {} ({})", row.path.display(), row.archive_id);
    }
    if cli.dryrun {
        return Ok(Outcome::Success);
    }
    let (mut failed, mut pending) = (0, 0);
    for row in &rows {
        match restore_one(archiver.as_ref(), row, &request).await {
            Restored::Restored { path, rejected } => {
                tracing::info!("restored {} to {}", row.path.display(), path.display());
                if rejected > 0 {
                    tracing::warn!(
                        "{rejected} unsafe archive entries were not restored (see above)"
                    );
                    failed += 1;
                }
            }
            Restored::Pending => {
                pending += 1;
                tracing::info!(
                    "{}: retrieval in progress; run the same command again later (or add --wait)",
                    row.path.display()
                );
            }
            Restored::Failed(message) => {
                failed += 1;
                tracing::error!("{}: {message}", row.path.display());
            }
        }
    }
    tracing::info!(
        "restored {}, pending {pending}, failed {failed}",
        rows.len() - pending - failed
    );
    Ok(if failed > 0 {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

async fn verify(config: &Config, remote: bool, paths: &[PathBuf]) -> Result<Outcome, Fatal> {
    use glacier_backup::verify::{check_remote, check_sources, latest_uploads};
    let archiver = open_archiver(config).map_err(|e| Fatal::Config(e.into()))?;
    let ledger_file = ledger_path(config, &archiver.target(), home_config_dir().as_deref());
    let ledger = SqliteLedger::snapshot(&ledger_file).map_err(|e| Fatal::Failure(e.into()))?;
    let filter: Vec<PathBuf> = paths
        .iter()
        .map(|p| command_line_path(p))
        .collect::<Result<_, _>>()?;
    let rows = latest_uploads(&ledger, &filter).map_err(|e| Fatal::Failure(e.into()))?;
    let mut findings = check_sources(&rows);
    if remote {
        if archiver.capabilities().listable {
            let remote_findings = check_remote(archiver.as_ref(), &rows)
                .await
                .map_err(|e| Fatal::Failure(e.into()))?;
            findings.extend(remote_findings);
        } else {
            tracing::warn!(
                "the {} backend lists its archives only through an inventory job, which verify \
                 does not run yet: only the sources were checked",
                archiver.name()
            );
        }
    }
    for finding in &findings {
        tracing::warn!("{}: {}", finding.path.display(), finding.problem);
    }
    tracing::info!(
        "verified {} upload(s): {} problem(s)",
        rows.len(),
        findings.len()
    );
    Ok(if findings.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

async fn backup(cli: &Cli, config: &Config, logfile: Option<PathBuf>) -> Result<Outcome, Fatal> {
    let archiver = open_archiver(config).map_err(|e| Fatal::Config(e.into()))?;
    let ledger_file = ledger_path(config, &archiver.target(), home_config_dir().as_deref());
    if config.paths.is_empty() {
        tracing::warn!(
            "no paths to back up: add path sections to {} or pass -p",
            config
                .file
                .as_deref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "the config file".into())
        );
        return Ok(Outcome::Success);
    }
    let options = RunOptions {
        dry_run: cli.dryrun,
        max_uploads: cli
            .max_uploads
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };

    let (mut ledger, _lock) = if cli.dryrun {
        let ledger = SqliteLedger::snapshot(&ledger_file).map_err(|e| Fatal::Failure(e.into()))?;
        (ledger, None)
    } else {
        let lock = LedgerLock::acquire(&ledger_file).map_err(|e| match e {
            LockError::Busy(_) => Fatal::Failure(e.into()),
            LockError::Io { .. } => Fatal::Failure(e.into()),
        })?;
        archiver.check().await.map_err(|e| match e {
            ArchiverError::Config { .. } => Fatal::Config(e.into()),
            other => Fatal::Failure(other.into()),
        })?;
        let ledger = SqliteLedger::open(&ledger_file).map_err(|e| Fatal::Failure(e.into()))?;
        (ledger, Some(lock))
    };
    tracing::debug!("ledger: {}", ledger_file.display());

    let mut own_files = vec![ledger_file.clone(), lock_path(&ledger_file)];
    for suffix in ["-journal", "-wal", "-shm"] {
        let mut name = ledger_file.clone().into_os_string();
        name.push(suffix);
        own_files.push(name.into());
    }
    own_files.extend(archiver.local_directory());
    own_files.extend(logfile);
    // Walks see paths as configured; these may be written with `..` or through symlinks, so
    // both the lexical and the resolved form are listed.
    let own_files: Vec<PathBuf> = own_files
        .into_iter()
        .filter_map(|p| std::path::absolute(p).ok())
        .flat_map(|p| [lexically_normal(&p), std::fs::canonicalize(&p).unwrap_or(p)])
        .collect();
    let planned = glacier_backup::resolve::resolve(&config.paths, &own_files);
    let run = run_backup(
        &planned,
        &mut ledger as &mut dyn Ledger,
        archiver.as_ref(),
        &options,
    );
    let report = tokio::select! {
        report = run => report.map_err(|e| Fatal::Failure(e.into()))?,
        _ = tokio::signal::ctrl_c() => {
            tracing::warn!("interrupted: the upload in progress was abandoned and not recorded; run again to finish");
            return Ok(Outcome::Interrupted);
        }
    };

    let verb = if cli.dryrun {
        "would upload"
    } else {
        "uploaded"
    };
    let mut summary = format!(
        "{}{verb} {}, up to date {}, failed {}",
        if cli.dryrun { "dry run: " } else { "" },
        report.uploaded.len(),
        report.up_to_date,
        report.failed.len()
    );
    if report.empty_skipped > 0 {
        summary.push_str(&format!(", empty files skipped {}", report.empty_skipped));
    }
    if report.deferred > 0 {
        summary.push_str(&format!(", deferred {} (--max-uploads)", report.deferred));
    }
    tracing::info!("{summary}");
    Ok(if report.failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
