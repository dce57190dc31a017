//! The plan against a reference written from restic's documented rules, minimum durations and
//! their fees from the price table, and chains kept whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use glacier_backup_archiver::{Encoding, SourceKind};
use time::{Duration, OffsetDateTime};

use super::*;
use crate::catalog::Cataloged;
use crate::config::{PathRule, Retention};
use crate::costs::{PriceClass, Prices};
use crate::ledger::{Ledger, UploadRecord};

const PATHS: [&str; 3] = ["/gone/photos", "/gone/mail", "/gone/notes"];

fn upload(path: &str, id: String, at: OffsetDateTime, size: u64) -> UploadRecord {
    UploadRecord {
        path: path.into(),
        name: "n".into(),
        archive_id: id,
        description: None,
        backend: "glacier".into(),
        kind: Some(SourceKind::Directory),
        size: Some(size),
        tree_hash: None,
        fingerprint: None,
        started_at: Some(at),
        uploaded_at: Some(at),
        encoding: Encoding::default(),
        plain_size: None,
    }
}

/// 60 uploads of each of three paths over two years before `now`, at times scattered as a
/// seeded generator puts them (several in some hours, days and weeks; none in others).
fn history(now: OffsetDateTime) -> (Ledger, BTreeMap<String, Vec<(String, OffsetDateTime)>>) {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut all = BTreeMap::new();
    for path in PATHS {
        let mut times: Vec<OffsetDateTime> = (0..60)
            .map(|_| {
                // Half within the last 40 days, so hours and days hold several.
                let span = match random(2) {
                    0 => 40 * 86_400,
                    _ => 730 * 86_400,
                };
                now - Duration::seconds(random(span) as i64 + 60)
            })
            .collect();
        times.sort();
        let rows: Vec<(String, OffsetDateTime)> = times
            .into_iter()
            .enumerate()
            .map(|(n, at)| (format!("{path}#{n}"), at))
            .collect();
        for (id, at) in &rows {
            ledger
                .record_upload(&upload(path, id.clone(), *at, 1 << 30))
                .unwrap();
        }
        all.insert(path.to_owned(), rows);
    }
    (ledger, all)
}

/// restic's rules as its manual states them, written apart from the plan's code: keep-last
/// keeps the n newest; each bucket rule keeps the newest upload of each of the n newest
/// buckets that hold one; keep-within keeps those newer than the newest minus the span.
fn reference(policy: &Retention, rows: &[(String, OffsetDateTime)]) -> BTreeSet<String> {
    let mut newest_first: Vec<&(String, OffsetDateTime)> = rows.iter().collect();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.1));
    let mut kept = BTreeSet::new();
    if let Some(n) = policy.last {
        kept.extend(newest_first.iter().take(n as usize).map(|r| r.0.clone()));
    }
    type Label = fn(OffsetDateTime) -> String;
    let rules: [(Option<u64>, Label); 5] = [
        (policy.hourly, |t| format!("{} {}", t.date(), t.hour())),
        (policy.daily, |t| t.date().to_string()),
        (policy.weekly, |t| {
            let (y, w, _) = t.to_iso_week_date();
            format!("{y}-W{w}")
        }),
        (policy.monthly, |t| format!("{}-{}", t.year(), t.month())),
        (policy.yearly, |t| t.year().to_string()),
    ];
    for (count, bucket) in rules {
        let Some(n) = count else { continue };
        let mut buckets: Vec<String> = Vec::new();
        for row in &newest_first {
            let b = bucket(row.1);
            if !buckets.contains(&b) {
                buckets.push(b.clone());
                if buckets.len() as u64 <= n {
                    kept.insert(row.0.clone());
                }
            }
        }
    }
    if let Some(span) = policy.within {
        let newest = newest_first[0].1;
        let since = span.before(newest);
        kept.extend(
            newest_first
                .iter()
                .filter(|r| r.1 > since)
                .map(|r| r.0.clone()),
        );
    }
    // The latest upload of every path is always kept.
    kept.insert(newest_first[0].0.clone());
    kept
}

fn options(now: OffsetDateTime) -> PruneOptions {
    PruneOptions {
        now,
        allow_early_deletion: false,
        forget_gone: false,
        paths: Vec::new(),
    }
}

fn kept_ids(plan: &Plan) -> BTreeMap<String, BTreeSet<String>> {
    plan.paths
        .iter()
        .map(|p| {
            let kept = p
                .uploads
                .iter()
                .filter(|u| !matches!(u.verdict, Verdict::Delete { .. }))
                .map(|u| u.archive_id.clone())
                .collect();
            (p.path.display().to_string(), kept)
        })
        .collect()
}

/// Each policy key alone and several combined: the plan keeps exactly what the reference
/// keeps (no class: no minimum duration holds anything back).
#[test]
fn the_plan_keeps_what_restics_rules_keep() {
    let now = time::macros::datetime!(2026-12-07 12:00 UTC);
    let (ledger, history) = history(now);
    let prices = Prices::builtin();
    let within = |s: &str| Some(s.parse().unwrap());
    let policies = [
        Retention {
            last: Some(5),
            ..Default::default()
        },
        Retention {
            hourly: Some(10),
            ..Default::default()
        },
        Retention {
            daily: Some(7),
            ..Default::default()
        },
        Retention {
            weekly: Some(4),
            ..Default::default()
        },
        Retention {
            monthly: Some(12),
            ..Default::default()
        },
        Retention {
            yearly: Some(2),
            ..Default::default()
        },
        Retention {
            within: within("1m15d"),
            ..Default::default()
        },
        Retention {
            last: Some(2),
            daily: Some(7),
            weekly: Some(5),
            monthly: Some(12),
            yearly: Some(10),
            ..Default::default()
        },
        Retention {
            hourly: Some(24),
            within: within("3d"),
            monthly: Some(3),
            ..Default::default()
        },
    ];
    for policy in policies {
        let setting = Setting {
            retention: policy,
            rules: &[],
            backend: "glacier",
            class: None,
            prices: &prices,
        };
        let plan = plan(&ledger, &setting, &options(now)).unwrap();
        let expected: BTreeMap<String, BTreeSet<String>> = history
            .iter()
            .map(|(path, rows)| (path.clone(), reference(&policy, rows)))
            .collect();
        assert_eq!(kept_ids(&plan), expected, "{policy:?}");
        let deleted = plan.totals().deleted;
        assert!(
            deleted > 0 && deleted < 180,
            "{policy:?}: {deleted} deleted"
        );
    }
}

/// A path section's keys go over `[retention]` for that path and the directories below it
/// that `upload_dirs` makes candidates; no policy at all prunes nothing.
#[test]
fn a_path_sections_keys_go_over_the_retention_section() {
    let now = time::macros::datetime!(2026-12-07 12:00 UTC);
    let (ledger, history) = history(now);
    let prices = Prices::builtin();
    let mut rule = PathRule::single(PathBuf::from("/gone"));
    rule.retention.last = Some(1);
    rule.retention.daily = Some(0);
    let global = Retention {
        daily: Some(30),
        last: Some(3),
        ..Default::default()
    };
    let mut setting = Setting {
        retention: global,
        rules: std::slice::from_ref(&rule),
        backend: "glacier",
        class: None,
        prices: &prices,
    };
    let plan = plan(&ledger, &setting, &options(now)).unwrap();
    for (path, rows) in &history {
        let kept = &kept_ids(&plan)[path];
        assert_eq!(
            kept,
            &reference(
                &Retention {
                    last: Some(1),
                    daily: Some(0),
                    ..global
                },
                rows
            )
        );
        assert_eq!(kept.len(), 1);
    }
    setting.rules = &[];
    // As restic: a policy of zeros is no policy, never "delete all but the latest".
    setting.retention = Retention {
        last: Some(0),
        within: Some("0d".parse().unwrap()),
        ..Default::default()
    };
    assert_eq!(
        super::plan(&ledger, &setting, &options(now))
            .unwrap()
            .totals()
            .deleted,
        0
    );
    setting.retention = Retention::default();
    let plan = super::plan(&ledger, &setting, &options(now)).unwrap();
    assert_eq!(plan.totals().deleted, 0);
    assert!(plan.paths[0]
        .uploads
        .iter()
        .all(|u| u.verdict == Verdict::Keep(vec![Reason::NoPolicy])
            || matches!(&u.verdict, Verdict::Keep(r) if r.contains(&Reason::Latest))));
}

/// In DEEP_ARCHIVE, what the policy lets go inside its 180 days waits until they are over;
/// allowed early, it is deleted with the fee the price table gives: the storage of the days
/// left, with the class's per-archive overhead.
#[test]
fn minimum_durations_hold_deletions_back_or_cost_their_fee() {
    let now = time::macros::datetime!(2026-12-07 12:00 UTC);
    let (ledger, history) = history(now);
    let section = glacier_backup_archiver::settings::Section::from_strings(
        "prices",
        &[("storage_deep_archive", "0.002")],
    );
    let prices = Prices::with_overrides(Some(&section)).unwrap();
    let setting = Setting {
        retention: Retention {
            last: Some(1),
            ..Default::default()
        },
        rules: &[],
        backend: "glacier",
        class: Some(PriceClass::DeepArchive),
        prices: &prices,
    };
    let stored: BTreeMap<String, OffsetDateTime> = history.values().flatten().cloned().collect();
    let waiting = plan(&ledger, &setting, &options(now)).unwrap();
    let early = plan(
        &ledger,
        &setting,
        &PruneOptions {
            allow_early_deletion: true,
            ..options(now)
        },
    )
    .unwrap();
    let mut young = 0;
    for (held, paid) in waiting.paths.iter().zip(&early.paths) {
        for (held, paid) in held.uploads.iter().zip(&paid.uploads).skip(1) {
            let at = stored[&held.archive_id];
            let days_left = 180.0 - (now - at).as_seconds_f64() / 86_400.0;
            match days_left > 0.0 {
                true => {
                    young += 1;
                    assert_eq!(
                        held.verdict,
                        Verdict::Waits {
                            until: at + Duration::days(180)
                        }
                    );
                    let billed = ((1u64 << 30) + 32 * 1024) as f64 / (1u64 << 30) as f64;
                    let fee = billed * 0.002 * days_left / 30.0;
                    let Verdict::Delete { fee: planned } = paid.verdict else {
                        panic!("{paid:?}");
                    };
                    assert!((planned - fee).abs() < 1e-9, "{planned} vs {fee}");
                }
                false => {
                    assert_eq!(held.verdict, Verdict::Delete { fee: 0.0 });
                    assert_eq!(paid.verdict, Verdict::Delete { fee: 0.0 });
                }
            }
        }
    }
    assert!(young > 20, "{young} inside their minimum duration");
    assert_eq!(waiting.totals().waiting, young);
    assert!(waiting.totals().fees == 0.0 && early.totals().fees > 0.0);
}

/// A kept increment keeps its chain to the full; so does one waiting out its minimum
/// duration. An increment deleted lets its base go with it.
#[test]
fn chains_are_kept_whole_for_every_version_kept_or_waiting() {
    let now = time::macros::datetime!(2026-12-07 12:00 UTC);
    let mut ledger = Ledger::in_memory().unwrap();
    // Three chains: a full 400 days old and three increments; a full 100 days old and one;
    // a full 10 days old.
    let ages = [400, 390, 380, 370, 100, 20, 10];
    let bases = [None, Some(0), Some(1), Some(2), None, Some(4), None];
    for (n, (age, base)) in ages.iter().zip(bases).enumerate() {
        let row = upload(
            "/gone/photos",
            format!("a{n}"),
            now - Duration::days(*age),
            100,
        );
        let catalog = Cataloged {
            entries: Vec::new(),
            layout: None,
            index_id: None,
            base: base.map(|b| format!("a{b}")),
        };
        ledger.record_cataloged(&[(&row, Some(&catalog))]).unwrap();
    }
    let prices = Prices::builtin();
    let mut setting = Setting {
        retention: Retention {
            last: Some(1),
            ..Default::default()
        },
        rules: &[],
        backend: "glacier",
        class: None,
        prices: &prices,
    };
    let verdicts = |setting: &Setting<'_>| -> Vec<(String, bool)> {
        let plan = plan(&ledger, setting, &options(now)).unwrap();
        let mut v: Vec<(String, bool)> = plan.paths[0]
            .uploads
            .iter()
            .map(|u| {
                (
                    u.archive_id.clone(),
                    matches!(u.verdict, Verdict::Delete { .. }),
                )
            })
            .collect();
        v.sort();
        v
    };
    // The latest (a6) is a full: everything else goes.
    let deleted = |ids: &[&str]| -> Vec<(String, bool)> {
        (0..7)
            .map(|n| format!("a{n}"))
            .map(|id| (id.clone(), ids.contains(&id.as_str())))
            .collect()
    };
    assert_eq!(
        verdicts(&setting),
        deleted(&["a0", "a1", "a2", "a3", "a4", "a5"])
    );
    // Keeping the yearly ones keeps a3 (the last of 2025) and so its whole chain.
    setting.retention.yearly = Some(2);
    assert_eq!(verdicts(&setting), deleted(&["a4", "a5"]));
    // In a vault, a5 is inside its 90 days: it waits, and a4, past them, stays for it.
    setting.retention.yearly = None;
    setting.class = Some(PriceClass::Vault);
    let plan = plan(&ledger, &setting, &options(now)).unwrap();
    let verdict = |id: &str| {
        let upload = plan.paths[0].uploads.iter().find(|u| u.archive_id == id);
        upload.unwrap().verdict.clone()
    };
    assert!(matches!(verdict("a5"), Verdict::Waits { .. }));
    assert_eq!(
        verdict("a4"),
        Verdict::Keep(vec![Reason::BaseOf("a5".into())])
    );
    assert_eq!(verdict("a3"), Verdict::Delete { fee: 0.0 });
}
