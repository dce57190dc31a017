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
    /// Files already there with the archived size and mtime, left as they are.
    pub unchanged: u64,
    /// Entries not written because something newer (or, for anything but an older file,
    /// something different) is already there; `--force` replaces them.
    pub kept: Vec<String>,
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

/// How an extraction treats what is already in the destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Give files their archived owners (meaningful when running as root).
    pub preserve_owners: bool,
    /// Replace existing entries even when they are newer than the archived ones.
    pub force: bool,
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

/// Extracts `archive` into `dest` (created if missing). Files are written under a temporary
/// name and renamed into place, so a reader never sees half a file; modes and mtimes are
/// restored (directories' at the end, once nothing more is written into them); owners only
/// with `preserve_owners`. Unless `force`, an existing file is replaced only when older than
/// the archived one, and left alone when it has the archived size and mtime.
pub fn extract_tar(
    archive: impl Read,
    dest: &Path,
    options: ExtractOptions,
) -> Result<Extracted, ExtractError> {
    let fail = |source| ExtractError {
        dest: dest.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(fail)?;
    let root = std::fs::canonicalize(dest).map_err(fail)?;
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(options.preserve_owners);
    archive.set_overwrite(true);
    let mut report = Extracted::default();
    let mut directories = Vec::new();
    for entry in archive.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let name = entry.path().map_err(fail)?.into_owned();
        let shown = name.to_string_lossy().into_owned();
        let mut refuse = |reason: &'static str| {
            tracing::warn!("not restoring archive entry {shown:?}: {reason}");
            report.rejected.push(Rejected {
                name: shown.clone(),
                reason,
            });
        };
        if let Some(reason) = check(&entry, &name) {
            refuse(reason);
            continue;
        }
        let target = root.join(&name);
        let parent = target.parent().unwrap_or(&root).to_path_buf();
        if !make_parent_inside(&root, &parent).map_err(fail)? {
            refuse(OUTSIDE);
            continue;
        }
        let kind = entry.header().entry_type();
        let existing = std::fs::symlink_metadata(&target).ok();
        let archived_mtime = entry.header().mtime().unwrap_or(0);
        if kind.is_dir() {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) && !options.force {
                report.kept.push(shown);
                continue;
            }
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                std::fs::remove_file(&target).map_err(fail)?;
            }
            std::fs::create_dir_all(&target).map_err(fail)?;
            let mode = entry.header().mode().unwrap_or(0o755);
            directories.push((target, mode, archived_mtime));
            report.written += 1;
            continue;
        }
        if let (Some(existing), false) = (&existing, options.force) {
            let existing_mtime =
                filetime::FileTime::from_last_modification_time(existing).unix_seconds();
            let same_file = existing.is_file()
                && kind.is_file()
                && existing_mtime == archived_mtime as i64
                && existing.len() == entry.header().size().unwrap_or(u64::MAX);
            if same_file {
                report.unchanged += 1;
                continue;
            }
            let replaceable =
                existing.is_file() && kind.is_file() && existing_mtime < archived_mtime as i64;
            if !replaceable {
                report.kept.push(shown);
                continue;
            }
        }
        if kind.is_file() {
            write_file(&mut entry, &parent, &target, options).map_err(fail)?;
            report.written += 1;
            continue;
        }
        if existing.as_ref().is_some_and(|m| m.is_dir()) {
            // --force over a directory: only an empty one may be replaced by a link.
            std::fs::remove_dir(&target).map_err(fail)?;
        }
        if kind.is_hard_link() {
            // Linked to where the name really leads, which must be a file inside: a name that
            // goes through a symlink out of the destination would link an outside file in.
            let source = entry
                .link_name()
                .ok()
                .flatten()
                .and_then(|link| std::fs::canonicalize(root.join(link)).ok())
                .filter(|real| real.starts_with(&root) && real.is_file());
            let Some(source) = source else {
                refuse("link points outside the destination, or to nothing");
                continue;
            };
            if existing.is_some() && target.symlink_metadata().is_ok() {
                std::fs::remove_file(&target).map_err(fail)?;
            }
            std::fs::hard_link(&source, &target).map_err(fail)?;
            report.written += 1;
            continue;
        }
        match entry.unpack_in(&root) {
            Ok(true) => report.written += 1,
            Ok(false) => refuse(OUTSIDE),
            // The tar crate has no typed error for this; it is the one refusal to report and
            // go on from, rather than fail the whole restore.
            Err(e) if e.to_string().contains("outside of destination") => refuse(OUTSIDE),
            Err(e) => return Err(fail(e)),
        }
    }
    // Deepest first, so setting a parent's mtime comes after its children are done.
    for (path, mode, mtime) in directories.into_iter().rev() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
            .and_then(|()| {
                filetime::set_file_mtime(&path, filetime::FileTime::from_unix_time(mtime as i64, 0))
            })
            .map_err(fail)?;
    }
    Ok(report)
}

const OUTSIDE: &str = "it would be written outside the destination";

/// Creates `dir` (below `root`, which is canonical) unless the way there leaves `root`: a
/// symlink on the path, made by the archive or already there, that points elsewhere. Checked
/// before anything is created, so not even an empty directory lands outside.
fn make_parent_inside(root: &Path, dir: &Path) -> std::io::Result<bool> {
    let mut existing = dir;
    while std::fs::symlink_metadata(existing).is_err() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return Ok(false),
        }
    }
    match std::fs::canonicalize(existing) {
        Ok(real) if real.starts_with(root) => {}
        // Elsewhere, or a dangling link.
        _ => return Ok(false),
    }
    std::fs::create_dir_all(dir)?;
    Ok(std::fs::canonicalize(dir)?.starts_with(root))
}

/// Writes one regular file under a temporary name beside `target`, with its mode, mtime (and
/// owner), then renames it into place.
fn write_file(
    entry: &mut tar::Entry<'_, impl Read>,
    parent: &Path,
    target: &Path,
    options: ExtractOptions,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let header = entry.header();
    let mode = header.mode().unwrap_or(0o644);
    let mtime = header.mtime().unwrap_or(0) as i64;
    let owner = (header.uid().ok(), header.gid().ok());
    let mut temp = tempfile::Builder::new()
        .prefix(".glacier-backup-restore-")
        .tempfile_in(parent)?;
    std::io::copy(entry, temp.as_file_mut())?;
    if options.preserve_owners {
        if let (Some(uid), Some(gid)) = owner {
            std::os::unix::fs::fchown(temp.as_file(), Some(uid as u32), Some(gid as u32))?;
        }
    }
    // Without root, set-id bits would belong to the wrong owner: keep only the permissions.
    let mask = if options.preserve_owners {
        0o7777
    } else {
        0o777
    };
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode & mask))?;
    filetime::set_file_handle_times(
        temp.as_file(),
        None,
        Some(filetime::FileTime::from_unix_time(mtime, 0)),
    )?;
    temp.persist(target).map_err(|e| e.error)?;
    Ok(())
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
        raw_entry(
            &mut tar,
            "ok/inner-hard",
            tar::EntryType::Link,
            Some("ok/file.txt"),
            b"",
        );
        let report = extract_tar(&finish(tar)[..], &dest, ExtractOptions::default()).unwrap();
        assert_eq!(std::fs::read(dest.join("ok/file.txt")).unwrap(), b"fine");
        assert_eq!(std::fs::read(dest.join("ok/inner-hard")).unwrap(), b"fine");
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
        assert_eq!(report.written, 3);
    }

    #[test]
    fn a_file_written_through_an_archive_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"not for the archive").unwrap();
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
        raw_entry(
            &mut tar,
            "p/q/made/deeper/evil",
            tar::EntryType::Regular,
            None,
            b"data",
        );
        raw_entry(&mut tar, "p/q/dir/", tar::EntryType::Directory, None, b"");
        raw_entry(
            &mut tar,
            "hard",
            tar::EntryType::Link,
            Some("p/q/secret"),
            b"",
        );
        let report = extract_tar(&finish(tar)[..], &dest, ExtractOptions::default()).unwrap();
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "something was written outside");
        assert!(!dest.join("hard").exists(), "an outside file was linked in");
        let rejected: Vec<_> = report.rejected.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            rejected,
            ["p/q/evil", "p/q/made/deeper/evil", "p/q/dir/", "hard"],
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
        let report = extract_tar(&tar[..], &dest, ExtractOptions::default()).unwrap();
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
