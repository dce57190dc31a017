//! Downloads in ranged chunks into a partial file that survives an interruption, checked
//! against the recorded size and tree hash.

use std::io::{Read, Seek, SeekFrom, Write};

use futures::StreamExt;
use glacier_backup_archiver::treehash::TreeHasher;
use sha2::Digest;

use super::*;

/// The download in progress for an archive: a fixed name in the destination directory, so an
/// interrupted restore continues where it stopped.
pub(super) fn partial_path(dir: &Path, archive_id: &str) -> PathBuf {
    let digest = sha2::Sha256::digest(archive_id.as_bytes());
    dir.join(format!(
        ".glacier-backup-restore-{}.partial",
        hex::encode(&digest[..12])
    ))
}

/// Downloads the archive into its partial file, continuing from what an earlier run left,
/// and checks size and tree hash. On a mismatch the partial file is deleted; on any other
/// failure it is kept for the next run. `durable`: the file will be renamed into place as the
/// restored file, so it is flushed to disk; otherwise it is read once and deleted, and a
/// partial file left by a crash is checked by its tree hash anyway.
pub(super) async fn download(
    archiver: &dyn Archiver,
    archive: &ArchiveRef,
    dir: &Path,
    chunk_size: u64,
    progress: &dyn crate::progress::ItemProgress,
    durable: bool,
) -> Result<PathBuf, RestoreFailure> {
    let chunk_size = chunk_size.max(1 << 20) & !((1 << 20) - 1);
    let path = partial_path(dir, &archive.archive_id);
    let io = |what: &'static str| RestoreFailure::io(what, &path);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("open"))?;
    let ranged = archiver.capabilities().ranged_reads;
    let mut partial = Partial::resume(&mut file, &path, archive, ranged)?;
    progress.advance(partial.have);
    let ranges = if ranged && archive.size > 0 {
        (partial.have..archive.size)
            .step_by(chunk_size as usize)
            .map(|start| Some(start..archive.size.min(start + chunk_size)))
            .collect()
    } else {
        vec![None]
    };
    let fetched = partial
        .fetch(archiver, archive, ranges, &mut file, &path, progress)
        .await;
    if let Err(failure @ RestoreFailure::DamagedInTransit(_)) = fetched {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(failure);
    }
    fetched?;
    let size = partial.hasher.len();
    let hash = partial.hasher.finish();
    if size != archive.size || hash != archive.tree_hash {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(RestoreFailure::Mismatch {
            archive_id: archive.archive_id.clone(),
            size,
            expected_size: archive.size,
            tree_hash: hash,
            expected_tree_hash: archive.tree_hash,
        });
    }
    if durable {
        file.sync_all().map_err(io("sync"))?;
    }
    Ok(path)
}

/// What the partial file holds so far, and the tree hash over it.
struct Partial {
    have: u64,
    hasher: TreeHasher,
}

impl Partial {
    /// Keeps the whole MiBs an earlier run left (so ranged requests stay tree-hash aligned),
    /// hashes them again, and leaves the file positioned after them; without ranged reads,
    /// starts over.
    fn resume(
        file: &mut std::fs::File,
        path: &Path,
        archive: &ArchiveRef,
        ranged: bool,
    ) -> Result<Partial, RestoreFailure> {
        let io = |what: &'static str| RestoreFailure::io(what, path);
        let kept = file.metadata().map_err(io("read"))?.len();
        let have = if ranged && kept <= archive.size {
            kept - kept % (1 << 20)
        } else {
            0
        };
        file.set_len(have).map_err(io("truncate"))?;
        let mut hasher = TreeHasher::new();
        if have > 0 {
            tracing::info!(
                "{}: continuing an interrupted download at {} of {}",
                archive.archive_id,
                crate::display_size(have),
                crate::display_size(archive.size)
            );
            let mut buffer = vec![0; 1 << 20];
            let mut reader = (&*file).take(have);
            loop {
                match reader.read(&mut buffer).map_err(io("read"))? {
                    0 => break,
                    n => hasher.update(&buffer[..n]),
                }
            }
        }
        file.seek(SeekFrom::Start(have)).map_err(io("seek in"))?;
        Ok(Partial { have, hasher })
    }

    /// Appends each range's bytes to the file and the hash.
    async fn fetch(
        &mut self,
        archiver: &dyn Archiver,
        archive: &ArchiveRef,
        ranges: Vec<Option<std::ops::Range<u64>>>,
        file: &mut std::fs::File,
        path: &Path,
        progress: &dyn crate::progress::ItemProgress,
    ) -> Result<(), RestoreFailure> {
        for range in ranges {
            let mut stream = archiver
                .get(archive, range)
                .await
                .map_err(|e| stopped(e, self.have, archive.size))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| stopped(e, self.have, archive.size))?;
                self.hasher.update(&chunk);
                // The error is built only on failure: no path copy per chunk.
                file.write_all(&chunk)
                    .map_err(|e| RestoreFailure::io("write", path)(e))?;
                self.have += chunk.len() as u64;
                progress.advance(chunk.len() as u64);
            }
        }
        Ok(())
    }
}

/// What a failed request means for this download, `have` bytes of `size` in.
fn stopped(source: glacier_backup_archiver::Error, have: u64, size: u64) -> RestoreFailure {
    match source {
        // The destination refused for good (a range past the end of an archive shorter than
        // recorded, an archive gone): running again would not continue anything.
        glacier_backup_archiver::Error::Remote {
            temporary: false, ..
        }
        | glacier_backup_archiver::Error::NotFound { .. } => RestoreFailure::Archiver(source),
        // The bytes received are not the archive's: continuing from them would fail the whole
        // check at the end.
        glacier_backup_archiver::Error::Integrity { .. } => {
            RestoreFailure::DamagedInTransit(source)
        }
        source => RestoreFailure::Interrupted { have, size, source },
    }
}

/// The checked bytes of an archive, ready to be put in place.
pub(super) enum Checked {
    /// Downloaded into this partial file, which is ours to rename or delete.
    Partial(PathBuf),
    /// The destination's own file (a local directory), read where it is: never moved or
    /// deleted.
    Stored(std::fs::File),
}

/// Checks the size and tree hash of an archive the destination keeps as a file here, reading
/// it through the already open file that the restore then reads from again, so the bytes
/// checked are the bytes restored (short of someone writing into that very file meanwhile,
/// which age's authentication still catches but for a whole new file made for the recipients).
pub(super) async fn check_stored(
    mut file: std::fs::File,
    archive: &ArchiveRef,
    progress: &dyn crate::progress::ItemProgress,
) -> Result<Checked, RestoreFailure> {
    let archive_id = archive.archive_id.clone();
    let (file, size, hash) = tokio::task::spawn_blocking(move || {
        // Pieces of 8 MiB, each tree-hashed on every core, joined as parts are.
        const PIECE: usize = 8 << 20;
        let mut tree = glacier_backup_archiver::treehash::TreeHashBuilder::new();
        let mut buffer = vec![0; PIECE];
        let mut size = 0u64;
        loop {
            let mut filled = 0;
            while filled < PIECE {
                match file.read(&mut buffer[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 && size > 0 {
                break;
            }
            let piece = glacier_backup_archiver::treehash::tree_hash(&buffer[..filled]);
            tree.push_part(filled as u64, piece)
                .map_err(std::io::Error::other)?;
            size += filled as u64;
            if filled < PIECE {
                break;
            }
        }
        file.seek(SeekFrom::Start(0))?;
        Ok::<_, std::io::Error>((file, size, tree.finish()))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|source| RestoreFailure::Io {
        what: "read",
        path: PathBuf::from(&archive_id),
        source,
    })?;
    if size != archive.size || hash != archive.tree_hash {
        return Err(RestoreFailure::Mismatch {
            archive_id,
            size,
            expected_size: archive.size,
            tree_hash: hash,
            expected_tree_hash: archive.tree_hash,
        });
    }
    progress.advance(size);
    Ok(Checked::Stored(file))
}
