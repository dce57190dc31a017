//! `prune` (and `backup --prune`): the retention plan shown, asked about on a terminal, then
//! carried out.

use std::io::Write as _;

use glacier_backup::archiver::Archiver;
use glacier_backup::config::{Config, Retention};
use glacier_backup::costs::{dollars, PriceClass};
use glacier_backup::ledger::Ledger;
use glacier_backup::prune::{
    plan, prune as carry_out, PathPlan, Plan, Planned, PruneError, PruneOptions, PruneReport,
    Setting, Verdict,
};
use glacier_backup::{display_size, display_time, shown};

use super::{command_line_path, print_json, with_path, Fatal, Outcome, Session};
use crate::cli::{Cli, PruneArgs};

pub async fn prune(cli: &Cli, config: &Config, args: &PruneArgs) -> Result<Outcome, Fatal> {
    let session = Session::open(config)?;
    if !session.ledger_file.exists() {
        tracing::info!(
            "nothing to prune: no ledger at {} (nothing was backed up with this configuration)",
            shown(&session.ledger_file)
        );
        return Ok(Outcome::Success);
    }
    let (mut ledger, _lock) = match cli.dryrun {
        // Read in place: the plan of a large ledger stays small (a snapshot copies it all).
        true => (Ledger::reader(&session.ledger_file)?, None),
        false => {
            let lock = session.lock()?;
            (session.ledger(false)?, Some(lock))
        }
    };
    let paths = args
        .paths
        .iter()
        .map(|p| command_line_path(p))
        .collect::<Result<_, _>>()?;
    let options = PruneOptions {
        now: glacier_backup::clock::now(),
        allow_early_deletion: args.allow_early_deletion,
        forget_gone: args.forget_gone,
        paths,
    };
    let asked = Asked {
        dry_run: cli.dryrun,
        yes: args.yes,
        output: match cli.json {
            true => Output::Json,
            false => Output::Text,
        },
    };
    pruned(
        config,
        session.archiver.as_ref(),
        &mut ledger,
        &options,
        asked,
    )
    .await
}

/// How a prune was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// Show the plan only.
    pub dry_run: bool,
    /// Do not ask before deleting.
    pub yes: bool,
    /// Where the plan goes.
    pub output: Output,
}

/// Where the plan and the result go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The plan on stdout, as text.
    Text,
    /// One JSON document on stdout, at the end.
    Json,
    /// The plan in the log (stderr): `backup --prune --json` keeps stdout for the backup's.
    Log,
}

/// Shows the plan, asks on a terminal, deletes: what `prune` and `backup --prune` share.
pub async fn pruned(
    config: &Config,
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    options: &PruneOptions,
    asked: Asked,
) -> Result<Outcome, Fatal> {
    let setting = Setting {
        retention: config.retention,
        rules: &config.paths,
        backend: archiver.name(),
        class: archiver.storage_class().and_then(|c| PriceClass::of(&c)),
        prices: &config.prices,
    };
    let plan = plan(ledger, &setting, options)?;
    match asked.output {
        Output::Text => {
            let mut out = Stdout {
                out: std::io::BufWriter::new(std::io::stdout().lock()),
                error: None,
            };
            // A failed write is kept in `out.error`; the formatting error adds nothing to it.
            let _ = write_plan(&mut out, &plan, &setting);
            let error = out.error.take().or_else(|| out.out.flush().err());
            if let Some(e) = error {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(Fatal::Failure(e.into()));
                }
            }
        }
        Output::Log => {
            let mut log = LogLines(String::new());
            let _ = write_plan(&mut log, &plan, &setting);
        }
        Output::Json => {}
    }
    let totals = plan.totals();
    let nothing = totals.deleted == 0 && plan.unfinished.is_empty();
    if asked.dry_run || nothing || !confirmed(asked, totals.deleted)? {
        if asked.output == Output::Json {
            print_json(&to_json(&plan, &setting, asked.dry_run, None))?;
        }
        return Ok(Outcome::Success);
    }
    let result = carry_out(&plan, ledger, archiver).await;
    let report = match result {
        Ok(report) => report,
        Err(PruneError::Ledger(e)) => return Err(e.into()),
        Err(e @ PruneError::PendingUpload(_)) => return Err(Fatal::Config(e.into())),
        Err(e) => return Err(Fatal::Failure(e.into())),
    };
    tracing::info!(
        "pruned {} archive(s){}{}",
        report.deleted.len(),
        match report.finished {
            0 => String::new(),
            n => format!(", {n} of them left by an interrupted prune"),
        },
        match report.already_gone {
            0 => String::new(),
            n => format!(", {n} already gone from the destination"),
        }
    );
    if asked.output == Output::Json {
        print_json(&to_json(&plan, &setting, false, Some(&report)))?;
    }
    Ok(Outcome::Success)
}

/// On a terminal, asks before deleting (unless `--yes`); elsewhere (cron) goes ahead.
fn confirmed(asked: Asked, deletions: usize) -> Result<bool, Fatal> {
    use std::io::IsTerminal;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if asked.yes || !interactive || deletions == 0 {
        return Ok(true);
    }
    eprint!("Delete {deletions} archive(s) for good? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Fatal::Failure(e.into()))?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes" | "Yes");
    if !yes {
        tracing::info!("nothing deleted (run with --yes to skip the question)");
    }
    Ok(yes)
}

/// Where the plan's text goes on stdout: written as it is made (a plan of 200,000 uploads is
/// never held as text), the first error kept.
struct Stdout<W: std::io::Write> {
    out: W,
    error: Option<std::io::Error>,
}

impl<W: std::io::Write> std::fmt::Write for Stdout<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.out.write_all(s.as_bytes()).map_err(|e| {
            self.error.get_or_insert(e);
            std::fmt::Error
        })
    }
}

/// The plan's text as log lines, each logged once complete.
struct LogLines(String);

impl std::fmt::Write for LogLines {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.push_str(s);
        while let Some(end) = self.0.find('\n') {
            tracing::info!("{}", &self.0[..end]);
            self.0.drain(..=end);
        }
        Ok(())
    }
}

/// The plan as people read it: per path its policy and each upload's fate, then the totals.
fn write_plan(
    out: &mut impl std::fmt::Write,
    plan: &Plan,
    setting: &Setting<'_>,
) -> std::fmt::Result {
    for path in &plan.paths {
        write_path(out, path, setting)?;
    }
    if !plan.unfinished.is_empty() {
        writeln!(
            out,
            "{} deletion(s) an interrupted prune asked for are finished first",
            plan.unfinished.len()
        )?;
    }
    writeln!(out, "{}", summary(plan, setting))
}

/// One path: its policy, each upload's fate, and what its deletions save.
fn write_path(
    out: &mut impl std::fmt::Write,
    path: &PathPlan,
    setting: &Setting<'_>,
) -> std::fmt::Result {
    let gone = match path.source_gone {
        true => " (source gone)",
        false => "",
    };
    let name = shown(&path.path);
    if !path.policy.is_set() {
        let kept = path.uploads.len();
        return writeln!(out, "{name}{gone}: no policy, {kept} upload(s) kept");
    }
    writeln!(out, "{name}{gone} ({}):", policy_text(&path.policy))?;
    for upload in &path.uploads {
        writeln!(out, "{}", upload_line(upload))?;
    }
    let deleted = path.deletions().count();
    if deleted == 0 {
        return Ok(());
    }
    let saving = match setting.class {
        Some(_) => format!(", {} a month", dollars(path.monthly_saving(setting))),
        None => String::new(),
    };
    let bytes = display_size(path.deleted_bytes());
    writeln!(out, "  deletes {deleted} ({bytes}{saving})")
}

/// An upload's line: its fate, time, size, archive and why.
fn upload_line(upload: &Planned) -> String {
    let when = upload
        .stored_at
        .map(display_time)
        .unwrap_or_else(|| "at an unknown time".into());
    let size = upload.size.map(display_size).unwrap_or_default();
    let (what, why) = match &upload.verdict {
        Verdict::Keep(reasons) => {
            let reasons: Vec<String> = reasons.iter().map(ToString::to_string).collect();
            ("keep", reasons.join(", "))
        }
        Verdict::Delete { fee } if *fee > 0.0 => {
            ("delete", format!("early deletion fee {}", dollars(*fee)))
        }
        Verdict::Delete { .. } => ("delete", String::new()),
        Verdict::Waits { until } => (
            "waits",
            format!("until {} (minimum storage duration)", display_time(*until)),
        ),
    };
    let line = format!(
        "  {what:<6} {when}  {size:>10}  {}  {why}",
        upload.archive_id
    );
    line.trim_end().to_owned()
}

/// The plan's last line: kept, deleted, saved, paid, waiting.
fn summary(plan: &Plan, setting: &Setting<'_>) -> String {
    let totals = plan.totals();
    let saving = match setting.class {
        Some(_) => format!(
            ", {} a month less in storage",
            dollars(plan.monthly_saving(setting))
        ),
        None => String::new(),
    };
    let mut summary = format!(
        "keep {}, delete {} ({}{saving})",
        totals.kept,
        totals.deleted,
        display_size(totals.deleted_bytes),
    );
    if totals.fees > 0.0 {
        summary.push_str(&format!(", early deletion fees {}", dollars(totals.fees)));
    }
    if totals.waiting > 0 {
        summary.push_str(&format!(
            "; {} wait for their minimum storage duration (the first prune after each date \
             deletes it at no fee; --allow-early-deletion deletes them now, for a fee)",
            totals.waiting
        ));
    }
    summary
}

fn policy_text(policy: &Retention) -> String {
    let counts = [
        ("keep_last", policy.last),
        ("keep_hourly", policy.hourly),
        ("keep_daily", policy.daily),
        ("keep_weekly", policy.weekly),
        ("keep_monthly", policy.monthly),
        ("keep_yearly", policy.yearly),
    ];
    let mut parts: Vec<String> = counts
        .iter()
        .filter_map(|(key, n)| n.map(|n| format!("{key} {n}")))
        .collect();
    if let Some(span) = policy.within {
        parts.push(format!("keep_within {span}"));
    }
    parts.join(", ")
}

fn to_json(
    plan: &Plan,
    setting: &Setting<'_>,
    dry_run: bool,
    report: Option<&PruneReport>,
) -> serde_json::Value {
    let paths: Vec<serde_json::Value> = plan
        .paths
        .iter()
        .map(|path| {
            let uploads: Vec<serde_json::Value> = path
                .uploads
                .iter()
                .map(|u| {
                    let mut value = serde_json::json!({
                        "archive_id": u.archive_id,
                        "stored_at": u.stored_at.map(display_time),
                        "size": u.size,
                    });
                    match &u.verdict {
                        Verdict::Keep(reasons) => {
                            value["verdict"] = "keep".into();
                            value["reasons"] = reasons.iter().map(ToString::to_string).collect();
                        }
                        Verdict::Delete { fee } => {
                            value["verdict"] = "delete".into();
                            value["early_deletion_fee"] = (*fee).into();
                        }
                        Verdict::Waits { until } => {
                            value["verdict"] = "waits".into();
                            value["until"] = display_time(*until).into();
                        }
                    }
                    value
                })
                .collect();
            with_path(
                &path.path,
                serde_json::json!({
                    "policy": policy_text(&path.policy),
                    "source_gone": path.source_gone,
                    "uploads": uploads,
                    "deleted": path.deletions().count(),
                    "deleted_bytes": path.deleted_bytes(),
                    "monthly_saving": path.monthly_saving(setting),
                }),
            )
        })
        .collect();
    let totals = plan.totals();
    serde_json::json!({
        "command": "prune",
        "dry_run": dry_run,
        "paths": paths,
        "unfinished": plan.unfinished,
        "kept": totals.kept,
        "deleted": totals.deleted,
        "deleted_bytes": totals.deleted_bytes,
        "waiting": totals.waiting,
        "early_deletion_fees": totals.fees,
        "monthly_saving": plan.monthly_saving(setting),
        "pruned": report.map(|r| r.deleted.clone()),
    })
}
