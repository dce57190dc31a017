//! `migrate`: the plan and its cost, then every archive retrieved, copied, checked and recorded.

use std::collections::HashMap;

use glacier_backup::archiver::{Archiver, RestoreOptions};
use glacier_backup::config::Config;
use glacier_backup::costs::{dollars, PriceClass};
use glacier_backup::ledger::{Moved, UploadRecord};
use glacier_backup::migrate::{
    move_one, moved_for, prepare, select, unrecorded_rows, MoveFailure, MoveOutcome, MoveRequest,
};
use glacier_backup::{display_size, shown};

use super::{archive_json, command_line_path, print_json, Fatal, Outcome, Session};
use crate::cli::{Cli, MigrateArgs};
use glacier_backup::restore::expected_wait;

pub async fn migrate(cli: &Cli, config: &Config, args: &MigrateArgs) -> Result<Outcome, Fatal> {
    let source = Session::open(config)?;
    let to_config = destination_config(args)?;
    let destination = Session::open(&to_config)?;
    refuse_same_place(&source, &destination, args)?;
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
    };
    if source.archiver.capabilities().needs_restore && !source.archiver.offers_tier(options.tier) {
        return Err(Fatal::Config(anyhow::anyhow!(
            "the {} tier is not offered for the source's storage class; use --tier standard \
             or --tier bulk",
            options.tier.as_str()
        )));
    }
    // Two runs moving the same archives would copy them twice; a backup writing the
    // destination's ledger meanwhile would race the rows written here.
    let _locks = if cli.dryrun {
        None
    } else {
        Some((source.lock()?, destination.lock()?))
    };
    let mut source_ledger = source.ledger(cli.dryrun)?;
    let paths: Vec<_> = args
        .paths
        .iter()
        .map(|p| command_line_path(p))
        .collect::<Result<_, _>>()?;
    let mut uploads = source_ledger.uploads()?;
    if args.all {
        let wait = args
            .wait
            .then(|| std::time::Duration::from_secs(args.timeout));
        let inventory =
            super::fetch_inventory(cli, wait, source.archiver.as_ref(), &mut source_ledger);
        let Some(listing) = inventory.await? else {
            return Ok(Outcome::Pending);
        };
        // The inventory gives the Python tool's rows the size and tree hash a copy is checked
        // against.
        for archive in &listing.archives {
            if let Some(tree_hash) = archive.tree_hash {
                source_ledger.complete_upload(&archive.archive_id, archive.size, tree_hash)?;
            }
        }
        uploads = source_ledger.uploads()?;
        let recorded = uploads.iter().map(|row| row.archive_id.clone()).collect();
        uploads.extend(unrecorded_rows(&listing, &recorded, source.archiver.name()));
        // Oldest first, so each path's history reads in the destination as it was.
        uploads.sort_by_key(|row| row.stored_at());
    }
    let rows = select(uploads, &paths);
    if rows.is_empty() && !paths.is_empty() {
        return Err(Fatal::Config(anyhow::anyhow!(
            "nothing to move: the ledger {} records no upload of those paths",
            shown(&source.ledger_file)
        )));
    }
    let moved = source_ledger.moved()?;
    let plan = Plan::of(
        &rows,
        &moved,
        config,
        args,
        source.archiver.as_ref(),
        destination.archiver.as_ref(),
    );
    plan.show();
    if cli.dryrun {
        if cli.json {
            print_json(&serde_json::json!({
                "command": "migrate",
                "dry_run": true,
                "plan": plan.json(),
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
    };
    let run = async {
        // Every retrieval is asked for before any is waited on.
        for row in rows
            .iter()
            .filter(|row| moved_for(&moved, row, destination.archiver.as_ref()).is_none())
        {
            let asked = prepare(
                source.archiver.as_ref(),
                &mut source_ledger,
                row,
                &request.options,
            );
            // Any other failure is reported, and counted, when the archive's turn comes.
            if let Err(MoveFailure::Ledger(e)) = asked.await {
                return Err(Fatal::from(e));
            }
        }
        let mut tally = Tally::default();
        let progress = glacier_backup::progress::or_none(&request.progress);
        progress.batch(rows.len());
        for row in &rows {
            let outcome = move_one(
                &source.archiver,
                destination.archiver.as_ref(),
                &mut source_ledger,
                &mut destination_ledger,
                row,
                &request,
                moved_for(&moved, row, destination.archiver.as_ref()),
            )
            .await;
            progress.item_done();
            tally.add(row, outcome, source.archiver.as_ref(), &request)?;
        }
        Ok(tally)
    };
    let tally = tokio::select! {
        tally = run => tally?,
        stop = super::stop_requested() => {
            return super::stopped(
                cli.json,
                "migrate",
                stop,
                "the parts copied so far are kept, and the same command continues from them",
            );
        }
    };
    tracing::info!(
        "moved {}, already moved {}, pending {}, failed {}",
        tally.moved,
        tally.already,
        tally.pending,
        tally.failed
    );
    if cli.json {
        print_json(&serde_json::json!({
            "command": "migrate",
            "dry_run": false,
            "archives": tally.archives,
            "totals": {
                "moved": tally.moved,
                "already_moved": tally.already,
                "pending": tally.pending,
                "failed": tally.failed,
            },
        }))?;
    }
    Ok(if tally.failed > 0 {
        Outcome::Failed
    } else if tally.pending > 0 {
        Outcome::Pending
    } else {
        Outcome::Success
    })
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

/// What a run will move, and what it costs.
struct Plan<'a> {
    to_move: Vec<&'a UploadRecord>,
    already: usize,
    unverifiable: usize,
    bytes: u64,
    /// `source.target()`, `destination.target()`.
    from: String,
    to: String,
    tier: &'static str,
    expected_wait: &'static str,
    delete_source: bool,
    /// The destination's storage class, where storage is billed.
    class: String,
    /// `None` where neither side is billed (a local directory, a warm class).
    cost: Option<Cost>,
}

impl<'a> Plan<'a> {
    fn of(
        rows: &'a [UploadRecord],
        moved: &HashMap<String, Moved>,
        config: &Config,
        args: &MigrateArgs,
        source: &dyn Archiver,
        destination: &dyn Archiver,
    ) -> Self {
        let mut to_move = Vec::new();
        let (mut already, mut unverifiable, mut bytes) = (0, 0, 0);
        // Upload requests in the destination: one per single-part archive, parts + 2 otherwise.
        let mut requests = 0;
        for row in rows {
            if moved_for(moved, row, destination).is_some() {
                already += 1;
                continue;
            }
            let Some(size) = row.size.filter(|_| row.tree_hash.is_some()) else {
                unverifiable += 1;
                continue;
            };
            let parts = size.div_ceil(destination.part_size(size).max(1)).max(1);
            requests += if parts == 1 { 1 } else { parts + 2 };
            bytes += size;
            to_move.push(row);
        }
        let cost = Cost::of(&to_move, bytes, requests, config, args, source, destination);
        Plan {
            to_move,
            already,
            unverifiable,
            bytes,
            from: source.target(),
            to: destination.target(),
            tier: args.tier_name(),
            expected_wait: expected_wait(source, args.tier.into()),
            delete_source: args.delete_source,
            class: destination.storage_class().unwrap_or_default(),
            cost,
        }
    }

    fn show(&self) {
        tracing::info!(
            "plan: move {} archive(s), {}, from {} to {}; {} already moved{}",
            self.to_move.len(),
            display_size(self.bytes),
            self.from,
            self.to,
            self.already,
            match self.unverifiable {
                0 => String::new(),
                n => format!(
                    "; {n} without a recorded size and tree hash (run `inventory \
                     --rebuild-ledger` first)"
                ),
            }
        );
        tracing::info!(
            "  retrieval tier {}, expected wait {}{}",
            self.tier,
            self.expected_wait,
            if self.delete_source {
                "; each source archive is deleted once its copy is verified"
            } else {
                ""
            }
        );
        for row in &self.to_move {
            tracing::info!(
                "  {} (uploaded {}, {}, {})",
                shown(&row.path),
                row.uploaded_at
                    .map_or_else(|| "at an unknown time".into(), glacier_backup::display_time),
                row.size.map_or("size unknown".into(), display_size),
                row.archive_id
            );
        }
        if let Some(cost) = &self.cost {
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
                    Some(fee) =>
                        format!(", early deletion of the source's archives {}", dollars(fee)),
                    None => String::new(),
                },
                dollars(cost.monthly),
                self.class,
                glacier_backup::costs::PRICES_AS_OF,
            );
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "from": self.from,
            "to": self.to,
            "archives": self.to_move.len(),
            "bytes": self.bytes,
            "already_moved": self.already,
            "unverifiable": self.unverifiable,
            "tier": self.tier,
            "expected_wait": self.expected_wait,
            "delete_source": self.delete_source,
            "cost": self.cost.as_ref().map(|c| serde_json::json!({
                "retrieval": c.retrieval,
                "retrieval_requests": c.retrieval_requests,
                "transfer": c.transfer,
                "upload_requests": c.upload_requests,
                "early_deletion": c.early_deletion,
                "once": c.once(),
                "monthly": c.monthly,
            })),
            "to_move": self.to_move.iter().map(|row| archive_json(row, "planned", serde_json::json!({}))).collect::<Vec<_>>(),
        })
    }
}

/// A migration's estimated cost, in US dollars.
struct Cost {
    retrieval: f64,
    retrieval_requests: f64,
    transfer: f64,
    upload_requests: f64,
    monthly: f64,
    /// With `--delete-source`: what deleting archives younger than the minimum costs.
    early_deletion: Option<f64>,
}

impl Cost {
    /// The estimate for moving `to_move` (`bytes` in all, `requests` upload requests); `None`
    /// where neither side is billed.
    fn of(
        to_move: &[&UploadRecord],
        bytes: u64,
        requests: u64,
        config: &Config,
        args: &MigrateArgs,
        source: &dyn Archiver,
        destination: &dyn Archiver,
    ) -> Option<Self> {
        let prices = &config.prices;
        let class_of = |archiver: &dyn Archiver| {
            archiver
                .storage_class()
                .and_then(|class| PriceClass::of(&class))
        };
        let source_class = class_of(source);
        let count = to_move.len() as u64;
        let retrieval =
            source_class.and_then(|class| prices.retrieval(class, args.tier.into(), count, bytes));
        let storage = class_of(destination).map(|class| {
            let sizes: Vec<u64> = to_move.iter().filter_map(|r| r.size).collect();
            prices.storage(class, &sizes, requests)
        });
        if retrieval.is_none() && storage.is_none() {
            return None;
        }
        let now = time::OffsetDateTime::now_utc();
        let early_deletion = args.delete_source.then(|| {
            source_class.map_or(0.0, |class| {
                let ages: Vec<(u64, f64)> = to_move
                    .iter()
                    .map(|row| {
                        let age = row
                            .stored_at()
                            .map_or(0.0, |at| (now - at).as_seconds_f64() / 86_400.0);
                        (row.size.unwrap_or(0), age)
                    })
                    .collect();
                prices.early_deletion(class, &ages)
            })
        });
        Some(Cost {
            retrieval: retrieval.map_or(0.0, |r| r.retrieval),
            retrieval_requests: retrieval.map_or(0.0, |r| r.requests),
            transfer: retrieval.map_or(0.0, |r| r.transfer),
            upload_requests: storage.map_or(0.0, |s| s.requests),
            monthly: storage.map_or(0.0, |s| s.monthly),
            early_deletion,
        })
    }

    fn once(&self) -> f64 {
        self.retrieval
            + self.retrieval_requests
            + self.transfer
            + self.upload_requests
            + self.early_deletion.unwrap_or(0.0)
    }
}

/// Outcomes so far.
#[derive(Default)]
struct Tally {
    moved: usize,
    already: usize,
    pending: usize,
    failed: usize,
    archives: Vec<serde_json::Value>,
}

impl Tally {
    fn add(
        &mut self,
        row: &UploadRecord,
        outcome: MoveOutcome,
        source: &dyn Archiver,
        request: &MoveRequest,
    ) -> Result<(), Fatal> {
        let entry = match outcome {
            MoveOutcome::Moved(key) => {
                self.moved += 1;
                tracing::info!("moved {} ({}) to {key}", shown(&row.path), row.archive_id);
                archive_json(row, "moved", serde_json::json!({ "key": key }))
            }
            MoveOutcome::AlreadyMoved(key) => {
                self.already += 1;
                archive_json(row, "already_moved", serde_json::json!({ "key": key }))
            }
            MoveOutcome::Pending => {
                self.pending += 1;
                tracing::info!(
                    "{}: retrieval in progress, usually ready {} after the request; run the \
                     same command again then (or add --wait)",
                    shown(&row.path),
                    expected_wait(source, request.options.tier)
                );
                archive_json(row, "pending", serde_json::json!({}))
            }
            // A ledger that fails stops the run, as it stops a backup.
            MoveOutcome::Failed(MoveFailure::Ledger(e)) => return Err(e.into()),
            MoveOutcome::Failed(failure) => {
                self.failed += 1;
                tracing::error!("{} ({}): {failure}", shown(&row.path), row.archive_id);
                archive_json(
                    row,
                    "failed",
                    serde_json::json!({ "error": failure.to_string() }),
                )
            }
        };
        self.archives.push(entry);
        Ok(())
    }
}
