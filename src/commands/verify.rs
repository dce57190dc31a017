//! `verify`: sources and destination against the ledger.

use glacier_backup::shown;
use std::path::PathBuf;

use glacier_backup::archiver::InventoryState;
use glacier_backup::backends::{ledger_path, open_archiver};
use glacier_backup::config::Config;
use glacier_backup::ledger::{Ledger, SqliteLedger};

use super::{command_line_path, home_config_dir, Fatal, Outcome};

pub async fn verify(config: &Config, remote: bool, paths: &[PathBuf]) -> Result<Outcome, Fatal> {
    use glacier_backup::verify::{check_remote, check_sources, latest_uploads};
    let archiver = open_archiver(config).map_err(|e| Fatal::Config(e.into()))?;
    let ledger_file = ledger_path(config, &archiver.target(), home_config_dir().as_deref());
    let ledger = SqliteLedger::snapshot(&ledger_file)?;
    let filter: Vec<PathBuf> = paths
        .iter()
        .map(|p| command_line_path(p))
        .collect::<Result<_, _>>()?;
    let rows = latest_uploads(&ledger, &filter).map_err(|e| Fatal::Failure(e.into()))?;
    let mut findings = check_sources(&rows);
    if remote {
        let listing = if archiver.capabilities().listable {
            match archiver
                .inventory(None)
                .await
                .map_err(|e| Fatal::Failure(e.into()))?
            {
                InventoryState::Ready(listing) => Some(listing),
                InventoryState::Pending { .. } => None,
            }
        } else {
            ledger
                .last_inventory()
                .map_err(|e| Fatal::Failure(e.into()))?
        };
        let Some(listing) = listing else {
            return Err(Fatal::Failure(anyhow::anyhow!(
                "the {} backend lists its archives through an inventory job, and none was \
                 fetched yet: run `glacier-backup inventory` (again later, or with --wait) \
                 first",
                archiver.name()
            )));
        };
        if let Some(taken) = listing.taken_at {
            tracing::info!(
                "comparing with the inventory of {}",
                glacier_backup::display_time(taken)
            );
        }
        findings.extend(check_remote(&rows, &listing));
    }
    for finding in &findings {
        tracing::warn!("{}: {}", shown(&finding.path), finding.problem);
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
