//! Safe extraction of tar archives for restores: nothing is written outside the destination.
//!
//! Entries with absolute names or `..` components, and links whose target would leave the
//! destination, are refused and reported, not silently dropped. The tar crate's `unpack_in`
//! then also refuses to write through a symlink that an earlier entry created, so a
//! "symlink, then file under it" pair cannot escape either.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// An entry that was not extracted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The entry's name as stored in the archive.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// What an extraction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Entries written.
    pub written: u64,
    /// Entries refused.
    pub rejected: Vec<Rejected>,
}

/// The archive could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("extracting into {dest}: {source}")]
pub struct ExtractError {
    /// The destination directory.
    pub dest: PathBuf,
    /// What failed.
    pub source: std::io::Error,
}

/// Where a link target ends up, relative to the destination root, if it stays inside it.
/// `base` is the directory (relative to the root) the target is resolved from.
fn stays_inside(base: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = base
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as i64;
    for component in target.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn check(entry: &tar::Entry<'_, impl Read>, name: &Path) -> Option<&'static str> {
    if name.is_absolute() {
        return Some("absolute name");
    }
    if name.components().any(|c| c == Component::ParentDir) {
        return Some("name contains '..'");
    }
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let Ok(Some(target)) = entry.link_name() else {
            return Some("link without a target");
        };
        // Symlinks resolve from their own directory; hard links from the archive root.
        let base = if kind.is_symlink() {
            name.parent().unwrap_or(Path::new(""))
        } else {
            Path::new("")
        };
        if !stays_inside(base, &target) {
            return Some("link points outside the destination");
        }
    }
    None
}

/// Extracts `archive` into `dest` (created if missing). Modes and mtimes are restored; owners
/// only with `preserve_owners` (meaningful when running as root).
pub fn extract_tar(
    archive: impl Read,
    dest: &Path,
    preserve_owners: bool,
) -> Result<Extracted, ExtractError> {
    let fail = |source| ExtractError {
        dest: dest.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(fail)?;
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(preserve_owners);
    archive.set_overwrite(true);
    let mut report = Extracted::default();
    for entry in archive.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let name = entry.path().map_err(fail)?.into_owned();
        let shown = name.to_string_lossy().into_owned();
        if let Some(reason) = check(&entry, &name) {
            tracing::warn!("not restoring archive entry {shown:?}: {reason}");
            report.rejected.push(Rejected {
                name: shown,
                reason,
            });
            continue;
        }
        let outside = match entry.unpack_in(dest) {
            Ok(written) => !written,
            // The tar crate has no typed error for this; it is the one refusal to report and
            // go on from, rather than fail the whole restore.
            Err(e) if e.to_string().contains("outside of destination") => true,
            Err(e) => return Err(fail(e)),
        };
        if outside {
            let reason = "it would be written outside the destination";
            tracing::warn!("not restoring archive entry {shown:?}: {reason}");
            report.rejected.push(Rejected {
                name: shown,
                reason,
            });
        } else {
            report.written += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an archive entry by entry, with raw names the tar crate's builder would refuse.
    fn raw_entry(
        out: &mut Vec<u8>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut header = tar::Header::new_gnu();
        {
            let bytes = header.as_old_mut();
            bytes.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                bytes.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn finish(mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn malicious_entries_restore_nothing_outside_and_are_reported() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let mut tar = Vec::new();
        raw_entry(
            &mut tar,
            "ok/file.txt",
            tar::EntryType::Regular,
            None,
            b"fine",
        );
        raw_entry(&mut tar, "/etc/evil", tar::EntryType::Regular, None, b"abs");
        raw_entry(
            &mut tar,
            "ok/../../escaped",
            tar::EntryType::Regular,
            None,
            b"dots",
        );
        raw_entry(
            &mut tar,
            "ok/out",
            tar::EntryType::Symlink,
            Some("../../"),
            b"",
        );
        raw_entry(
            &mut tar,
            "ok/abs-link",
            tar::EntryType::Symlink,
            Some("/tmp"),
            b"",
        );
        raw_entry(
            &mut tar,
            "ok/hard",
            tar::EntryType::Link,
            Some("../outside"),
            b"",
        );
        raw_entry(
            &mut tar,
            "ok/inner-link",
            tar::EntryType::Symlink,
            Some("file.txt"),
            b"",
        );
        let report = extract_tar(&finish(tar)[..], &dest, false).unwrap();
        assert_eq!(std::fs::read(dest.join("ok/file.txt")).unwrap(), b"fine");
        assert_eq!(
            std::fs::read_link(dest.join("ok/inner-link")).unwrap(),
            PathBuf::from("file.txt")
        );
        let rejected: Vec<_> = report.rejected.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            rejected,
            [
                "/etc/evil",
                "ok/../../escaped",
                "ok/out",
                "ok/abs-link",
                "ok/hard"
            ]
        );
        assert!(!root.path().join("escaped").exists());
        assert!(!dest.join("ok/out").exists());
        assert_eq!(report.written, 2);
    }

    #[test]
    fn a_file_written_through_an_archive_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let mut tar = Vec::new();
        // Each link looks harmless by name ("p" is the destination itself, "p/q" climbs one
        // level from "p"), but together "p/q" is a link to a sibling of the destination; the
        // file "under" it must not be written there.
        raw_entry(&mut tar, "p", tar::EntryType::Symlink, Some("."), b"");
        raw_entry(
            &mut tar,
            "p/q",
            tar::EntryType::Symlink,
            Some("../outside"),
            b"",
        );
        raw_entry(&mut tar, "p/q/evil", tar::EntryType::Regular, None, b"data");
        let report = extract_tar(&finish(tar)[..], &dest, false).unwrap();
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "something was written outside"
        );
        assert!(
            report.rejected.iter().any(|r| r.name == "p/q/evil"),
            "{report:?}"
        );
    }

    #[test]
    fn our_own_archives_round_trip_with_modes_and_mtimes() {
        use crate::candidate::{Candidate, PathCandidate};
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir_all(tree.join("empty dir")).unwrap();
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/script.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            tree.join("sub/script.sh"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        std::fs::write(tree.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("sub/script.sh", tree.join("run")).unwrap();
        let mtime = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_mtime(tree.join("sub/script.sh"), mtime).unwrap();
        let mut tar = Vec::new();
        PathCandidate::new(tree.clone(), glacier_backup_archiver::SourceKind::Directory)
            .write_archive(&mut tar)
            .unwrap();
        let dest = root.path().join("restored");
        let report = extract_tar(&tar[..], &dest, false).unwrap();
        assert!(report.rejected.is_empty(), "{report:?}");
        let restored = dest.join("tree");
        assert!(restored.join("empty dir").is_dir());
        assert_eq!(std::fs::read(restored.join("empty")).unwrap(), b"");
        let meta = std::fs::metadata(restored.join("sub/script.sh")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o751);
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&meta),
            mtime
        );
        assert_eq!(
            std::fs::read_link(restored.join("run")).unwrap(),
            PathBuf::from("sub/script.sh")
        );
    }
}
