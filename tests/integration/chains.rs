//! Incremental chains (issue 26): a changed directory uploads what changed since its last
//! upload, in GNU tar's incremental format, and every upload of the chain restores exactly.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::sandbox::{assert_exit, assert_says, Sandbox};

/// Per path below a tree: its kind, mode, and a file's bytes and mtime or a link's target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32, Vec<u8>, i64),
    Link(PathBuf),
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut nodes = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Link(fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir(mode)
            } else {
                Node::File(mode, fs::read(&path).unwrap(), meta.mtime())
            };
            nodes.insert(path.strip_prefix(root).unwrap().to_path_buf(), node);
        }
    }
    nodes
}

/// The edit of round `round`: each kind of change in turn.
fn edit(tree: &Path, round: usize) {
    let write = |path: &str, bytes: &[u8]| fs::write(tree.join(path), bytes).unwrap();
    match round % 9 {
        0 => write("a.txt", b"A changed, the same length?"),
        1 => {
            fs::create_dir_all(tree.join(format!("new{round}/deep"))).unwrap();
            write(&format!("new{round}/deep/f"), &vec![round as u8; 70_000]);
        }
        2 => fs::remove_file(tree.join("sub/gone.txt")).unwrap(),
        3 => fs::rename(tree.join("sub/moved.txt"), tree.join("moved-here.txt")).unwrap(),
        4 => fs::set_permissions(tree.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap(),
        5 => {
            // A file becomes a directory, and a directory a file.
            fs::remove_file(tree.join("becomes-dir")).unwrap();
            fs::create_dir(tree.join("becomes-dir")).unwrap();
            write("becomes-dir/inside", b"inside");
            fs::remove_dir_all(tree.join("becomes-file")).unwrap();
            write("becomes-file", b"now a file");
        }
        6 => {
            fs::remove_dir_all(tree.join("sub/old")).unwrap();
            std::os::unix::fs::symlink("a.txt", tree.join(format!("link{round}"))).unwrap();
        }
        7 => fs::rename(tree.join("sub"), tree.join("sub-renamed")).unwrap(),
        _ => {
            fs::remove_file(tree.join("link")).unwrap();
            std::os::unix::fs::symlink("elsewhere", tree.join("link")).unwrap();
            // Only the time changes.
            let at = filetime::FileTime::from_unix_time(1_500_000_000, 0);
            filetime::set_file_mtime(tree.join("big.bin"), at).unwrap();
        }
    }
}

fn tree(data: &Path) -> PathBuf {
    let tree = data.join("tree");
    fs::create_dir_all(tree.join("sub/old/inner")).unwrap();
    fs::create_dir_all(tree.join("becomes-file/x")).unwrap();
    fs::write(tree.join("a.txt"), b"A as it was first written").unwrap();
    fs::write(tree.join("sub/gone.txt"), b"soon deleted").unwrap();
    fs::write(tree.join("sub/moved.txt"), b"soon moved").unwrap();
    fs::write(tree.join("sub/old/inner/f"), b"old").unwrap();
    fs::write(tree.join("becomes-dir"), b"a file first").unwrap();
    fs::write(tree.join("becomes-file/x/y"), b"y").unwrap();
    std::os::unix::fs::symlink("a.txt", tree.join("link")).unwrap();
    let big = crate::support::random_bytes(3 << 20, 0x9E37_79B9);
    fs::write(tree.join("big.bin"), big).unwrap();
    tree
}

/// The uploads' archive ids, oldest first, and each one's base.
fn chain_rows(ledger: &Path) -> Vec<(String, Option<String>, u64)> {
    let conn = rusqlite::Connection::open(ledger).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT u.archive_id, c.base, u.size FROM uploads u \
             JOIN catalogs c ON c.archive_id = u.archive_id ORDER BY u.rowid",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Restores `what` (source paths, or `--archive-id ID`) with `config` into `out`, waiting for
/// a cold destination's retrievals: the tree it gives.
fn restored(
    sb: &Sandbox,
    config: &Path,
    out: &Path,
    what: &[&std::ffi::OsStr],
) -> BTreeMap<PathBuf, Node> {
    let restored = sb
        .with_config(config, &["restore", "--wait", "--timeout", "60", "--to"])
        .arg(out)
        .args(what)
        .output()
        .unwrap();
    assert_exit(&restored, 0);
    snapshot(&out.join("tree"))
}

/// Each upload of `rows` restored by its archive id: the trees, in order.
fn restore_each(
    sb: &Sandbox,
    config: &Path,
    rows: &[(String, Option<String>, u64)],
) -> Vec<BTreeMap<PathBuf, Node>> {
    rows.iter()
        .enumerate()
        .map(|(n, (archive_id, _, _))| {
            let id = ["--archive-id", archive_id].map(std::ffi::OsStr::new);
            restored(sb, config, &sb.path(&format!("out{n}")), &id)
        })
        .collect()
}

/// What stock GNU tar extracts from the local archives of `rows`, in order.
fn gnu_tar_extract(
    sb: &Sandbox,
    rows: &[(String, Option<String>, u64)],
) -> BTreeMap<PathBuf, Node> {
    let gnu = sb.path("gnu");
    fs::create_dir_all(&gnu).unwrap();
    for (archive_id, _, _) in rows {
        let extracted = std::process::Command::new("tar")
            .args(["--extract", "--incremental", "-f"])
            .arg(sb.path("archives").join(archive_id))
            .arg("-C")
            .arg(&gnu)
            .output()
            .unwrap();
        assert!(extracted.status.success(), "{extracted:?}");
    }
    snapshot(&gnu.join("tree"))
}

fn layers_config(sb: &Sandbox, tree: &Path, layers: &str) -> PathBuf {
    crate::support::config::TestConfig::local(&sb.path("archives"))
        .main("ledger", sb.path("ledger.sqlite3").display())
        .raw(&format!(
            "{layers}\n[\"{}\"]\nupload_single_dir = true\nupload_if_changed = true\n\
             incremental = true\n",
            tree.display()
        ))
        .write(&sb.path("chain.toml"))
}

/// Nine rounds of edits (each kind of change), a backup after each: every upload after the
/// first is an increment of the one before, a few KiB where the full holds 3 MiB; each upload
/// restores as the tree was then; `ls` shows the composed tree; stock GNU tar extracting the
/// full and the increments in order gives the last tree.
#[test]
fn every_upload_of_a_chain_restores_as_the_tree_was_and_stock_tar_agrees() {
    let sb = Sandbox::new();
    let tree = tree(&sb.path("data"));
    let config = layers_config(&sb, &tree, "");
    let mut trees = Vec::new();
    for round in 0..10 {
        if round > 0 {
            edit(&tree, round - 1);
        }
        let backup = sb.run_config(&config);
        assert_exit(&backup, 0);
        trees.push(snapshot(&tree));
    }
    let rows = chain_rows(&sb.path("ledger.sqlite3"));
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0].1, None, "the first upload is a full");
    for pair in rows.windows(2) {
        assert_eq!(
            pair[1].1.as_ref(),
            Some(&pair[0].0),
            "each increment names its base"
        );
    }
    // The last edit changed big.bin's mtime: its metadata says changed, so it is stored again.
    for (n, row) in rows[1..9].iter().enumerate() {
        assert!(row.2 < 200_000, "increment {n} of {} bytes", row.2);
    }
    assert!(rows[9].2 > 3 << 20);
    let list = sb
        .with_config(&config, &["list", "--json"])
        .output()
        .unwrap();
    assert_exit(&list, 0);
    let listed: Vec<Option<String>> = serde_json::from_slice::<serde_json::Value>(&list.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["increment_of"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(listed, rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>());
    assert!(rows[0].2 > 3 << 20);

    for (n, restored) in restore_each(&sb, &config, &rows).into_iter().enumerate() {
        assert_eq!(restored, trees[n], "upload {n}");
    }
    let listed = sb
        .with_config(&config, &["ls", "--json"])
        .arg(&tree)
        .output()
        .unwrap();
    assert_exit(&listed, 0);
    let names: Vec<String> = serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap()
        ["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let path = Path::new(e["path"].as_str().unwrap());
            path.strip_prefix(&tree).unwrap().display().to_string()
        })
        .collect();
    let top: Vec<String> = trees[9]
        .keys()
        .filter(|p| p.components().count() == 1)
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(names, top);

    assert_eq!(gnu_tar_extract(&sb, &rows), trees[9]);
}

/// With zstd and age, one file of a chain's last upload comes from the archive holding its
/// newest version alone.
#[test]
fn one_file_of_an_encrypted_compressed_chain_restores_from_the_archive_holding_it() {
    let sb = Sandbox::new();
    let tree = tree(&sb.path("data"));
    let (key, recipient) = sb.keygen();
    let layers = format!(
        "[archive]\ncompression = \"zstd\"\n[encryption]\nrecipients = [\"{recipient}\"]\n\
         identity_file = \"{}\"\n",
        key.display()
    );
    let config = layers_config(&sb, &tree, &layers);
    assert_exit(&sb.run_config(&config), 0);
    edit(&tree, 0);
    assert_exit(&sb.run_config(&config), 0);
    let out = sb.path("out");
    let plan = sb
        .with_config(&config, &["--dryrun", "--json", "restore", "--to"])
        .arg(&out)
        .arg(tree.join("a.txt"))
        .arg(tree.join("big.bin"))
        .output()
        .unwrap();
    assert_exit(&plan, 0);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let parts = plan["archives"][0]["partial"]["archives"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        parts.len(),
        2,
        "big.bin from the full, a.txt from the increment: {plan}"
    );
    let restored = sb
        .with_config(&config, &["restore", "--to"])
        .arg(&out)
        .arg(tree.join("a.txt"))
        .arg(tree.join("big.bin"))
        .output()
        .unwrap();
    assert_exit(&restored, 0);
    assert_says(&restored, "restored 2 entries of");
    assert_eq!(
        fs::read(out.join("tree/a.txt")).unwrap(),
        fs::read(tree.join("a.txt")).unwrap()
    );
    assert_eq!(
        fs::read(out.join("tree/big.bin")).unwrap(),
        fs::read(tree.join("big.bin")).unwrap()
    );
    assert!(!out.join("tree/sub").exists());
}

/// `incremental` needs `upload_if_changed` and a directory rule; the chain's settings need it.
#[test]
fn incremental_settings_that_cannot_work_are_refused_naming_the_key() {
    let sb = Sandbox::new();
    for (section, key) in [
        (
            "upload_single_dir = true\nincremental = true\n",
            "incremental",
        ),
        (
            "upload_if_changed = true\nupload_single_dir = true\nfull_after_days = 30\n",
            "full_after_days",
        ),
        (
            "upload_if_changed = true\nupload_single_dir = true\nincremental = true\n\
             full_when_changed_percent = 0\n",
            "full_when_changed_percent",
        ),
        (
            "upload_if_changed = true\nupload_single_dir = true\nverify_content = true\n",
            "verify_content",
        ),
    ] {
        let config = crate::support::config::TestConfig::local(&sb.path("archives"))
            .raw(&format!("[\"/srv/data\"]\n{section}"))
            .write(&sb.path("bad.toml"));
        let out = sb.with_config(&config, &["--dryrun"]).output().unwrap();
        assert_exit(&out, 2);
        assert_says(&out, key);
    }
}

/// `verify_content` keeps each file's SHA-256 in the catalog (`ls --json` shows what
/// `sha256sum` prints), and a tree whose bytes match uploads nothing. Turned on for a chain
/// whose catalogs hold no digests, the next run stores every file again, as an increment,
/// although no metadata changed; the run after uploads nothing.
#[test]
fn verify_content_keeps_each_files_digest_and_stores_undigested_files_once_more() {
    use sha2::{Digest, Sha256};
    let sb = Sandbox::new();
    let tree = tree(&sb.path("data"));
    let config = layers_config(&sb, &tree, "");
    assert_exit(&sb.run_config(&config), 0);
    let text = fs::read_to_string(&config).unwrap() + "verify_content = true\n";
    fs::write(&config, text).unwrap();
    let verified = sb.run_config(&config);
    assert_exit(&verified, 0);
    assert_says(&verified, "with only their bytes changed");
    let rows = chain_rows(&sb.path("ledger.sqlite3"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].1.as_ref(), Some(&rows[0].0), "an increment");
    assert!(rows[1].2 > 3 << 20, "every file stored again: {rows:?}");
    assert_exit(&sb.run_config(&config), 0);
    assert_eq!(chain_rows(&sb.path("ledger.sqlite3")).len(), 2, "unchanged");

    let listed = sb
        .with_config(&config, &["ls", "--json"])
        .arg(&tree)
        .output()
        .unwrap();
    assert_exit(&listed, 0);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let digests: BTreeMap<String, String> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "file")
        .map(|e| {
            let name = e["path"].as_str().unwrap().rsplit('/').next().unwrap();
            (name.to_owned(), e["sha256"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: BTreeMap<String, String> = ["a.txt", "becomes-dir", "big.bin"]
        .map(|name| {
            let digest = Sha256::digest(fs::read(tree.join(name)).unwrap());
            (name.to_owned(), hex::encode(digest))
        })
        .into_iter()
        .collect();
    assert_eq!(digests, expected);
    let out = sb.path("out");
    assert_eq!(
        restored(&sb, &config, &out, &[tree.as_os_str()]),
        snapshot(&tree)
    );
}

/// A catalog of the chain damaged in the ledger: an unchanged tree is still up to date, and a
/// changed one is uploaded as a new full, with a warning, instead of failing on every run.
#[test]
fn a_chain_whose_catalog_is_damaged_starts_a_new_full_instead_of_failing() {
    let sb = Sandbox::new();
    let tree = tree(&sb.path("data"));
    let config = layers_config(&sb, &tree, "");
    assert_exit(&sb.run_config(&config), 0);
    edit(&tree, 0);
    assert_exit(&sb.run_config(&config), 0);
    let conn = rusqlite::Connection::open(sb.path("ledger.sqlite3")).unwrap();
    conn.execute(
        "UPDATE catalogs SET entries = X'4742433200FF' WHERE base IS NOT NULL",
        [],
    )
    .unwrap();
    let unchanged = sb.run_config(&config);
    assert_exit(&unchanged, 0);
    assert_says(&unchanged, "a catalog of its chain cannot be read");
    assert_eq!(chain_rows(&sb.path("ledger.sqlite3")).len(), 2);
    edit(&tree, 1);
    let changed = sb.run_config(&config);
    assert_exit(&changed, 0);
    let rows = chain_rows(&sb.path("ledger.sqlite3"));
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].1, None, "a new full");
}

/// Backs `config` up with the run's clock set `days` after `start`: the chain's base and size.
fn backup_at(sb: &Sandbox, config: &Path, start: i64, days: i64) -> (Option<String>, u64) {
    let out = sb
        .with_config(config, &[])
        .env("GLACIER_BACKUP_NOW", (start + days * 86_400).to_string())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let rows = chain_rows(&sb.path("ledger.sqlite3"));
    let (_, base, size) = rows.last().unwrap().clone();
    (base, size)
}

/// A chain ends when its full is `full_after_days` old, or when its increments add up to
/// `full_when_changed_percent` of the full: the next upload is a full again (the clock set by
/// the test, never waited for).
#[test]
fn a_new_full_starts_when_the_chain_is_old_or_its_increments_large() {
    let sb = Sandbox::new();
    let tree = tree(&sb.path("data"));
    let config = layers_config(&sb, &tree, "");
    let text = fs::read_to_string(&config).unwrap()
        + "full_after_days = 30\nfull_when_changed_percent = 50\n";
    fs::write(&config, text).unwrap();
    let start = time::OffsetDateTime::now_utc().unix_timestamp();
    let small = |n: usize| fs::write(tree.join("a.txt"), format!("edit {n}")).unwrap();
    assert_eq!(backup_at(&sb, &config, start, 0).0, None);
    small(1);
    assert!(
        backup_at(&sb, &config, start, 10).0.is_some(),
        "10 days in: an increment"
    );
    small(2);
    let out = sb
        .with_config(&config, &[])
        .env("GLACIER_BACKUP_NOW", (start + 31 * 86_400).to_string())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_says(&out, "full_after_days");
    assert_eq!(
        chain_rows(&sb.path("ledger.sqlite3")).last().unwrap().1,
        None
    );
    // A new chain (its full recorded at the real time, about `start`): its first increment is
    // most of the full's size; the next upload is a full.
    fs::write(tree.join("big.bin"), vec![9u8; 3 << 20]).unwrap();
    let (base, size) = backup_at(&sb, &config, start, 1);
    assert!(base.is_some() && size > 3 << 20, "{base:?} {size}");
    small(3);
    assert_eq!(
        backup_at(&sb, &config, start, 2).0,
        None,
        "increments past 50% of the full"
    );
}

/// A machine that lost its ledger rebuilds it from the indexes, chains included: the last
/// upload restores as the tree was.
#[test]
fn a_chain_restores_after_the_ledger_is_rebuilt_from_the_indexes() {
    let sb = Sandbox::new();
    let tree = tree(&sb.path("data"));
    let config = layers_config(&sb, &tree, "");
    assert_exit(&sb.run_config(&config), 0);
    for round in [0, 2, 5] {
        edit(&tree, round);
        assert_exit(&sb.run_config(&config), 0);
    }
    let before = chain_rows(&sb.path("ledger.sqlite3"));
    fs::remove_file(sb.path("ledger.sqlite3")).unwrap();
    let rebuilt = sb
        .with_config(&config, &["inventory", "--rebuild-ledger"])
        .output()
        .unwrap();
    assert_exit(&rebuilt, 0);
    let mut after = chain_rows(&sb.path("ledger.sqlite3"));
    after.sort();
    let mut expected = before.clone();
    expected.sort();
    assert_eq!(after, expected, "every upload with its base");
    let out = sb.path("out");
    assert_eq!(
        restored(&sb, &config, &out, &[tree.as_os_str()]),
        snapshot(&tree)
    );
}

/// Twenty rounds of random edits backed up to a vault (each entry's spans retrieved by range
/// from the archive holding it) and to an S3 bucket, zstd-compressed: every upload restores as
/// the tree was then. Then each ledger is lost and rebuilt from its destination's indexes, and
/// the chain still restores the last tree.
#[cfg(all(feature = "glacier", feature = "s3"))]
#[test]
fn twenty_rounds_in_a_vault_and_a_bucket_restore_upload_by_upload_and_after_a_rebuild() {
    use crate::support::setup::Setup;
    let s = Setup::with_fake().and_moto();
    let tree = tree(&s.path("data"));
    let paths = format!(
        "[archive]\ncompression = \"zstd\"\n[\"{}\"]\nupload_single_dir = true\n\
         upload_if_changed = true\nincremental = true\n",
        tree.display()
    );
    let configs = [
        (
            s.vault_config(&paths),
            s.path("config/glacier.photos.sqlite3"),
        ),
        (s.bucket_config(&paths), s.path("config/s3.cold.sqlite3")),
    ];
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    let mut trees = Vec::new();
    for round in 0..21 {
        if round > 0 {
            for edit in 0..1 + random.below(3) {
                // Names made by an edit are new to the tree.
                random_edit(&tree, &mut random, round * 10 + edit);
            }
        }
        for (config, _) in &configs {
            assert_exit(&s.run_config(config), 0);
        }
        let uploads: Vec<usize> = configs.iter().map(|c| chain_rows(&c.1).len()).collect();
        assert_eq!(uploads[0], uploads[1], "round {round}");
        if uploads[0] > trees.len() {
            trees.push(snapshot(&tree));
        }
    }
    assert!(trees.len() >= 18, "{} uploads", trees.len());
    for (n, (config, ledger)) in configs.iter().enumerate() {
        let rows = chain_rows(ledger);
        assert_eq!(rows.len(), trees.len());
        // A mode changed on big.bin stores it again: the increments may outgrow half the
        // full, and a new full starts the chain again.
        for pair in rows.windows(2) {
            assert!(pair[1].1.is_none() || pair[1].1 == Some(pair[0].0.clone()));
        }
        let increments = rows.iter().filter(|r| r.1.is_some()).count();
        assert!(increments >= 15, "{rows:?}");
        for (upload, (archive_id, _, _)) in rows.iter().enumerate() {
            let out = s.path(&format!("out-{n}-{upload}"));
            let id = ["--archive-id", archive_id].map(std::ffi::OsStr::new);
            assert_eq!(
                restored(&s, config, &out, &id),
                trees[upload],
                "destination {n}, upload {upload}"
            );
        }

        fs::remove_file(ledger).unwrap();
        let rebuilt = s
            .with_config(config, &["inventory", "--rebuild-ledger", "--wait"])
            .args(["--timeout", "60"])
            .output()
            .unwrap();
        assert_exit(&rebuilt, 0);
        let (mut before, mut after) = (rows, chain_rows(ledger));
        before.sort();
        after.sort();
        assert_eq!(after, before, "destination {n}: every upload with its base");
        let out = s.path(&format!("out-{n}-rebuilt"));
        assert_eq!(
            restored(&s, config, &out, &[tree.as_os_str()]),
            *trees.last().unwrap(),
            "destination {n} after the rebuild"
        );
    }
}

/// A run killed (SIGKILL) inside an increment's multipart upload records nothing; the next run
/// finds the same increment, continues its upload without sending the stored parts again, and
/// records it on its base: the chain never names an archive that was not stored.
#[cfg(feature = "glacier")]
#[test]
fn an_increment_killed_mid_upload_is_finished_by_the_next_run() {
    use crate::support::setup::Setup;
    use std::process::Stdio;
    let s = Setup::with_fake();
    let tree = tree(&s.path("data"));
    let config = s.vault_config(&format!(
        "[\"{}\"]\nupload_single_dir = true\nupload_if_changed = true\nincremental = true\n",
        tree.display()
    ));
    let ledger = s.path("config/glacier.photos.sqlite3");
    assert_exit(&s.run_config(&config), 0);
    // A new big.bin: an increment of several 1 MiB parts.
    fs::write(tree.join("big.bin"), vec![7u8; (3 << 20) + 5]).unwrap();
    let started = s.fake().stats().uploads_started;
    let stored = s.fake().stats().parts_stored.len();
    s.fake().set(|b| b.hold_parts_from = Some(2));
    let child = s
        .with_config(&config, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_until("the increment's upload never got going", || {
        s.fake().stats().parts_stored.len() >= stored + 2
    });
    crate::glacier_fake::signal_child(child, "-KILL");
    s.fake().set(|b| b.hold_parts_from = None);
    assert_eq!(
        chain_rows(&ledger).len(),
        1,
        "nothing recorded for the killed increment"
    );

    assert_exit(&s.run_config(&config), 0);
    let rows = chain_rows(&ledger);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1].1.as_ref(),
        Some(&rows[0].0),
        "the increment on its base"
    );
    assert_eq!(
        s.fake().stats().uploads_started,
        started + 1,
        "the same upload continued"
    );
    let out = s.path("out");
    assert_eq!(
        restored(&s, &config, &out, &[tree.as_os_str()]),
        snapshot(&tree)
    );
}

/// An archive of a chain lost at the destination: `verify --remote` and `inventory` name the
/// chain and the archive; the listing `verify --remote` took tells the next backup, which
/// starts a new full (a dry-run inventory records nothing).
#[test]
fn a_chain_broken_at_the_destination_is_reported_and_the_next_backup_is_a_full() {
    let sb = Sandbox::new();
    let tree = tree(&sb.path("data"));
    let config = layers_config(&sb, &tree, "");
    assert_exit(&sb.run_config(&config), 0);
    for round in [0, 2] {
        edit(&tree, round);
        assert_exit(&sb.run_config(&config), 0);
    }
    let rows = chain_rows(&sb.path("ledger.sqlite3"));
    fs::remove_file(sb.path("archives").join(&rows[1].0)).unwrap();
    let verified = sb
        .with_config(&config, &["verify", "--remote"])
        .output()
        .unwrap();
    assert_exit(&verified, 1);
    assert_says(&verified, "chain of increments ending at archive");
    assert_says(&verified, format!("archive {} is missing", rows[1].0));
    let inventory = sb
        .with_config(&config, &["-d", "inventory"])
        .output()
        .unwrap();
    assert_exit(&inventory, 1);
    assert_says(&inventory, "chain of increments ending at archive");
    assert_says(&inventory, format!("archive {} is missing", rows[1].0));
    edit(&tree, 3);
    let backup = sb.run_config(&config);
    assert_exit(&backup, 0);
    assert_says(&backup, "a full upload starts a new chain");
    assert_eq!(
        chain_rows(&sb.path("ledger.sqlite3")).last().unwrap().1,
        None
    );
}

struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Every file, or every directory, below `root`.
fn all(root: &Path, dirs: bool) -> Vec<PathBuf> {
    snapshot(root)
        .into_iter()
        .filter(|(_, node)| dirs == matches!(node, Node::Dir(_)))
        .map(|(path, _)| root.join(path))
        .collect()
}

/// One random edit: add, change, delete or rename files and directories, change a mode,
/// replace a file by a directory and a directory by a file, add or retarget a link.
fn random_edit(root: &Path, random: &mut Random, round: usize) {
    let (files, dirs) = (all(root, false), all(root, true));
    let pick = |random: &mut Random, from: &[PathBuf]| from[random.below(from.len())].clone();
    let any_dir = |random: &mut Random| match dirs.is_empty() || random.below(3) == 0 {
        true => root.to_path_buf(),
        false => pick(random, &dirs),
    };
    let bytes = |random: &mut Random| vec![random.below(256) as u8; random.below(5000)];
    match random.below(9) {
        0 | 1 => fs::write(any_dir(random).join(format!("new-{round}")), bytes(random)).unwrap(),
        2 if !files.is_empty() => {
            let file = pick(random, &files);
            if !file.is_symlink() {
                fs::write(&file, bytes(random)).unwrap();
            }
        }
        3 if !files.is_empty() => fs::remove_file(pick(random, &files)).unwrap(),
        4 if !files.is_empty() => {
            let to = any_dir(random).join(format!("renamed-{round}"));
            fs::rename(pick(random, &files), to).unwrap();
        }
        5 if !dirs.is_empty() => {
            let dir = pick(random, &dirs);
            match random.below(2) {
                0 => fs::remove_dir_all(dir).unwrap(),
                _ => fs::rename(&dir, dir.with_file_name(format!("moved-{round}"))).unwrap(),
            }
        }
        6 if !files.is_empty() => {
            let file = pick(random, &files);
            if !file.is_symlink() {
                let mode = [0o600, 0o644, 0o755][random.below(3)];
                fs::set_permissions(file, fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        7 if !files.is_empty() && !dirs.is_empty() => {
            let file = pick(random, &files);
            fs::remove_file(&file).unwrap();
            fs::create_dir(&file).unwrap();
            fs::write(file.join("was-a-file"), bytes(random)).unwrap();
            let dir = pick(random, &dirs);
            if dir.exists() && !file.starts_with(&dir) {
                fs::remove_dir_all(&dir).unwrap();
                fs::write(&dir, bytes(random)).unwrap();
            }
        }
        _ => {
            let link = any_dir(random).join(format!("link-{round}"));
            std::os::unix::fs::symlink(format!("target-{}", random.below(5)), link).unwrap();
        }
    }
}

/// Twenty rounds of random edits through the binary, a backup after each: every upload
/// restores as the tree was then, and stock GNU tar extracting the chain gives the last tree.
#[test]
fn twenty_rounds_of_random_edits_restore_upload_by_upload() {
    let sb = Sandbox::new();
    let tree = tree(&sb.path("data"));
    let config = layers_config(&sb, &tree, "");
    let mut random = Random(0x5DEE_CE66_D1CE_4E5B);
    let mut trees = Vec::new();
    for round in 0..21 {
        if round > 0 {
            for edit in 0..1 + random.below(3) {
                // Names made by an edit are new to the tree.
                random_edit(&tree, &mut random, round * 10 + edit);
            }
        }
        assert_exit(&sb.run_config(&config), 0);
        // An edit may change nothing (a mode set to what it was): then nothing is uploaded.
        if chain_rows(&sb.path("ledger.sqlite3")).len() > trees.len() {
            trees.push(snapshot(&tree));
        } else {
            assert_eq!(
                Some(&snapshot(&tree)),
                trees.last(),
                "round {round}: a change not uploaded"
            );
        }
    }
    let rows = chain_rows(&sb.path("ledger.sqlite3"));
    assert_eq!(rows.len(), trees.len());
    assert!(rows.len() >= 18, "{} uploads", rows.len());
    for (n, restored) in restore_each(&sb, &config, &rows).into_iter().enumerate() {
        assert_eq!(restored, trees[n], "upload {n}");
    }
    assert_eq!(Some(&gnu_tar_extract(&sb, &rows)), trees.last());
}

/// `migrate` carries a chain: the increment's copy names its base's copy, so the chain
/// restores at the destination.
#[cfg(all(feature = "glacier", feature = "s3"))]
#[test]
fn a_migrated_chain_restores_at_its_new_destination() {
    use crate::support::setup::Setup;
    let s = Setup::with_fake().and_moto();
    let tree = tree(&s.path("data"));
    let paths = format!(
        "[\"{}\"]\nupload_single_dir = true\nupload_if_changed = true\nincremental = true\n",
        tree.display()
    );
    let (vault, bucket) = (s.vault_config(&paths), s.bucket_config(&paths));
    assert_exit(&s.run_config(&vault), 0);
    edit(&tree, 2);
    assert_exit(&s.run_config(&vault), 0);
    assert_exit(
        &s.migrate(&vault, &bucket, &["--wait", "--timeout", "60"]),
        0,
    );
    let rows = chain_rows(&s.path("config/s3.cold.sqlite3"));
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1].1.as_ref(),
        Some(&rows[0].0),
        "the base is its copy's key"
    );
    let out = s.path("out");
    assert_eq!(
        restored(&s, &bucket, &out, &[tree.as_os_str()]),
        snapshot(&tree)
    );
}
