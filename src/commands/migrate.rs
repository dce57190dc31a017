//! `migrate`: the plan and its cost, then every archive retrieved, copied, checked and recorded.

use glacier_backup::archiver::RestoreOptions;
use glacier_backup::config::Config;
use glacier_backup::costs::dollars;
use glacier_backup::ledger::{Ledger, UploadRecord};
use glacier_backup::migrate::{
    migrate_all, select, with_unrecorded, Cost, MigrateReport, MoveOutcome, MoveRequest, Plan,
    PlanOf,
};
use glacier_backup::{display_size, shown};

use super::{archive_json, command_line_path, print_json, Fatal, Outcome, Session};
use crate::cli::{Cli, MigrateArgs};

pub async fn migrate(cli: &Cli, config: &Config, args: &MigrateArgs) -> Result<Outcome, Fatal> {
    let source = Session::open(config)?;
    let mut to_config = destination_config(args)?;
    // One bucket per direction for the whole run: the limits of -c's config and the command
    // line, whatever the destination's config says.
    to_config.bandwidth = config.bandwidth.clone();
    let destination = Session::open(&to_config)?;
    refuse_same_place(&source, &destination, args)?;
    let options = source_options(&source, args)?;
    // Two runs moving the same archives would copy them twice; a backup writing the
    // destination's ledger meanwhile would race the rows written here.
    let _locks = if cli.dryrun {
        None
    } else {
        Some((source.lock()?, destination.lock()?))
    };
    let mut source_ledger = source.ledger(cli.dryrun)?;
    let Some(rows) = rows_to_move(cli, args, &source, &mut source_ledger).await? else {
        return Ok(Outcome::Pending);
    };
    let moved = source_ledger.moved()?;
    let plan = Plan::of(
        &rows,
        PlanOf {
            moved: &moved,
            prices: &config.prices,
            tier: args.tier.into(),
            delete_source: args.delete_source,
            source: source.archiver.as_ref(),
            destination: destination.archiver.as_ref(),
        },
    );
    show_plan(&plan);
    if cli.dryrun {
        if cli.json {
            print_json(&serde_json::json!({
                "command": "migrate",
                "dry_run": true,
                "plan": plan_json(&plan),
            }))?;
        }
        return Ok(Outcome::Success);
    }
    destination.archiver.check().await?;
    let mut destination_ledger = destination.ledger(false)?;
    let request = MoveRequest {
        options,
        deadline: args
            .wait
            .then(|| std::time::Instant::now() + std::time::Duration::from_secs(args.timeout)),
        delete_source: args.delete_source,
        progress: crate::progress_view::shared(cli.progress, cli.quiet),
        authentication: config
            .format
            .authentication
            .clone()
            .or_else(|| to_config.format.authentication.clone()),
    };
    let run = migrate_all(
        &source.archiver,
        destination.archiver.as_ref(),
        &mut source_ledger,
        &mut destination_ledger,
        &rows,
        &request,
    );
    let report = tokio::select! {
        report = run => report?,
        stop = super::stop_requested() => {
            return super::stopped(
                cli.json,
                "migrate",
                stop,
                "the parts copied so far are kept, and the same command continues from them",
            );
        }
    };
    report_outcomes(cli, &report)
}

/// Prints what a migration did, and the exit it ends with.
fn report_outcomes(cli: &Cli, report: &MigrateReport) -> Result<Outcome, Fatal> {
    let archives: Vec<serde_json::Value> = report
        .outcomes
        .iter()
        .map(|(row, outcome)| outcome_json(row, outcome))
        .collect();
    let [moved, already, pending, failed] = report.totals();
    tracing::info!("moved {moved}, already moved {already}, pending {pending}, failed {failed}");
    if cli.json {
        print_json(&serde_json::json!({
            "command": "migrate",
            "dry_run": false,
            "archives": archives,
            "totals": {
                "moved": moved,
                "already_moved": already,
                "pending": pending,
                "failed": failed,
            },
        }))?;
    }
    Ok(Outcome::of(failed, pending))
}

/// The source's retrieval options, refused where the source cannot retrieve at that tier; a
/// source without a ledger has nothing recorded to move.
fn source_options(source: &Session, args: &MigrateArgs) -> Result<RestoreOptions, Fatal> {
    if !source.ledger_file.exists() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "no ledger at {}: nothing was backed up with this configuration, so nothing is \
             recorded to move",
            shown(&source.ledger_file)
        )));
    }
    let options = RestoreOptions {
        tier: args.tier.into(),
        days: Some(1),
        range: None,
    };
    if source.archiver.capabilities().needs_restore && !source.archiver.offers_tier(options.tier) {
        return Err(Fatal::Config(anyhow::anyhow!(
            "the {} tier is not offered for the source's storage class; use --tier standard \
             or --tier bulk",
            options.tier.as_str()
        )));
    }
    Ok(options)
}

/// The source's rows to move, oldest first: its ledger's uploads (with `--all`, and the
/// inventory's archives it does not record), limited to the paths given; `None` while the
/// inventory is still being made.
async fn rows_to_move(
    cli: &Cli,
    args: &MigrateArgs,
    source: &Session,
    source_ledger: &mut Ledger,
) -> Result<Option<Vec<UploadRecord>>, Fatal> {
    let paths: Vec<_> = args
        .paths
        .iter()
        .map(|p| command_line_path(p))
        .collect::<Result<_, _>>()?;
    let uploads = if args.all {
        let wait = args
            .wait
            .then(|| std::time::Duration::from_secs(args.timeout));
        let inventory = super::fetch_inventory(cli, wait, source.archiver.as_ref(), source_ledger);
        let Some(listing) = inventory.await? else {
            return Ok(None);
        };
        with_unrecorded(source_ledger, &listing, source.archiver.name())?
    } else {
        source_ledger.uploads()?
    };
    let rows = select(uploads, &paths);
    if rows.is_empty() && !paths.is_empty() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "nothing to move: the ledger {} records no upload of those paths",
            shown(&source.ledger_file)
        )));
    }
    Ok(Some(rows))
}

/// The destination's config: the `--to` file, its backend overridden by `--to-backend`.
fn destination_config(args: &MigrateArgs) -> Result<Config, Fatal> {
    use glacier_backup::config::ConfigError;
    let mut config = match glacier_backup::config::load(&args.to) {
        Ok(config) => config,
        Err(ConfigError::NotFound(path)) => {
            return Err(Fatal::Config(anyhow::anyhow!(
                "--to {}: no such config file; name the config of the destination (its [main] \
                 backend and that backend's section)",
                shown(&path)
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(backend) = &args.to_backend {
        config.backend = backend.clone();
    }
    Ok(config)
}

/// A destination that is the source, or shares its ledger, is refused: rows of both would
/// mix in one ledger, which describes one destination.
fn refuse_same_place(
    source: &Session,
    destination: &Session,
    args: &MigrateArgs,
) -> Result<(), Fatal> {
    let (from, to) = (&source.archiver, &destination.archiver);
    if from.name() == to.name() && from.target() == to.target() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "--to {}: the destination is the source ({}); name a config of another \
             destination, or choose its backend with --to-backend",
            shown(&args.to),
            to.target()
        )));
    }
    let same_file = |a: &std::path::Path, b: &std::path::Path| {
        a == b || std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok() && a.exists()
    };
    if same_file(&source.ledger_file, &destination.ledger_file) {
        return Err(Fatal::Config(anyhow::anyhow!(
            "--to {}: the destination's ledger is the source's ({}); a ledger describes one \
             destination: set [main] ledger to another file for one of them, or leave it \
             unset so each gets its own",
            shown(&args.to),
            shown(&source.ledger_file)
        )));
    }
    Ok(())
}

/// The plan, as the log shows it before anything is retrieved.
fn show_plan(plan: &Plan) {
    tracing::info!(
        "plan: move {} archive(s), {}, from {} to {}; {} already moved{}",
        plan.to_move.len(),
        display_size(plan.bytes),
        plan.from,
        plan.to,
        plan.already,
        match plan.unverifiable {
            0 => String::new(),
            n => format!(
                "; {n} without a recorded size and tree hash (run `inventory \
                 --rebuild-ledger` first)"
            ),
        }
    );
    tracing::info!(
        "  retrieval tier {}, expected wait {}{}",
        plan.tier.as_str(),
        plan.expected_wait,
        if plan.delete_source {
            "; each source archive is deleted once its copy is verified"
        } else {
            ""
        }
    );
    for row in &plan.to_move {
        tracing::info!(
            "  {} (uploaded {}, {}, {})",
            shown(&row.path),
            row.uploaded_at
                .map_or_else(|| "at an unknown time".into(), glacier_backup::display_time),
            row.size.map_or("size unknown".into(), display_size),
            row.archive_id
        );
    }
    if let Some(cost) = &plan.cost {
        show_cost(cost, &plan.class);
    }
}

fn show_cost(cost: &Cost, class: &str) {
    tracing::info!(
        "estimated cost: {} once (retrieval {}, retrieval requests {}, data transfer \
         out {}, upload requests {}{}), then {} per month in {} (us-east-1 list prices \
         of {}; see [prices])",
        dollars(cost.once()),
        dollars(cost.retrieval),
        dollars(cost.retrieval_requests),
        dollars(cost.transfer),
        dollars(cost.upload_requests),
        match cost.early_deletion {
            Some(fee) => format!(", early deletion of the source's archives {}", dollars(fee)),
            None => String::new(),
        },
        dollars(cost.monthly),
        class,
        glacier_backup::costs::PRICES_AS_OF,
    );
}

fn plan_json(plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "from": plan.from,
        "to": plan.to,
        "archives": plan.to_move.len(),
        "bytes": plan.bytes,
        "already_moved": plan.already,
        "unverifiable": plan.unverifiable,
        "tier": plan.tier.as_str(),
        "expected_wait": plan.expected_wait,
        "delete_source": plan.delete_source,
        "cost": plan.cost.as_ref().map(|c| serde_json::json!({
            "retrieval": c.retrieval,
            "retrieval_requests": c.retrieval_requests,
            "transfer": c.transfer,
            "upload_requests": c.upload_requests,
            "early_deletion": c.early_deletion,
            "once": c.once(),
            "monthly": c.monthly,
        })),
        "to_move": plan.to_move.iter().map(|row| archive_json(row, "planned", serde_json::json!({}))).collect::<Vec<_>>(),
    })
}

/// One archive's outcome as JSON (the library logged it as it came).
fn outcome_json(row: &UploadRecord, outcome: &MoveOutcome) -> serde_json::Value {
    match outcome {
        MoveOutcome::Moved(key) => archive_json(row, "moved", serde_json::json!({ "key": key })),
        MoveOutcome::AlreadyMoved(key) => {
            archive_json(row, "already_moved", serde_json::json!({ "key": key }))
        }
        MoveOutcome::Pending => archive_json(row, "pending", serde_json::json!({})),
        MoveOutcome::Failed(failure) => archive_json(
            row,
            "failed",
            serde_json::json!({ "error": failure.to_string() }),
        ),
    }
}
