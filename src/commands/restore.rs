//! `restore`: plan, request retrievals, download and put back.

use glacier_backup::archiver::{Archiver, RestoreOptions};
use glacier_backup::config::Config;
use glacier_backup::ledger::{Ledger, Moved, MovedAway, Retrieval, UploadRecord};
use glacier_backup::restore::partial;
use glacier_backup::restore::{
    expected_wait, restore_all, select, whole, Destination, Outcome as Restored, RestoreFailure,
    RestoreReport, RestoreRequest,
};
use glacier_backup::shown;

use super::{archive_json, command_line_path, print_json, Fatal, Outcome, Session};
use crate::cli::{Cli, RestoreArgs};

/// The identities for encrypted archives: `--identity`, else `[encryption] identity_file`.
fn identities(
    args: &RestoreArgs,
    config: &Config,
) -> Result<Option<std::sync::Arc<glacier_backup::codec::Identities>>, Fatal> {
    let Some(path) = args.identity.as_ref().or(config.identity_file.as_ref()) else {
        return Ok(None);
    };
    glacier_backup::codec::Identities::load(path)
        .map(|identities| Some(std::sync::Arc::new(identities)))
        .map_err(|e| Fatal::Config(e.into()))
}

/// `--to` must be a directory, or be creatable as one: the nearest part of it that exists must
/// be a directory (found before anything is asked of the destination).
fn refuse_non_directory(to: &std::path::Path) -> Result<(), Fatal> {
    let existing = to
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find_map(|p| std::fs::metadata(p).ok().map(|meta| (p, meta)));
    match existing {
        Some((found, meta)) if !meta.is_dir() => Err(Fatal::Config(anyhow::anyhow!(
            "--to {}: {} is not a directory; name a directory to restore into (it is created \
             if missing)",
            shown(to),
            shown(found)
        ))),
        _ => Ok(()),
    }
}

fn request(args: &RestoreArgs) -> Result<RestoreRequest, Fatal> {
    if args.paths.is_empty() && args.archive_ids.is_empty() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "name what to restore: one or more PATHs as they were backed up, or --archive-id ID"
        )));
    }
    if args.devices && !glacier_backup::restore::is_root() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "--devices needs root: only root can make device files; run without it to skip them"
        )));
    }
    let destination = match &args.to {
        Some(to) => {
            refuse_non_directory(to)?;
            Destination::Into(std::path::absolute(to).unwrap_or_else(|_| to.clone()))
        }
        None => Destination::InPlace,
    };
    Ok(RestoreRequest {
        paths: args
            .paths
            .iter()
            .map(|p| command_line_path(p))
            .collect::<Result<_, _>>()?,
        archive_ids: args.archive_ids.clone(),
        at: args.at,
        force: args.force,
        devices: args.devices,
        options: RestoreOptions {
            tier: args.tier.into(),
            days: Some(args.days),
            range: None,
        },
        deadline: args
            .wait
            .then(|| std::time::Instant::now() + std::time::Duration::from_secs(args.timeout)),
        trust_destination: args.trust_destination,
        include: args
            .include
            .as_deref()
            .map(glacier_backup::catalog::Pattern::new)
            .transpose()
            .map_err(|e| Fatal::Config(e.into()))?,
        ..RestoreRequest::new(destination)
    })
}

/// Each row's retrieval recorded by an earlier run, if any.
fn earlier_retrievals(ledger: &Ledger, rows: &[UploadRecord]) -> Vec<Option<Retrieval>> {
    rows.iter()
        .map(|row| ledger.retrieval(Some(&row.archive_id)).ok().flatten())
        .collect()
}

/// Each row's plan by entries, when only part of it is asked for or it is an increment: made
/// once (a plan reads whole catalogs) for the plan shown, its cost and `--json`.
type Partials = Vec<Option<Result<partial::RowPlan, RestoreFailure>>>;

fn partial_plans(ledger: &Ledger, rows: &[UploadRecord], request: &RestoreRequest) -> Partials {
    rows.iter()
        .map(|row| partial::plan_row(ledger, row, request))
        .collect()
}

fn show_plan(
    archiver: &dyn Archiver,
    rows: &[UploadRecord],
    partials: &Partials,
    earlier: &[Option<Retrieval>],
    request: &RestoreRequest,
) {
    let total: u64 = rows.iter().filter_map(|r| r.size).sum();
    let into = match &request.destination {
        Destination::Into(dir) => shown(dir),
        Destination::InPlace => "where they came from".into(),
    };
    tracing::info!(
        "plan: {} archive(s), {}, into {into}; tier {}, expected wait {}",
        rows.len(),
        glacier_backup::display_size(total),
        request.options.tier.as_str(),
        expected_wait(archiver, request.options.tier)
    );
    for ((row, earlier), partial) in rows.iter().zip(earlier).zip(partials) {
        let pending = earlier
            .as_ref()
            .map(|r| {
                format!(
                    "; retrieval pending since {}",
                    glacier_backup::display_time(r.requested_at)
                )
            })
            .unwrap_or_default();
        let uploaded = row
            .uploaded_at
            .map(glacier_backup::display_time)
            .unwrap_or_else(|| "at an unknown time".into());
        tracing::info!(
            "  {} (uploaded {uploaded}, {}, {}{pending})",
            shown(&row.path),
            row.size
                .map_or("size unknown".into(), glacier_backup::display_size),
            row.archive_id
        );
        if let Some(partial) = partial {
            show_partial(partial);
        }
    }
}

/// The retrieval requests and bytes restoring `row` asks for: its spans alone from a
/// destination that retrieves ranges, else the whole archive.
fn retrieved(
    archiver: &dyn Archiver,
    row: &UploadRecord,
    partial: &Option<Result<partial::RowPlan, RestoreFailure>>,
) -> (u64, u64) {
    match partial {
        Some(Ok(plan)) if archiver.capabilities().ranged_retrievals => {
            (plan.span_count() as u64, plan.fetched())
        }
        Some(Ok(plan)) => (
            plan.parts.len() as u64,
            plan.parts.iter().filter_map(|(r, _)| r.size).sum(),
        ),
        _ => (1, row.size.unwrap_or(0)),
    }
}

/// A planned archive's details: for a partial restore, what it fetches.
fn partial_json(partial: &Option<Result<partial::RowPlan, RestoreFailure>>) -> serde_json::Value {
    let Some(partial) = partial else {
        return serde_json::json!({});
    };
    let ranges = |plan: &partial::PartialPlan| {
        plan.spans
            .iter()
            .map(|s| [s.start, s.end])
            .collect::<Vec<_>>()
    };
    let partial = match partial {
        Ok(plan) => serde_json::json!({
            "entries": plan.entries(),
            "data_bytes": plan.plain_bytes(),
            // One archive's ranges (an increment's chain gives each archive's below).
            "ranges": match plan.parts.as_slice() {
                [(_, only)] => ranges(only),
                _ => Vec::new(),
            },
            "archives": plan.parts.iter().map(|(row, part)| serde_json::json!({
                "archive_id": row.archive_id,
                "ranges": ranges(part),
            })).collect::<Vec<_>>(),
            "fetch_bytes": plan.fetched(),
            "stored_bytes": plan.stored_size(),
        }),
        Err(failure) => serde_json::json!({ "error": failure.to_string() }),
    };
    serde_json::json!({ "partial": partial })
}

/// What a partial restore of `row` fetches, beside the whole archive.
fn show_partial(partial: &Result<partial::RowPlan, RestoreFailure>) {
    use glacier_backup::display_size;
    match partial {
        Ok(plan) => tracing::info!(
            "    {}: {} entries ({} of data) in {} range(s) of {} archive(s), {}, instead of \
             the whole {}",
            match plan.partial {
                true => "in part",
                false => "by entries",
            },
            plan.entries(),
            display_size(plan.plain_bytes()),
            plan.span_count(),
            plan.parts.len(),
            display_size(plan.fetched()),
            display_size(plan.stored_size())
        ),
        Err(failure) => tracing::warn!("    in part: {failure}"),
    }
}

/// A plan above this asks before starting, on a terminal, unless `--yes`.
const CONFIRM_ABOVE_USD: f64 = 1.0;

/// The estimated cost of retrieving the plan's cold archives that were not asked for yet, shown
/// for the chosen tier beside the others; `None` when reading costs nothing (a local directory,
/// a warm S3 class).
fn estimate(
    archiver: &dyn Archiver,
    config: &Config,
    rows: &[UploadRecord],
    partials: &Partials,
    earlier: &[Option<Retrieval>],
    request: &RestoreRequest,
) -> Option<f64> {
    use glacier_backup::costs::{dollars, PriceClass, Prices};
    let class = PriceClass::of(&archiver.storage_class()?)?;
    let (mut count, mut bytes) = (0, 0);
    let to_ask = rows.iter().zip(partials).zip(earlier);
    for ((row, partial), _) in to_ask.filter(|(_, earlier)| earlier.is_none()) {
        let (requests, retrieved) = retrieved(archiver, row, partial);
        count += requests;
        bytes += retrieved;
    }
    let prices = &config.prices;
    let tier = request.options.tier;
    let chosen = prices.retrieval(class, tier, count, bytes)?;
    // GLACIER_IR and Azure's tiers are read directly, at one price whatever the tier.
    let (how, others) = match class.online() {
        true => ("read at once".to_owned(), String::new()),
        false => {
            let others: Vec<String> = Prices::tiers()
                .iter()
                .filter(|&&other| other != tier)
                .filter_map(|&other| {
                    let cost = prices.retrieval(class, other, count, bytes)?;
                    Some(format!("{} {}", other.as_str(), dollars(cost.total())))
                })
                .collect();
            let others = match others.is_empty() {
                true => "none".to_owned(),
                false => others.join(", "),
            };
            (
                format!("at the {} tier", tier.as_str()),
                format!("; other tiers: {others}"),
            )
        }
    };
    tracing::info!(
        "estimated cost: {} for {count} archive(s) {how} (retrieval {}, requests {}, transfer \
         out {}){others} ({} list prices of {}; see [prices])",
        dollars(chosen.total()),
        dollars(chosen.retrieval),
        dollars(chosen.requests),
        dollars(chosen.transfer),
        class.price_source(),
        glacier_backup::costs::PRICES_AS_OF,
    );
    Some(chosen.total())
}

/// Refuses a plan dearer than `--max-cost`; on a terminal, asks before a plan above
/// [`CONFIRM_ABOVE_USD`] unless `--yes`.
fn check_cost(cli: &Cli, args: &RestoreArgs, estimate: &f64) -> Result<(), Fatal> {
    use std::io::IsTerminal;
    let dollars = glacier_backup::costs::dollars;
    if let Some(max) = args.max_cost {
        if *estimate > max {
            return Err(Fatal::Config(anyhow::anyhow!(
                "the plan's estimated cost {} is above --max-cost {}: restore fewer paths, \
                 choose a cheaper --tier, or raise --max-cost",
                dollars(*estimate),
                dollars(max)
            )));
        }
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if cli.dryrun || args.yes || !interactive || *estimate <= CONFIRM_ABOVE_USD {
        return Ok(());
    }
    eprint!(
        "This restore will cost about {}. Go ahead? [y/N] ",
        dollars(*estimate)
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Fatal::Failure(e.into()))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(Fatal::Config(anyhow::anyhow!(
            "not started: nothing was asked for (run with --yes to skip the question)"
        )))
    }
}

pub async fn restore(cli: &Cli, config: &Config, args: &RestoreArgs) -> Result<Outcome, Fatal> {
    let session = Session::open(config)?;
    let archiver = &session.archiver;
    let ledger_file = &session.ledger_file;
    if !ledger_file.exists() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "no ledger at {}: nothing was backed up with this configuration (after losing it, \
             `glacier-backup inventory --rebuild-ledger` recreates it from the destination)",
            shown(ledger_file)
        )));
    }
    let mut request = request(args)?;
    request.progress = crate::progress_view::shared(cli.progress, cli.quiet);
    if archiver.capabilities().needs_restore && !archiver.offers_tier(request.options.tier) {
        return Err(Fatal::Config(anyhow::anyhow!(
            "the {} tier is not offered for this destination's storage class; use --tier \
             standard or --tier bulk",
            request.options.tier.as_str()
        )));
    }
    let mut ledger = session.ledger(cli.dryrun)?;
    let rows = select(&ledger, &request)?;
    // Archives `migrate --delete-source` deleted here are restored from where they went.
    let MovedAway { here: rows, gone } = ledger.split_moved_away(rows)?;
    for (row, moved) in &gone {
        tracing::error!(
            "{}: archive {} was moved to {} (key {}) and deleted here; restore it with the \
             config of {}",
            shown(&row.path),
            row.archive_id,
            moved.destination,
            moved.key,
            moved.destination
        );
    }
    if rows.iter().any(|row| row.encoding.encrypted) {
        request.identities = identities(args, config)?;
    }
    let earlier = earlier_retrievals(&ledger, &rows);
    let partials = partial_plans(&ledger, &rows, &request);
    show_plan(archiver.as_ref(), &rows, &partials, &earlier, &request);
    if let Some(estimate) = estimate(
        archiver.as_ref(),
        config,
        &rows,
        &partials,
        &earlier,
        &request,
    ) {
        check_cost(cli, args, &estimate)?;
    }
    if cli.dryrun {
        if cli.json {
            let planned: Vec<_> = rows
                .iter()
                .zip(&partials)
                .map(|(row, partial)| archive_json(row, "planned", partial_json(partial)))
                .collect();
            print_json(&serde_json::json!({
                "command": "restore",
                "dry_run": true,
                "archives": planned,
            }))?;
        }
        return Ok(Outcome::Success);
    }
    let report = tokio::select! {
        report = restore_all(archiver.as_ref(), &mut ledger, &rows, &request) => report?,
        stop = super::stop_requested() => {
            return super::stopped(
                cli.json,
                "restore",
                stop,
                "what was downloaded is kept, and the same command continues from it",
            );
        }
    };
    report_outcomes(cli, &report, &gone)
}

/// Prints what a restore did, archives moved away counted as failed, and the exit it ends with.
fn report_outcomes(
    cli: &Cli,
    report: &RestoreReport,
    gone: &[(UploadRecord, Moved)],
) -> Result<Outcome, Fatal> {
    let (restored, pending) = (report.restored(), report.pending());
    let failed = report.failed() + gone.len();
    let mut archives: Vec<_> = report
        .archives
        .iter()
        .map(|(row, outcome)| outcome_json(row, outcome))
        .collect();
    for (row, moved) in gone {
        let error = format!(
            "moved to {} (key {}) and deleted here",
            moved.destination, moved.key
        );
        archives.push(archive_json(
            row,
            "failed",
            serde_json::json!({ "error": error }),
        ));
    }
    tracing::info!("restored {restored}, pending {pending}, failed {failed}");
    if cli.json {
        print_json(&serde_json::json!({
            "command": "restore",
            "dry_run": false,
            "archives": archives,
            "totals": { "restored": restored, "pending": pending, "failed": failed },
        }))?;
    }
    Ok(Outcome::of(failed, pending))
}

/// One archive's entry in the `--json` document, from its outcome.
fn outcome_json(row: &UploadRecord, outcome: &Restored) -> serde_json::Value {
    match outcome {
        Restored::Restored {
            path,
            rejected,
            kept,
            partial,
        } => {
            let mut details = serde_json::json!({
                "rejected_entries": rejected,
                "kept_newer": kept,
            });
            if let Some(entries) = partial {
                details["partial_entries"] = (*entries).into();
            }
            super::set_path_json(&mut details, "to", path);
            let outcome = match (*rejected > 0, whole(row, outcome)) {
                (true, _) => "failed",
                (false, true) => "restored",
                (false, false) => "kept_newer",
            };
            archive_json(row, outcome, details)
        }
        Restored::Pending => archive_json(row, "pending", serde_json::json!({})),
        Restored::Failed(failure) => archive_json(
            row,
            "failed",
            serde_json::json!({ "error": failure.to_string() }),
        ),
    }
}
