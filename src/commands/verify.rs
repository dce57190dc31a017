//! `verify`: sources and destination against the ledger.

use glacier_backup::shown;
use std::path::PathBuf;

use glacier_backup::archiver::InventoryState;
use glacier_backup::config::Config;

use super::{command_line_path, print_json, with_path, Fatal, Outcome, Session};

pub async fn verify(
    config: &Config,
    remote: bool,
    read: bool,
    paths: &[PathBuf],
    json: bool,
) -> Result<Outcome, Fatal> {
    use glacier_backup::verify::{check_by_reading, check_remote, check_sources, latest_uploads};
    let session = Session::open(config)?;
    let archiver = &session.archiver;
    if read && archiver.capabilities().needs_restore {
        return Err(Fatal::Config(anyhow::anyhow!(
            "verify --read reads every archive back, and this {} destination's archives need a \
             retrieval first (hours, billed by the GB); to check every byte of some, restore \
             them to a scratch directory with `restore --to DIR`, which checks each download",
            archiver.name()
        )));
    }
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
        match (read, archiver.local_directory().is_some()) {
            // A local directory's inventory (above) already read back and re-hashed each one.
            (_, true) => {}
            (true, false) => {
                announce_reading(config, archiver.as_ref(), &here);
                findings.extend(check_by_reading(archiver.as_ref(), &here).await);
            }
            (false, false) => tracing::info!("{}", unread_note(archiver.as_ref())),
        }
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
            "read": read,
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

/// What a check without `--read` leaves unproven, said in its output.
fn unread_note(archiver: &dyn glacier_backup::archiver::Archiver) -> String {
    let what = "the destination was asked what it holds (sizes, and the tree hashes recorded \
                when each archive was stored); no archive was read back";
    if archiver.capabilities().needs_restore {
        format!(
            "{what}: reading one needs a retrieval, and `restore --to DIR` checks every byte of \
             what it downloads"
        )
    } else {
        format!("{what}: `verify --remote --read` reads each one back and re-hashes it")
    }
}

/// Says what reading every archive back from a cloud destination costs before it starts:
/// data transfer out, and GLACIER_IR's per-GB read.
fn announce_reading(
    config: &Config,
    archiver: &dyn glacier_backup::archiver::Archiver,
    rows: &[glacier_backup::ledger::UploadRecord],
) {
    use glacier_backup::costs::{dollars, PriceClass};
    let bytes: u64 = rows.iter().filter_map(|r| r.size).sum();
    let tier = glacier_backup::archiver::RestoreTier::Standard;
    let cost = archiver
        .storage_class()
        .as_deref()
        .and_then(PriceClass::of)
        .and_then(|class| {
            config
                .prices
                .retrieval(class, tier, rows.len() as u64, bytes)
        })
        .map_or_else(|| config.prices.transfer_out(bytes), |e| e.total());
    tracing::info!(
        "reading {} archive(s) back ({}) to re-hash them: about {} in reads and data transfer \
         out",
        rows.len(),
        glacier_backup::display_size(bytes),
        dollars(cost)
    );
}
