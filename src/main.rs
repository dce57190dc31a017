//! The `glacier-backup` command: parses arguments, loads the config, runs, and maps outcomes to
//! exit codes (listed in `--help`: 0 done, 1 failed, 2 usage or config, 3 pending, 11 locked,
//! 129/130/143 stopped by a signal).

mod cli;
mod commands;
mod logging;
mod progress_view;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use glacier_backup::config::{self, Config, LogFile, PathRule};
use glacier_backup::error_chain;
use tracing_subscriber::filter::LevelFilter;

use cli::{Cli, Command};
use commands::{command_line_path, home_config_dir, Fatal, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    if let Some(text) = documentation(&cli) {
        // Neither needs a config: they describe the command line itself.
        return match std::io::stdout().lock().write_all(&text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                report(&anyhow::Error::from(e));
                ExitCode::from(1)
            }
        };
    }
    if let Some(Command::Keygen {
        output,
        authentication_key_of,
    }) = &cli.command
    {
        // Needs no config either: a key is made before any config names it.
        return match authentication_key_of {
            Some(identity) => authentication_key(identity, output.as_deref(), json),
            None => keygen(output.as_deref(), json),
        };
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Fatal::Failure)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Pending) => ExitCode::from(3),
        Ok(Outcome::Interrupted(stop)) => ExitCode::from(stop.exit_code()),
        Err(Fatal::Config(e)) => fail(&e, 2, json),
        Err(Fatal::Busy(e)) => fail(&e, 11, json),
        Err(Fatal::Failure(e)) => fail(&e, 1, json),
    }
}

/// The completion script or the manual page, when that is what was asked for.
fn documentation(cli: &Cli) -> Option<Vec<u8>> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut out = Vec::new();
    match cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut command, "glacier-backup", &mut out);
        }
        Some(Command::Man) => clap_mangen::Man::new(command)
            .render(&mut out)
            .expect("rendering into memory does not fail"),
        _ => return None,
    }
    Some(out)
}

/// `keygen`: a new identity to a file (or stdout), its recipient to stdout (or stderr).
fn keygen(output: Option<&Path>, json: bool) -> ExitCode {
    match glacier_backup::codec::keys::keygen(output) {
        Ok(recipient) => {
            let line = match (json, output) {
                (true, _) => serde_json::json!({
                    "recipient": recipient,
                    "identity_file": output.map(|p| p.display().to_string()),
                })
                .to_string(),
                (false, Some(_)) => recipient,
                (false, None) => {
                    eprintln!("Public key: {recipient}");
                    return ExitCode::SUCCESS;
                }
            };
            // The identity went to the file: stdout carries only the recipient.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
            if let (false, Some(path)) = (json, output) {
                eprintln!(
                    "wrote a new identity to {} and its authentication key to {}: keep a copy \
                     of the identity somewhere safe, off this machine (without it no encrypted \
                     archive can be read); put the recipient above in [encryption] recipients \
                     and the key file in [encryption] authentication_key_file",
                    glacier_backup::shown(path),
                    glacier_backup::shown(glacier_backup::codec::keys::authentication_key_path(
                        path
                    ))
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // The identity, or else its authentication key beside it, is what exists.
            let existing = output.map(|path| match path.exists() {
                true => path.to_path_buf(),
                false => glacier_backup::codec::keys::authentication_key_path(path),
            });
            refuse_to_replace(existing.as_deref(), json)
        }
        Err(e) => {
            let target = output.map_or_else(|| "stdout".to_owned(), glacier_backup::shown);
            let error = anyhow::anyhow!("cannot write the identity to {target}: {e}");
            fail(&error, key_file_exit_code(&e), json)
        }
    }
}

/// A key keygen would have written over `existing`: never done, whatever it is.
fn refuse_to_replace(existing: Option<&Path>, json: bool) -> ExitCode {
    let error = anyhow::anyhow!(
        "{} exists; keygen never replaces a file (it may be the only key to your backups): \
         choose another name",
        existing.map(glacier_backup::shown).unwrap_or_default()
    );
    fail(&error, 2, json)
}

/// A key file keygen could not read or write: 2 when the path or the file is the user's to
/// fix, 1 when the system failed.
fn key_file_exit_code(error: &std::io::Error) -> u8 {
    use std::io::ErrorKind::*;
    match error.kind() {
        PermissionDenied | NotFound | InvalidInput | InvalidData | NotADirectory => 2,
        _ => 1,
    }
}

/// `keygen --authentication-key-of IDENTITY`: that identity's authentication key, to a file
/// (or stdout).
fn authentication_key(identity: &Path, output: Option<&Path>, json: bool) -> ExitCode {
    match glacier_backup::codec::keys::authentication_key_of(identity, output) {
        Ok(recipient) => {
            if let Some(path) = output {
                if json {
                    let document = serde_json::json!({
                        "recipient": recipient,
                        "authentication_key_file": path.display().to_string(),
                    });
                    let _ = writeln!(std::io::stdout().lock(), "{document}");
                } else {
                    eprintln!(
                        "wrote the authentication key of {recipient} to {}: name it in \
                         [encryption] authentication_key_file",
                        glacier_backup::shown(path)
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => refuse_to_replace(output, json),
        Err(e) => {
            let error = anyhow::anyhow!(
                "cannot make the authentication key of {}: {e}",
                glacier_backup::shown(identity)
            );
            fail(&error, key_file_exit_code(&e), json)
        }
    }
}

/// Reports an error that ended the run; with `--json`, stdout still gets its one document.
fn fail(error: &anyhow::Error, code: u8, json: bool) -> ExitCode {
    report(error);
    if json {
        let document = serde_json::json!({
            "error": error_chain(error.as_ref()),
            "exit_code": code,
        });
        // Nobody reading stdout any more is no reason to fail differently.
        let _ = writeln!(std::io::stdout().lock(), "{document}");
    }
    ExitCode::from(code)
}

fn report(error: &anyhow::Error) {
    // Into the log file too, once it is open (a config that names none, or cannot be read,
    // has nowhere to log but stderr).
    tracing::error!(target: logging::FATAL, "{}", error_chain(error.as_ref()));
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", error_chain(error.as_ref()));
}

/// Loads the config and applies the command line on top of it.
fn load_config(cli: &Cli) -> Result<Config, Fatal> {
    let home = home_config_dir();
    let path = match (&cli.config, &home) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(dir)) => Some(dir.join(commands::CONFIG_FILE)),
        (None, None) => None,
    };
    let mut config = match path {
        Some(path) if cli.config.is_some() || path.exists() || cli.paths.is_empty() => {
            config::load(&path)?
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
    if let Some(schedule) = &cli.limit_upload {
        config.bandwidth.upload = glacier_backup::clock::throttle(schedule.clone());
    }
    if let Some(schedule) = &cli.limit_download {
        config.bandwidth.download = glacier_backup::clock::throttle(schedule.clone());
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
        Some(Command::List) => commands::list::list(&config, cli.json),
        Some(Command::Stats) => commands::stats::stats(&config, cli.json),
        Some(Command::Restore(ref args)) => commands::restore::restore(&cli, &config, args).await,
        Some(Command::Ls(ref args)) => commands::ls::ls(&config, args, cli.json),
        Some(Command::Find(ref args)) => commands::find::find(&config, args, cli.json),
        Some(Command::Inventory(ref args)) => {
            commands::inventory::inventory(&cli, &config, args).await
        }
        Some(Command::Migrate(ref args)) => commands::migrate::migrate(&cli, &config, args).await,
        Some(Command::Verify {
            remote,
            read,
            ref paths,
        }) => commands::verify::verify(&config, cli.dryrun, remote, read, paths, cli.json).await,
        Some(Command::Prune(ref args)) => commands::prune::prune(&cli, &config, args).await,
        Some(Command::Backup(ref args)) => {
            commands::backup::backup(&cli, &config, args, configured_log).await
        }
        None => {
            let args = cli::BackupArgs::default();
            commands::backup::backup(&cli, &config, &args, configured_log).await
        }
        // Answered in `main` before any config is read.
        Some(Command::Completions { .. } | Command::Man | Command::Keygen { .. }) => {
            Ok(Outcome::Success)
        }
    }
}
