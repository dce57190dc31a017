//! `verify`: sources and destination against the ledger.

use glacier_backup::shown;
use std::path::PathBuf;

use glacier_backup::config::Config;
use glacier_backup::verify::{verify_all, VerifyError, VerifyRequest};

use super::{command_line_path, print_json, with_path, Fatal, Outcome, Session};

pub async fn verify(
    config: &Config,
    dry_run: bool,
    remote: bool,
    read: bool,
    paths: &[PathBuf],
    json: bool,
) -> Result<Outcome, Fatal> {
    let session = Session::open(config)?;
    let ledger = session.ledger(true)?;
    let request = VerifyRequest {
        paths: paths
            .iter()
            .map(|p| command_line_path(p))
            .collect::<Result<_, _>>()?,
        remote,
        read,
    };
    super::warn_unfinished_prune(&ledger)?;
    let report = verify_all(session.archiver.as_ref(), &ledger, &request, &config.prices)
        .await
        .map_err(|e| match e {
            VerifyError::ReadNeedsRetrieval(_) => Fatal::Config(e.into()),
            VerifyError::NoInventoryYet(_) => Fatal::Failure(e.into()),
            VerifyError::Ledger(e) => e.into(),
            VerifyError::Archiver(e) => e.into(),
        })?;
    // A listing taken now is the destination's last inventory: the next backup of a chain it
    // shows broken starts a new full.
    if let (Some(listing), false) = (&report.listing, dry_run) {
        match glacier_backup::ledger::LedgerLock::acquire(&session.ledger_file) {
            Ok(_lock) => {
                let mut ledger = glacier_backup::ledger::Ledger::open(&session.ledger_file)?;
                ledger.record_inventory(listing)?;
            }
            // Another run writes the ledger: the findings stand, only the listing is not kept.
            Err(e) => tracing::warn!(
                "the destination's listing was not kept in the ledger ({e}); run `inventory` \
                 later so the next backup knows what it shows"
            ),
        }
    }
    for finding in &report.findings {
        tracing::warn!("{}: {}", shown(&finding.path), finding.problem);
    }
    tracing::info!(
        "verified {} upload(s): {} problem(s)",
        report.verified,
        report.findings.len()
    );
    if json {
        let problems: Vec<_> = report
            .findings
            .iter()
            .map(|f| with_path(&f.path, serde_json::json!({ "problem": f.problem })))
            .collect();
        print_json(&serde_json::json!({
            "command": "verify",
            "remote": remote,
            "read": read,
            "verified": report.verified,
            "problems": problems,
        }))?;
    }
    Ok(Outcome::of(report.findings.len(), 0))
}
