//! `inventory`: what the destination holds, compared with the ledger; `--rebuild-ledger` adds
//! what the ledger lost.

use std::io::Write;

use glacier_backup::archiver::{ListedArchive, Listing};
use glacier_backup::catalog::FromIndexes;
use glacier_backup::config::Config;
use glacier_backup::inventory::{rebuild, reconcile_ledger, Rebuilt, Reconciliation};
use glacier_backup::ledger::UploadRecord;
use glacier_backup::{display_size, display_time};

use glacier_backup::shown;

use super::{fetch_inventory, Fatal, Outcome, Session};
use crate::cli::{Cli, InventoryArgs};

pub async fn inventory(cli: &Cli, config: &Config, args: &InventoryArgs) -> Result<Outcome, Fatal> {
    let session = Session::open(config)?;
    let archiver = &session.archiver;
    let mut ledger = session.ledger(cli.dryrun)?;
    let wait = args
        .wait
        .then(|| std::time::Duration::from_secs(args.timeout));
    let Some(listing) = fetch_inventory(cli, wait, archiver.as_ref(), &mut ledger).await? else {
        // A vault's indexes asked for by an earlier rebuild are read meanwhile, by the
        // inventory that run kept.
        if args.rebuild_ledger && !cli.dryrun {
            if let Some(last) = ledger.last_inventory()? {
                let _lock = session.lock()?;
                catalogs_from_indexes(config, args, archiver.as_ref(), &mut ledger, &last).await?;
            }
        }
        return Ok(Outcome::Pending);
    };
    // Taken only now: the wait above may be long, and rows are added only below.
    let _lock = if args.rebuild_ledger && !cli.dryrun {
        Some(session.lock()?)
    } else {
        None
    };
    let mut report = reconcile_ledger(&ledger, &listing)?;
    // Archives `migrate --delete-source` deleted are expected to be gone.
    let split = ledger.split_moved_away(std::mem::take(&mut report.missing))?;
    report.missing = split.here;
    let moved_away = split.gone.len();
    if moved_away > 0 {
        tracing::info!(
            "{moved_away} archive(s) moved to another destination and deleted here (migrate \
             --delete-source): not counted as missing"
        );
    }
    let rebuilt = if args.rebuild_ledger {
        Some(rebuild(
            &mut ledger,
            &glacier_backup::inventory::Capable::of(archiver.as_ref()),
            &listing,
            &report.unrecorded,
        )?)
    } else {
        None
    };
    let from_indexes = match args.rebuild_ledger && !cli.dryrun {
        true => Some(
            catalogs_from_indexes(config, args, archiver.as_ref(), &mut ledger, &listing).await?,
        ),
        false => None,
    };
    if !cli.dryrun {
        let save = ledger
            .record_inventory(&listing)
            .and_then(|()| ledger.clear_retrieval(None));
        save?;
    }
    let broken = glacier_backup::verify::broken_chains(&ledger, &listing)?;
    super::warn_unfinished_prune(&ledger)?;
    for chain in &broken {
        tracing::warn!("{}: {}", shown(&chain.path), chain.problem);
    }
    let mut out = std::io::stdout().lock();
    let written = if cli.json {
        writeln!(
            out,
            "{}",
            to_json(&listing, &report, rebuilt.as_ref(), &broken)
        )
    } else {
        write_report(&mut out, &listing, &report, rebuilt.as_ref())
    };
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(Fatal::Failure(e.into()));
        }
    }
    if cli.dryrun && args.rebuild_ledger {
        tracing::info!("dry run: the ledger was not changed");
    }
    let refused = from_indexes.as_ref().is_some_and(|f| !f.refused.is_empty());
    let pending = from_indexes.as_ref().is_some_and(|f| f.pending > 0);
    Ok(if report.has_problems() || refused || !broken.is_empty() {
        Outcome::Failed
    } else if pending {
        Outcome::Pending
    } else {
        Outcome::Success
    })
}

/// Brings the catalogs of the ledger's directory uploads back from their indexes (a vault's
/// retrieved first, at the bulk tier, its cost shown), and says what it did.
async fn catalogs_from_indexes(
    config: &Config,
    args: &InventoryArgs,
    archiver: &dyn glacier_backup::archiver::Archiver,
    ledger: &mut glacier_backup::ledger::Ledger,
    listing: &Listing,
) -> Result<FromIndexes, Fatal> {
    use glacier_backup::archiver::{RestoreOptions, RestoreTier};
    let options = RestoreOptions {
        tier: RestoreTier::Bulk,
        ..RestoreOptions::default()
    };
    if archiver.capabilities().needs_restore {
        show_index_cost(config, archiver, ledger, listing)?;
    }
    let identities = match &config.identity_file {
        Some(path) => Some(
            glacier_backup::codec::Identities::load(path).map_err(|e| Fatal::Config(e.into()))?,
        ),
        None => None,
    };
    let report = glacier_backup::catalog::catalogs_from_indexes(
        archiver,
        ledger,
        listing,
        &options,
        identities.as_ref(),
        args.trust_destination,
        args.wait
            .then(|| std::time::Instant::now() + std::time::Duration::from_secs(args.timeout)),
    )
    .await?;
    tracing::info!(
        "catalogs from the destination's indexes: {} restored, {} pending, {} without an index \
         (restorable whole; ls says their contents are unknown), {} refused",
        report.restored,
        report.pending,
        report.without_index,
        report.refused.len()
    );
    for (archive_id, reason) in &report.refused {
        tracing::error!("the index of {archive_id} was refused: {reason}");
    }
    if report.pending > 0 {
        tracing::info!(
            "the indexes' retrievals are under way (bulk tier: 5-12 hours); run `inventory \
             --rebuild-ledger` again then to read them"
        );
    }
    Ok(report)
}

/// The cost of retrieving the indexes a rebuild reads from a vault, shown before it asks.
fn show_index_cost(
    config: &Config,
    archiver: &dyn glacier_backup::archiver::Archiver,
    ledger: &glacier_backup::ledger::Ledger,
    listing: &Listing,
) -> Result<(), Fatal> {
    use glacier_backup::costs::{dollars, PriceClass};
    let wanted = glacier_backup::catalog::wanted_indexes(ledger, listing)?;
    let indexes: Vec<_> = wanted.iter().filter_map(|(_, index)| *index).collect();
    let bytes: u64 = indexes.iter().map(|index| index.size).sum();
    let class = archiver.storage_class().and_then(|c| PriceClass::of(&c));
    let cost = class.and_then(|class| {
        let tier = glacier_backup::archiver::RestoreTier::Bulk;
        config
            .prices
            .retrieval(class, tier, indexes.len() as u64, bytes)
    });
    if let (Some(cost), false) = (cost, indexes.is_empty()) {
        tracing::info!(
            "retrieving {} index(es), {}, at the bulk tier: estimated {}",
            indexes.len(),
            glacier_backup::display_size(bytes),
            dollars(cost.total())
        );
    }
    Ok(())
}

fn origin_text(archive: &ListedArchive) -> String {
    match &archive.origin {
        Some(origin) => format!(
            "{} ({}, stored {})",
            shown(&origin.source_path),
            origin.kind.as_str(),
            archive
                .created_at
                .or(origin.started_at)
                .map(display_time)
                .unwrap_or_else(|| "at an unknown time".into())
        ),
        None => format!(
            "not written by glacier-backup: {:?}",
            archive.description.as_deref().unwrap_or("")
        ),
    }
}

fn write_report(
    out: &mut impl Write,
    listing: &Listing,
    report: &Reconciliation,
    rebuilt: Option<&Rebuilt>,
) -> std::io::Result<()> {
    let total: u64 = listing.archives.iter().map(|a| a.size).sum();
    let taken = listing
        .taken_at
        .map(|t| format!(", taken {}", display_time(t)))
        .unwrap_or_default();
    writeln!(
        out,
        "{} archive(s), {}{taken}",
        listing.archives.len(),
        display_size(total)
    )?;
    writeln!(
        out,
        "recorded in the ledger and present: {}",
        report.matched
    )?;
    let row_line = |row: &UploadRecord| format!("{} ({})", shown(&row.path), row.archive_id);
    writeln!(
        out,
        "recorded but missing from the destination: {}",
        report.missing.len()
    )?;
    for row in &report.missing {
        writeln!(out, "  - {}", row_line(row))?;
    }
    writeln!(
        out,
        "size or tree hash differs: {}",
        report.mismatched.len()
    )?;
    for (row, difference) in &report.mismatched {
        writeln!(out, "  ! {}: {difference}", row_line(row))?;
    }
    if !report.too_recent.is_empty() {
        writeln!(
            out,
            "stored after this inventory was taken (not in it yet): {}",
            report.too_recent.len()
        )?;
    }
    if report.pruned > 0 {
        writeln!(
            out,
            "deleted by prune since, still listed (the listing lags): {}",
            report.pruned
        )?;
    }
    writeln!(out, "not in the ledger: {}", report.unrecorded.len())?;
    for archive in &report.unrecorded {
        writeln!(
            out,
            "  + {} {}: {}",
            archive.archive_id,
            display_size(archive.size),
            origin_text(archive)
        )?;
    }
    if !listing.incomplete.is_empty() {
        writeln!(
            out,
            "unfinished uploads left by interrupted runs (the next backup removes them): {}",
            listing.incomplete.len()
        )?;
        for partial in &listing.incomplete {
            writeln!(
                out,
                "  ~ {} {}",
                shown(&partial.archive_id),
                display_size(partial.size)
            )?;
        }
    }
    if let Some(rebuilt) = rebuilt {
        writeln!(out, "ledger rows added: {}", rebuilt.added.len())?;
        if rebuilt.completed > 0 {
            writeln!(
                out,
                "rows of the Python tool completed with size and tree hash: {}",
                rebuilt.completed
            )?;
        }
        if !rebuilt.older.is_empty() {
            writeln!(
                out,
                "not added, older than the ledger's latest upload of their path: {}",
                rebuilt.older.len()
            )?;
        }
        if !rebuilt.foreign.is_empty() {
            writeln!(
                out,
                "not added, not written by glacier-backup (restore them with --archive-id after \
                 recording them by hand, or with the tool that wrote them): {}",
                rebuilt.foreign.len()
            )?;
        }
        if !rebuilt.unindexed.is_empty() {
            writeln!(
                out,
                "not added, without their index (left by a run stopped between the two, or \
                 the index was deleted; the next backup of their path deletes those its ledger \
                 does not record): {}",
                rebuilt.unindexed.len()
            )?;
        }
    }
    Ok(())
}

fn to_json(
    listing: &Listing,
    report: &Reconciliation,
    rebuilt: Option<&Rebuilt>,
    broken: &[glacier_backup::verify::Finding],
) -> String {
    let time = |t: Option<time::OffsetDateTime>| t.map(display_time);
    let archive = |a: &ListedArchive| {
        let mut value = serde_json::json!({
            "archive_id": a.archive_id,
            "size": a.size,
            "tree_hash": a.tree_hash.map(|h| h.to_hex()),
            "created_at": time(a.created_at),
            "description": a.description,
            "source_path": a.origin.as_ref().map(|o| o.source_path.to_string_lossy().into_owned()),
            "kind": a.origin.as_ref().map(|o| o.kind.as_str()),
        });
        if let Some(origin) = &a.origin {
            super::set_path_json(&mut value, "source_path", &origin.source_path);
        }
        value
    };
    let row = |r: &UploadRecord| {
        let mut value = serde_json::json!({"archive_id": r.archive_id});
        super::set_path_json(&mut value, "path", &r.path);
        value
    };
    let value = serde_json::json!({
        "taken_at": time(listing.taken_at),
        "archives": listing.archives.len(),
        "matched": report.matched,
        "missing": report.missing.iter().map(row).collect::<Vec<_>>(),
        "mismatched": report.mismatched.iter().map(|(r, d)| {
            let mut v = row(r);
            v["difference"] = d.clone().into();
            v
        }).collect::<Vec<_>>(),
        "too_recent": report.too_recent.iter().map(row).collect::<Vec<_>>(),
        "unrecorded": report.unrecorded.iter().map(archive).collect::<Vec<_>>(),
        "pruned_still_listed": report.pruned,
        "incomplete": listing.incomplete.iter().map(|a| serde_json::json!({
            "name": a.archive_id,
            "size": a.size,
        })).collect::<Vec<_>>(),
        "added": rebuilt.map(|r| r.added.iter().map(row).collect::<Vec<_>>()),
        "completed": rebuilt.map(|r| r.completed),
        "broken_chains": broken.iter().map(|f| {
            super::with_path(&f.path, serde_json::json!({ "problem": f.problem }))
        }).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&value).expect("JSON values serialize")
}
