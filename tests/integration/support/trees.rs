//! Source trees with the names and kinds that restores get wrong, and a byte-for-byte
//! comparison of a restored tree with its source.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Fills `data` (created) with: a directory with spaces, unicode and parentheses in its name,
/// holding an empty directory, a 200-character name four levels down, an empty file, a
/// unicode-named file, a symlink, an executable and a 3 MB file; beside it a 0-byte file and a
/// file whose name ends in a space. Back it up with `upload_dirs` and `upload_files`: three
/// candidates, one of them a 0-byte archive.
pub fn awkward_tree(data: &Path) {
    let album = data.join("Фото 2026 (copy)");
    fs::create_dir_all(album.join("empty dir")).unwrap();
    fs::create_dir_all(album.join("deep/er/still")).unwrap();
    fs::write(
        album.join("deep/er/still/").join("n".repeat(200)),
        b"long name",
    )
    .unwrap();
    fs::write(album.join("empty file"), b"").unwrap();
    fs::write(album.join("café.txt"), "unicode ✓").unwrap();
    fs::write(album.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(album.join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("café.txt", album.join("link")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(album.join("big.bin"), &big).unwrap();
    let old = filetime::FileTime::from_unix_time(1_500_000_000, 0);
    filetime::set_file_mtime(album.join("café.txt"), old).unwrap();
    fs::write(data.join("zero.bin"), b"").unwrap();
    fs::write(data.join("notes .txt"), b"trailing space in name").unwrap();
}

/// Asserts that `restored` has every entry of `original` with the same kind and bytes (links:
/// the same target). Directories below the top travel as tar archives, so inside them modes
/// and mtimes must match too; a top-level file travels as bare bytes, so only its bytes count.
pub fn assert_same_tree(original: &Path, restored: &Path) {
    for name in same_names(original, restored) {
        let (a, b) = (original.join(&name), restored.join(&name));
        let is_dir = fs::symlink_metadata(&a).unwrap().is_dir();
        compare(&a, &b, is_dir);
    }
}

fn same_names(original: &Path, restored: &Path) -> Vec<std::ffi::OsString> {
    let names = |dir: &Path| {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let expected = names(original);
    assert_eq!(
        expected,
        names(restored),
        "entries of {}",
        restored.display()
    );
    expected
}

fn compare(original: &Path, restored: &Path, with_metadata: bool) {
    let shown = restored.display();
    let a = fs::symlink_metadata(original).unwrap();
    let b =
        fs::symlink_metadata(restored).unwrap_or_else(|e| panic!("{shown} was not restored: {e}"));
    assert_eq!(a.file_type(), b.file_type(), "kind of {shown}");
    if a.is_symlink() {
        let target = |p: &Path| fs::read_link(p).unwrap();
        assert_eq!(target(original), target(restored), "target of {shown}");
        return;
    }
    if with_metadata {
        assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777, "mode of {shown}");
        assert_eq!(a.mtime(), b.mtime(), "mtime of {shown}");
    }
    if a.is_file() {
        let bytes = |p: &Path| fs::read(p).unwrap();
        assert!(bytes(original) == bytes(restored), "bytes of {shown}");
        return;
    }
    for name in same_names(original, restored) {
        compare(&original.join(&name), &restored.join(&name), with_metadata);
    }
}
