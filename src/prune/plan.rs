//! The plan: per path, what the policy keeps and why, what it deletes, and what waits for its
//! class's minimum storage duration. Arithmetic on the ledger alone; nothing is contacted.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::keep::{kept_by, Rule};
use crate::config::{PathRule, Retention};
use crate::costs::{PriceClass, Prices};
use crate::ledger::{Ledger, LedgerError};

/// What a prune is asked to do.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The time the plan counts ages and minimum durations from.
    pub now: OffsetDateTime,
    /// Deletes archives still inside their class's minimum duration, paying the fee, instead
    /// of letting them wait.
    pub allow_early_deletion: bool,
    /// A path whose source is gone loses every upload, its latest too.
    pub forget_gone: bool,
    /// Only these paths (and what lies below them); empty: every path.
    pub paths: Vec<PathBuf>,
}

/// Where the policies come from, and where the archives are.
#[derive(Debug, Clone, Copy)]
pub struct Setting<'a> {
    /// `[retention]`.
    pub retention: Retention,
    /// The path sections, whose `keep_*` keys go over `[retention]`.
    pub rules: &'a [PathRule],
    /// The backend the ledger's rows must name to be deleted through this one.
    pub backend: &'a str,
    /// Its storage class, as prices know it (`None`: no minimum duration, no storage price).
    pub class: Option<PriceClass>,
    /// Prices for the savings and fees.
    pub prices: &'a Prices,
}

/// The whole plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every path of the ledger with uploads here, in path order.
    pub paths: Vec<PathPlan>,
    /// Archives an interrupted prune asked to delete: finished first, whatever the plan.
    pub unfinished: Vec<String>,
}

/// One path's uploads and their fate.
#[derive(Debug, Clone)]
pub struct PathPlan {
    /// The source path.
    pub path: PathBuf,
    /// Its policy (`[retention]` with its section's keys over it).
    pub policy: Retention,
    /// Its source is gone from this machine.
    pub source_gone: bool,
    /// Its uploads, newest first.
    pub uploads: Vec<Planned>,
}

/// One upload and its fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The archive.
    pub archive_id: String,
    /// When it was stored.
    pub stored_at: Option<OffsetDateTime>,
    /// Its size, when recorded.
    pub size: Option<u64>,
    /// What happens to it.
    pub verdict: Verdict,
}

/// What happens to an upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Kept, for these reasons.
    Keep(Vec<Reason>),
    /// Deleted; the early-deletion fee it costs (0 past its minimum duration).
    Delete {
        /// Dollars.
        fee: f64,
    },
    /// The policy lets it go, but it is inside its minimum duration: the first prune after
    /// this time deletes it at no fee.
    Waits {
        /// When its minimum duration ends.
        until: OffsetDateTime,
    },
}

/// Why an upload is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A rule of the policy.
    Rule(Rule),
    /// The path's latest upload, always kept (unless `--forget-gone` and the source is gone).
    Latest,
    /// The path has no policy.
    NoPolicy,
    /// An increment kept (or waiting) needs it: the increment's archive.
    BaseOf(String),
    /// Its row records no time, so no rule can place it.
    NoTime,
    /// Stored through another backend than this one.
    OtherBackend(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Rule(rule) => f.write_str(rule.key()),
            Reason::Latest => f.write_str("latest"),
            Reason::NoPolicy => f.write_str("no policy"),
            Reason::BaseOf(id) => write!(f, "base of {id}"),
            Reason::NoTime => f.write_str("no upload time recorded"),
            Reason::OtherBackend(name) => write!(f, "stored through {name}"),
        }
    }
}

/// The slice of an upload row the plan needs: a ledger of 200,000 rows stays small.
struct Row {
    archive_id: String,
    stored_at: Option<OffsetDateTime>,
    size: Option<u64>,
    backend: String,
}

/// Works out the plan from the ledger's rows (archives moved away and pruned ones left out).
pub fn plan(
    ledger: &Ledger,
    setting: &Setting<'_>,
    options: &PruneOptions,
) -> Result<Plan, LedgerError> {
    let moved = ledger.moved()?;
    // Keyed by the path's bytes: hashing them is cheaper than comparing paths by components.
    let mut by_path: HashMap<std::ffi::OsString, Vec<Row>> = HashMap::new();
    ledger.each_brief(&mut |upload| {
        let wanted =
            options.paths.is_empty() || options.paths.iter().any(|p| upload.path.starts_with(p));
        let gone_from_here = moved
            .get(&upload.archive_id)
            .is_some_and(|m| m.source_deleted_at.is_some());
        if wanted && !gone_from_here {
            let row = Row {
                stored_at: upload.stored_at,
                size: upload.size,
                archive_id: upload.archive_id,
                backend: upload.backend,
            };
            match by_path.get_mut(upload.path.as_os_str()) {
                Some(rows) => rows.push(row),
                None => {
                    by_path.insert(upload.path.into_os_string(), vec![row]);
                }
            }
        }
    })?;
    let mut by_path: Vec<(std::ffi::OsString, Vec<Row>)> = by_path.into_iter().collect();
    by_path.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let bases = ledger.chain_bases()?;
    let paths = by_path
        .into_iter()
        .map(|(path, rows)| plan_path(PathBuf::from(path), rows, setting, options, &bases))
        .collect();
    Ok(Plan {
        paths,
        unfinished: ledger.pruning_unfinished()?,
    })
}

/// One path's plan: the policy's verdicts, the latest kept, chains kept whole, minimum
/// durations respected.
fn plan_path(
    path: PathBuf,
    mut rows: Vec<Row>,
    setting: &Setting<'_>,
    options: &PruneOptions,
    bases: &HashMap<String, String>,
) -> PathPlan {
    let policy = policy_of(&path, setting);
    let source_gone = matches!(
        std::fs::symlink_metadata(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    );
    // Newest first; the ledger's order (oldest first) breaks ties.
    rows.reverse();
    rows.sort_by_key(|row| std::cmp::Reverse(row.stored_at));
    let forget = source_gone && options.forget_gone;
    let times: Vec<OffsetDateTime> = rows.iter().filter_map(|r| r.stored_at).collect();
    let mut by_rule = kept_by(&policy, &times).into_iter();
    let mut uploads: Vec<Planned> = rows
        .into_iter()
        .enumerate()
        .map(|(n, row)| {
            let rules = match row.stored_at {
                Some(_) => by_rule.next().unwrap_or_default(),
                None => Vec::new(),
            };
            let reasons = reasons_to_keep(n == 0, rules, &policy, &row, setting.backend, forget);
            let verdict = match reasons.is_empty() {
                true => Verdict::Delete { fee: 0.0 },
                false => Verdict::Keep(reasons),
            };
            Planned {
                archive_id: row.archive_id,
                stored_at: row.stored_at,
                size: row.size,
                verdict,
            }
        })
        .collect();
    for upload in &mut uploads {
        if let Verdict::Delete { .. } = upload.verdict {
            upload.verdict = deletion(upload, setting, options);
        }
    }
    keep_bases(&mut uploads, bases);
    PathPlan {
        path,
        policy,
        source_gone,
        uploads,
    }
}

/// Why an upload is kept (none: the policy lets it go): by the policy's `rules`, as the path's
/// `latest`, for want of a policy, of a time, or of the backend it was stored through. A path
/// forgotten (`--forget-gone`) keeps only what cannot be deleted from here.
fn reasons_to_keep(
    latest: bool,
    rules: Vec<Rule>,
    policy: &Retention,
    row: &Row,
    backend: &str,
    forget: bool,
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if !forget {
        if latest {
            reasons.push(Reason::Latest);
        }
        reasons.extend(rules.into_iter().map(Reason::Rule));
        if !policy.is_set() {
            reasons.push(Reason::NoPolicy);
        }
    }
    if row.stored_at.is_none() {
        reasons.push(Reason::NoTime);
    }
    if row.backend != backend {
        reasons.push(Reason::OtherBackend(row.backend.clone()));
    }
    reasons
}

/// The policy of `path`: `[retention]` with the keys of the section that names it (or its
/// parent, for `upload_dirs` and `upload_files`) over it.
fn policy_of(path: &Path, setting: &Setting<'_>) -> Retention {
    setting
        .rules
        .iter()
        .filter(|rule| path == rule.path || path.parent() == Some(rule.path.as_path()))
        .max_by_key(|rule| rule.path.as_os_str().len())
        .map_or(setting.retention, |rule| {
            setting.retention.overridden_by(rule.retention)
        })
}

/// Keeps every archive a kept or waiting increment needs (a waiting one is still stored, and
/// restorable): its base, and the base's, to the chain's full.
fn keep_bases(uploads: &mut [Planned], bases: &HashMap<String, String>) {
    let position: HashMap<String, usize> = uploads
        .iter()
        .enumerate()
        .map(|(n, u)| (u.archive_id.clone(), n))
        .collect();
    // Newest first: a base is older than its increment, so it is met later in the walk, by
    // then kept, and its own base kept in turn.
    for n in 0..uploads.len() {
        if let Verdict::Delete { .. } = uploads[n].verdict {
            continue;
        }
        let Some(base) = bases.get(&uploads[n].archive_id) else {
            continue;
        };
        let Some(&at) = position.get(base) else {
            continue;
        };
        let child = uploads[n].archive_id.clone();
        match &mut uploads[at].verdict {
            Verdict::Keep(reasons) => reasons.push(Reason::BaseOf(child)),
            verdict => *verdict = Verdict::Keep(vec![Reason::BaseOf(child)]),
        }
    }
}

/// A deletion the policy allows: now, or once the minimum duration is over (or now with its
/// fee, when early deletion is allowed).
fn deletion(upload: &Planned, setting: &Setting<'_>, options: &PruneOptions) -> Verdict {
    let (Some(class), Some(stored)) = (setting.class, upload.stored_at) else {
        return Verdict::Delete { fee: 0.0 };
    };
    let until = stored + time::Duration::days(i64::from(class.minimum_days()));
    if until <= options.now {
        return Verdict::Delete { fee: 0.0 };
    }
    if !options.allow_early_deletion {
        return Verdict::Waits { until };
    }
    let age_days = (options.now - stored).as_seconds_f64() / 86_400.0;
    let size = upload.size.unwrap_or(0);
    Verdict::Delete {
        fee: setting.prices.early_deletion(class, &[(size, age_days)]),
    }
}

impl PathPlan {
    /// The uploads of this path deleted now.
    pub fn deletions(&self) -> impl Iterator<Item = &Planned> {
        self.uploads
            .iter()
            .filter(|u| matches!(u.verdict, Verdict::Delete { .. }))
    }

    /// The bytes of this path's deletions.
    pub fn deleted_bytes(&self) -> u64 {
        self.deletions().map(|u| u.size.unwrap_or(0)).sum()
    }

    /// What this path's deletions take off the monthly storage bill, in dollars.
    pub fn monthly_saving(&self, setting: &Setting<'_>) -> f64 {
        saving(setting, self.deletions())
    }
}

/// The monthly storage of `deleted`, at the destination's class's price.
fn saving<'a>(setting: &Setting<'_>, deleted: impl Iterator<Item = &'a Planned>) -> f64 {
    let Some(class) = setting.class else {
        return 0.0;
    };
    let sizes: Vec<u64> = deleted.map(|u| u.size.unwrap_or(0)).collect();
    setting.prices.storage(class, &sizes, 0).monthly
}

/// Totals of a plan, for its summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Archives kept.
    pub kept: usize,
    /// Archives deleted now.
    pub deleted: usize,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Archives waiting for their minimum duration.
    pub waiting: usize,
    /// Early-deletion fees of the deletions now, in dollars.
    pub fees: f64,
}

impl Plan {
    /// Counts what the plan keeps, deletes and lets wait.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for upload in self.paths.iter().flat_map(|p| &p.uploads) {
            match upload.verdict {
                Verdict::Keep(_) => totals.kept += 1,
                Verdict::Delete { fee } => {
                    totals.deleted += 1;
                    totals.deleted_bytes += upload.size.unwrap_or(0);
                    totals.fees += fee;
                }
                Verdict::Waits { .. } => totals.waiting += 1,
            }
        }
        totals
    }

    /// What the deletions take off the monthly storage bill, in dollars.
    pub fn monthly_saving(&self, setting: &Setting<'_>) -> f64 {
        saving(setting, self.deletions())
    }

    /// The uploads deleted now.
    pub fn deletions(&self) -> impl Iterator<Item = &Planned> {
        self.paths
            .iter()
            .flat_map(|p| &p.uploads)
            .filter(|u| matches!(u.verdict, Verdict::Delete { .. }))
    }
}
