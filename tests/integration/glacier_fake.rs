//! The binary against the fake Glacier vault service on 127.0.0.1: multipart archives, a run
//! killed mid-upload and resumed, a failing candidate among good ones.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fake_glacier::FakeGlacier;

use crate::support;
use crate::support::sandbox::{assert_never_says, assert_says, text, Sandbox};
use crate::support::setup::Setup;
use crate::support::wait_until;

fn write_sample(path: &Path, len: usize, seed: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, &data).unwrap();
    data
}

#[test]
fn a_directory_goes_up_in_parts_and_gnu_tar_extracts_what_the_vault_holds() {
    let s = Setup::with_fake();
    let tree = s.path("data/album");
    let big = write_sample(&tree.join("raw/big.bin"), 3 * 1024 * 1024 + 99, 1);
    write_sample(&tree.join("small.txt"), 10, 2);
    let config = s.vault_config(&format!(
        "[\"{}\"]\nupload_single_dir = true\n",
        tree.display()
    ));
    let out = s.run_config(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The directory's archive, and beside it its index, an archive naming it.
    let (indexes, archives): (Vec<_>, Vec<_>) = s
        .fake()
        .archives("photos")
        .into_iter()
        .partition(|(_, a)| a.description.starts_with("gb1-index:"));
    assert_eq!(archives.len(), 1);
    let (id, archive) = &archives[0];
    assert_eq!(indexes.len(), 1);
    assert_eq!(indexes[0].1.description, format!("gb1-index:{id}"));
    assert!(archive.size > 3 * 1024 * 1024);
    assert!(
        archive.description.starts_with("album.tar gb1:d:"),
        "{}",
        archive.description
    );
    let (recorded_id, tree_hash): (String, String) = s
        .vault_ledger()
        .query_row("SELECT archive_id, tree_hash FROM uploads", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(&recorded_id, id);
    assert_eq!(tree_hash, archive.tree_hash.to_hex());

    let tar_file = s.path("from-vault.tar");
    fs::write(&tar_file, archive.data.as_ref().unwrap()).unwrap();
    let dest = s.path("extracted");
    fs::create_dir_all(&dest).unwrap();
    let tar = Command::new("tar")
        .arg("xf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", text(&tar));
    assert_eq!(fs::read(dest.join("album/raw/big.bin")).unwrap(), big);
}

#[test]
fn a_run_killed_mid_upload_is_resumed_without_resending_parts() {
    let s = Setup::with_fake();
    let file = s.path("data/video.bin");
    let data = write_sample(&file, 8 * 1024 * 1024 + 5, 3);
    let config = s.vault_config(&format!("[\"{}\"]\n", file.display()));
    // Parts from the fourth on wait until the test lets them through: the run is killed with
    // exactly three stored, however fast the machine.
    s.fake().set(|b| b.hold_parts_from = Some(3));

    let mut child = s
        .with_config(&config, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the upload never got going", || {
        s.fake().stats().parts_stored.len() >= 3
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let stored_before: Vec<u64> = s.fake().stats().parts_stored.iter().map(|p| p.1).collect();
    assert_eq!(
        stored_before.len(),
        3,
        "killed with exactly the released parts stored"
    );
    let pending: String = s
        .vault_ledger()
        .query_row("SELECT token FROM pending_uploads", [], |r| r.get(0))
        .expect("the unfinished upload is recorded");

    s.fake().set(|b| b.hold_parts_from = None);
    let out = s.run_config(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(&out, format!("resuming upload {pending}"));
    let stats = s.fake().stats();
    assert_eq!(stats.uploads_started, 1, "no second upload was started");
    let mut offsets: Vec<u64> = stats.parts_stored.iter().map(|p| p.1).collect();
    offsets.sort();
    let expected: Vec<u64> = (0..9).map(|i| i << 20).collect();
    let mut dedup = offsets.clone();
    dedup.dedup();
    assert_eq!(dedup, expected, "every part stored");
    assert!(
        offsets.len() <= 9 + 1,
        "at most the part in flight at the kill was sent twice: {offsets:?}"
    );
    for offset in &stored_before {
        assert_eq!(
            offsets.iter().filter(|o| *o == offset).count(),
            1,
            "part {offset} re-sent"
        );
    }
    let archives = s.fake().archives("photos");
    assert_eq!(archives[0].1.data.as_deref(), Some(&data[..]));
    let left: i64 = s
        .vault_ledger()
        .query_row("SELECT count(*) FROM pending_uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn a_failing_candidate_does_not_stop_the_others() {
    let s = Setup::with_fake();
    write_sample(&s.path("data/a-small.txt"), 100, 1);
    write_sample(&s.path("data/b-large.bin"), 3 * 1024 * 1024, 2);
    write_sample(&s.path("data/c-small.txt"), 200, 3);
    fs::write(s.path("data/d-empty"), b"").unwrap();
    let config = s.vault_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        s.path("data").display()
    ));
    s.fake().set(|b| b.refuse_parts_from = Some(1));
    let out = s.run_config(&config);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("failed to back up") && all.contains("b-large.bin"),
        "{all}"
    );
    assert!(
        all.contains("uploaded 2, up to date 0, failed 1, empty files skipped 1"),
        "{all}"
    );
    let paths: Vec<String> = s
        .vault_ledger()
        .prepare("SELECT path FROM uploads ORDER BY path")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(paths.len(), 2);
    assert!(paths[0].ends_with("a-small.txt") && paths[1].ends_with("c-small.txt"));
}

#[test]
fn a_missing_vault_is_reported_before_anything_is_uploaded() {
    let s = Setup::with_fake();
    write_sample(&s.path("data/x"), 10, 1);
    let config = s.vault_config(&format!("[\"{}\"]\n", s.path("data/x").display()));
    let text_config = fs::read_to_string(&config)
        .unwrap()
        .replace("vault_name = \"photos\"", "vault_name = \"nope\"");
    fs::write(&config, text_config).unwrap();
    let out = s.run_config(&config);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_says(&out, "vault \"nope\" does not exist");
}

/// Runs `command` while the fake holds its jobs, and finishes them once the run has made a few
/// requests (it has found its job in progress and is waiting on it): the test, not a timer,
/// decides when the job is done.
pub(crate) fn finish_jobs_while_waiting(s: &Setup, command: &mut Command) -> Output {
    let before = s.fake().stats().requests;
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the run never asked about its job", || {
        s.fake().stats().requests >= before + 3
    });
    s.fake().release_jobs();
    child.wait_with_output().unwrap()
}

/// Sends `signal` (`-INT`, `-TERM`...) to a running binary and collects what it printed.
pub(crate) fn signal_child(child: std::process::Child, signal: &str) -> Output {
    let kill = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    child.wait_with_output().unwrap()
}

/// Starts an upload of `file` and stops the binary with `signal` once three parts are in (the
/// fourth is held by the fake until then).
fn interrupt_upload(s: &Setup, config: &Path, signal: &str) -> Output {
    s.fake().set(|b| b.hold_parts_from = Some(3));
    let child = s
        .with_config(config, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the upload never got going", || {
        s.fake().stats().parts_stored.len() >= 3
    });
    let out = signal_child(child, signal);
    s.fake().set(|b| b.hold_parts_from = None);
    out
}

/// Ctrl-C, SIGTERM (systemd, `timeout`) and SIGHUP all stop a run cleanly: the exit code says
/// which, nothing is recorded as uploaded, and the next run continues the same upload.
#[test]
fn a_signal_stops_cleanly_and_leaves_the_upload_resumable() {
    for (signal, code, name) in [
        ("-INT", 130, "Ctrl-C"),
        ("-TERM", 143, "SIGTERM"),
        ("-HUP", 129, "SIGHUP"),
    ] {
        stopped_by(signal, code, name);
    }
}

fn stopped_by(signal: &str, code: i32, name: &str) {
    let s = Setup::with_fake();
    let file = s.path("data/video.bin");
    let data = write_sample(&file, 8 * 1024 * 1024 + 5, 4);
    let config = s.vault_config(&format!("[\"{}\"]\n", file.display()));
    let out = interrupt_upload(&s, &config, signal);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    assert_says(&out, format!("stopped by {name}"));
    let uploads: i64 = s
        .vault_ledger()
        .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(uploads, 0, "nothing recorded as uploaded");
    let pending: i64 = s
        .vault_ledger()
        .query_row("SELECT count(*) FROM pending_uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pending, 1);

    let out = s.run_config(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("resuming upload"), "{}", text(&out));
    assert_eq!(s.fake().stats().uploads_started, 1);
    assert_eq!(
        s.fake().archives("photos")[0].1.data.as_deref(),
        Some(&data[..])
    );
    let description: String = s
        .vault_ledger()
        .query_row("SELECT description FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert!(description.starts_with("video.bin gb1:f:"), "{description}");
}

#[test]
fn a_source_changed_since_the_interruption_starts_over_and_aborts_the_old_upload() {
    let s = Setup::with_fake();
    let file = s.path("data/video.bin");
    write_sample(&file, 8 * 1024 * 1024 + 5, 4);
    let config = s.vault_config(&format!("[\"{}\"]\n", file.display()));
    interrupt_upload(&s, &config, "-KILL");
    assert_eq!(s.fake().uploads_in_progress("photos"), 1);

    let data = write_sample(&file, 5 * 1024 * 1024, 9);
    let out = s.run_config(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(&out, "the source changed since");
    assert_eq!(s.fake().stats().uploads_started, 2);
    assert_eq!(
        s.fake().uploads_in_progress("photos"),
        0,
        "the stale upload was aborted"
    );
    assert_eq!(
        s.fake().archives("photos")[0].1.data.as_deref(),
        Some(&data[..])
    );
}

#[test]
fn restore_requests_a_retrieval_then_downloads_and_checks_it() {
    let s = Setup::with_fake();
    let tree = s.path("data/album");
    let big = write_sample(&tree.join("big.bin"), 2 * 1024 * 1024 + 7, 5);
    let config = s.vault_config(&format!(
        "[\"{}\"]\nupload_single_dir = true\n",
        tree.display()
    ));
    assert_eq!(s.run_config(&config).status.code(), Some(0));
    s.fake().set(|b| b.hold_jobs = true);

    // Without --wait: the retrieval is requested, and nothing is downloaded yet.
    let out = s
        .with_config(&config, &[])
        .args(["restore", "--to"])
        .arg(s.path("out"))
        .arg(&tree)
        .output()
        .unwrap();
    // Nothing failed, but the archive waits on cold storage: exit 3.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("retrieval requested"), "{}", text(&out));
    assert!(text(&out).contains("pending 1"), "{}", text(&out));
    // Asking again finds the job under way instead of requesting another.
    let again = s
        .with_config(&config, &[])
        .args(["restore", "--to"])
        .arg(s.path("out"))
        .arg(&tree)
        .output()
        .unwrap();
    assert!(
        !text(&again).contains("retrieval requested") && text(&again).contains("still in progress"),
        "{}",
        text(&again)
    );

    // With --wait it polls the job; the test finishes the job once the run is waiting on it.
    let out = finish_jobs_while_waiting(
        &s,
        s.with_config(&config, &[])
            .args(["restore", "--wait", "--timeout", "60", "--to"])
            .arg(s.path("out"))
            .arg(&tree),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fs::read(s.path("out/album/big.bin")).unwrap(), big);
}

/// A range whose bytes do not match the vault's tree hash for it (damage in transit) is not
/// kept to continue from: the partial file is deleted, and the next run downloads it anew.
#[test]
fn a_download_that_fails_the_vaults_check_keeps_none_of_its_bytes() {
    let s = Setup::with_fake();
    let file = s.path("data/disk.img");
    let data = write_sample(&file, 3 * 1024 * 1024 + 11, 4);
    let config = s.vault_config(&format!("[\"{}\"]\n", file.display()));
    assert_eq!(s.run_config(&config).status.code(), Some(0));
    s.fake().set(|b| b.corrupt_output_at = Some(0));
    let restore = || {
        s.with_config(&config, &[])
            .args(["restore", "--wait", "--timeout", "60", "--to"])
            .arg(s.path("out"))
            .arg(&file)
            .output()
            .unwrap()
    };
    let first = restore();
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert_says(&first, "partial download was deleted");
    assert_never_says(&first, "run again to continue");
    let left: Vec<_> = fs::read_dir(s.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing kept: {left:?}");

    let second = restore();
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(fs::read(s.path("out/disk.img")).unwrap(), data);
}

#[test]
fn a_vault_inventory_rebuilds_a_lost_ledger_then_restores_every_byte() {
    let s = Setup::with_fake();
    let data = s.path("data");
    support::trees::awkward_tree(&data);
    // A vault cannot hold a 0-byte archive: that file is never uploaded, so leave it out.
    fs::remove_file(data.join("zero.bin")).unwrap();
    let config = s.vault_config(&format!(
        "[\"{}\"]\nupload_dirs = true\nupload_files = true\nupload_if_changed = true\n",
        data.display()
    ));
    let run = |args: &[&str]| {
        let out = s.with_config(&config, &[]).args(args).output().unwrap();
        let shown = text(&out);
        (out.status.code(), shown)
    };
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["verify", "--remote"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("run `glacier-backup inventory`"), "{out}");

    fs::remove_file(s.path("config/glacier.photos.sqlite3")).unwrap();
    s.fake().set(|b| b.hold_jobs = true);
    let (code, out) = run(&["-d", "inventory"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("a dry run does not start an inventory job"),
        "{out}"
    );
    let (code, out) = run(&["inventory", "--rebuild-ledger"]);
    assert_eq!(code, Some(3), "a pending inventory: {out}");
    assert!(out.contains("is under way"), "{out}");
    let job: String = s
        .vault_ledger()
        .query_row(
            "SELECT request_id FROM retrievals WHERE archive_id = ''",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let waited = finish_jobs_while_waiting(
        &s,
        s.with_config(&config, &[]).args([
            "inventory",
            "--rebuild-ledger",
            "--wait",
            "--timeout",
            "60",
        ]),
    );
    let (code, out) = (waited.status.code(), text(&waited));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("inventory job {job}")),
        "the same job: {out}"
    );
    assert!(out.contains("ledger rows added: 2"), "{out}");
    // The directory's catalog came back from its index, a small archive of its own retrieved
    // while the run waited: `ls` reads it from the ledger.
    assert!(out.contains("1 restored"), "{out}");
    let album = data.join("Фото 2026 (copy)");
    let (code, out) = run(&["ls", album.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("café.txt"), "{out}");
    let requests = s.fake().stats().requests;
    let (code, out) = run(&["-d", "inventory"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("recorded in the ledger and present: 2"),
        "{out}"
    );
    assert_eq!(
        s.fake().stats().requests,
        requests,
        "a dry run asks the vault nothing"
    );

    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 0, up to date 2, failed 0"), "{out}");
    let (code, out) = run(&["verify", "--remote"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verified 2 upload(s): 0 problem(s)"), "{out}");

    let to = s.path("out");
    let job_lists = s.fake().stats().job_lists;
    let (code, out) = run(&[
        "restore",
        "--wait",
        "--timeout",
        "60",
        "--to",
        to.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("restored 2, pending 0, failed 0"), "{out}");
    assert_eq!(
        s.fake().stats().job_lists - job_lists,
        1,
        "the job list is read once for all archives"
    );
    // Both retrievals were asked for before waiting on the first.
    let asked = out.rfind("retrieval requested").expect("requested");
    let first_restored = out.find("restored /").expect("restored");
    assert!(asked < first_restored, "{out}");
    support::trees::assert_same_tree(&data, &to);

    // One file of the rebuilt directory: the whole archive's retrieval done above serves it,
    // and nothing more is asked of the vault.
    let started = s.fake().stats().retrievals_started;
    let one = s.path("one");
    let cafe = album.join("café.txt");
    let (code, out) = run(&[
        "restore",
        "--wait",
        "--timeout",
        "60",
        "--to",
        one.to_str().unwrap(),
        cafe.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let restored = one.join("Фото 2026 (copy)/café.txt");
    assert_eq!(fs::read(restored).unwrap(), fs::read(&cafe).unwrap());
    assert_eq!(s.fake().stats().retrievals_started, started);
}

/// A download cut off by a dropped connection continues, on the next run, from the bytes
/// already on disk: only the rest is asked of the vault.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_ranged_download_resumes_without_fetching_again() {
    use glacier_backup::archiver::conformance::{meta, sample};
    use glacier_backup::archiver::parts::parts_from_bytes;
    use glacier_backup::archiver::{Archiver, PutOptions, SourceKind};
    use glacier_backup::ledger::{Ledger, UploadRecord};
    use glacier_backup::restore::{restore_one, Destination, Outcome, RestoreRequest};
    use glacier_backup_glacier::{GlacierArchiver, GlacierSettings};

    let fake = FakeGlacier::start();
    fake.create_vault("ranged");
    let mut settings = GlacierSettings::from_config(None, Some("ranged"), None).unwrap();
    settings.connection.credentials = Some(support::moto::test_credentials());
    settings.connection.endpoint_url = Some(fake.endpoint.clone());
    settings.connection.region = Some("us-east-1".into());
    settings.part_size = Some(1 << 20);
    // No retries inside one run: the dropped connection must end it.
    settings.connection.max_attempts = 1;
    let glacier = GlacierArchiver::new(settings);
    let data = sample((3 << 20) + 4321, 8);
    let m = meta("disk.img", data.len() as u64);
    let stored = glacier
        .put(
            &m,
            &PutOptions::default(),
            parts_from_bytes(data.clone(), 1 << 20),
        )
        .await
        .unwrap();
    let row = UploadRecord {
        path: m.source_path.clone(),
        name: m.name.clone(),
        archive_id: stored.archive_id.clone(),
        description: stored.description.clone(),
        backend: "glacier".into(),
        kind: Some(SourceKind::File),
        size: Some(stored.size),
        tree_hash: Some(stored.tree_hash),
        fingerprint: None,
        started_at: Some(m.started_at),
        uploaded_at: Some(m.started_at),
        encoding: Default::default(),
        plain_size: None,
    };
    let sb = Sandbox::new();
    let request = RestoreRequest {
        deadline: Some(Instant::now() + Duration::from_secs(30)),
        chunk_size: 1 << 20,
        ..RestoreRequest::new(Destination::Into(sb.dir.path().to_path_buf()))
    };
    let mut ledger = Ledger::in_memory().unwrap();
    fake.set(|b| b.drop_output_at = Some(2 << 20));

    let first = restore_one(&glacier, &mut ledger, &row, &request, None).await;
    let Outcome::Failed(message) = first else {
        panic!("{first:?}")
    };
    assert!(
        message.to_string().contains("run again to continue"),
        "{message}"
    );
    assert_eq!(fake.stats().output_bytes, 2 << 20);

    let second = restore_one(&glacier, &mut ledger, &row, &request, None).await;
    assert!(matches!(second, Outcome::Restored { .. }), "{second:?}");
    assert!(fs::read(sb.path("disk.img")).unwrap() == data);
    assert_eq!(
        fake.stats().output_bytes,
        data.len() as u64,
        "each byte fetched once"
    );
}

#[test]
fn ctrl_c_while_waiting_for_a_retrieval_exits_130_and_the_request_is_kept() {
    let s = Setup::with_fake();
    let file = s.path("data/notes.txt");
    write_sample(&file, 5000, 2);
    let config = s.vault_config(&format!("[\"{}\"]\n", file.display()));
    assert_eq!(s.run_config(&config).status.code(), Some(0));
    s.fake().set(|b| b.hold_jobs = true);
    let retrievals = || -> i64 {
        s.vault_ledger()
            .query_row("SELECT count(*) FROM retrievals", [], |r| r.get(0))
            .unwrap_or(0)
    };
    let child = s
        .with_config(&config, &[])
        .args(["restore", "--wait", "--to"])
        .arg(s.path("out"))
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("no retrieval was recorded", || retrievals() > 0);
    // Let the first checks go by.
    std::thread::sleep(Duration::from_millis(1500));
    let out = signal_child(child, "-INT");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("stopped by Ctrl-C"), "{}", text(&out));
    // While it waited, the log said on what, and when it would look again.
    assert_says(&out, "retrieval in progress; next check in 1 s");
    assert_eq!(retrievals(), 1, "the request is still on record");

    let again = s
        .with_config(&config, &[])
        .args(["restore", "--to"])
        .arg(s.path("out"))
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    assert_says(&again, "still in progress");
    assert_never_says(&again, "retrieval requested");
}

#[test]
fn descriptions_keep_to_whole_characters_and_a_path_too_long_for_one_is_warned_about() {
    let s = Setup::with_fake();
    let long_name = "é".repeat(120); // 240 bytes, 720 once percent-encoded
    let deep = s.path(&format!("data/{}", "d".repeat(200)));
    write_sample(&deep.join(&long_name), 10, 3);
    let mut too_long = s.path("data");
    for _ in 0..5 {
        too_long.push("x".repeat(200));
    }
    write_sample(&too_long.join("f"), 10, 4);
    let config = s.vault_config(&format!(
        "[\"{}\"]\nupload_files = true\n\n[\"{}\"]\nupload_files = true\n",
        deep.display(),
        too_long.display()
    ));
    let out = s.run_config(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(
        &out,
        "a ledger rebuilt from the vault will not know where it came from",
    );
    let descriptions: Vec<String> = s
        .fake()
        .archives("photos")
        .into_iter()
        .map(|(_, a)| a.description)
        .collect();
    assert_eq!(descriptions.len(), 2);
    let ours = descriptions
        .iter()
        .find(|d| d.contains(" gb1:"))
        .expect("the shorter path keeps its origin");
    let (name, _) = ours.split_once(" gb1:").unwrap();
    // Each é is %C3%A9: a cut inside one would leave a dangling %C3 or a partial escape.
    assert_eq!(name.len() % 6, 0, "{name}");
    assert!(
        name.len() < long_name.len() * 3,
        "the name was shortened: {name}"
    );
    assert!(descriptions.contains(&"f".to_owned()), "{descriptions:?}");
}

/// The Setup config with the SDK's retries off: a lost reply then ends the call, as a run
/// killed while the request was answered would.
fn config_without_retries(s: &Setup, paths: &str) -> PathBuf {
    s.vault()
        .backend("max_attempts", 1)
        .raw(paths)
        .write(&s.path("config/vault.toml"))
}

#[test]
fn a_run_stopped_while_glacier_completed_the_upload_records_that_archive_next_time() {
    let s = Setup::with_fake();
    let data = write_sample(&s.path("data/big.bin"), 3 * 1024 * 1024 + 5, 9);
    let config = config_without_retries(
        &s,
        &format!("[\"{}\"]\nupload_files = true\n", s.path("data").display()),
    );
    s.fake()
        .set(|b| b.lose_reply = Some(fake_glacier::Call::Complete));
    let first = s.run_config(&config);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert_eq!(
        s.fake().archives("photos").len(),
        1,
        "Glacier made the archive"
    );
    let rows: i64 = s
        .vault_ledger()
        .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "nothing recorded without an archive id");
    let before = s.fake().stats();

    let second = s.run_config(&config);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let after = s.fake().stats();
    assert_eq!(
        after.uploads_started, before.uploads_started,
        "no new upload"
    );
    assert_eq!(
        after.parts_stored.len(),
        before.parts_stored.len(),
        "no part sent again"
    );
    let archives = s.fake().archives("photos");
    assert_eq!(archives.len(), 1, "no duplicate archive");
    let (id, archive) = &archives[0];
    assert_eq!(archive.data.as_deref(), Some(&data[..]));
    let recorded: String = s
        .vault_ledger()
        .query_row("SELECT archive_id FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(&recorded, id);
    assert_says(&second, "nothing is sent again");
}

/// Compressed bytes need not come out the same twice (zstd's jobs, a source rewritten in place
/// with its size and time kept): the archive Glacier made from the earlier run's bytes is
/// recorded by what that run sent, not compared with this run's stream.
#[test]
fn a_compressed_archive_completed_while_the_run_stopped_is_recorded_whatever_this_run_encodes() {
    let s = Setup::with_fake();
    let file = s.path("data/big.bin");
    // Incompressible, so the compressed archive still goes up in several 1 MiB parts.
    let first_bytes = crate::support::random_bytes(3 * 1024 * 1024 + 5, 0x9E37_79B9_7F4A_7C15);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, &first_bytes).unwrap();
    let config = config_without_retries(
        &s,
        &format!(
            "[archive]\ncompression = \"zstd\"\n\n[\"{}\"]\nupload_files = true\n",
            s.path("data").display()
        ),
    );
    s.fake()
        .set(|b| b.lose_reply = Some(fake_glacier::Call::Complete));
    let first = s.run_config(&config);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let made = s.fake().archives("photos");
    assert_eq!(made.len(), 1, "Glacier made the archive");
    let stored_bytes = made[0].1.data.clone().unwrap();

    // Same size and modification time, other bytes: the fingerprint is unchanged, the
    // compressed stream is not.
    let mtime = fs::metadata(&file).unwrap().modified().unwrap();
    let mut other: Vec<u8> = first_bytes.iter().map(|b| b.rotate_left(3)).collect();
    other[..4096].fill(0);
    fs::write(&file, &other).unwrap();
    fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let second = s.run_config(&config);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_says(&second, "nothing is sent again");
    let archives = s.fake().archives("photos");
    assert_eq!(archives.len(), 1, "no duplicate archive");
    let (recorded_id, size, tree_hash): (String, i64, String) = s
        .vault_ledger()
        .query_row("SELECT archive_id, size, tree_hash FROM uploads", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(recorded_id, archives[0].0);
    assert_eq!(
        size as usize,
        stored_bytes.len(),
        "the stored size, not this run's"
    );
    assert_eq!(
        tree_hash,
        glacier_backup::archiver::treehash::tree_hash(&stored_bytes).to_hex()
    );
    let plain = zstd::decode_all(&stored_bytes[..]).unwrap();
    assert_eq!(
        plain, first_bytes,
        "the vault holds the earlier run's bytes"
    );
}

#[test]
fn an_upload_whose_start_lost_its_reply_is_adopted_or_aborted_never_left_open() {
    // Retried by the SDK: the first start's upload is left open and must be aborted.
    let s = Setup::with_fake();
    write_sample(&s.path("data/a.bin"), 3 * 1024 * 1024, 5);
    let paths = format!("[\"{}\"]\nupload_files = true\n", s.path("data").display());
    s.fake()
        .set(|b| b.lose_reply = Some(fake_glacier::Call::Initiate));
    let out = s.run_config(&s.vault_config(&paths));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.fake().stats().uploads_started, 2, "the start was retried");
    assert_eq!(s.fake().uploads_in_progress("photos"), 0, "{}", text(&out));
    assert_eq!(s.fake().archives("photos").len(), 1);

    // Not retried (a run that stopped there): the next run continues that upload.
    let s = Setup::with_fake();
    let data = write_sample(&s.path("data/a.bin"), 3 * 1024 * 1024, 6);
    let paths = format!("[\"{}\"]\nupload_files = true\n", s.path("data").display());
    let config = config_without_retries(&s, &paths);
    s.fake()
        .set(|b| b.lose_reply = Some(fake_glacier::Call::Initiate));
    let first = s.run_config(&config);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert_eq!(s.fake().uploads_in_progress("photos"), 1);
    let second = s.run_config(&config);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_says(&second, "left by an earlier run");
    assert_eq!(
        s.fake().stats().uploads_started,
        1,
        "no second upload was started"
    );
    assert_eq!(s.fake().uploads_in_progress("photos"), 0);
    let archives = s.fake().archives("photos");
    assert_eq!(archives.len(), 1);
    assert_eq!(archives[0].1.data.as_deref(), Some(&data[..]));
}

#[test]
fn open_uploads_of_the_same_path_are_aborted_only_once_no_run_can_resume_them() {
    use glacier_backup::archiver::{origin, ArchiveMeta, SourceKind};
    let s = Setup::with_fake();
    let file = s.path("data/a.bin");
    let data = write_sample(&file, 3 * 1024 * 1024, 7);
    let left_by = |started_at: time::OffsetDateTime| {
        let meta = ArchiveMeta {
            source_path: file.clone(),
            name: "a.bin".into(),
            kind: SourceKind::File,
            fingerprint: "v1:another-machine's-state".into(),
            size_hint: 0,
            started_at,
            encoding: Default::default(),
            index_of: None,
            indexed_tree_hash: None,
        };
        s.fake()
            .open_upload("photos", &origin::encode(&meta).0, 1 << 20)
    };
    let now = time::OffsetDateTime::now_utc();
    // Another machine backing up the same path to this vault, right now.
    let live = left_by(now - time::Duration::minutes(5));
    // An upload abandoned two days ago: no run resumes it any more.
    let abandoned = left_by(now - time::Duration::days(2));
    let config = s.vault_config(&format!(
        "[\"{}\"]\nupload_files = true\n",
        s.path("data").display()
    ));
    let out = s.run_config(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        s.fake().upload_open("photos", &live),
        "another machine's upload was aborted"
    );
    assert!(
        !s.fake().upload_open("photos", &abandoned),
        "{}",
        text(&out)
    );
    let archives = s.fake().archives("photos");
    assert_eq!(archives.len(), 1);
    assert_eq!(archives[0].1.data.as_deref(), Some(&data[..]));
}

/// Costs before paying: a restore plan's estimate at the chosen tier is the hand computation
/// from the prices in force (here `[prices]` overrides with round numbers), `--max-cost`
/// refuses a dearer plan, and a dry-run backup says what its uploads add to the bill.
#[test]
fn restore_and_backup_plans_show_their_cost_and_max_cost_refuses_a_dearer_one() {
    let s = Setup::with_fake();
    let file = s.path("data/three.bin");
    write_sample(&file, 3 << 20, 9);
    // $1,024 per GB retrieved is $3.00 for 3 MiB; $1 per retrieval request; nothing to send
    // out. Storage: $1,024 per GB-month, $1 per upload request.
    let prices = "[prices]\nretrieval_vault_standard = 1024\n\
                  retrieval_requests_vault_standard = 1000\ntransfer_out = 0\n\
                  storage_vault = 1024\nupload_requests_vault = 1000.0\n";
    let config = s.vault_config(&format!("{prices}\n[\"{}\"]\n", file.display()));

    let planned = s.with_config(&config, &["-d"]).output().unwrap();
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
    // (3 MiB + 32 KiB of per-archive overhead) x $1,024 per GiB = $3.03 a month; three 1 MiB
    // parts, plus starting and completing the upload: 5 requests.
    assert!(
        text(&planned).contains(
            "estimated cost: $3.03 a month more for storage, and $5.00 once for 5 upload request(s)"
        ),
        "{}",
        text(&planned)
    );
    assert_eq!(s.run_config(&config).status.code(), Some(0));

    // What is billed above its size, and what replaces a too-young upload, is said first.
    let tiny = s.path("data/tiny.txt");
    write_sample(&tiny, 100, 1);
    let both = s.vault_config(&format!(
        "{prices}\n[\"{}\"]\nupload_files = true\nupload_if_changed = true\n",
        s.path("data").display()
    ));
    let warned = s.with_config(&both, &["-d"]).output().unwrap();
    assert_eq!(warned.status.code(), Some(0), "{}", text(&warned));
    assert_says(&warned, "1 archive(s) are smaller than 40.0 KiB");
    assert!(
        !text(&warned).contains("younger than"),
        "three.bin did not change: {}",
        text(&warned)
    );
    write_sample(&file, 3 << 20, 10);
    let replaced = s.with_config(&both, &["-d"]).output().unwrap();
    assert!(
        text(&replaced).contains("three.bin: its previous upload (")
            && text(&replaced).contains("is younger than the 90 days"),
        "{}",
        text(&replaced)
    );
    write_sample(&file, 3 << 20, 9);
    std::fs::remove_file(&tiny).unwrap();

    let to = s.path("out");
    let restore = |extra: &[&str]| {
        let mut args = vec!["-d", "restore", "--to", to.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        s.with_config(&config, &args).output().unwrap()
    };
    let plan = restore(&[]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        text(&plan).contains(
            "estimated cost: $4.00 for 1 archive(s) at the standard tier (retrieval $3.00, \
             requests $1.00, transfer out $0.00); other tiers: expedited $0.01, bulk"
        ),
        "{}",
        text(&plan)
    );
    let refused = restore(&["--max-cost", "3.99"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert_says(&refused, "estimated cost $4.00 is above --max-cost $3.99");
    assert_eq!(restore(&["--max-cost", "4"]).status.code(), Some(0));

    // On a terminal, a plan above $1 asks first: "n" starts nothing.
    s.fake().set(|b| b.hold_jobs = true);
    let real = |extra: &[&str], input: &str| {
        let mut args = vec!["-c", config.to_str().unwrap(), "restore"];
        args.extend_from_slice(&["--to", to.to_str().unwrap()]);
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        s.on_a_terminal(&args, input)
    };
    let (code, shown) = real(&[], "n\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("Go ahead? [y/N]"), "{shown}");
    assert!(shown.contains("not started"), "{shown}");
    let retrievals = || -> i64 {
        s.vault_ledger()
            .query_row("SELECT count(*) FROM retrievals", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(retrievals(), 0, "a retrieval was requested: {shown}");
    // --yes does not ask; the retrieval is requested and pending.
    let (code, shown) = real(&["--yes"], "");
    assert_eq!(code, Some(3), "{shown}");
    assert!(!shown.contains("Go ahead?"), "{shown}");
    assert_eq!(retrievals(), 1, "{shown}");
}

/// A script that stops reading (`| head`, a closed pipe) does not make a pending inventory
/// panic: it still exits 3.
#[test]
fn a_pending_inventory_whose_reader_went_away_still_exits_3() {
    let s = Setup::with_fake();
    s.fake().set(|b| b.hold_jobs = true);
    let config = s.vault_config("");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = s
        .with_config(&config, &["--json", "inventory"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
}

/// Small files go up side by side: as many at once as `parallel_uploads` says, never more, and
/// each is stored and recorded once.
#[test]
fn small_files_go_up_side_by_side_never_more_than_parallel_uploads() {
    let s = Setup::with_fake();
    let dir = s.path("data/camera");
    let mut written = Vec::new();
    for i in 0..12u8 {
        written.push(write_sample(
            &dir.join(format!("img{i:02}.jpg")),
            2000 + usize::from(i),
            i,
        ));
    }
    let config = s
        .vault()
        .main("parallel_uploads", 4)
        .path(&dir, "upload_files = true")
        .write(&s.path("config/vault.toml"));
    s.fake().set(|b| b.hold_archive_uploads = true);
    let child = s
        .with_config(&config, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held unanswered, uploads pile up to the limit: the fourth proves they overlap.
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.fake().stats().archive_uploads_in_progress < 4 {
        assert!(Instant::now() < deadline, "never 4 uploads at once");
        std::thread::sleep(Duration::from_millis(10));
    }
    s.fake().set(|b| b.hold_archive_uploads = false);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.fake().stats().most_archive_uploads_at_once, 4);

    let mut stored: Vec<Vec<u8>> = s
        .fake()
        .archives("photos")
        .into_iter()
        .map(|(_, archive)| archive.data.unwrap().to_vec())
        .collect();
    stored.sort();
    written.sort();
    assert_eq!(stored, written);
    let rows: (i64, i64) = s
        .vault_ledger()
        .query_row(
            "SELECT count(*), count(DISTINCT path) FROM uploads",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, (12, 12));
}

/// A refused signature is answered, as AWS answers it, with the request the service expected,
/// headers included: the session token in it never reaches the terminal or the log.
#[test]
fn a_refused_signature_prints_no_session_token() {
    let s = Setup::with_fake();
    let file = s.path("data/notes.txt");
    write_sample(&file, 500, 1);
    let config = config_without_retries(&s, &format!("[\"{}\"]\n", file.display()));
    let log = s.path("logs/backup.log");
    let token = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789";
    let out = s
        .with_config(&config, &["-l"])
        .arg(&log)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-key")
        .env("AWS_SESSION_TOKEN", token)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_says(&out, "does not match the signature");
    assert_says(&out, "x-amz-security-token:[redacted]");
    assert_never_says(&out, token);
    assert_never_says(&out, "not-the-secret-key");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("does not match the signature"), "{logged}");
    assert!(!logged.contains(token), "{logged}");
}

#[test]
fn verify_read_of_a_vault_is_refused_before_anything_is_asked() {
    let s = Setup::with_fake();
    let file = s.path("data/a.txt");
    write_sample(&file, 100, 3);
    let config = s.vault_config(&format!("[\"{}\"]\n", file.display()));
    assert_eq!(s.run_config(&config).status.code(), Some(0));
    let requests = s.fake().stats().requests;
    let out = s
        .with_config(&config, &["verify", "--remote", "--read"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_says(
        &out,
        "this glacier destination's archives need a retrieval first",
    );
    assert_says(&out, "restore --to DIR");
    assert_eq!(
        s.fake().stats().requests,
        requests,
        "nothing asked of the vault"
    );
}
