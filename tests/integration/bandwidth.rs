//! Bandwidth limits through the binary, on every backend: a limited run takes at least as long
//! as its bytes need at the rate (a lower bound, which a slow machine cannot break), the bytes
//! still round-trip, a timetable in [main] follows the run's clock, the command line overrides
//! it, and a rate that cannot be read is refused naming where it was written.
//! (The rate itself, its switch mid-transfer and its smoothness are measured exactly under a
//! paused clock in the archiver's tests; 64 MiB at 4 MiB/s is `benches/run.py bandwidth`.)

use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::support::random_bytes;
use crate::support::sandbox::{output_text, Sandbox};

const MIB: usize = 1 << 20;
/// The test file: 3 MiB, 3 s at 1 MiB/s.
const SIZE: usize = 3 * MIB;
/// What 3 MiB at 1 MiB/s cannot beat, less the bucket's first tenth of a second and slack.
const LIMITED_SECONDS: f64 = 2.5;

/// 2026-03-02 09:59:58 UTC.
const NEAR_TEN: i64 = 1_772_445_598;

/// Runs with `-c config` and `args` in UTC, the clock at `now` if given: exit code, output and
/// seconds taken.
fn timed(
    s: &Sandbox,
    config: &Path,
    args: &[&str],
    now: Option<i64>,
) -> (Option<i32>, String, f64) {
    let mut command = s.with_config(config, args);
    command.env("TZ", "UTC");
    if let Some(now) = now {
        command.env("GLACIER_BACKUP_NOW", now.to_string());
    }
    let started = Instant::now();
    let out = command.output().unwrap();
    (
        out.status.code(),
        output_text(&out),
        started.elapsed().as_secs_f64(),
    )
}

/// A 3 MiB file of random bytes (nothing to compress away) at `data/file.bin`.
fn source(s: &Sandbox) -> (std::path::PathBuf, Vec<u8>) {
    let file = s.path("data/file.bin");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let bytes = random_bytes(SIZE, 29);
    fs::write(&file, &bytes).unwrap();
    (file, bytes)
}

fn backup_limited(s: &Sandbox, config: &Path) {
    let (code, out, seconds) = timed(s, config, &["--limit-upload", "1M"], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 1"), "{out}");
    assert!(
        seconds >= LIMITED_SECONDS,
        "3 MiB at 1 MiB/s took {seconds:.2} s"
    );
}

/// Restores `file` at 1 MiB/s: its bytes, checked to have taken the time the limit needs.
fn restore_limited(s: &Sandbox, config: &Path, file: &Path) -> Vec<u8> {
    let back = s.path("back");
    let args = [
        "--limit-download",
        "1M",
        "restore",
        "--to",
        back.to_str().unwrap(),
    ];
    let (code, out, seconds) = timed(
        s,
        config,
        &[&args[..], &[file.to_str().unwrap()]].concat(),
        None,
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        seconds >= LIMITED_SECONDS,
        "3 MiB at 1 MiB/s took {seconds:.2} s: {out}"
    );
    let placed = crate::support::files_below(&back);
    assert_eq!(placed.len(), 1, "{placed:?}");
    fs::read(&placed[0]).unwrap()
}

/// A directory: its archive, which a restore would otherwise read in place, is read through
/// the limit too.
#[test]
fn a_local_backup_and_restore_keep_to_their_limits_and_round_trip() {
    let s = Sandbox::new();
    let (file, bytes) = source(&s);
    let directory = file.parent().unwrap();
    let config = s
        .local()
        .path(directory, "upload_single_dir = true")
        .write(&s.path("config/backup.toml"));
    backup_limited(&s, &config);
    assert!(
        restore_limited(&s, &config, directory) == bytes,
        "restored bytes differ"
    );
}

#[test]
fn a_timetable_in_main_follows_the_runs_clock_and_the_command_line_overrides_it() {
    let s = Sandbox::new();
    let (file, _) = source(&s);
    // 64 KiB/s until 10:00, then none: 3 MiB would take 48 s at 64 KiB/s throughout.
    let config = s
        .local()
        .main("limit_upload", "00:00,64k 10:00,off")
        .path(&file, "upload_if_changed = true")
        .write(&s.path("config/backup.toml"));
    let (code, out, seconds) = timed(&s, &config, &[], Some(NEAR_TEN));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 1"), "{out}");
    assert!(
        (1.5..30.0).contains(&seconds),
        "limited until 10:00, two seconds after the start, then not: took {seconds:.2} s"
    );

    fs::write(&file, random_bytes(SIZE, 31)).unwrap();
    let (code, out, seconds) = timed(
        &s,
        &config,
        &["--limit-upload", "off"],
        Some(NEAR_TEN - 3600),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 1"), "{out}");
    assert!(
        seconds < 30.0,
        "--limit-upload off lifts [main]'s 64k: took {seconds:.2} s"
    );
}

#[test]
fn rates_that_cannot_be_read_are_refused_naming_where_they_were_written() {
    let s = Sandbox::new();
    let config = s.local_config("");
    let out = s
        .with_config(&config, &["--limit-upload", "fast", "list"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--limit-upload") && text.contains("e.g. 4M"),
        "{text}"
    );

    let config = s
        .local()
        .main("limit_download", "08:00,1M 23:00")
        .write(&s.path("config/bad.toml"));
    let out = s.with_config(&config, &["list"]).output().unwrap();
    let text = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("[main] limit_download")
            && text.contains("\"23:00\" is not a timetable entry"),
        "{text}"
    );
}

#[cfg(feature = "glacier")]
#[test]
fn a_vault_upload_keeps_to_the_limit() {
    let s = crate::support::setup::Setup::with_fake();
    let (file, bytes) = source(&s);
    let config = s
        .vault()
        .path(&file, "")
        .write(&s.path("config/vault.toml"));
    backup_limited(&s, &config);
    let archives = s.fake().archives(crate::support::setup::VAULT);
    assert_eq!(archives.len(), 1);
    assert!(
        archives[0].1.data.as_deref() == Some(&bytes[..]),
        "stored bytes differ"
    );
}

/// The test file backed up to `destination` and restored from it, both limited.
#[cfg(any(feature = "s3", feature = "azure"))]
fn limited_round_trip(s: &Sandbox, destination: crate::support::config::TestConfig) {
    let (file, bytes) = source(s);
    let config = destination
        .path(&file, "")
        .write(&s.path("config/limited.toml"));
    backup_limited(s, &config);
    assert!(
        restore_limited(s, &config, &file) == bytes,
        "restored bytes differ"
    );
}

#[cfg(all(feature = "s3", feature = "glacier"))]
#[test]
fn a_bucket_upload_and_restore_keep_to_their_limits_and_round_trip() {
    let s = crate::support::setup::Setup::with_fake().and_moto();
    limited_round_trip(&s, s.bucket());
}

#[cfg(feature = "azure")]
#[test]
fn a_container_upload_and_restore_keep_to_their_limits_and_round_trip() {
    let s = crate::support::setup::Setup::with_azurite();
    limited_round_trip(&s, s.container("Cool"));
}

/// Under an upload limit, a multipart archive's progress moves with the bytes the limit lets
/// through, not with the parts taken: at no moment does it show more than 4 MiB a second (plus
/// the bucket's first tenth of a second and the pieces waiting their turn), and it ends whole.
/// Counted as parts are taken, it would show 4 parts (4 MiB) at once.
#[cfg(feature = "glacier")]
#[tokio::test(flavor = "multi_thread")]
async fn progress_follows_the_upload_limit_not_the_parts_taken() {
    use glacier_backup::archiver::bandwidth::Throttle;
    use glacier_backup::archiver::SourceKind;
    use glacier_backup::backup::{run_backup, RunOptions};
    use glacier_backup::candidate::PathCandidate;
    use glacier_backup::ledger::Ledger;
    use glacier_backup::resolve::Planned;
    use glacier_backup_glacier::{GlacierArchiver, GlacierSettings};
    use std::sync::{Arc, Mutex};

    let fake = fake_glacier::FakeGlacier::start();
    fake.create_vault("v");
    let mut settings = GlacierSettings::from_config(None, Some("v"), None).unwrap();
    settings.connection.region = Some("us-east-1".into());
    settings.connection.endpoint_url = Some(fake.endpoint.clone());
    settings.connection.credentials = Some(crate::support::moto::test_credentials());
    settings.connection.concurrency = 4;
    settings.part_size = Some(1 << 20);
    let limit = Throttle::per_second(4 << 20);
    let bandwidth = glacier_backup::archiver::Bandwidth {
        upload: limit.clone(),
        download: Default::default(),
    };
    let glacier = GlacierArchiver::new(settings).with_bandwidth(bandwidth);

    let s = Sandbox::new();
    let file = s.path("big.bin");
    fs::write(&file, random_bytes(12 * MIB, 5)).unwrap();
    let shown = Arc::new(Shown::default());
    let options = RunOptions {
        progress: Some(shown.clone()),
        upload_limit: limit,
        ..RunOptions::default()
    };
    let items = [Planned {
        candidate: Arc::new(PathCandidate::new(file, SourceKind::File)),
        upload_if_changed: false,
        chain: None,
    }];
    let mut ledger = Ledger::in_memory().unwrap();
    let report = run_backup(&items, &mut ledger, &glacier, &options)
        .await
        .unwrap();
    assert_eq!(report.uploaded.len(), 1, "{report:?}");

    let samples = shown.samples.lock().unwrap().clone();
    let (last_at, last) = *samples.last().unwrap();
    assert_eq!(last, 12 * MIB as u64, "the item ends whole");
    assert!(last_at >= 2.5, "12 MiB at 4 MiB/s ended at {last_at:.2} s");
    for (at, bytes) in samples {
        let most = 4.0 * at + 0.4 + 1.0 + 0.25;
        assert!(
            (bytes as f64 / MIB as f64) <= most,
            "{bytes} bytes shown at {at:.2} s: more than the limit let through ({samples:?})",
            samples = shown.samples.lock().unwrap()
        );
    }

    /// Every advance, timed from the item's start: (seconds, bytes shown so far).
    #[derive(Debug, Default)]
    struct Shown {
        samples: Arc<Mutex<Vec<(f64, u64)>>>,
    }
    struct ShownItem(Arc<Mutex<Vec<(f64, u64)>>>, std::time::Instant);
    impl glacier_backup::progress::ItemProgress for ShownItem {
        fn advance(&self, bytes: u64) {
            let mut samples = self.0.lock().unwrap();
            let before = samples.last().map_or(0, |s| s.1);
            samples.push((self.1.elapsed().as_secs_f64(), before + bytes));
        }
    }
    impl glacier_backup::progress::Progress for Shown {
        fn item(&self, _: &str, _: u64) -> Box<dyn glacier_backup::progress::ItemProgress> {
            Box::new(ShownItem(self.samples.clone(), std::time::Instant::now()))
        }
    }
}
