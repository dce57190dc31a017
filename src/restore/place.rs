//! Putting a checked download in place: a file renamed over its target, a directory archive
//! extracted.

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
        // The tar's top directory, as the walk names it (`root` for `/`).
        Some(SourceKind::Directory) => row.path.file_name().or(Some("root".as_ref())),
    };
    PathBuf::from(name.unwrap_or(std::ffi::OsStr::new("restored")))
}

/// Puts a checked download in place: a file renamed over `target` (an existing older file is
/// replaced atomically), a directory archive extracted.
pub(super) async fn place(
    row: &UploadRecord,
    downloaded: PathBuf,
    dir: &Path,
    target: &Path,
    request: &RestoreRequest,
) -> Result<Outcome, RestoreFailure> {
    if row.kind != Some(SourceKind::Directory) {
        let plain = if row.encoding.is_plain() {
            downloaded.clone()
        } else {
            let (row, from) = (row.clone(), downloaded.clone());
            let identities = request.identities.clone();
            let decoded = tokio::task::spawn_blocking(move || {
                super::decode::decode_file(&row, &from, identities.as_deref())
            })
            .await
            .map_err(|e| RestoreFailure::Io {
                what: "decode",
                path: downloaded.clone(),
                source: std::io::Error::other(e),
            })?;
            match decoded {
                Ok(plain) => plain,
                Err(e @ RestoreFailure::Damaged { .. }) => {
                    // The stored bytes themselves are bad: another try reads the same.
                    let _ = std::fs::remove_file(&downloaded);
                    return Err(e);
                }
                // Kept for a run with the right identity, without a new download.
                Err(e) => return Err(e),
            }
        };
        std::fs::rename(&plain, target).map_err(|source| RestoreFailure::Placing {
            target: target.to_path_buf(),
            kept: plain.clone(),
            source,
        })?;
        if plain != downloaded {
            let _ = std::fs::remove_file(&downloaded);
        }
        return Ok(Outcome::Restored {
            path: target.to_path_buf(),
            rejected: 0,
            kept: 0,
        });
    }
    let file = super::decode::plain_reader(row, &downloaded, request.identities.as_deref())?;
    let encoded = !row.encoding.is_plain();
    let options = ExtractOptions {
        preserve_owners: is_root(),
        force: request.force,
        devices: request.devices && is_root(),
    };
    let dir_owned = dir.to_path_buf();
    // Every entry must lie under the directory's own name, as our archives write it.
    let top = final_name(row).into_os_string();
    let extracted = tokio::task::spawn_blocking(move || {
        extract_tar(std::io::BufReader::new(file), &dir_owned, &top, options)
    })
    .await
    .map_err(|e| RestoreFailure::Io {
        what: "extract into",
        path: dir.to_path_buf(),
        source: std::io::Error::other(e),
    })?
    .map_err(|e| {
        // age's authentication and zstd's checks fail as invalid or missing data.
        let undecodable = matches!(
            e.source.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        );
        if encoded && undecodable {
            super::decode::damaged(row, e.source)
        } else {
            RestoreFailure::Extract(e)
        }
    })?;
    let _ = std::fs::remove_file(&downloaded);
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
    })
}

/// Whether this process may hand files to other owners and make devices.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
