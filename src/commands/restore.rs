//! `restore`: plan, request retrievals, download and put back.

use glacier_backup::backends::{ledger_path, open_archiver};
use glacier_backup::config::Config;
use glacier_backup::ledger::SqliteLedger;

use super::{command_line_path, home_config_dir, Fatal, Outcome};
use crate::cli::{Cli, RestoreArgs, Tier};

pub async fn restore(cli: &Cli, config: &Config, args: &RestoreArgs) -> Result<Outcome, Fatal> {
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
