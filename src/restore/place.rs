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
        std::fs::rename(&downloaded, target).map_err(|source| RestoreFailure::Placing {
            target: target.to_path_buf(),
            kept: downloaded.clone(),
            source,
        })?;
        return Ok(Outcome::Restored {
            path: target.to_path_buf(),
            rejected: 0,
            kept: 0,
        });
    }
    let file = std::fs::File::open(&downloaded).map_err(RestoreFailure::io("read", &downloaded))?;
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
    .map_err(RestoreFailure::Extract)?;
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
