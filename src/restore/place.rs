//! Putting a checked download in place: a file renamed over its target, a directory archive
//! extracted.

use super::download::Checked;
use super::extract::{extract_tar, ExtractOptions};
use super::*;

pub(super) fn final_name(row: &UploadRecord) -> PathBuf {
    // A row of the Python tool does not say whether it holds a file or a tar of a directory:
    // its archive name (`photos.tar`, `notes.txt`) is the honest name for the bytes.
    // Only a last component, never `..`, is taken from either.
    let archive_name = Path::new(&row.name).file_name();
    let name = match row.kind {
        None => archive_name.or(row.path.file_name()),
        Some(SourceKind::File) => row.path.file_name().or(archive_name),
        // The tar's top directory, as the walk names it.
        Some(SourceKind::Directory) => Some(crate::candidate::tar_top_name(&row.path)),
    };
    PathBuf::from(name.unwrap_or(std::ffi::OsStr::new("restored")))
}

/// Puts checked bytes in place: a file renamed over `target` (an existing older file is
/// replaced atomically), decoded first when it is compressed or encrypted; a directory archive
/// extracted. A partial download is removed once used, or once found damaged (another try
/// would read the same bytes); kept otherwise, for the next run. A stored file is only read.
pub(super) async fn place(
    row: &UploadRecord,
    checked: Checked,
    dir: &Path,
    target: &Path,
    request: &RestoreRequest,
) -> Result<Outcome, RestoreFailure> {
    let partial = match &checked {
        Checked::Partial(path) => Some(path.clone()),
        Checked::Stored(_) => None,
    };
    let placed = if row.kind == Some(SourceKind::Directory) {
        extract(row, checked, dir, target, request).await
    } else {
        place_file(row, checked, dir, target, request).await
    };
    if let (Some(partial), Ok(_) | Err(RestoreFailure::Damaged { .. })) = (&partial, &placed) {
        // Renamed into place already when it was the file itself.
        let _ = std::fs::remove_file(partial);
    }
    placed
}

/// Runs `work` on the blocking pool; `what` and `path` name it if the pool loses it.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    path: &Path,
    work: impl FnOnce() -> Result<T, RestoreFailure> + Send + 'static,
) -> Result<T, RestoreFailure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RestoreFailure::Io {
            what,
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?
}

async fn place_file(
    row: &UploadRecord,
    checked: Checked,
    dir: &Path,
    target: &Path,
    request: &RestoreRequest,
) -> Result<Outcome, RestoreFailure> {
    let plain = match checked {
        Checked::Partial(partial) if row.encoding.is_plain() => partial,
        checked => {
            let mut name = super::download::partial_path(dir, &row.archive_id).into_os_string();
            name.push(".plain");
            let decoded = PathBuf::from(name);
            let (row, identities, into) =
                (row.clone(), request.identities.clone(), decoded.clone());
            let trust = request.trust_destination;
            blocking("decode", &decoded, move || {
                // Who wrote it is in the header: a forgery is refused before it is decoded.
                super::decode::check_authorship(&row, &checked, identities.as_deref(), trust)?;
                super::decode::decode_file(&row, &checked, &into, identities.as_deref())
            })
            .await?;
            decoded
        }
    };
    std::fs::rename(&plain, target).map_err(|source| RestoreFailure::Placing {
        target: target.to_path_buf(),
        kept: plain.clone(),
        source,
    })?;
    Ok(Outcome::Restored {
        path: target.to_path_buf(),
        rejected: 0,
        kept: 0,
        partial: None,
    })
}

async fn extract(
    row: &UploadRecord,
    checked: Checked,
    dir: &Path,
    target: &Path,
    request: &RestoreRequest,
) -> Result<Outcome, RestoreFailure> {
    let options = ExtractOptions {
        preserve_owners: is_root(),
        force: request.force,
        devices: request.devices && is_root(),
    };
    // Every entry must lie under the directory's own name, as our archives write it.
    let top = final_name(row).into_os_string();
    let (row_owned, identities, dir_owned) =
        (row.clone(), request.identities.clone(), dir.to_path_buf());
    let trust = request.trust_destination;
    let extracted = blocking("extract into", dir, move || {
        let row = &row_owned;
        // Who wrote it is in the header: a forgery is refused before anything is read.
        super::decode::check_authorship(row, &checked, identities.as_deref(), trust)?;
        if row.encoding.encrypted && super::decode::rebuilt_from_destination(row) {
            // A tree hash the destination gave proves nothing: age's authentication of every
            // chunk is checked before the first entry is extracted.
            super::decode::authenticate(row, &checked, identities.as_deref())?;
        }
        let file = super::decode::plain_reader(row, &checked, identities.as_deref())?;
        extract_tar(std::io::BufReader::new(file), &dir_owned, &top, options).map_err(|e| {
            // age's authentication and zstd's checks fail as invalid or missing data.
            let undecodable = matches!(
                e.source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            );
            if !row.encoding.is_plain() && undecodable {
                super::decode::damaged(row, e.source)
            } else {
                RestoreFailure::Extract(e)
            }
        })
    })
    .await?;
    for name in &extracted.kept {
        tracing::warn!(
            "{}: kept, newer than the archived one (--force replaces it)",
            shown(dir.join(name))
        );
    }
    Ok(Outcome::Restored {
        path: target.to_path_buf(),
        rejected: extracted.rejected.len(),
        kept: extracted.kept.len(),
        partial: None,
    })
}

/// Whether this process may hand files to other owners and make devices.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
