//! `prune` (issue 27) through the binary: a history planted by backups run at chosen times
//! (GLACIER_BACKUP_NOW), pruned in a local directory, the fake vault and an S3 bucket; what
//! the plan deletes is gone and marked, what it keeps restores; an interrupted prune finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::config::TestConfig;
use crate::support::sandbox::{assert_exit, assert_says, output_text, Sandbox};

const DAY: i64 = 86_400;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(time: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp(time).unwrap();
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn at(command: &mut Command, time: i64) -> &mut Command {
    command.env("GLACIER_BACKUP_NOW", time.to_string())
}

/// Upload times of `docs`, days before now: eight 30 days apart from 400 days ago, then 20,
/// 15 and 10 days ago. `mail` is uploaded once, 400 days ago.
const DOCS_DAYS_AGO: [i64; 11] = [400, 370, 340, 310, 280, 250, 220, 190, 20, 15, 10];

/// A history of uploads to `config`, a change before each: what `docs` held at each, oldest
/// first. `mail` is removed from the disk after its one upload.
fn history(sb: &Sandbox, config: &Path, data: &Path) -> Vec<Vec<u8>> {
    let (docs, mail) = (data.join("docs"), data.join("mail"));
    fs::create_dir_all(&docs).unwrap();
    fs::create_dir_all(&mail).unwrap();
    fs::write(mail.join("inbox"), b"mail").unwrap();
    let mut states = Vec::new();
    for (n, days) in DOCS_DAYS_AGO.iter().enumerate() {
        let bytes = format!("version {n} of the document").into_bytes();
        fs::write(docs.join("doc.txt"), &bytes).unwrap();
        let out = at(&mut sb.with_config(config, &[]), now() - days * DAY)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        states.push(bytes);
        if n == 0 {
            fs::remove_dir_all(&mail).unwrap();
        }
    }
    states
}

fn paths(data: &Path, retention: &str) -> String {
    format!(
        "[retention]\n{retention}\n[\"{}\"]\nupload_dirs = true\nupload_if_changed = true\n",
        data.display()
    )
}

/// Upload rows of `path`, oldest first: archive id and whether prune marked it deleted.
fn rows(ledger: &Path, path: &Path) -> Vec<(String, bool)> {
    let conn = rusqlite::Connection::open(ledger).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT u.archive_id, p.deleted_at IS NOT NULL FROM uploads u \
             LEFT JOIN pruned p ON p.archive_id = u.archive_id WHERE u.path = ?1 ORDER BY u.rowid",
        )
        .unwrap();
    stmt.query_map([path.to_str().unwrap()], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn plan(sb: &Sandbox, config: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["-d", "--json", "prune"];
    args.extend(extra);
    let out = sb.with_config(config, &args).output().unwrap();
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each upload's verdict in a plan, by archive id.
fn verdicts(plan: &serde_json::Value) -> BTreeMap<String, String> {
    plan["paths"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["uploads"].as_array().unwrap())
        .map(|u| {
            (
                u["archive_id"].as_str().unwrap().to_owned(),
                u["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// One destination of the test: its config, ledger, and how to list what it holds.
struct Destination<'a> {
    name: &'static str,
    config: PathBuf,
    ledger: PathBuf,
    /// Archive ids held (indexes apart).
    held: Box<dyn Fn() -> BTreeSet<String> + 'a>,
    /// Deletes an archive behind the tool's back.
    remove: Box<dyn Fn(&str) + 'a>,
    /// Whether the index of an archive is held.
    indexed: Box<dyn Fn(&str) -> bool + 'a>,
    /// Its class has a minimum storage duration (90 days).
    minimum: bool,
}

/// keep_last 2 over the planted history, on a local directory, the fake vault and an S3
/// bucket (GLACIER_IR): the dry run's plan deletes the eight old uploads of docs (and, in a
/// class with a 90-day minimum, lets the one of 20 days ago wait; a local directory deletes
/// it), keeps mail's (its source is gone) and contacts nothing; prune deletes exactly that,
/// marks each row, and leaves what it keeps restorable byte for byte; `restore --at` a pruned
/// time names the nearest kept upload; `--forget-gone` then deletes mail's; a last prune
/// finds nothing to do.
#[cfg(all(feature = "glacier", feature = "s3", feature = "local"))]
#[test]
fn prune_deletes_what_its_plan_says_and_keeps_the_rest_restorable() {
    use crate::support::setup::Setup;
    let s = Setup::with_fake().and_moto();
    let data_of = |name: &str| s.path(&format!("data-{name}"));
    let retention = |name: &str| paths(&data_of(name), "keep_last = 2");
    let local_config = TestConfig::local(&s.path("archives"))
        .main("ledger", s.path("local.sqlite3").display())
        .raw(&retention("local"))
        .write(&s.path("config/local.toml"));
    let archives = s.path("archives");
    let destinations = [
        Destination {
            name: "local",
            config: local_config,
            ledger: s.path("local.sqlite3"),
            held: Box::new(|| {
                crate::support::files_below(&archives)
                    .into_iter()
                    .filter(|path| !path.to_string_lossy().ends_with(".gbindex"))
                    .map(|path| {
                        let id = path.strip_prefix(&archives).unwrap();
                        id.to_string_lossy().into_owned()
                    })
                    .collect()
            }),
            remove: Box::new(|id| fs::remove_file(archives.join(id)).unwrap()),
            indexed: Box::new(|id| archives.join(format!("{id}.gbindex")).exists()),
            minimum: false,
        },
        Destination {
            name: "vault",
            config: s.vault_config(&retention("vault")),
            ledger: s.path("config/glacier.photos.sqlite3"),
            held: Box::new(|| {
                s.fake()
                    .archives("photos")
                    .into_iter()
                    .filter(|(_, a)| !a.description.starts_with("gb1-index:"))
                    .map(|(id, _)| id)
                    .collect()
            }),
            remove: Box::new(|id| assert!(s.fake().remove("photos", id))),
            indexed: Box::new(|id| {
                let index = format!("gb1-index:{id}");
                s.fake()
                    .archives("photos")
                    .iter()
                    .any(|(_, a)| a.description == index)
            }),
            minimum: true,
        },
        Destination {
            name: "s3",
            config: s.bucket_config(&retention("s3")),
            ledger: s.path("config/s3.cold.sqlite3"),
            held: Box::new(|| s.objects().into_iter().map(|(key, _)| key).collect()),
            remove: Box::new(|id| {
                let deleted = s.s3().delete_object().bucket("cold").key(id).send();
                s.block_on(deleted).unwrap();
            }),
            indexed: Box::new(|id| {
                let index = format!("{id}.gbindex");
                s.indexes().iter().any(|(key, _)| *key == index)
            }),
            minimum: true,
        },
    ];
    for d in &destinations {
        let name = d.name;
        let data = data_of(name);
        let states = history(&s, &d.config, &data);
        let docs = rows(&d.ledger, &data.join("docs"));
        let mail = rows(&d.ledger, &data.join("mail"));
        assert_eq!((docs.len(), mail.len()), (11, 1), "{name}");

        let requests = s.fake().stats().requests;
        let planned = verdicts(&plan(&s, &d.config, &[]));
        assert_eq!(
            s.fake().stats().requests,
            requests,
            "{name}: a dry run asks nothing"
        );
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        for (n, (id, _)) in docs.iter().enumerate() {
            let verdict = match n {
                9 | 10 => "keep",
                8 if d.minimum => "waits",
                _ => "delete",
            };
            expected.insert(id.clone(), verdict.into());
        }
        expected.insert(mail[0].0.clone(), "keep".into());
        assert_eq!(planned, expected, "{name}");

        let before = (d.held)();
        // A prune killed after noting two deletions, the destination having carried out the
        // second: the next one finishes both first.
        let doomed: Vec<&String> = expected
            .iter()
            .filter(|(_, v)| *v == "delete")
            .map(|(id, _)| id)
            .collect();
        let conn = rusqlite::Connection::open(&d.ledger).unwrap();
        for id in &doomed[..2] {
            conn.execute(
                "INSERT INTO pruned (archive_id, started_at) VALUES (?1, '2026-01-01T00:00:00Z')",
                [id],
            )
            .unwrap();
        }
        (d.remove)(doomed[1]);
        let unfinished = plan(&s, &d.config, &[]);
        assert_eq!(
            unfinished["unfinished"].as_array().unwrap().len(),
            2,
            "{name}"
        );
        let pruned = s
            .with_config(&d.config, &["prune", "--yes"])
            .output()
            .unwrap();
        assert_exit(&pruned, 0);
        let deleted: BTreeSet<String> = expected
            .iter()
            .filter(|(_, v)| *v == "delete")
            .map(|(id, _)| id.clone())
            .collect();
        let held = (d.held)();
        assert_eq!(
            held,
            before.difference(&deleted).cloned().collect(),
            "{name}: exactly the planned deletions are gone"
        );
        let marked: BTreeSet<String> = rows(&d.ledger, &data.join("docs"))
            .into_iter()
            .filter(|(_, pruned)| *pruned)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            marked, deleted,
            "{name}: each deletion marked in the ledger"
        );
        for id in expected.keys() {
            let indexed = (d.indexed)(id);
            assert_eq!(indexed, !deleted.contains(id), "{name}: the index of {id}");
        }

        // What is kept restores: the latest, and the one of 15 days ago.
        for (n, time) in [(10, None), (9, Some(now() - 15 * DAY + 60))] {
            let out = s.path(&format!("out-{name}-{n}"));
            let mut restore = s.with_config(&d.config, &["restore", "--wait", "--to"]);
            restore.arg(&out).arg(data.join("docs"));
            if let Some(time) = time {
                restore.args(["--at", &rfc3339(time)]);
            }
            let restored = restore.output().unwrap();
            assert_exit(&restored, 0);
            assert_eq!(
                fs::read(out.join("docs/doc.txt")).unwrap(),
                states[n],
                "{name}"
            );
        }
        let refused = s
            .with_config(&d.config, &["restore", "--to"])
            .arg(s.path("nowhere"))
            .arg(data.join("docs"))
            .args(["--at", &rfc3339(now() - 300 * DAY)])
            .output()
            .unwrap();
        assert_exit(&refused, 2);
        assert_says(&refused, "was pruned");
        assert_says(&refused, "the nearest upload kept is");
        let listed = s
            .with_config(&d.config, &["ls", "--at", &rfc3339(now() - 300 * DAY)])
            .arg(data.join("docs"))
            .output()
            .unwrap();
        assert_exit(&listed, 1);
        assert_says(&listed, "was pruned");
        let found = s
            .with_config(&d.config, &["find", "--at", &rfc3339(now() - 300 * DAY)])
            .arg("*.txt")
            .output()
            .unwrap();
        assert_exit(&found, 0);
        assert_says(&found, "not searched: the upload of");
        assert!(
            !output_text(&found).contains("doc.txt"),
            "{name}: an older version shown"
        );

        let forgotten = s
            .with_config(&d.config, &["prune", "--yes", "--forget-gone"])
            .output()
            .unwrap();
        assert_exit(&forgotten, 0);
        assert!(rows(&d.ledger, &data.join("mail"))[0].1, "{name}");
        assert!(!(d.held)().contains(&mail[0].0), "{name}");
        let again = plan(&s, &d.config, &["--forget-gone"]);
        assert_eq!(again["deleted"], 0, "{name}: {again}");
        let list = s.with_config(&d.config, &["list"]).output().unwrap();
        assert_says(&list, "(pruned ");
    }
}

/// Every archive in the fake vault, indexes too.
#[cfg(feature = "glacier")]
fn vault_ids(s: &crate::support::setup::Setup) -> BTreeSet<String> {
    s.fake()
        .archives("photos")
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// A prune killed (SIGKILL) while a deletion is held by the vault: the rerun finishes it and
/// the rest, no archive is deleted twice, and every row ends marked as the vault holds it.
/// A deletion whose reply is lost counts as done the next time (the archive is gone).
#[cfg(feature = "glacier")]
#[test]
fn a_prune_killed_mid_way_is_finished_by_the_next_with_nothing_deleted_twice() {
    use crate::support::setup::Setup;
    let s = Setup::with_fake();
    let data = s.path("data");
    let config = s.vault_config(&paths(&data, "keep_last = 1"));
    history(&s, &config, &data);
    let ledger = s.path("config/glacier.photos.sqlite3");
    // A row the Python tool wrote (its four columns) for an archive of its own, 500 days old:
    // pruned by the same rules.
    let python = s.fake().plant("photos", "docs", b"the Python tool's tar");
    rusqlite::Connection::open(&ledger)
        .unwrap()
        .execute(
            "INSERT INTO uploads (path, name, archive_id, uploaded_date) VALUES (?1, 'docs', ?2, ?3)",
            rusqlite::params![
                data.join("docs").to_str().unwrap(),
                python,
                now() - 500 * DAY
            ],
        )
        .unwrap();
    let planned = verdicts(&plan(&s, &config, &[]));
    let doomed: BTreeSet<String> = planned
        .iter()
        .filter(|(_, v)| *v == "delete")
        .map(|(id, _)| id.clone())
        .collect();
    // Keep the latest; the uploads of 20 and 15 days ago wait out the vault's 90 days.
    assert_eq!(doomed.len(), 9, "{planned:?}");
    assert!(doomed.contains(&python));

    // Each directory archive has its index, an archive of its own in a vault: deleted with it.
    let indexes: BTreeSet<String> = s
        .fake()
        .archives("photos")
        .into_iter()
        .filter(|(_, a)| {
            let indexed = a.description.strip_prefix("gb1-index:");
            indexed.is_some_and(|of| doomed.contains(of))
        })
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        indexes.len(),
        doomed.len() - 1,
        "the Python tool's archive has none"
    );
    s.fake().set(|b| b.hold_deletes_after = Some(3));
    let child = s
        .with_config(&config, &["prune", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_until("the prune never deleted three archives", || {
        s.fake().stats().deleted.len() == 3
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = crate::glacier_fake::signal_child(child, "-KILL");
    assert_eq!(killed.status.code(), None, "{}", output_text(&killed));
    // Every row marked deleted is gone from the vault.
    let held = vault_ids(&s);
    let docs = rows(&ledger, &data.join("docs"));
    for (id, marked) in &docs {
        assert!(!(*marked && held.contains(id)), "{id} marked but held");
    }
    let verified = s.with_config(&config, &["verify"]).output().unwrap();
    assert_says(&verified, "an interrupted prune left");

    s.fake().set(|b| {
        b.hold_deletes_after = None;
        b.lose_reply = Some(fake_glacier::Call::Delete);
    });
    let rerun = s
        .with_config(&config, &["prune", "--yes"])
        .output()
        .unwrap();
    let deleted = s.fake().stats().deleted;
    let once: BTreeSet<&String> = deleted.iter().collect();
    assert_eq!(
        once.len(),
        deleted.len(),
        "an archive deleted twice: {deleted:?}"
    );
    if rerun.status.code() != Some(0) {
        // The lost reply stopped it: a third run finishes.
        assert_says(&rerun, "run prune again");
        let third = s
            .with_config(&config, &["prune", "--yes"])
            .output()
            .unwrap();
        assert_exit(&third, 0);
    }
    let deleted: BTreeSet<String> = s.fake().stats().deleted.into_iter().collect();
    assert_eq!(deleted, doomed.union(&indexes).cloned().collect());
    let all_deletions = s.fake().stats().deleted;
    assert_eq!(all_deletions.len(), deleted.len(), "{all_deletions:?}");
    assert!(vault_ids(&s).is_disjoint(&doomed));
    for (id, marked) in rows(&ledger, &data.join("docs")) {
        assert_eq!(marked, doomed.contains(&id), "{id}");
    }
    let again = plan(&s, &config, &[]);
    assert_eq!(again["deleted"], 0, "{again}");
    assert!(again["unfinished"].as_array().unwrap().is_empty());
}

/// Incremental chains: pruning to the last upload keeps the chain it is an increment of, to
/// its full, and deletes the chains before; the latest restores. A path with an upload under
/// way is refused, naming it.
#[test]
fn prune_keeps_the_chain_a_kept_increment_needs_and_waits_for_pending_uploads() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    let docs = data.join("docs");
    fs::create_dir_all(&docs).unwrap();
    let config = TestConfig::local(&sb.path("archives"))
        .main("ledger", sb.path("ledger.sqlite3").display())
        .raw(&format!(
            "[retention]\nkeep_last = 1\n[\"{}\"]\nupload_single_dir = true\n\
             upload_if_changed = true\nincremental = true\nfull_after_days = 60\n",
            docs.display()
        ))
        .write(&sb.path("chain.toml"));
    // Chains of fulls every 60 days: uploads 100, 80, 60 (a new full), 40, 20 days ago.
    for (n, days) in [100, 80, 60, 40, 20].into_iter().enumerate() {
        fs::write(docs.join(format!("f{n}")), vec![n as u8; 5000]).unwrap();
        let out = at(&mut sb.with_config(&config, &[]), now() - days * DAY)
            .output()
            .unwrap();
        assert_exit(&out, 0);
    }
    let conn = rusqlite::Connection::open(sb.path("ledger.sqlite3")).unwrap();
    let bases: Vec<Option<String>> = conn
        .prepare("SELECT c.base FROM uploads u JOIN catalogs c USING (archive_id) ORDER BY u.rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        bases.iter().map(Option::is_some).collect::<Vec<_>>(),
        [false, true, false, true, true],
        "two chains"
    );
    let planned = plan(&sb, &config, &[]);
    let kept: Vec<String> = planned["paths"][0]["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["verdict"].as_str().unwrap().to_owned())
        .collect();
    // Newest first: the latest, its base, the chain's full; the first chain goes.
    assert_eq!(
        kept,
        ["keep", "keep", "keep", "delete", "delete"],
        "{planned}"
    );
    // A dry-run backup's ledger is a copy that reads the catalogs from the file: its plan keeps
    // the chain too.
    let dry = sb
        .with_config(&config, &["-d", "backup", "--prune"])
        .output()
        .unwrap();
    assert_exit(&dry, 0);
    let text = String::from_utf8_lossy(&dry.stdout);
    let fates: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("  ")?.split_whitespace().next())
        .filter(|fate| ["keep", "delete"].contains(fate))
        .collect();
    assert_eq!(
        fates,
        ["keep", "keep", "keep", "delete", "delete"],
        "{text}"
    );

    conn.execute(
        "INSERT INTO pending_uploads (path, backend, token, part_size, fingerprint, started_at) \
         VALUES (?1, 'local', 't', 1, 'f', '2026-01-01T00:00:00Z')",
        [docs.to_str().unwrap()],
    )
    .unwrap();
    let refused = sb
        .with_config(&config, &["prune", "--yes"])
        .output()
        .unwrap();
    assert_exit(&refused, 2);
    assert_says(&refused, "an upload of it is under way or was interrupted");
    conn.execute("DELETE FROM pending_uploads", []).unwrap();

    let pruned = sb
        .with_config(&config, &["prune", "--yes"])
        .output()
        .unwrap();
    assert_exit(&pruned, 0);
    let out = sb.path("out");
    let restored = sb
        .with_config(&config, &["restore", "--to"])
        .arg(&out)
        .arg(&docs)
        .output()
        .unwrap();
    assert_exit(&restored, 0);
    for n in 0..5 {
        assert_eq!(
            fs::read(out.join(format!("docs/f{n}"))).unwrap(),
            vec![n as u8; 5000]
        );
    }
}

/// `backup --prune` prunes after a clean backup (for cron); `[retention]` keys are checked
/// like every other.
#[test]
fn backup_prune_prunes_after_the_backup_and_bad_keys_are_refused() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    let config = TestConfig::local(&sb.path("archives"))
        .main("ledger", sb.path("ledger.sqlite3").display())
        .raw(&paths(&data, "keep_last = 1"))
        .write(&sb.path("c.toml"));
    // Before any backup: nothing to prune, and no ledger made for it.
    let empty = sb.with_config(&config, &["prune"]).output().unwrap();
    assert_exit(&empty, 0);
    assert_says(&empty, "nothing to prune: no ledger at");
    assert!(!sb.path("ledger.sqlite3").exists());
    history(&sb, &config, &data);
    // On a terminal, prune asks first: "n" deletes nothing.
    let config_arg = config.to_str().unwrap();
    let (code, shown) = sb.on_a_terminal(&["-c", config_arg, "prune"], "n\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("Delete 10 archive(s) for good? [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("nothing deleted"), "{shown}");
    let docs = rows(&sb.path("ledger.sqlite3"), &data.join("docs"));
    assert!(docs.iter().all(|(_, pruned)| !pruned));
    fs::write(data.join("docs/doc.txt"), b"one more").unwrap();
    let out = sb
        .with_config(&config, &["backup", "--prune"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let docs = rows(&sb.path("ledger.sqlite3"), &data.join("docs"));
    assert_eq!(docs.len(), 12);
    assert_eq!(
        docs.iter().filter(|(_, pruned)| !pruned).count(),
        1,
        "only the new upload is kept: {docs:?}"
    );
    for (text, key) in [
        ("keep_within = \"2 years\"", "keep_within"),
        ("keep_daily = -1", "keep_daily"),
        ("keep_forever = 1", "keep_forever"),
    ] {
        let bad = TestConfig::local(&sb.path("archives"))
            .raw(&format!("[retention]\n{text}\n"))
            .write(&sb.path("bad.toml"));
        let out = sb.with_config(&bad, &["-d", "prune"]).output().unwrap();
        assert_exit(&out, 2);
        assert_says(&out, key);
    }
}
