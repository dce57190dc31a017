//! The sandbox every binary test runs in: a fresh temporary HOME and working directory, a
//! config builder, and assertions on exit codes and output.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

use super::config::TestConfig;

pub const BIN: &str = env!("CARGO_BIN_EXE_glacier-backup");

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The local backend's config, storing into `archives/` here.
    pub fn local(&self) -> TestConfig {
        TestConfig::local(&self.path("archives"))
    }

    /// Writes `config/backup.toml`: the local backend, then `paths` (path sections in TOML).
    pub fn local_config(&self, paths: &str) -> PathBuf {
        self.local()
            .raw(paths)
            .write(&self.path("config/backup.toml"))
    }

    /// The binary with `args`, confined to this sandbox: its own HOME and working directory,
    /// no RUST_LOG, and the AWS test environment (static keys, no profile files, no metadata
    /// service), so a run touches nothing outside the sandbox but 127.0.0.1.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args);
        self.confine(&mut command);
        command
    }

    /// Confines `command` to this sandbox (see [`Sandbox::command`]).
    fn confine(&self, command: &mut Command) {
        command
            .env("HOME", self.path("home"))
            .env_remove("RUST_LOG")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .current_dir(self.dir.path());
        for (key, value) in super::moto::AWS_TEST_ENV {
            command.env(key, value);
        }
        // Azure's standard environment: Azurite's published key, nothing of the caller's.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AZURE_") {
                command.env_remove(key);
            }
        }
        command.env(
            "AZURE_STORAGE_ACCOUNT_KEY",
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        );
    }

    /// The binary with `-c config` and `args`.
    pub fn with_config(&self, config: &Path, args: &[&str]) -> Command {
        let mut command = self.command(&["-c"]);
        command.arg(config).args(args);
        command
    }

    /// Runs the binary with `args` under a pseudo-terminal (util-linux `script`), typing
    /// `input`: its exit code and what the terminal showed.
    pub fn on_a_terminal(&self, args: &[&str], input: &str) -> (Option<i32>, String) {
        use std::io::Write;
        let command = std::iter::once(BIN)
            .chain(args.iter().copied())
            .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut terminal = Command::new("script");
        terminal
            .args(["-qec", &command, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        self.confine(&mut terminal);
        let mut child = terminal.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Runs `migrate` from the config `from` to the config `to`, with `args`.
    pub fn migrate(&self, from: &Path, to: &Path, args: &[&str]) -> Output {
        let mut command = self.with_config(from, &["migrate", "--to"]);
        command.arg(to).args(args);
        command.output().unwrap()
    }

    /// Runs a backup with `config`.
    pub fn run_config(&self, config: &Path) -> Output {
        self.with_config(config, &[]).output().unwrap()
    }

    /// An age key at `key.txt` (made by `keygen` on first use): its path and public key.
    pub fn keygen(&self) -> (PathBuf, String) {
        let key = self.path("key.txt");
        if !key.exists() {
            assert_exit(&self.run(&["keygen", "-o", key.to_str().unwrap()]), 0);
        }
        let recipient = fs::read_to_string(&key)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("# public key: ").map(str::to_owned))
            .expect("keygen writes the public key as a comment");
        (key, recipient)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs with `-c config` and `args`: the exit code, and stdout then stderr as text.
    pub fn outcome(&self, config: &Path, args: &[&str]) -> (Option<i32>, String) {
        let out = self.with_config(config, args).output().unwrap();
        (out.status.code(), output_text(&out))
    }

    /// Plants `tar` in the local destination as the archive of directory `source`, and has the
    /// ledger learn it from the destination, as after a lost ledger.
    pub fn plant_directory_archive(&self, config: &str, source: &Path, tar: &[u8]) {
        let started = time::macros::datetime!(2026-01-01 0:00 UTC);
        let key = glacier_backup::archiver::keys::archive_key(source, started, true);
        let file = self.path("archives").join(key);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, tar).unwrap();
        let rebuilt = self.run(&["-c", config, "inventory", "--rebuild-ledger"]);
        assert_exit(&rebuilt, 0);
        assert_says(&rebuilt, "ledger rows added: 1");
    }

    pub fn ledger(&self) -> PathBuf {
        let dir = self.path("config");
        fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "sqlite3"))
            .unwrap_or_else(|| panic!("no ledger in {}", dir.display()))
    }

    pub fn ledger_rows(&self) -> Vec<(String, String, String)> {
        let conn = Connection::open(self.ledger()).unwrap();
        let mut stmt = conn
            .prepare("SELECT path, name, archive_id FROM uploads ORDER BY rowid")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Standard output then standard error of a finished run.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a run's output (either stream) says `needle`, showing all of it otherwise.
#[track_caller]
pub fn assert_says(output: &Output, needle: impl AsRef<str>) {
    let (all, needle) = (text(output), needle.as_ref());
    assert!(all.contains(needle), "expected {needle:?} in:\n{all}");
}

/// Asserts that a run's output (either stream) does not say `needle`.
#[track_caller]
pub fn assert_never_says(output: &Output, needle: impl AsRef<str>) {
    let (all, needle) = (text(output), needle.as_ref());
    assert!(
        !all.contains(needle),
        "did not expect {needle:?} in:\n{all}"
    );
}

pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
    assert!(!text(output).contains("panicked"), "{}", text(output));
}

pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A tar archive of raw entries, as a hostile destination could hold: (name, type, link
/// target, data, mtime), names written as given (the tar crate's builder refuses `..`).
pub fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8], u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data, mtime) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(*mtime);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}
