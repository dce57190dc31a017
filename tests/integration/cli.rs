//! End-to-end tests of the `glacier-backup` binary, each in a fresh temporary HOME.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;

use crate::support;

use support::config::TestConfig;
use support::sandbox::{assert_exit, assert_says, copy_tree, fixtures, text, Sandbox};

mod trust;
mod trust_round_two;

#[test]
fn back_up_skip_unchanged_reupload_changed_and_extract_with_gnu_tar() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    fs::create_dir_all(data.join("projects/alpha/src/deep")).unwrap();
    fs::write(
        data.join("projects/alpha/src/deep/main.rs"),
        b"fn main() {}\n",
    )
    .unwrap();
    fs::write(data.join("projects/alpha/README"), vec![b'r'; 300_000]).unwrap();
    let long_name = "n".repeat(180);
    fs::write(data.join("projects/alpha").join(&long_name), b"long name").unwrap();
    std::os::unix::fs::symlink("README", data.join("projects/alpha/link-to-readme")).unwrap();
    fs::create_dir_all(data.join("projects/beta")).unwrap();
    fs::write(data.join("projects/beta/notes.txt"), b"beta").unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_dirs = true\nupload_if_changed = true\n",
        data.join("projects").display()
    ));
    let config = config.to_str().unwrap();

    let first = sb.run(&["-c", config]);
    assert_exit(&first, 0);
    assert_says(&first, "uploaded 2, up to date 0, failed 0");
    assert_eq!(sb.ledger_rows().len(), 2);

    let second = sb.run(&["-c", config]);
    assert_exit(&second, 0);
    assert_says(&second, "uploaded 0, up to date 2");

    // Change one file deep inside alpha: only alpha goes up again.
    fs::write(
        data.join("projects/alpha/src/deep/main.rs"),
        b"fn main() { println!(); }\n",
    )
    .unwrap();
    let third = sb.run(&["-c", config]);
    assert_exit(&third, 0);
    assert_says(&third, "uploaded 1, up to date 1");
    let rows = sb.ledger_rows();
    assert_eq!(rows.len(), 3);
    let (path, name, archive_id) = &rows[2];
    assert_eq!(path, data.join("projects/alpha").to_str().unwrap());
    assert_eq!(name, "alpha.tar");

    // GNU tar extracts the newest archive to exactly the source bytes.
    let out = sb.path("extracted");
    fs::create_dir_all(&out).unwrap();
    let tar = Command::new("tar")
        .arg("xf")
        .arg(sb.path("archives").join(archive_id))
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", text(&tar));
    for rel in ["src/deep/main.rs", "README", long_name.as_str()] {
        assert_eq!(
            fs::read(out.join("alpha").join(rel)).unwrap(),
            fs::read(data.join("projects/alpha").join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(
        fs::read_link(out.join("alpha/link-to-readme")).unwrap(),
        PathBuf::from("README")
    );
}

#[test]
fn without_upload_if_changed_a_changed_dir_is_not_uploaded_again() {
    let sb = Sandbox::new();
    copy_tree(&fixtures().join("python-tool-tree"), &sb.path("tree"));
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_single_dir = true\n",
        sb.path("tree").display()
    ));
    let config = config.to_str().unwrap();
    assert_exit(&sb.run(&["-c", config]), 0);
    fs::write(sb.path("tree/dir1/inner.txt"), "changed").unwrap();
    let again = sb.run(&["-c", config]);
    assert_exit(&again, 0);
    assert_says(&again, "uploaded 0, up to date 1");
}

#[test]
fn python_tool_scenarios_through_the_binary() {
    let sb = Sandbox::new();
    let tree = sb.path("tree");
    copy_tree(&fixtures().join("python-tool-tree"), &tree);
    let cases = [
        ("upload_single_dir = true", 1),
        ("upload_files = true", 3),
        ("upload_dirs = true", 3),
        ("upload_files = true\nupload_dirs = true", 6),
        (
            "upload_files = true\nupload_dirs = true\nupload_single_dir = true",
            1,
        ),
        (
            "upload_files = true\nupload_dirs = true\nexclude = \"dir1\"",
            5,
        ),
    ];
    for (options, expected) in cases {
        let config = sb.local_config(&format!("[\"{}\"]\n{options}\n", tree.display()));
        let out = sb.run(&["-d", "-c", config.to_str().unwrap()]);
        assert_exit(&out, 0);
        assert!(
            text(&out).contains(&format!("dry run: would upload {expected},")),
            "{options}: {}",
            text(&out)
        );
    }
}

#[test]
fn dry_run_writes_nothing_at_all() {
    let sb = Sandbox::new();
    copy_tree(&fixtures().join("python-tool-tree"), &sb.path("tree"));
    let config = sb
        .local()
        .main("logfile", sb.path("logs/backup.log").display())
        .path(&sb.path("tree"), "upload_files = 1")
        .write(&sb.path("config/backup.conf"));
    let out = sb.run(&["--dryrun", "-c", config.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(text(&out).contains("would upload"), "{}", text(&out));
    assert!(text(&out).contains("file1 (file): new"), "{}", text(&out));
    let left: Vec<_> = fs::read_dir(sb.path("config"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["backup.conf"], "dry run left files behind");
    assert!(!sb.path("archives").exists());
    assert!(!sb.path("logs").exists());
}

#[test]
fn a_python_tool_ledger_is_honoured() {
    let sb = Sandbox::new();
    let tree = sb.path("tree");
    copy_tree(&fixtures().join("python-tool-tree"), &tree);
    let ledger = sb.path("config/glacier.family.sqlite3");
    fs::create_dir_all(ledger.parent().unwrap()).unwrap();
    {
        let conn = Connection::open(&ledger).unwrap();
        conn.execute_batch(
            "CREATE TABLE \"uploads\" (path text, name text, archive_id text, uploaded_date integer)",
        )
        .unwrap();
        for name in ["file1", "dir2"] {
            conn.execute(
                "INSERT INTO uploads VALUES (?1, ?2, 'PYTHON-TOOL-ID', 1700000000)",
                (tree.join(name).to_str().unwrap(), name),
            )
            .unwrap();
        }
    }
    let config = sb
        .local()
        .main("ledger", ledger.display())
        .path(&tree, "upload_files = true\nupload_dirs = true")
        .write(&sb.path("config/backup.toml"));
    let out = sb.run(&["-c", config.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_says(&out, "uploaded 4, up to date 2");

    let listed = sb.run(&["-c", config.to_str().unwrap(), "list", "--json"]);
    assert_exit(&listed, 0);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0]["archive_id"], "PYTHON-TOOL-ID");
    assert_eq!(rows[0]["backend"], "glacier");
    assert_eq!(rows[0]["uploaded_at"], "2023-11-14T22:13:20Z");
    let new = &rows[5];
    for key in [
        "path",
        "name",
        "archive_id",
        "backend",
        "size",
        "tree_hash",
        "uploaded_at",
    ] {
        assert!(!new[key].is_null(), "{key} missing in {new}");
    }
    assert_eq!(new["backend"], "local");
    assert_eq!(new["tree_hash"].as_str().unwrap().len(), 64);
}

#[test]
fn the_python_tool_format_example_loads() {
    let sb = Sandbox::new();
    let config = fixtures().join("python-tool-format.conf");
    // The file names a log in /var/log; the test writes its own, in the sandbox, whoever runs it.
    let log = sb.path("run.log");
    let out = sb.run(&[
        "-c",
        config.to_str().unwrap(),
        "-l",
        log.to_str().unwrap(),
        "list",
    ]);
    assert_exit(&out, 0);
    assert!(log.exists(), "the log goes where -l says");
    // The Python tool's ledger naming: glacier.<vault_name>.sqlite3 beside the config.
    assert_says(&out, "glacier.family-archive.sqlite3");
}

#[test]
fn bad_configs_exit_2_and_say_what_is_wrong() {
    let corpus = fixtures().join("bad-configs");
    let expected = fs::read_to_string(corpus.join("EXPECTED")).unwrap();
    let mut checked = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (file, needle) = line.split_once('\t').expect("file<TAB>text");
        let sb = Sandbox::new();
        let out = sb.run(&["-c", corpus.join(file).to_str().unwrap()]);
        assert_exit(&out, 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{file}: {stderr:?} lacks {needle:?}"
        );
        assert!(
            stderr.contains(file),
            "{file}: the message must name the file: {stderr:?}"
        );
        checked += 1;
    }
    let files = fs::read_dir(&corpus).unwrap().count() - 1;
    assert_eq!(
        checked, files,
        "every file in the corpus has an expectation"
    );
}

#[test]
fn missing_config_is_an_error_naming_it() {
    let sb = Sandbox::new();
    let out = sb.run(&[]);
    assert_exit(&out, 2);
    assert!(
        text(&out).contains(&format!(
            "{} not found",
            sb.path("home/.config/glacier_backup/glacier_backup.conf")
                .display()
        )),
        "{}",
        text(&out)
    );
    let out = sb.run(&["-c", "/nonexistent/x.conf"]);
    assert_exit(&out, 2);
    assert_says(&out, "/nonexistent/x.conf not found");
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    assert_exit(&sb.run(&["--no-such-flag"]), 2);
    assert_exit(&sb.run(&["--max-uploads", "0"]), 2);
    assert_exit(&sb.run(&["--backend", "tape"]), 2);
}

#[test]
fn a_second_run_on_the_same_ledger_exits_11() {
    let sb = Sandbox::new();
    copy_tree(&fixtures().join("python-tool-tree"), &sb.path("tree"));
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        sb.path("tree").display()
    ));
    assert_exit(&sb.run(&["-c", config.to_str().unwrap()]), 0);
    let lock_path = PathBuf::from(format!("{}.lock", sb.ledger().display()));
    let holder = fs::OpenOptions::new().write(true).open(&lock_path).unwrap();
    holder.lock().unwrap();
    let out = sb.run(&["-c", config.to_str().unwrap()]);
    assert_exit(&out, 11);
    assert_says(&out, "backup already in progress");
    // A dry run does not need the lock.
    assert_exit(&sb.run(&["-d", "-c", config.to_str().unwrap()]), 0);
    drop(holder);
    assert_exit(&sb.run(&["-c", config.to_str().unwrap()]), 0);
}

#[test]
fn paths_on_the_command_line_replace_the_configs() {
    let sb = Sandbox::new();
    copy_tree(&fixtures().join("python-tool-tree"), &sb.path("tree"));
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        sb.path("tree").display()
    ));
    let out = sb.run(&[
        "-c",
        config.to_str().unwrap(),
        "-p",
        "tree/dir1/",
        "tree/file2",
    ]);
    assert_exit(&out, 0);
    let rows = sb.ledger_rows();
    // Candidates go up side by side: rows are in the order uploads finished.
    let mut paths: Vec<_> = rows.iter().map(|r| r.0.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [sb.path("tree/dir1"), sb.path("tree/file2")].map(|p| p.to_str().unwrap().to_owned())
    );
    assert_eq!(rows[0].1, "dir1.tar");
}

#[test]
fn max_uploads_one_gives_the_python_tools_one_per_run() {
    let sb = Sandbox::new();
    copy_tree(&fixtures().join("python-tool-tree"), &sb.path("tree"));
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        sb.path("tree").display()
    ));
    let out = sb.run(&["-c", config.to_str().unwrap(), "--max-uploads", "1"]);
    assert_exit(&out, 0);
    assert_eq!(sb.ledger_rows().len(), 1);
    assert!(text(&out).contains("deferred 2"), "{}", text(&out));
}

#[test]
fn log_file_gets_the_run_and_can_be_disabled() {
    let sb = Sandbox::new();
    copy_tree(&fixtures().join("python-tool-tree"), &sb.path("tree"));
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        sb.path("tree").display()
    ));
    let log = sb.path("logs/run.log");
    assert_exit(
        &sb.run(&["-c", config.to_str().unwrap(), "-l", log.to_str().unwrap()]),
        0,
    );
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("uploaded 3, up to date 0"), "{logged}");
    assert!(logged.contains("INFO"), "{logged}");

    // -l '' turns the log file off, even when the config names one.
    let config_with_log = sb
        .local()
        .main("logfile", sb.path("logs/other.log").display())
        .path(&sb.path("tree"), "upload_files = 1")
        .write(&sb.path("config/with-log.conf"));
    fs::write(sb.path("tree/file4"), "new").unwrap();
    let out = sb.run(&["-c", config_with_log.to_str().unwrap(), "-l", ""]);
    assert_exit(&out, 0);
    assert_says(&out, "uploaded 1, up to date 3");
    assert!(!sb.path("logs/other.log").exists());
    assert!(
        !sb.path("home").exists(),
        "nothing written to the default location either"
    );
}

#[test]
fn the_tools_own_files_inside_a_backed_up_tree_are_left_out() {
    // Backing up a home directory that holds the config, ledger, log and archive directory:
    // those change during the run and must not end up in (or break) the archive.
    let sb = Sandbox::new();
    let home = sb.path("home");
    fs::create_dir_all(home.join("documents")).unwrap();
    fs::write(home.join("documents/letter.txt"), "dear").unwrap();
    // The default log file, in the home directory too.
    TestConfig::local(&home.join("archives"))
        .without("logfile")
        .path(&home, "upload_single_dir = true\nupload_if_changed = true")
        .write(&home.join(".config/glacier_backup/glacier_backup.conf"));
    let first = sb.run(&[]);
    assert_exit(&first, 0);
    assert!(text(&first).contains("uploaded 1,"), "{}", text(&first));
    // The ledger, lock and log changed during the first run; the tree did not.
    let second = sb.run(&[]);
    assert_exit(&second, 0);
    assert_says(&second, "uploaded 0, up to date 1");

    let listed = sb.run(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = rows[0]["archive_id"].as_str().unwrap().to_owned();
    let tar = Command::new("tar")
        .arg("tf")
        .arg(home.join("archives").join(id))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&tar.stdout);
    assert!(names.contains("home/documents/letter.txt"), "{names}");
    assert!(
        names.contains("home/.config/glacier_backup/glacier_backup.conf"),
        "{names}"
    );
    for own in ["sqlite3", "glacier_backup.log", "home/archives"] {
        assert!(!names.contains(own), "{own} was archived: {names}");
    }
}

#[test]
fn restore_brings_back_every_byte_of_awkward_trees_and_files() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    support::trees::awkward_tree(&data);
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_dirs = true\nupload_files = true\n",
        data.display()
    ));
    let config = config.to_str().unwrap();
    assert_exit(&sb.run(&["-c", config]), 0);

    let plan = sb.run(&[
        "-c",
        config,
        "-d",
        "restore",
        "--to",
        "out",
        data.to_str().unwrap(),
    ]);
    assert_exit(&plan, 0);
    assert_says(&plan, "plan: 3 archive(s)");
    assert!(!sb.path("out").exists(), "a dry run restores nothing");

    let out = sb.run(&[
        "-c",
        config,
        "restore",
        "--to",
        "out",
        data.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert_says(&out, "restored 3, pending 0, failed 0");
    let restored = sb.path("out");
    support::trees::assert_same_tree(&data, &restored);

    // Restoring again keeps what is there when it is newer than the upload; --force replaces.
    fs::write(restored.join("notes .txt"), b"edited after the restore").unwrap();
    let notes = data.join("notes .txt");
    let again = sb.run(&[
        "-c",
        config,
        "restore",
        "--to",
        "out",
        notes.to_str().unwrap(),
    ]);
    assert_exit(&again, 0);
    assert_says(&again, "after this upload: kept; --force replaces it");
    assert_eq!(
        fs::read(restored.join("notes .txt")).unwrap(),
        b"edited after the restore"
    );
    let forced = sb.run(&[
        "-c",
        config,
        "restore",
        "--force",
        "--to",
        "out",
        notes.to_str().unwrap(),
    ]);
    assert_exit(&forced, 0);
    assert_eq!(
        fs::read(restored.join("notes .txt")).unwrap(),
        b"trailing space in name"
    );
    let leftovers: Vec<_> = fs::read_dir(&restored)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".glacier-backup")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let nothing = sb.run(&["-c", config, "restore", "--to", "out", "/not/backed/up"]);
    assert_exit(&nothing, 2);
    assert_says(&nothing, "nothing to restore");
}

#[test]
fn verify_reports_changed_sources_and_missing_or_damaged_archives() {
    let sb = Sandbox::new();
    copy_tree(&fixtures().join("python-tool-tree"), &sb.path("tree"));
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\nupload_dirs = true\n",
        sb.path("tree").display()
    ));
    let config = config.to_str().unwrap();
    assert_exit(&sb.run(&["-c", config]), 0);
    let clean = sb.run(&["-c", config, "verify", "--remote"]);
    assert_exit(&clean, 0);
    assert_says(&clean, "verified 6 upload(s): 0 problem(s)");

    fs::write(sb.path("tree/dir2/inner.txt"), "edited").unwrap();
    let changed = sb.run(&["-c", config, "verify"]);
    assert_exit(&changed, 1);
    assert_says(&changed, "dir2: changed since its upload");

    let rows = sb.ledger_rows();
    let (_, _, file1_id) = rows.iter().find(|r| r.0.ends_with("file1")).unwrap();
    let (_, _, file2_id) = rows.iter().find(|r| r.0.ends_with("file2")).unwrap();
    fs::remove_file(sb.path("archives").join(file1_id)).unwrap();
    let damaged = sb.path("archives").join(file2_id);
    let mut bytes = fs::read(&damaged).unwrap();
    bytes[0] ^= 1;
    fs::write(&damaged, bytes).unwrap();
    let remote = sb.run(&[
        "-c",
        config,
        "verify",
        "--remote",
        sb.path("tree").to_str().unwrap(),
    ]);
    assert_exit(&remote, 1);
    let shown = text(&remote);
    assert!(
        shown.contains("file1: archive") && shown.contains("is missing"),
        "{shown}"
    );
    assert!(
        shown.contains("file2: archive") && shown.contains("tree hash"),
        "{shown}"
    );
    assert!(shown.contains("3 problem(s)"), "{shown}");
}

#[test]
fn a_lost_ledger_is_rebuilt_from_the_archives_then_nothing_is_uploaded_again() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    support::trees::awkward_tree(&data);
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_dirs = true\nupload_files = true\nupload_if_changed = true\n",
        data.display()
    ));
    let config = config.to_str().unwrap();
    assert_exit(&sb.run(&["-c", config]), 0);
    let before = sb.ledger_rows();
    fs::write(sb.path("archives/stray.bin"), b"not ours").unwrap();
    fs::remove_file(sb.ledger()).unwrap();

    let report = sb.run(&["-c", config, "inventory"]);
    assert_exit(&report, 0);
    for expected in [
        "4 archive(s)",
        "not in the ledger: 4",
        "Фото 2026 (copy) (directory, stored",
        "zero.bin (file, stored",
        "stray.bin 8 B: not written by glacier-backup",
    ] {
        assert!(
            text(&report).contains(expected),
            "{expected}: {}",
            text(&report)
        );
    }
    let dry = sb.run(&["-c", config, "-d", "inventory", "--rebuild-ledger"]);
    assert_exit(&dry, 0);
    assert!(sb.ledger_rows().is_empty(), "a dry run adds no rows");

    let rebuilt = sb.run(&["-c", config, "inventory", "--rebuild-ledger"]);
    assert_exit(&rebuilt, 0);
    assert_says(&rebuilt, "ledger rows added: 3");
    let mut after = sb.ledger_rows();
    let mut expected = before.clone();
    after.sort();
    expected.sort();
    assert_eq!(after, expected, "the same paths, names and archive ids");

    let backup = sb.run(&["-c", config]);
    assert_exit(&backup, 0);
    assert_says(&backup, "uploaded 0, up to date 3, failed 0");
    let restore = sb.run(&[
        "-c",
        config,
        "restore",
        "--to",
        "out",
        data.to_str().unwrap(),
    ]);
    assert_exit(&restore, 0);
    support::trees::assert_same_tree(&data, &sb.path("out"));

    let clean = sb.run(&["-c", config, "inventory"]);
    assert_says(&clean, "recorded in the ledger and present: 3");
    let (_, _, id) = &before[0];
    fs::remove_file(sb.path("archives").join(id)).unwrap();
    let missing = sb.run(&["-c", config, "inventory", "--json"]);
    assert_exit(&missing, 1);
    let json: serde_json::Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(json["missing"][0]["archive_id"], id.as_str());
}

#[test]
fn restore_in_place_replaces_older_files_keeps_newer_ones_and_force_replaces_all() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    let album = data.join("album");
    fs::create_dir_all(&album).unwrap();
    for name in ["deleted.txt", "edited.txt", "untouched.txt"] {
        fs::write(album.join(name), format!("original {name}")).unwrap();
    }
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for name in ["deleted.txt", "edited.txt", "untouched.txt"] {
        filetime::set_file_mtime(album.join(name), old).unwrap();
    }
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_single_dir = true\n",
        album.display()
    ));
    let config = config.to_str().unwrap();
    assert_exit(&sb.run(&["-c", config]), 0);

    fs::remove_file(album.join("deleted.txt")).unwrap();
    fs::write(album.join("edited.txt"), "edited since").unwrap();
    let missing_to = sb.run(&["-c", config, "restore", album.to_str().unwrap()]);
    assert_exit(&missing_to, 2);
    assert!(text(&missing_to).contains("--to"), "{}", text(&missing_to));

    // A backup holding the ledger (as a long one would) does not keep a restore out.
    let lock = fs::File::create(format!("{}.lock", sb.ledger().display())).unwrap();
    lock.try_lock().unwrap();
    assert_exit(&sb.run(&["-c", config]), 11);
    let in_place = sb.run(&[
        "-c",
        config,
        "restore",
        "--in-place",
        album.to_str().unwrap(),
    ]);
    assert_exit(&in_place, 0);
    drop(lock);
    assert_says(&in_place, "edited.txt: kept, newer than the archived one");
    assert_eq!(
        fs::read_to_string(album.join("deleted.txt")).unwrap(),
        "original deleted.txt"
    );
    assert_eq!(
        fs::read_to_string(album.join("edited.txt")).unwrap(),
        "edited since"
    );

    let forced = sb.run(&[
        "-c",
        config,
        "restore",
        "--in-place",
        "--force",
        album.to_str().unwrap(),
    ]);
    assert_exit(&forced, 0);
    assert_eq!(
        fs::read_to_string(album.join("edited.txt")).unwrap(),
        "original edited.txt"
    );
    let meta = fs::metadata(album.join("edited.txt")).unwrap();
    assert_eq!(filetime::FileTime::from_last_modification_time(&meta), old);
    let names: Vec<_> = fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["album"], "no temporary files left beside it");
}

#[test]
fn restore_at_a_time_picks_the_upload_current_then() {
    let sb = Sandbox::new();
    let file = sb.path("data/diary.txt");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, "first version").unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_if_changed = true\n",
        file.display()
    ));
    let config = config.to_str().unwrap();
    assert_exit(&sb.run(&["-c", config]), 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = time::OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(&file, "second version").unwrap();
    assert_exit(&sb.run(&["-c", config]), 0);
    assert_eq!(sb.ledger_rows().len(), 2);

    let at = between
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let then = sb.run(&[
        "-c",
        config,
        "restore",
        "--at",
        &at,
        "--to",
        "then",
        file.to_str().unwrap(),
    ]);
    assert_exit(&then, 0);
    assert_eq!(
        fs::read_to_string(sb.path("then/diary.txt")).unwrap(),
        "first version"
    );
    let now = sb.run(&[
        "-c",
        config,
        "restore",
        "--to",
        "now",
        file.to_str().unwrap(),
    ]);
    assert_exit(&now, 0);
    assert_eq!(
        fs::read_to_string(sb.path("now/diary.txt")).unwrap(),
        "second version"
    );
    let before = sb.run(&[
        "-c",
        config,
        "restore",
        "--at",
        "2001-01-01",
        "--to",
        "x",
        file.to_str().unwrap(),
    ]);
    assert_exit(&before, 2);
    assert_says(&before, "uploaded at or before 2001-01-01T23:59:59Z");
}

#[test]
fn a_hostile_archive_in_the_destination_restores_nothing_outside_and_says_what_it_refused() {
    let sb = Sandbox::new();
    let config = sb.local_config("");
    let config = config.to_str().unwrap();
    // Someone with write access to the backup disk plants an archive named like ours.
    let regular = tar::EntryType::Regular;
    let when = 1_600_000_000;
    let tar = support::sandbox::raw_tar(&[
        ("photos/ok.txt", regular, "", b"fine", when),
        ("../../escaped.txt", regular, "", b"dots", when),
        ("/tmp/absolute-escape.txt", regular, "", b"abs", when),
        // Each link stays inside by its own name, but the second, made under the first, leads
        // to the destination's parent.
        ("photos/self", tar::EntryType::Symlink, ".", b"", when),
        (
            "photos/self/out",
            tar::EntryType::Symlink,
            "../..",
            b"",
            when,
        ),
        (
            "photos/self/out/escaped-link.txt",
            regular,
            "",
            b"link",
            when,
        ),
    ]);
    sb.plant_directory_archive(config, Path::new("/home/me/photos"), &tar);

    let out = sb.run(&[
        "-c",
        config,
        "restore",
        "--to",
        "restored/here",
        "/home/me/photos",
    ]);
    assert_exit(&out, 1);
    for refused in [
        "../../escaped.txt",
        "/tmp/absolute-escape.txt",
        "photos/self/out/escaped-link.txt",
    ] {
        assert!(
            text(&out).contains(&format!("not restoring archive entry {refused:?}")),
            "{refused}: {}",
            text(&out)
        );
    }
    assert_eq!(
        fs::read(sb.path("restored/here/photos/ok.txt")).unwrap(),
        b"fine"
    );
    for outside in [
        "escaped.txt",
        "restored/escaped.txt",
        "restored/escaped-link.txt",
        "escaped-link.txt",
    ] {
        assert!(!sb.path(outside).exists(), "{outside} was written");
    }
    assert!(!Path::new("/tmp/absolute-escape.txt").exists());
}

#[test]
fn rows_of_the_python_tool_get_their_size_and_tree_hash_from_the_destination_and_restore() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    fs::create_dir_all(data.join("photos")).unwrap();
    fs::write(data.join("photos/beach.jpg"), b"sand").unwrap();
    fs::write(data.join("notes.txt"), b"remember").unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_dirs = true\nupload_files = true\n",
        data.display()
    ));
    let config = config.to_str().unwrap();
    assert_exit(&sb.run(&["-c", config]), 0);
    // What the Python tool recorded: path, name, archive id, nothing else.
    Connection::open(sb.ledger())
        .unwrap()
        .execute_batch(
            "UPDATE uploads SET kind = NULL, size = NULL, tree_hash = NULL, fingerprint = NULL,
             started_at = NULL, uploaded_at = NULL, description = NULL",
        )
        .unwrap();
    let source = data.to_str().unwrap();
    let refused = sb.run(&["-c", config, "restore", "--to", "out", source]);
    assert_exit(&refused, 1);
    assert_says(&refused, "run `glacier-backup inventory --rebuild-ledger`");

    let rebuilt = sb.run(&["-c", config, "inventory", "--rebuild-ledger"]);
    assert_exit(&rebuilt, 0);
    assert!(
        text(&rebuilt).contains("ledger rows added: 0")
            && text(&rebuilt).contains("completed with size and tree hash: 2"),
        "{}",
        text(&rebuilt)
    );
    let out = sb.run(&["-c", config, "restore", "--to", "out", source]);
    assert_exit(&out, 0);
    // The rows do not say what kind of source they were: the archives come back under their
    // archive names, the directory as its tar.
    assert_eq!(fs::read(sb.path("out/notes.txt")).unwrap(), b"remember");
    let tar = fs::File::open(sb.path("out/photos.tar")).unwrap();
    let names: Vec<String> = tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"photos/beach.jpg".to_owned()), "{names:?}");
}

#[test]
fn version_lists_the_backends_from_the_registry() {
    let sb = Sandbox::new();
    let out = sb.run(&["--version"]);
    assert_exit(&out, 0);
    let listed = String::from_utf8(out.stdout).unwrap();
    for backend in glacier_backup::backends::BACKENDS {
        assert!(
            listed.contains(&format!("  {:<8} {}", backend.name, backend.summary)),
            "{listed}"
        );
    }
    let refused = sb.run(&["--backend", "tape"]);
    assert_exit(&refused, 2);
    assert_says(
        &refused,
        format!(
            "[possible values: {}]",
            glacier_backup::backends::backend_names().join(", ")
        ),
    );
}
