//! Restores: pick uploads from the ledger, make cold archives readable, download them with their
//! tree hash checked, and put them back (files by name, directories extracted safely).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use glacier_backup_archiver::treehash::TreeHasher;
use glacier_backup_archiver::{
    ArchiveRef, Archiver, Error as ArchiverError, RestoreOptions, RestoreState, SourceKind,
};

use crate::extract::{extract_tar, Extracted};
use crate::ledger::{Ledger, LedgerError, UploadRecord};

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Source paths: each path's latest upload, and the latest upload of everything below it.
    pub paths: Vec<PathBuf>,
    /// Archive ids or keys, restored whatever their path.
    pub archive_ids: Vec<String>,
    /// Directory that receives the restored files.
    pub to: PathBuf,
    /// Retrieval tier and how long restored copies stay readable.
    pub options: RestoreOptions,
    /// Poll until cold archives are readable (instead of returning after requesting), for at
    /// most this long.
    pub wait: Option<Duration>,
}

/// A restore that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Nothing in the ledger matches.
    #[error("nothing to restore: no upload in the ledger matches {0}")]
    NothingMatches(String),
}

/// What happened to one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Restored to this path; `rejected` archive entries were refused as unsafe.
    Restored {
        /// Where it went.
        path: PathBuf,
        /// Unsafe entries that were skipped.
        rejected: usize,
    },
    /// A retrieval is under way; run again later.
    Pending,
    /// It failed; the message says why.
    Failed(String),
}

/// The latest upload of each selected source path, plus the uploads named by id.
pub fn select(
    ledger: &dyn Ledger,
    request: &RestoreRequest,
) -> Result<Vec<UploadRecord>, RestoreError> {
    let all = ledger.uploads()?;
    let mut latest: std::collections::BTreeMap<PathBuf, UploadRecord> = Default::default();
    for row in &all {
        let wanted = request
            .paths
            .iter()
            .any(|p| row.path == *p || row.path.starts_with(p));
        if wanted {
            latest.insert(row.path.clone(), row.clone());
        }
    }
    let mut chosen: Vec<UploadRecord> = latest.into_values().collect();
    for id in &request.archive_ids {
        match all.iter().find(|r| &r.archive_id == id) {
            Some(row) if !chosen.contains(row) => chosen.push(row.clone()),
            Some(_) => {}
            None => return Err(RestoreError::NothingMatches(format!("archive id {id:?}"))),
        }
    }
    if chosen.is_empty() {
        let named: Vec<String> = request
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        return Err(RestoreError::NothingMatches(named.join(", ")));
    }
    Ok(chosen)
}

fn archive_ref(row: &UploadRecord) -> Result<ArchiveRef, String> {
    match (row.size, row.tree_hash) {
        (Some(size), Some(tree_hash)) => Ok(ArchiveRef {
            archive_id: row.archive_id.clone(),
            size,
            tree_hash,
            description: row.description.clone(),
        }),
        _ => Err(format!(
            "{}: the ledger row (written by the Python tool) has no size or tree hash to check a \
             download against",
            row.path.display()
        )),
    }
}

/// Restores one upload, requesting a retrieval first when the archive is cold.
pub async fn restore_one(
    archiver: &dyn Archiver,
    row: &UploadRecord,
    request: &RestoreRequest,
) -> Outcome {
    let archive = match archive_ref(row) {
        Ok(a) => a,
        Err(message) => return Outcome::Failed(message),
    };
    match readable(archiver, &archive, request).await {
        Ok(true) => {}
        Ok(false) => return Outcome::Pending,
        Err(e) => return Outcome::Failed(crate::run::error_chain(&e)),
    }
    match download_and_place(archiver, row, &archive, &request.to).await {
        Ok((path, extracted)) => Outcome::Restored {
            path,
            rejected: extracted.map_or(0, |e| e.rejected.len()),
        },
        Err(message) => Outcome::Failed(message),
    }
}

/// Makes the archive readable: asks for a retrieval if none is under way, and with `wait` polls
/// (with backoff) until it is done or the time is up.
async fn readable(
    archiver: &dyn Archiver,
    archive: &ArchiveRef,
    request: &RestoreRequest,
) -> Result<bool, ArchiverError> {
    if !archiver.capabilities().needs_restore {
        return Ok(true);
    }
    let mut state = archiver.restore_state(archive).await?;
    if state == RestoreState::NotRequested {
        state = archiver.request_restore(archive, &request.options).await?;
        tracing::info!(
            "{}: retrieval requested ({:?} tier)",
            archive.archive_id,
            request.options.tier
        );
    }
    let Some(limit) = request.wait else {
        return Ok(state == RestoreState::Ready);
    };
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_secs(1);
    while state != RestoreState::Ready {
        if Instant::now() + pause > deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(300));
        state = archiver.restore_state(archive).await?;
    }
    Ok(true)
}

fn final_name(row: &UploadRecord) -> PathBuf {
    row.path
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(&row.name))
}

/// Downloads into a temporary file beside the destination, checks size and tree hash, then
/// renames a file into place (never over an existing one) or extracts a directory archive.
async fn download_and_place(
    archiver: &dyn Archiver,
    row: &UploadRecord,
    archive: &ArchiveRef,
    to: &Path,
) -> Result<(PathBuf, Option<Extracted>), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".glacier-backup-restore-")
        .tempfile_in(to)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", to.display()))?;
    let mut stream = archiver
        .get(archive, None)
        .await
        .map_err(|e| crate::run::error_chain(&e))?;
    let mut hasher = TreeHasher::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| crate::run::error_chain(&e))?;
        hasher.update(&chunk);
        temp.write_all(&chunk)
            .map_err(|e| format!("cannot write {}: {e}", temp.path().display()))?;
    }
    let size = hasher.len();
    let hash = hasher.finish();
    if size != archive.size || hash != archive.tree_hash {
        return Err(format!(
            "{}: the download does not match the ledger (size {size} vs {}, tree hash {hash} vs \
             {}); nothing was restored",
            archive.archive_id, archive.size, archive.tree_hash
        ));
    }
    temp.as_file()
        .sync_all()
        .map_err(|e| format!("cannot sync {}: {e}", temp.path().display()))?;
    match row.kind {
        Some(SourceKind::Directory) => {
            let file = temp.reopen().map_err(|e| e.to_string())?;
            let owners = is_root();
            let extracted = tokio::task::spawn_blocking({
                let to = to.to_path_buf();
                move || extract_tar(std::io::BufReader::new(file), &to, owners)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| crate::run::error_chain(&e))?;
            Ok((to.join(final_name(row)), Some(extracted)))
        }
        _ => {
            let target = to.join(final_name(row));
            temp.persist_noclobber(&target).map_err(|e| {
                format!(
                    "cannot put the file at {}: {}; move the existing file away or restore elsewhere",
                    target.display(),
                    e.error
                )
            })?;
            Ok((target, None))
        }
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user; only root may hand files to other owners.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
