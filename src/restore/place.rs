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
        // The tar's top directory, as the walk names it (`root` for `/`).
        Some(SourceKind::Directory) => row.path.file_name().or(Some("root".as_ref())),
    };
    PathBuf::from(name.unwrap_or(std::ffi::OsStr::new("restored")))
}

/// Puts checked bytes in place: a file renamed over `target` (an existing older file is
/// replaced atomically), decoded first when it is compressed or encrypted; a directory archive
/// extracted. A partial download is removed once used; a stored file is only read.
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
    let forget_partial = || {
        if let Some(partial) = &partial {
            let _ = std::fs::remove_file(partial);
        }
    };
    if row.kind != Some(SourceKind::Directory) {
        let plain = match (&partial, row.encoding.is_plain()) {
            (Some(partial), true) => partial.clone(),
            _ => {
                let mut name = super::download::partial_path(dir, &row.archive_id).into_os_string();
                name.push(".plain");
                let decoded = PathBuf::from(name);
                let row = row.clone();
                let identities = request.identities.clone();
                let into = decoded.clone();
                let result = tokio::task::spawn_blocking(move || {
                    super::decode::decode_file(&row, &checked, &into, identities.as_deref())
                })
                .await
                .map_err(|e| RestoreFailure::Io {
                    what: "decode",
                    path: decoded.clone(),
                    source: std::io::Error::other(e),
                })?;
                match result {
                    Ok(()) => decoded,
                    Err(e @ RestoreFailure::Damaged { .. }) => {
                        // The stored bytes themselves are bad: another try reads the same.
                        forget_partial();
                        return Err(e);
                    }
                    // Kept for a run with the right identity, without a new download.
                    Err(e) => return Err(e),
                }
            }
        };
        std::fs::rename(&plain, target).map_err(|source| RestoreFailure::Placing {
            target: target.to_path_buf(),
            kept: plain.clone(),
            source,
        })?;
        if partial.as_ref() != Some(&plain) {
            forget_partial();
        }
        return Ok(Outcome::Restored {
            path: target.to_path_buf(),
            rejected: 0,
            kept: 0,
        });
    }
    if row.encoding.encrypted && row.plain_size.is_none() {
        // A row rebuilt from the destination (ours record the plain size at upload) has a
        // tree hash the destination gave, which proves nothing: age's authentication of every
        // chunk is checked before the first entry is extracted.
        let (row, identities) = (row.clone(), request.identities.clone());
        let checked = match &checked {
            Checked::Partial(path) => Checked::Partial(path.clone()),
            Checked::Stored(file) => Checked::Stored(
                file.try_clone()
                    .map_err(RestoreFailure::io("read", "the stored archive"))?,
            ),
        };
        let authenticated = tokio::task::spawn_blocking(move || {
            super::decode::authenticate(&row, &checked, identities.as_deref())
        })
        .await
        .map_err(|e| RestoreFailure::Io {
            what: "decrypt",
            path: dir.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        if let Err(e) = authenticated {
            if matches!(e, RestoreFailure::Damaged { .. }) {
                // The stored bytes themselves are bad: another try reads the same.
                forget_partial();
            }
            return Err(e);
        }
    }
    let file = super::decode::plain_reader(row, &checked, request.identities.as_deref())?;
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
            forget_partial();
            super::decode::damaged(row, e.source)
        } else {
            RestoreFailure::Extract(e)
        }
    })?;
    forget_partial();
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
