//! A directory candidate's fingerprint and its tar archive, both from one walk.

use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{
    copy_exact, walk_tree, ArchiveSink, EntryType, Fingerprint, Scan, SourceError, TAR_BLOCK,
};

pub(super) fn scan_tree(root: &Path, skip: &[PathBuf]) -> Result<Scan, SourceError> {
    let mut digest = Sha256::new();
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let mut newest = i128::MIN;
    let mut size_estimate = 2 * TAR_BLOCK;
    walk_tree(root, skip, |entry| {
        let kind = entry.entry_type();
        if kind == EntryType::Special {
            return Ok(());
        }
        let name = entry.archive_path.as_os_str().as_bytes();
        let link = match kind {
            EntryType::Symlink => entry.read_link()?.into_vec(),
            _ => Vec::new(),
        };
        let size = if kind == EntryType::File {
            entry.meta.len()
        } else {
            0
        };
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name);
        digest.update([kind as u8]);
        digest.update(size.to_le_bytes());
        // A directory's mtime only says its entries changed, which the entries themselves show;
        // leaving it out keeps unrelated activity (a SQLite journal coming and going) from
        // counting as a change.
        if kind != EntryType::Dir {
            digest.update(entry.meta.mtime_ns().to_le_bytes());
        }
        digest.update(entry.meta.mode().to_le_bytes());
        digest.update(entry.meta.uid().to_le_bytes());
        digest.update(entry.meta.gid().to_le_bytes());
        digest.update((link.len() as u64).to_le_bytes());
        digest.update(&link);
        entries += 1;
        bytes += size;
        newest = newest.max(entry.meta.mtime_ns());
        size_estimate += TAR_BLOCK + size.div_ceil(TAR_BLOCK) * TAR_BLOCK;
        let name_len = name.len() + usize::from(kind == EntryType::Dir && !name.ends_with(b"/"));
        for long in [name_len, link.len()] {
            if long >= 100 {
                size_estimate += TAR_BLOCK + (long as u64 + 1).div_ceil(TAR_BLOCK) * TAR_BLOCK;
            }
        }
        Ok(())
    })?;
    Ok(Scan {
        fingerprint: Fingerprint {
            entries,
            bytes,
            newest_mtime_ns: newest,
            digest: digest.finalize().into(),
        },
        size_estimate,
    })
}

/// A deterministic GNU tar of `root`: entries named from the directory's own name down, sorted
/// by name; modes, owners (numeric) and mtimes kept; symlinks stored as links; no access times
/// or user names, so the same tree always gives the same bytes.
pub(super) fn write_tar(
    root: &Path,
    skip: &[PathBuf],
    out: &mut dyn ArchiveSink,
) -> Result<(), SourceError> {
    let mut builder = tar::Builder::new(out);
    walk_tree(root, skip, |entry| {
        let kind = entry.entry_type();
        let fail = |e: io::Error| SourceError::from_io(e, &entry.path);
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.meta.mode() & 0o7777);
        header.set_uid(u64::from(entry.meta.uid()));
        header.set_gid(u64::from(entry.meta.gid()));
        header.set_mtime(u64::try_from(entry.meta.mtime()).unwrap_or(0));
        header.set_size(0);
        match kind {
            EntryType::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                // GNU tar marks directories with a trailing slash; so do we, for every one.
                let mut name = entry.archive_path.clone().into_os_string();
                if !name.as_bytes().ends_with(b"/") {
                    name.push("/");
                }
                builder
                    .append_data(&mut header, &name, io::empty())
                    .map_err(fail)?;
            }
            EntryType::Symlink => {
                let target = entry.read_link()?;
                header.set_entry_type(tar::EntryType::Symlink);
                builder
                    .append_link(&mut header, &entry.archive_path, target)
                    .map_err(fail)?;
            }
            EntryType::File => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(entry.meta.len());
                let mut reader = entry.open_exact()?;
                // The header (and any long-name record) goes through the builder with no data;
                // the contents follow with large reads, then the padding to a whole block.
                builder
                    .append_data(&mut header, &entry.archive_path, io::empty())
                    .map_err(fail)?;
                let out = builder.get_mut();
                let written = copy_exact(&mut reader, &mut **out, &entry.path)?;
                let padding = (TAR_BLOCK - written % TAR_BLOCK) % TAR_BLOCK;
                out.write_all(&[0u8; TAR_BLOCK as usize][..padding as usize])
                    .map_err(fail)?;
                reader.finish()?;
            }
            EntryType::Special => {
                tracing::warn!(
                    "skipping {}: sockets, fifos and devices are not archived",
                    glacier_backup_archiver::shown(&entry.path)
                );
            }
        }
        Ok(())
    })?;
    builder
        .into_inner()
        .map_err(|e| SourceError::from_io(e, root))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::candidate::{Candidate, PathCandidate};
    use glacier_backup_archiver::SourceKind;

    #[test]
    fn size_estimate_is_exact_for_ordinary_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a"), vec![1u8; 1000]).unwrap();
        std::fs::write(root.join("sub/b"), b"").unwrap();
        std::fs::write(root.join("sub").join("x".repeat(150)), b"long").unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let candidate = PathCandidate::new(root, SourceKind::Directory);
        let scan = candidate.scan().unwrap();
        let mut tar = Vec::new();
        candidate.write_archive(&mut tar).unwrap();
        assert_eq!(scan.size_estimate, tar.len() as u64);
        assert_eq!(scan.fingerprint.entries, 6);
        assert_eq!(scan.fingerprint.bytes, 1004);
    }
}
