//! Regression tests for the second round of hostile testing (issue 23): errors that end a run
//! reach the log file, key files that would block or never end, exit codes and messages for a
//! ledger or `--to` that is not what it should be, secrets kept out of messages.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::support::config::TestConfig;
use super::support::sandbox::{assert_exit, assert_never_says, assert_says, text, Sandbox};

/// Runs `command`, killing it if it has not ended within 30 s: a run that blocks fails the
/// test instead of hanging the suite.
fn run_bounded(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the run blocked: {:?}", child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn data_file(sb: &Sandbox) -> std::path::PathBuf {
    let file = sb.path("data/f.txt");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, b"payload").unwrap();
    file
}

#[test]
fn an_error_that_ends_the_run_is_in_the_log_file_too() {
    let sb = Sandbox::new();
    let file = data_file(&sb);
    let log = sb.path("logs/backup.log");
    let config = TestConfig::local(&sb.path("no-such-disk"))
        .main("logfile", log.display())
        .without("create_directory")
        .path(&file, "")
        .write(&sb.path("config/backup.toml"));
    let out = sb.with_config(&config, &[]).output().unwrap();
    assert_exit(&out, 2);
    assert_says(&out, "does not exist");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("ERROR") && logged.contains("does not exist"),
        "the log says: {logged:?}"
    );
    // Said once on the terminal, not twice.
    assert_eq!(
        text(&out).matches("does not exist").count(),
        1,
        "{}",
        text(&out)
    );
}

/// A new identity from `keygen -o`, and its recipient.
fn new_identity(sb: &Sandbox) -> (std::path::PathBuf, String) {
    let identity = sb.path("id.txt");
    let keygen = sb
        .command(&["keygen", "-o"])
        .arg(&identity)
        .output()
        .unwrap();
    assert_exit(&keygen, 0);
    let recipient = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
    (identity, recipient)
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_or_a_device_as_a_key_file_is_refused_without_reading_it() {
    let sb = Sandbox::new();
    let file = data_file(&sb);
    let fifo = sb.path("keys.fifo");
    mkfifo(&fifo);
    for recipients_file in [fifo.as_path(), Path::new("/dev/zero")] {
        let config = sb.local_config(&format!(
            "[encryption]\nrecipients_file = \"{}\"\n\n[\"{}\"]\n",
            recipients_file.display(),
            file.display()
        ));
        let out = run_bounded(&mut sb.with_config(&config, &[]));
        assert_exit(&out, 2);
        assert_says(&out, "recipients_file");
        assert_says(&out, "not a regular file");
    }

    // An identity given as a FIFO, for a restore of an encrypted archive.
    let (_, recipient) = new_identity(&sb);
    let config = sb.local_config(&format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\n\n[\"{}\"]\n",
        file.display()
    ));
    assert_exit(&sb.with_config(&config, &[]).output().unwrap(), 0);
    let out = run_bounded(
        sb.with_config(&config, &["restore", "--identity"])
            .arg(&fifo)
            .arg("--to")
            .arg(sb.path("out"))
            .arg(&file),
    );
    assert_exit(&out, 2);
    assert_says(&out, "identity file");
    assert_says(&out, "not a regular file");
}

#[test]
fn a_secret_key_pasted_as_a_recipient_is_never_echoed() {
    let sb = Sandbox::new();
    let file = data_file(&sb);
    let (identity, _) = new_identity(&sb);
    let secret = fs::read_to_string(&identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned();
    let config = sb.local_config(&format!(
        "[encryption]\nrecipients = [\"{secret}\"]\n\n[\"{}\"]\n",
        file.display()
    ));
    let out = sb.with_config(&config, &[]).output().unwrap();
    assert_exit(&out, 2);
    assert_says(&out, "secret key");
    let payload = &secret["AGE-SECRET-KEY-1".len()..];
    for window in payload.as_bytes().windows(4) {
        assert_never_says(&out, std::str::from_utf8(window).unwrap());
    }
}

#[test]
fn a_ledger_that_is_not_a_database_or_not_in_a_directory_is_a_config_error_naming_it() {
    let sb = Sandbox::new();
    let file = data_file(&sb);
    let garbage = sb.path("garbage.sqlite3");
    fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let text_file = sb.path("notes.txt");
    fs::write(&text_file, "not a database at all\n".repeat(200)).unwrap();
    let link = sb.path("link.sqlite3");
    std::os::unix::fs::symlink(&text_file, &link).unwrap();
    let config_path = sb.path("config/backup.toml");
    let under_a_file = text_file.join("x.sqlite3");
    for ledger in [&garbage, &link, &config_path, &under_a_file] {
        let config = sb
            .local()
            .main("ledger", ledger.display())
            .path(&file, "")
            .write(&config_path);
        let out = sb.with_config(&config, &[]).output().unwrap();
        assert_exit(&out, 2);
        assert_says(&out, ledger.display().to_string());
        assert_says(&out, "[main] ledger");
        assert_never_says(&out, "os error");
        assert!(
            !sb.path("archives").exists()
                || fs::read_dir(sb.path("archives")).unwrap().count() <= 1,
            "nothing uploaded"
        );
    }
    assert_eq!(
        fs::read_to_string(&text_file).unwrap(),
        "not a database at all\n".repeat(200),
        "the file named by mistake is left as it was"
    );
}

#[test]
fn restore_to_a_file_is_a_usage_error_that_says_what_to_fix() {
    let sb = Sandbox::new();
    let file = data_file(&sb);
    let config = sb.local_config(&format!("[\"{}\"]\n", file.display()));
    assert_exit(&sb.with_config(&config, &[]).output().unwrap(), 0);
    let existing = sb.path("existing.txt");
    fs::write(&existing, b"mine").unwrap();
    for to in [existing.clone(), existing.join("below")] {
        let out = sb
            .with_config(&config, &["restore", "--to"])
            .arg(&to)
            .arg(&file)
            .output()
            .unwrap();
        assert_exit(&out, 2);
        assert_says(&out, "is not a directory");
        assert_never_says(&out, "os error");
    }
    assert_eq!(fs::read(&existing).unwrap(), b"mine");
}
