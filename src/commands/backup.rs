//! The backup run (the default command).

use glacier_backup::shown;
use std::path::PathBuf;

use glacier_backup::backup::{run_backup, RunOptions, RunReport, Uploaded};
use glacier_backup::config::Config;
use glacier_backup::ledger::{lock_path, Ledger};

use super::{lexically_normal, print_json, with_path, Fatal, Outcome, Session};
use crate::cli::Cli;

/// An archive encrypted to keys none of which is the configured identity can only be opened
/// with some other key: said before anything is uploaded, not found out at restore time.
fn warn_if_unrestorable(config: &Config) {
    let (recipients, Some(identity_file)) = (&config.format.recipients, &config.identity_file)
    else {
        return;
    };
    if recipients.is_empty() {
        return;
    }
    let recipients: Vec<String> = recipients.iter().map(ToString::to_string).collect();
    match glacier_backup::codec::Identities::load(identity_file) {
        Ok(identities) if identities.open_any_of(&recipients) == Some(false) => tracing::warn!(
            "[encryption] identity_file {} opens none of [encryption] recipients ({}): what \
             this run uploads can only be restored with another key; check the recipients",
            shown(identity_file),
            recipients.join(", ")
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("{e}; restores will need --identity"),
    }
}

pub async fn backup(
    cli: &Cli,
    config: &Config,
    args: &crate::cli::BackupArgs,
    logfile: Option<PathBuf>,
) -> Result<Outcome, Fatal> {
    let session = Session::open(config)?;
    let archiver = &session.archiver;
    let ledger_file = session.ledger_file.clone();
    if config.paths.is_empty() {
        tracing::warn!(
            "no paths to back up: add path sections to {} or pass -p",
            config
                .file
                .as_deref()
                .map(shown)
                .unwrap_or_else(|| "the config file".into())
        );
        if cli.json {
            print_json(&to_json(cli.dryrun, &RunReport::default()))?;
        }
        return Ok(Outcome::Success);
    }
    warn_if_unrestorable(config);
    let options = RunOptions {
        dry_run: cli.dryrun,
        max_uploads: cli
            .max_uploads
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        progress: crate::progress_view::shared(cli.progress, cli.quiet),
        parallel_uploads: config.parallel_uploads,
        stop: tokio_util::sync::CancellationToken::new(),
        format: config.format.clone(),
        now: glacier_backup::clock::now(),
        upload_limit: config.bandwidth.upload.clone(),
    };

    let (mut ledger, _lock) = if cli.dryrun {
        (session.ledger(true)?, None)
    } else {
        let lock = session.lock()?;
        // Before the destination is touched: a ledger that cannot record stops the run here.
        let ledger = session.ledger(false)?;
        archiver.check().await?;
        (ledger, Some(lock))
    };

    let own_files = own_files(&ledger_file, archiver.as_ref(), logfile);
    let planned = glacier_backup::resolve::resolve(&config.paths, &own_files);
    let (report, stopped_by) = run_until_signal(
        run_backup(
            &planned,
            &mut ledger as &mut Ledger,
            archiver.as_ref(),
            &options,
        ),
        &options.stop,
    )
    .await;
    let report = report?;
    if let Some(stop) = stopped_by.filter(|_| report.stopped) {
        tracing::warn!(
            "stopped by {} after {} upload(s): uploads in progress were not recorded as done; \
             the next run continues them",
            stop.name(),
            report.uploaded.len()
        );
        if cli.json {
            print_json(&serde_json::json!({
                "command": "backup",
                "interrupted": stop.name(),
                "uploaded": report.uploaded.len(),
            }))?;
        }
        return Ok(Outcome::Interrupted(stop));
    }

    let summary = summary(cli.dryrun, &report);
    tracing::info!("{summary}");
    if cli.dryrun {
        storage_estimate(archiver.as_ref(), config, &report);
    }
    if cli.json {
        print_json(&to_json(cli.dryrun, &report))?;
    }
    let outcome = Outcome::of(report.failed.len(), 0);
    // A failed candidate leaves its path's uploads as they were; pruning waits for a clean run.
    if args.prune && !report.failed.is_empty() {
        tracing::warn!(
            "not pruning: {} candidate(s) failed; the next clean run prunes",
            report.failed.len()
        );
    }
    if args.prune && matches!(outcome, Outcome::Success) {
        let options = glacier_backup::prune::PruneOptions {
            now: glacier_backup::clock::now(),
            allow_early_deletion: false,
            forget_gone: false,
            paths: Vec::new(),
        };
        let asked = super::prune::Asked {
            dry_run: cli.dryrun,
            yes: true,
            output: match cli.json {
                true => super::prune::Output::Log,
                false => super::prune::Output::Text,
            },
        };
        return super::prune::pruned(config, archiver.as_ref(), &mut ledger, &options, asked).await;
    }
    Ok(outcome)
}

/// The ledger, its lock and journals, the destination directory and the log: files a run
/// writes, so a walk that meets them leaves them out. Walks see paths as configured; these may
/// be written with `..` or through symlinks, so both the lexical and the resolved form are listed.
fn own_files(
    ledger_file: &std::path::Path,
    archiver: &dyn glacier_backup::archiver::Archiver,
    logfile: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut own_files = vec![ledger_file.to_path_buf(), lock_path(ledger_file)];
    for suffix in ["-journal", "-wal", "-shm"] {
        let mut name = ledger_file.to_path_buf().into_os_string();
        name.push(suffix);
        own_files.push(name.into());
    }
    own_files.extend(archiver.local_directory());
    own_files.extend(logfile);
    own_files
        .into_iter()
        .filter_map(|p| std::path::absolute(p).ok())
        .flat_map(|p| [lexically_normal(&p), std::fs::canonicalize(&p).unwrap_or(p)])
        .collect()
}

/// Drives the run to its end; a signal cancels `stop`, and the run records what finished before
/// it returns. Says which signal, if one came.
async fn run_until_signal<T>(
    run: impl std::future::Future<Output = T>,
    stop: &tokio_util::sync::CancellationToken,
) -> (T, Option<super::Stop>) {
    let signal = super::stop_requested();
    tokio::pin!(run, signal);
    let mut stopped_by = None;
    loop {
        tokio::select! {
            report = &mut run => return (report, stopped_by),
            received = &mut signal, if stopped_by.is_none() => {
                stop.cancel();
                stopped_by = Some(received);
            }
        }
    }
}

/// The one-line summary: how many were uploaded, up to date, failed, skipped and deferred.
fn summary(dry_run: bool, report: &RunReport) -> String {
    let verb = if dry_run { "would upload" } else { "uploaded" };
    let mut summary = format!(
        "{}{verb} {}, up to date {}, failed {}",
        if dry_run { "dry run: " } else { "" },
        report.uploaded.len(),
        report.up_to_date.len(),
        report.failed.len()
    );
    if !report.empty_skipped.is_empty() {
        summary.push_str(&format!(
            ", empty files skipped {}",
            report.empty_skipped.len()
        ));
    }
    if !report.deferred.is_empty() {
        summary.push_str(&format!(
            ", deferred {} (--max-uploads)",
            report.deferred.len()
        ));
    }
    summary
}

/// What a dry run's pending uploads add to the bill: storage per month and the upload
/// requests, with warnings for archives billed above their size or replacing an upload younger
/// than the class's minimum duration.
fn storage_estimate(
    archiver: &dyn glacier_backup::archiver::Archiver,
    config: &Config,
    report: &RunReport,
) {
    use glacier_backup::backup::Decision;
    use glacier_backup::costs::{dollars, PriceClass};
    let Some(class) = archiver.storage_class().and_then(|c| PriceClass::of(&c)) else {
        return;
    };
    if report.uploaded.is_empty() {
        return;
    }
    let sizes: Vec<u64> = report.uploaded.iter().map(|u| u.estimated_size).collect();
    // One request for an archive in one part; a multipart one starts, sends each part, ends.
    let requests: u64 = sizes
        .iter()
        .map(|&size| {
            let part = archiver.part_size(size).max(1);
            if size <= part {
                1
            } else {
                size.div_ceil(part) + 2
            }
        })
        .sum();
    let cost = config.prices.storage(class, &sizes, requests);
    tracing::info!(
        "estimated cost: {} a month more for storage, and {} once for {requests} upload \
         request(s) ({} list prices of {}; see [prices])",
        dollars(cost.monthly),
        dollars(cost.requests),
        class.price_source(),
        glacier_backup::costs::PRICES_AS_OF
    );
    // Below this, what an archive is billed for is mostly overhead or the class's minimum.
    let threshold = class.minimum_billable().max(40 * 1024);
    let small = sizes.iter().filter(|&&size| size < threshold).count();
    if small > 0 {
        tracing::warn!(
            "{small} archive(s) are smaller than {}: each is billed for at least 128 KiB \
             (GLACIER_IR) or carries 32-40 KiB of overhead; bundle small files into a directory \
             candidate (upload_single_dir) to pay for bytes, not overhead",
            glacier_backup::display_size(threshold)
        );
    }
    let now = time::OffsetDateTime::now_utc();
    let minimum = time::Duration::days(class.minimum_days().into());
    for Uploaded { path, decision, .. } in &report.uploaded {
        if let Decision::Changed { since: Some(since) } = decision {
            if now - *since < minimum {
                tracing::warn!(
                    "{}: its previous upload ({}) is younger than the {} days every archive of \
                     this class is billed for; both stay stored",
                    shown(path),
                    glacier_backup::display_time(*since),
                    class.minimum_days()
                );
            }
        }
    }
}

/// The `--json` document of a backup run: one entry per candidate looked at (or deferred), with
/// its outcome, and the totals.
fn to_json(dry_run: bool, report: &RunReport) -> serde_json::Value {
    let mut candidates = Vec::new();
    let mut bytes = 0u64;
    for Uploaded {
        path,
        decision,
        record,
        ..
    } in &report.uploaded
    {
        let mut entry = serde_json::json!({
            "outcome": if dry_run { "would_upload" } else { "uploaded" },
            "reason": decision.to_string(),
        });
        if let Some(record) = record {
            bytes += record.size.unwrap_or(0);
            entry["archive_id"] = record.archive_id.clone().into();
            entry["size"] = record.size.into();
            entry["tree_hash"] = record.tree_hash.map(|h| h.to_hex()).into();
        }
        candidates.push(with_path(path, entry));
    }
    for (path, decision) in &report.up_to_date {
        candidates.push(with_path(
            path,
            serde_json::json!({"outcome": "up_to_date", "reason": decision.to_string()}),
        ));
    }
    for (path, error) in &report.failed {
        candidates.push(with_path(
            path,
            serde_json::json!({"outcome": "failed", "error": error}),
        ));
    }
    for path in &report.empty_skipped {
        candidates.push(with_path(
            path,
            serde_json::json!({"outcome": "skipped_empty"}),
        ));
    }
    for path in &report.deferred {
        candidates.push(with_path(path, serde_json::json!({"outcome": "deferred"})));
    }
    serde_json::json!({
        "command": "backup",
        "dry_run": dry_run,
        "candidates": candidates,
        "totals": {
            "uploaded": report.uploaded.len(),
            "up_to_date": report.up_to_date.len(),
            "failed": report.failed.len(),
            "skipped_empty": report.empty_skipped.len(),
            "deferred": report.deferred.len(),
            "bytes_uploaded": bytes,
        },
    })
}
