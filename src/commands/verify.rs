//! `verify`: sources and destination against the ledger.

use glacier_backup::shown;
use std::path::PathBuf;

use glacier_backup::archiver::InventoryState;
use glacier_backup::config::Config;
use glacier_backup::ledger::Ledger;

use super::{command_line_path, print_json, with_path, Fatal, Outcome, Session};

pub async fn verify(
    config: &Config,
    remote: bool,
    paths: &[PathBuf],
    json: bool,
) -> Result<Outcome, Fatal> {
    use glacier_backup::verify::{check_remote, check_sources, latest_uploads};
    let session = Session::open(config)?;
    let archiver = &session.archiver;
    let ledger = session.ledger(true)?;
    let filter: Vec<PathBuf> = paths
        .iter()
        .map(|p| command_line_path(p))
        .collect::<Result<_, _>>()?;
    let rows = latest_uploads(&ledger, &filter)?;
    let mut findings = check_sources(&rows);
    if remote {
        let listing = if archiver.capabilities().listable {
            match archiver.inventory(None).await? {
                InventoryState::Ready(listing) => Some(listing),
                InventoryState::Pending { .. } => None,
            }
        } else {
            ledger.last_inventory()?
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
        // Archives `migrate --delete-source` deleted are expected to be gone.
        let here = super::split_moved_away(&ledger, rows.clone())?.here;
        findings.extend(check_remote(&here, &listing));
    }
    for finding in &findings {
        tracing::warn!("{}: {}", shown(&finding.path), finding.problem);
    }
    tracing::info!(
        "verified {} upload(s): {} problem(s)",
        rows.len(),
        findings.len()
    );
    if json {
        let problems: Vec<_> = findings
            .iter()
            .map(|f| with_path(&f.path, serde_json::json!({ "problem": f.problem })))
            .collect();
        print_json(&serde_json::json!({
            "command": "verify",
            "remote": remote,
            "verified": rows.len(),
            "problems": problems,
        }))?;
    }
    Ok(if findings.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
