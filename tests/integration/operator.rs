//! Living with the tool by hand and from cron: what goes to stdout and stderr, `-p` and
//! subcommands, the log file, RUST_LOG, XDG_CONFIG_HOME.

use std::fs;

use crate::support::config::TestConfig;
use crate::support::sandbox::{assert_exit, text, Sandbox};

/// A sandbox with one file and a local config backing it up.
fn one_file(sb: &Sandbox) -> String {
    fs::create_dir_all(sb.path("data")).unwrap();
    fs::write(sb.path("data/notes.txt"), b"remember the milk").unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        sb.path("data").display()
    ));
    config.to_str().unwrap().to_owned()
}

fn archives_in(sb: &Sandbox) -> usize {
    walk(&sb.path("archives"))
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".incoming")
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn paths_after_p_end_at_a_subcommand_and_a_bare_p_is_a_usage_error() {
    let sb = Sandbox::new();
    let config = one_file(&sb);
    let file = sb.path("data/notes.txt");
    let file = file.to_str().unwrap();
    // `list` after the paths is the subcommand, not one more path to back up.
    let listed = sb.run(&["-c", &config, "-p", file, file, "list"]);
    assert_exit(&listed, 0);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("no uploads recorded"),
        "{}",
        text(&listed)
    );
    assert_eq!(archives_in(&sb), 0, "list backed something up");

    let bare = sb.run(&["-c", &config, "-p"]);
    assert_exit(&bare, 2);
    assert!(text(&bare).contains("--path"), "{}", text(&bare));
    assert_eq!(archives_in(&sb), 0);

    // A path named like a subcommand is still reachable.
    fs::write(sb.path("list"), b"a file named list").unwrap();
    assert_exit(&sb.run(&["-c", &config, "-p", "./list"]), 0);
    assert_eq!(archives_in(&sb), 1);
}

#[test]
fn stdout_carries_only_what_scripts_read_and_logs_go_to_stderr() {
    let sb = Sandbox::new();
    let config = one_file(&sb);
    let backup = sb.run(&["-c", &config, "--verbose"]);
    assert_exit(&backup, 0);
    assert!(backup.stdout.is_empty(), "{}", text(&backup));
    assert!(
        String::from_utf8_lossy(&backup.stderr).contains("uploaded 1, up to date 0, failed 0"),
        "{}",
        text(&backup)
    );
    let listed = sb.run(&["-c", &config, "--verbose", "list", "--json"]);
    assert_exit(&listed, 0);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", text(&listed)));
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    // People read sizes in units; scripts get exact bytes.
    assert_eq!(rows[0]["size"], 17, "{rows}");
    let table = sb.run(&["-c", &config, "list"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains(" 17 B "),
        "{}",
        text(&table)
    );
}

#[test]
fn the_log_file_records_uploads_even_when_the_terminal_is_quiet() {
    let sb = Sandbox::new();
    let config = one_file(&sb);
    let log = sb.path("logs/backup.log");
    let quiet = sb.run(&["-c", &config, "--quiet", "-l", log.to_str().unwrap()]);
    assert_exit(&quiet, 0);
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("uploaded"),
        "--quiet shows no INFO lines: {}",
        text(&quiet)
    );
    let written = fs::read_to_string(&log).unwrap();
    assert!(written.contains("uploaded 1, up to date 0"), "{written}");
    assert!(written.contains("notes.txt"), "{written}");
}

#[test]
fn rust_log_decides_what_the_terminal_shows() {
    let sb = Sandbox::new();
    let config = one_file(&sb);
    let warn_only = sb
        .command(&["-c", &config, "--verbose"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_exit(&warn_only, 0);
    assert!(
        !String::from_utf8_lossy(&warn_only.stderr).contains("uploaded"),
        "RUST_LOG=warn overrides --verbose: {}",
        text(&warn_only)
    );
    fs::write(
        sb.path("data/notes.txt"),
        b"changed, and longer than before",
    )
    .unwrap();
    let debug = sb
        .command(&["-c", &config])
        .env("RUST_LOG", "glacier_backup=debug")
        .output()
        .unwrap();
    assert_exit(&debug, 0);
    assert!(
        String::from_utf8_lossy(&debug.stderr).contains("debug: "),
        "{}",
        text(&debug)
    );
}

/// The default config is looked up under XDG_CONFIG_HOME, and the Python tool's place
/// (~/.config/glacier_backup) is still found when XDG_CONFIG_HOME holds none.
#[test]
fn the_default_config_follows_xdg_config_home_and_still_finds_the_python_tools() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.path("data")).unwrap();
    fs::write(sb.path("data/a.txt"), b"a").unwrap();
    let write_config = |dir: &std::path::Path, archives: &str| {
        TestConfig::local(&sb.path(archives))
            .path(&sb.path("data"), "upload_files = yes")
            .write(&dir.join("glacier_backup.conf"));
    };
    let xdg = sb.path("xdg");
    fs::create_dir_all(&xdg).unwrap();
    write_config(
        &sb.path("home/.config/glacier_backup"),
        "python-tool-archives",
    );
    let found_old = sb
        .command(&[])
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert_exit(&found_old, 0);
    assert!(
        sb.path("python-tool-archives").is_dir(),
        "{}",
        text(&found_old)
    );

    write_config(&xdg.join("glacier_backup"), "xdg-archives");
    let found_xdg = sb
        .command(&[])
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert_exit(&found_xdg, 0);
    assert!(sb.path("xdg-archives").is_dir(), "{}", text(&found_xdg));
    // Its ledger goes beside it.
    let ledgers: Vec<_> = fs::read_dir(xdg.join("glacier_backup"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sqlite3"))
        .collect();
    assert_eq!(ledgers.len(), 1, "{ledgers:?}");
}

#[test]
fn completions_for_each_shell_name_every_subcommand_and_bash_parses_them() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = sb.run(&["completions", shell]);
        assert_exit(&out, 0);
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["restore", "inventory", "verify", "dryrun", "path"] {
            assert!(script.contains(word), "{shell}: no {word} in\n{script}");
        }
        if shell == "bash" {
            fs::write(sb.path("completion.bash"), &script).unwrap();
            let parsed = std::process::Command::new("bash")
                .arg("-n")
                .arg(sb.path("completion.bash"))
                .output()
                .unwrap();
            assert!(parsed.status.success(), "{}", text(&parsed));
        }
    }
    assert_exit(&sb.run(&["completions", "tcsh"]), 2);
}

#[test]
fn the_man_page_is_roff_with_the_options_and_exit_codes() {
    let sb = Sandbox::new();
    let out = sb.run(&["man"]);
    assert_exit(&out, 0);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH glacier-backup 1"), "{page}");
    assert!(page.contains("\\-\\-dryrun"), "{page}");
    assert!(page.contains("Exit codes"), "{page}");
    // groff reads it without complaint and renders the options.
    fs::write(sb.path("glacier-backup.1"), &page).unwrap();
    let rendered = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(sb.path("glacier-backup.1"))
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", text(&rendered));
    assert!(rendered.stderr.is_empty(), "{}", text(&rendered));
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", text(out)))
}

/// `--json` gives one document on stdout for each command, at any verbosity: what happened to
/// each candidate or archive, with ids, bytes and errors, and the totals.
#[test]
fn json_documents_report_each_candidate_and_archive() {
    let sb = Sandbox::new();
    let config = one_file(&sb);
    let source = sb.path("data/notes.txt");

    let first = sb.run(&["-c", &config, "--verbose", "--json"]);
    assert_exit(&first, 0);
    let doc = json_of(&first);
    assert_eq!(doc["command"], "backup");
    assert_eq!(doc["totals"]["uploaded"], 1, "{doc}");
    assert_eq!(doc["totals"]["bytes_uploaded"], 17, "{doc}");
    let candidate = &doc["candidates"][0];
    assert_eq!(candidate["outcome"], "uploaded", "{doc}");
    assert_eq!(candidate["path"], source.to_str().unwrap(), "{doc}");
    assert_eq!(candidate["size"], 17, "{doc}");
    assert_eq!(candidate["reason"], "new", "{doc}");
    let archive_id = candidate["archive_id"].as_str().unwrap().to_owned();

    let second = json_of(&sb.run(&["-c", &config, "--json"]));
    assert_eq!(second["candidates"][0]["outcome"], "up_to_date", "{second}");
    assert_eq!(second["totals"]["uploaded"], 0, "{second}");

    let to = sb.path("restored");
    let restored = sb.run(&[
        "-c",
        &config,
        "--json",
        "restore",
        "--to",
        to.to_str().unwrap(),
        source.to_str().unwrap(),
    ]);
    assert_exit(&restored, 0);
    let doc = json_of(&restored);
    assert_eq!(doc["archives"][0]["outcome"], "restored", "{doc}");
    assert_eq!(
        doc["archives"][0]["archive_id"],
        archive_id.as_str(),
        "{doc}"
    );
    assert_eq!(doc["totals"]["restored"], 1, "{doc}");
    let placed = doc["archives"][0]["to"].as_str().unwrap();
    assert_eq!(fs::read(placed).unwrap(), b"remember the milk");

    let verified = json_of(&sb.run(&["-c", &config, "--json", "verify"]));
    assert_eq!(verified["verified"], 1, "{verified}");
    assert_eq!(verified["problems"], serde_json::json!([]), "{verified}");
    fs::write(&source, b"changed since").unwrap();
    let changed = sb.run(&["-c", &config, "--json", "verify"]);
    assert_exit(&changed, 1);
    let doc = json_of(&changed);
    assert_eq!(
        doc["problems"][0]["path"],
        source.to_str().unwrap(),
        "{doc}"
    );

    // An error that ends the run still leaves one document, with the exit code.
    let missing = sb.run(&["-c", "nowhere.toml", "--json"]);
    assert_exit(&missing, 2);
    let doc = json_of(&missing);
    assert_eq!(doc["exit_code"], 2, "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("nowhere.toml"),
        "{doc}"
    );
}

#[test]
fn progress_shows_as_bars_on_a_terminal_and_as_lines_in_a_log() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.path("data")).unwrap();
    fs::write(sb.path("data/big.bin"), vec![5u8; 20 << 20]).unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\nupload_if_changed = true\n",
        sb.path("data").display()
    ));
    let config = config.to_str().unwrap();

    let (code, never) = sb.on_a_terminal(&["-c", config, "--progress", "never"], "");
    assert_eq!(code, Some(0), "{never}");
    assert!(never.contains("uploaded 1"), "{never}");
    assert!(
        !never.contains("ETA"),
        "--progress never drew a bar: {never}"
    );

    fs::write(sb.path("data/big.bin"), vec![6u8; 20 << 20]).unwrap();
    let (code, bars) = sb.on_a_terminal(&["-c", config], "");
    assert_eq!(code, Some(0), "{bars}");
    assert!(bars.contains("uploaded 1"), "{bars}");
    assert!(
        bars.contains("/20.00 MiB") && bars.contains("ETA"),
        "{bars}"
    );
    assert!(bars.contains("1/1 done"), "{bars}");
    // A restore's download shows the same way.
    let to = sb.path("restored");
    let source = sb.path("data/big.bin");
    let (code, restored) = sb.on_a_terminal(
        &[
            "-c",
            config,
            "restore",
            "--to",
            to.to_str().unwrap(),
            source.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, Some(0), "{restored}");
    assert!(
        restored.contains("/20.00 MiB") && restored.contains("ETA"),
        "{restored}"
    );

    // Not a terminal: no bar, and (every 30 s; here at every part) a plain line.
    fs::write(sb.path("data/big.bin"), vec![7u8; 20 << 20]).unwrap();
    let piped = sb
        .command(&["-c", config])
        .env("GLACIER_BACKUP_PROGRESS_SECONDS", "0")
        .output()
        .unwrap();
    assert_exit(&piped, 0);
    let log = String::from_utf8_lossy(&piped.stderr);
    assert!(!log.contains("ETA") && !log.contains('\r'), "{log}");
    assert!(
        log.contains("big.bin: ") && log.contains(" of 20.0 MiB ("),
        "{log}"
    );

    fs::write(sb.path("data/big.bin"), vec![8u8; 20 << 20]).unwrap();
    let quiet = sb
        .command(&["-c", config, "--quiet"])
        .env("GLACIER_BACKUP_PROGRESS_SECONDS", "0")
        .output()
        .unwrap();
    assert_exit(&quiet, 0);
    assert!(quiet.stderr.is_empty(), "{}", text(&quiet));
}

/// SIGTERM (systemd's stop, `timeout`) mid-upload to a local directory: the run stops cleanly,
/// exit 143, and leaves no partial file behind (it used to die at once and leave one).
#[test]
fn sigterm_mid_upload_leaves_no_partial_file_in_a_local_destination() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.path("data")).unwrap();
    fs::write(sb.path("data/big.bin"), vec![3u8; 256 << 20]).unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        sb.path("data").display()
    ));
    let child = sb
        .command(&["-c", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let incoming = sb.path("archives/.incoming");
    let partials = || {
        fs::read_dir(&incoming)
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    crate::support::wait_until("the upload never started", || partials() > 0);
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 143);
    assert!(text(&out).contains("stopped by SIGTERM"), "{}", text(&out));
    assert_eq!(partials(), 0, "a partial upload file was left behind");
}
