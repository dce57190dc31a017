//! `verify`: sources and destination against the ledger.

use glacier_backup::shown;
use std::path::PathBuf;

use glacier_backup::config::Config;
use glacier_backup::verify::{verify_all, VerifyError, VerifyRequest};

use super::{command_line_path, print_json, with_path, Fatal, Outcome, Session};

pub async fn verify(
    config: &Config,
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
    let report = verify_all(session.archiver.as_ref(), &ledger, &request, &config.prices)
        .await
        .map_err(|e| match e {
            VerifyError::ReadNeedsRetrieval(_) => Fatal::Config(e.into()),
            VerifyError::NoInventoryYet(_) => Fatal::Failure(e.into()),
            VerifyError::Ledger(e) => e.into(),
            VerifyError::Archiver(e) => e.into(),
        })?;
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
