//! glacier-backup used as a library, with no config file: the config is built in code, a
//! backup and a restore run with this program's own progress sink and logging, and their
//! reports are read. Everything happens in a temporary directory (the local backend), so it
//! runs anywhere:
//!
//!     cargo run --example library
//!
//! For a vault or a bucket, put a `glacier` or `s3` section in `backend_sections` instead
//! (the same keys as in a config file; see the README).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use glacier_backup::archiver::settings::Section;
use glacier_backup::backup::{run_backup, RunOptions};
use glacier_backup::config::{Config, PathRule};
use glacier_backup::ledger::{Ledger, LedgerLock};
use glacier_backup::progress::{ItemProgress, Progress};
use glacier_backup::resolve::resolve;
use glacier_backup::restore::{restore_all, select, Destination, Outcome, RestoreRequest};

/// This program's progress sink: counts archives and bytes, and says when each archive starts.
#[derive(Debug, Default)]
struct Tally {
    items: AtomicUsize,
    bytes: Arc<AtomicU64>,
}

impl Progress for Tally {
    fn batch(&self, items: usize) {
        println!("progress: {items} archive(s) to go");
    }

    fn item(&self, label: &str, bytes: u64) -> Box<dyn ItemProgress> {
        self.items.fetch_add(1, Ordering::Relaxed);
        println!("progress: {label} ({bytes} bytes)");
        Box::new(Bytes(Arc::clone(&self.bytes)))
    }
}

/// One archive's share of the tally: every byte read or sent is added as it goes.
struct Bytes(Arc<AtomicU64>);

impl ItemProgress for Bytes {
    fn advance(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The local backend storing into `archives`, a ledger of our choosing, and one directory
/// backed up whole (one archive), again when it changes.
fn config_in_code(archives: &Path, ledger: PathBuf, photos: &Path) -> Config {
    let mut config = Config::empty();
    config.backend = "local".into();
    config.ledger = Some(ledger);
    config.backend_sections.insert(
        "local".into(),
        Section::from_strings(
            "local",
            &[
                ("directory", &archives.display().to_string()),
                ("create_directory", "true"),
            ],
        ),
    );
    config.paths.push(PathRule {
        upload_if_changed: true,
        ..PathRule::single(photos.to_path_buf())
    });
    config
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The library logs through `tracing`; the program chooses where and how much.
    tracing_subscriber::fmt()
        .with_env_filter("glacier_backup=info")
        .with_writer(std::io::stderr)
        .init();

    let work = tempfile::tempdir()?;
    let photos = work.path().join("photos");
    std::fs::create_dir_all(photos.join("2019"))?;
    std::fs::write(photos.join("2019/IMG_0412.jpg"), vec![7u8; 300_000])?;
    std::fs::write(photos.join("notes.txt"), "taken in March")?;

    let config = config_in_code(
        &work.path().join("archives"),
        work.path().join("ledger.sqlite3"),
        &photos,
    );
    let archiver = config.open_archiver()?;
    let ledger_file = config.ledger_path(&archiver.target(), None);
    // One run at a time per ledger, as the binary does.
    let _lock = LedgerLock::acquire(&ledger_file)?;
    let mut ledger = Ledger::open(&ledger_file)?;
    archiver.check().await?;

    let tally = Arc::new(Tally::default());
    let options = RunOptions {
        progress: Some(tally.clone()),
        parallel_uploads: config.parallel_uploads,
        format: config.format.clone(),
        ..RunOptions::default()
    };
    // The files this program writes are left out of what is backed up.
    let planned = resolve(&config.paths, std::slice::from_ref(&ledger_file));
    let report = run_backup(&planned, &mut ledger, archiver.as_ref(), &options).await?;
    for uploaded in &report.uploaded {
        let record = uploaded.record.as_ref().expect("not a dry run");
        println!(
            "backed up {} as {} ({} bytes, {})",
            uploaded.path.display(),
            record.archive_id,
            record.size.unwrap_or(0),
            uploaded.decision
        );
    }
    assert!(report.failed.is_empty(), "failed: {:?}", report.failed);

    let restored_into = work.path().join("restored");
    std::fs::create_dir_all(&restored_into)?;
    let request = RestoreRequest {
        paths: vec![photos.clone()],
        progress: Some(tally.clone()),
        ..RestoreRequest::new(Destination::Into(restored_into.clone()))
    };
    let rows = select(&ledger, &request)?;
    let restored = restore_all(archiver.as_ref(), &mut ledger, &rows, &request).await?;
    for (row, outcome) in &restored.archives {
        match outcome {
            Outcome::Restored { path, .. } => {
                println!("restored {} to {}", row.path.display(), path.display())
            }
            Outcome::Pending => println!("{}: retrieval under way", row.path.display()),
            Outcome::Failed(failure) => println!("{}: {failure}", row.path.display()),
        }
    }
    assert_eq!(restored.restored(), 1, "one archive back");
    let back = std::fs::read(restored_into.join("photos/2019/IMG_0412.jpg"))?;
    assert_eq!(back, vec![7u8; 300_000], "the same bytes");
    println!(
        "progress saw {} archive(s), {} bytes",
        tally.items.load(Ordering::Relaxed),
        tally.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
