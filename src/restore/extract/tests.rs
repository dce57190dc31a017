//! Extraction against hostile archives: entries outside the destination, through links,
//! over existing files, and the attributes of what is written.

use std::os::fd::AsFd;

use super::*;

/// Builds an archive entry by entry, with raw names the tar crate's builder would refuse.
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
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

/// Each refused entry's name and reason.
fn rejections(report: &Extracted) -> Vec<(&str, &'static str)> {
    report
        .rejected
        .iter()
        .map(|r| (r.name.as_str(), r.reason))
        .collect()
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
    let report = extract_tar(
        &finish(tar)[..],
        &dest,
        "ok".as_ref(),
        ExtractOptions::default(),
    )
    .unwrap();
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
    // Each link looks harmless by name ("p/l" is "p" itself, "p/l/q" climbs two levels
    // from "p/l"), but together "p/l/q" would be a link to a sibling of the destination;
    // nothing "under" a link may be written, and no link is followed to write.
    raw_entry(&mut tar, "p/", tar::EntryType::Directory, None, b"");
    raw_entry(&mut tar, "p/l", tar::EntryType::Symlink, Some("."), b"");
    raw_entry(
        &mut tar,
        "p/l/q",
        tar::EntryType::Symlink,
        Some("../../outside"),
        b"",
    );
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
    raw_entry(
        &mut tar,
        "p/hard",
        tar::EntryType::Link,
        Some("p/l/q/secret"),
        b"",
    );
    let report = extract_tar(
        &finish(tar)[..],
        &dest,
        "p".as_ref(),
        ExtractOptions::default(),
    )
    .unwrap();
    let names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"], "something was written outside");
    assert!(
        !dest.join("p/hard").exists(),
        "an outside file was linked in"
    );
    let rejected = rejections(&report);
    assert_eq!(
        rejected,
        [
            ("p/l/q", THROUGH_LINK),
            ("p/q/evil", THROUGH_LINK),
            ("p/q/made/deeper/evil", THROUGH_LINK),
            ("p/q/dir/", THROUGH_LINK),
            ("hard", OUTSIDE_TOP),
            (
                "p/hard",
                "hard link to something that is not a file of this archive"
            ),
        ],
        "{report:?}"
    );
}

/// Temporary files of a restore killed mid-file are removed by the next extraction into
/// the same directories, even one that writes nothing there (every file unchanged); a
/// live process's, and names that only look alike, are left alone.
#[test]
fn temporary_files_of_a_killed_restore_are_removed_by_the_next() {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    let mut tar = Vec::new();
    raw_entry(&mut tar, "top/", tar::EntryType::Directory, None, b"");
    raw_entry(&mut tar, "top/a.txt", tar::EntryType::Regular, None, b"a");
    raw_entry(&mut tar, "top/sub/", tar::EntryType::Directory, None, b"");
    raw_entry(
        &mut tar,
        "top/sub/b.txt",
        tar::EntryType::Regular,
        None,
        b"b",
    );
    let tar = finish(tar);
    let extract =
        || extract_tar(&tar[..], &dest, "top".as_ref(), ExtractOptions::default()).unwrap();
    extract();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let stale = [
        dest.join(format!("top/{TEMP_PREFIX}{gone}-3")),
        dest.join(format!("top/sub/{TEMP_PREFIX}{gone}-4")),
    ];
    let kept = [
        dest.join(format!("top/{TEMP_PREFIX}{}-77", std::process::id())),
        dest.join(format!("top/{TEMP_PREFIX}notes")),
    ];
    for path in stale.iter().chain(&kept) {
        std::fs::write(path, b"").unwrap();
    }
    let report = extract();
    assert_eq!(report.unchanged, 2, "every file was unchanged: {report:?}");
    for path in &stale {
        assert!(!path.exists(), "{} stayed", path.display());
    }
    for path in &kept {
        assert!(path.exists(), "{} was removed", path.display());
    }
    assert_eq!(std::fs::read(dest.join("top/sub/b.txt")).unwrap(), b"b");
}

/// Each link stays inside by its own name, but through the others `c` would lead to the
/// destination's parent; placed in either order, it is refused.
#[test]
fn a_chain_of_links_cannot_climb_out_of_the_destination() {
    for reversed in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let mut links = vec![("top/a", "b"), ("top/b", ".."), ("top/c", "a/../..")];
        if reversed {
            links.reverse();
        }
        let mut tar = Vec::new();
        raw_entry(&mut tar, "top/", tar::EntryType::Directory, None, b"");
        for (name, target) in &links {
            raw_entry(&mut tar, name, tar::EntryType::Symlink, Some(target), b"");
        }
        let report = extract_tar(
            &finish(tar)[..],
            &dest,
            "top".as_ref(),
            ExtractOptions::default(),
        )
        .unwrap();
        let rejected = rejections(&report);
        assert_eq!(
            rejected,
            [("top/c", "link points outside the destination")],
            "{report:?}"
        );
        assert!(std::fs::symlink_metadata(dest.join("top/c")).is_err());
        assert_eq!(
            std::fs::read_link(dest.join("top/b")).unwrap(),
            Path::new("..")
        );
        // Every link placed resolves inside the destination.
        let inside = dest.canonicalize().unwrap();
        for name in ["top/a", "top/b"] {
            let resolved = dest.join(name).canonicalize().unwrap();
            assert!(resolved.starts_with(&inside), "{name} -> {resolved:?}");
        }
    }
}

#[test]
fn entries_outside_the_top_directory_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".bashrc"), b"mine").unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "photos/", tar::EntryType::Directory, None, b"");
    raw_entry(
        &mut tar,
        "photos/a.jpg",
        tar::EntryType::Regular,
        None,
        b"jpg",
    );
    // An archive of /home/u/photos restored in place: this would be /home/u/.bashrc.
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_mtime(4_000_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_path(".bashrc").unwrap();
    header.set_cksum();
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(b"evil");
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    raw_entry(
        &mut tar,
        "photosX/b",
        tar::EntryType::Regular,
        None,
        b"near miss",
    );
    raw_entry(
        &mut tar,
        "./photos/c",
        tar::EntryType::Regular,
        None,
        b"dot",
    );
    let report = extract_tar(
        &finish(tar)[..],
        &home,
        "photos".as_ref(),
        ExtractOptions {
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(std::fs::read(home.join(".bashrc")).unwrap(), b"mine");
    assert!(!home.join("photosX").exists());
    assert_eq!(std::fs::read(home.join("photos/a.jpg")).unwrap(), b"jpg");
    assert_eq!(std::fs::read(home.join("photos/c")).unwrap(), b"dot");
    let rejected: Vec<_> = report.rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rejected, [".bashrc", "photosX/b"]);
    assert!(report.rejected.iter().all(|r| r.reason == OUTSIDE_TOP));
}

#[test]
fn the_top_entry_must_be_a_directory() {
    let root = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "top", tar::EntryType::Symlink, Some("."), b"");
    raw_entry(&mut tar, "top/x", tar::EntryType::Regular, None, b"x");
    let report = extract_tar(
        &finish(tar)[..],
        root.path(),
        "top".as_ref(),
        ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(report.rejected[0].reason, TOP_NOT_DIR);
    // The entry below it lands in a real directory, not through the link.
    assert!(root.path().join("top").is_dir());
    assert_eq!(std::fs::read(root.path().join("top/x")).unwrap(), b"x");
}

#[test]
fn fifos_are_made_devices_skipped_and_reported() {
    use std::os::unix::fs::FileTypeExt;
    let root = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "t/", tar::EntryType::Directory, None, b"");
    raw_entry(&mut tar, "t/pipe", tar::EntryType::Fifo, None, b"");
    raw_entry(&mut tar, "t/null", tar::EntryType::Char, None, b"");
    raw_entry(&mut tar, "t/disk", tar::EntryType::Block, None, b"");
    let report = extract_tar(
        &finish(tar)[..],
        root.path(),
        "t".as_ref(),
        ExtractOptions::default(),
    )
    .unwrap();
    let pipe = std::fs::symlink_metadata(root.path().join("t/pipe")).unwrap();
    assert!(pipe.file_type().is_fifo(), "{pipe:?}");
    assert!(!root.path().join("t/null").exists());
    assert!(!root.path().join("t/disk").exists());
    let skipped: Vec<_> = report.skipped.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(skipped, ["t/null", "t/disk"]);
    assert!(report.rejected.is_empty());
}

#[test]
fn long_names_and_pax_paths_are_checked_like_any_other() {
    use glacier_backup_archiver::shown;
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    let mut builder = tar::Builder::new(Vec::new());
    let long = format!("top/{}/{}/file", "n".repeat(200), "m".repeat(200));
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header.clone(), &long, &b"long"[..])
        .unwrap();
    // A PAX path overrides the header's harmless-looking name.
    builder
        .append_pax_extensions([("path", &b"../pax-escape"[..])])
        .unwrap();
    builder
        .append_data(&mut header.clone(), "top/innocent", &b"evil"[..])
        .unwrap();
    builder
        .append_pax_extensions([("path", &b"top/from-pax"[..])])
        .unwrap();
    builder
        .append_data(&mut header.clone(), "top/short", &b"pax!"[..])
        .unwrap();
    let too_long = format!("top/{}", "x".repeat(300));
    builder
        .append_data(&mut header.clone(), &too_long, &b"?"[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let report = extract_tar(&tar[..], &dest, "top".as_ref(), ExtractOptions::default()).unwrap();
    assert_eq!(std::fs::read(dest.join(&long)).unwrap(), b"long");
    assert_eq!(std::fs::read(dest.join("top/from-pax")).unwrap(), b"pax!");
    assert!(!dest.join("top/innocent").exists());
    assert!(!root.path().join("pax-escape").exists());
    let rejected: Vec<_> = report.rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rejected, ["../pax-escape".to_owned(), shown(&too_long)]);
}

#[test]
fn duplicate_entries_never_write_through_a_link_and_a_file_is_not_made_a_directory() {
    let root = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "t/", tar::EntryType::Directory, None, b"");
    raw_entry(&mut tar, "t/a", tar::EntryType::Symlink, Some("b"), b"");
    raw_entry(
        &mut tar,
        "t/a",
        tar::EntryType::Regular,
        None,
        b"replaces the link",
    );
    raw_entry(&mut tar, "t/f", tar::EntryType::Regular, None, b"file");
    raw_entry(&mut tar, "t/f/", tar::EntryType::Directory, None, b"");
    raw_entry(&mut tar, "t/f/inner", tar::EntryType::Regular, None, b"x");
    let force = ExtractOptions {
        force: true,
        ..Default::default()
    };
    let report = extract_tar(&finish(tar)[..], root.path(), "t".as_ref(), force).unwrap();
    let t = root.path().join("t");
    assert_eq!(std::fs::read(t.join("a")).unwrap(), b"replaces the link");
    assert!(!t.join("b").exists(), "written through the link");
    // With --force the directory entry replaces the file, and its child lands inside it.
    assert!(t.join("f").is_dir(), "{report:?}");
    assert_eq!(std::fs::read(t.join("f/inner")).unwrap(), b"x");

    let root = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "t/", tar::EntryType::Directory, None, b"");
    raw_entry(&mut tar, "t/f", tar::EntryType::Regular, None, b"file");
    raw_entry(&mut tar, "t/f/", tar::EntryType::Directory, None, b"");
    raw_entry(&mut tar, "t/f/inner", tar::EntryType::Regular, None, b"x");
    let report = extract_tar(
        &finish(tar)[..],
        root.path(),
        "t".as_ref(),
        ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(root.path().join("t/f")).unwrap(), b"file");
    assert_eq!(report.kept, ["t/f/"]);
    let rejected = rejections(&report);
    assert_eq!(rejected, [("t/f/inner", THROUGH_LINK)]);
}

#[test]
fn a_tree_deeper_than_path_max_restores() {
    let root = tempfile::tempdir().unwrap();
    let level = "d".repeat(20);
    let mut name = String::from("top");
    let mut builder = tar::Builder::new(Vec::new());
    for _ in 0..300 {
        name.push('/');
        name.push_str(&level);
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, format!("{name}/leaf"), &b"deep!"[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    assert!(name.len() > 6000);
    let report = extract_tar(
        &tar[..],
        root.path(),
        "top".as_ref(),
        ExtractOptions::default(),
    )
    .unwrap();
    assert!(report.rejected.is_empty(), "{report:?}");
    let mut dir = fsat::open_dir(&root.path().join("top")).unwrap();
    for _ in 0..300 {
        dir = fsat::open_dir_at(dir.as_fd(), level.as_ref()).unwrap();
    }
    let mut data = Vec::new();
    fsat::open_file_at(dir.as_fd(), "leaf".as_ref())
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    assert_eq!(data, b"deep!");
    // The temporary directories tempfile removes by path would fail this deep.
    remove_deep(root.path());
}

/// Removes a tree of any depth (std's remove_dir_all fails past PATH_MAX on some systems).
fn remove_deep(path: &Path) {
    let status = std::process::Command::new("rm")
        .arg("-rf")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
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
    let report = extract_tar(&tar[..], &dest, "tree".as_ref(), ExtractOptions::default()).unwrap();
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
