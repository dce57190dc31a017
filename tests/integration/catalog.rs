//! The catalog of a directory archive (issue 25, first step): written with the archive in the
//! same pass and recorded with its row; every entry it names is where it says in the stored
//! bytes. `ls`, `find`, indexes and partial restores build on it.

use std::fs;
use std::path::{Path, PathBuf};

use glacier_backup::catalog::{Decoder, Entry, EntryKind};
use rusqlite::Connection;

use crate::support::sandbox::{assert_exit, assert_says, Sandbox};
use crate::support::trees::awkward_tree;

/// Every catalog the ledger holds: the archive id and its entries.
fn catalogs(sb: &Sandbox) -> Vec<(String, Vec<Entry>)> {
    let ledger = Connection::open(sb.ledger()).unwrap();
    let mut stmt = ledger
        .prepare("SELECT archive_id, entries FROM catalogs ORDER BY archive_id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })
    .unwrap()
    .map(|row| {
        let (id, bytes) = row.unwrap();
        let entries = Decoder::new(&bytes)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (id, entries)
    })
    .collect()
}

#[test]
fn a_directory_archive_is_recorded_with_its_catalog_and_every_entry_is_where_it_says() {
    let sb = Sandbox::new();
    let data = sb.path("data");
    awkward_tree(&data);
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_dirs = true\nupload_files = true\n",
        data.display()
    ));
    assert_exit(&sb.run_config(&config), 0);

    // Three candidates, one of them a directory: one catalog, named by that upload's row.
    let catalogs = catalogs(&sb);
    assert_eq!(catalogs.len(), 1, "{catalogs:?}");
    let (archive_id, entries) = &catalogs[0];
    let rows = sb.ledger_rows();
    assert!(rows
        .iter()
        .any(|(path, _, id)| id == archive_id && path.ends_with("(copy)")));

    let stored = fs::read(sb.path("archives").join(archive_id)).unwrap();
    let mut archive = tar::Archive::new(&stored[..]);
    let in_tar: Vec<_> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_path_buf())
        .collect();
    let cataloged: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(cataloged, in_tar);
    for entry in entries {
        let source = data.join(&entry.path);
        let meta = fs::symlink_metadata(&source).unwrap();
        match entry.kind {
            EntryKind::File => {
                let bytes = &stored[entry.data_offset as usize..][..entry.size as usize];
                assert_eq!(bytes, &fs::read(&source).unwrap()[..], "{source:?}");
            }
            EntryKind::Symlink => {
                assert_eq!(entry.link.as_deref(), Some(Path::new("café.txt")));
            }
            EntryKind::Directory => assert!(meta.is_dir()),
        }
        use std::os::unix::fs::MetadataExt;
        assert_eq!(entry.mode, meta.mode() & 0o7777, "{source:?}");
        assert_eq!(entry.mtime, meta.mtime(), "{source:?}");
    }
}

#[test]
fn a_compressed_and_encrypted_directory_has_its_catalog_too() {
    let sb = Sandbox::new();
    let album = sb.path("data/album");
    fs::create_dir_all(album.join("sub")).unwrap();
    fs::write(album.join("sub/a.txt"), "a".repeat(10_000)).unwrap();
    fs::write(album.join("b.txt"), "b").unwrap();
    let key = sb.path("key.txt");
    let keygen = sb.run(&["keygen", "-o", key.to_str().unwrap()]);
    assert_exit(&keygen, 0);
    let recipient = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
    let config = sb.local_config(&format!(
        "[archive]\ncompression = \"zstd\"\n\n[encryption]\nrecipients = [\"{recipient}\"]\n\
         identity_file = \"{}\"\n\n[\"{}\"]\nupload_single_dir = true\n",
        key.display(),
        album.display()
    ));
    assert_exit(&sb.run_config(&config), 0);
    let catalogs = catalogs(&sb);
    assert_eq!(catalogs.len(), 1);
    let names: Vec<_> = catalogs[0].1.iter().map(|e| e.path.clone()).collect();
    assert_eq!(
        names,
        ["album", "album/b.txt", "album/sub", "album/sub/a.txt"].map(std::path::PathBuf::from)
    );
    let a = &catalogs[0].1[3];
    assert_eq!((a.kind, a.size), (EntryKind::File, 10_000));
}

/// `data/album` (a photo in `2019/`, `notes.txt`, a link to it) backed up, that upload dated
/// March 2026 in the ledger (a clock the test sets, no waiting), then `change` made and backed
/// up again; the archives deleted, as `ls` and `find` must not read them. The album and the
/// config.
fn album_uploaded_twice(sb: &Sandbox, change: impl FnOnce(&Path)) -> (PathBuf, PathBuf) {
    let album = sb.path("data/album");
    fs::create_dir_all(album.join("2019")).unwrap();
    fs::write(album.join("2019/IMG_0412.jpg"), vec![7u8; 5000]).unwrap();
    fs::write(album.join("notes.txt"), "march").unwrap();
    std::os::unix::fs::symlink("notes.txt", album.join("link")).unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_single_dir = true\nupload_if_changed = true\n",
        album.display()
    ));
    assert_exit(&sb.run_config(&config), 0);
    Connection::open(sb.ledger())
        .unwrap()
        .execute(
            "UPDATE uploads SET started_at = '2026-03-01T10:00:00Z', \
             uploaded_at = '2026-03-01T10:00:01Z'",
            [],
        )
        .unwrap();
    change(&album);
    assert_exit(&sb.run_config(&config), 0);
    fs::remove_dir_all(sb.path("archives")).unwrap();
    (album, config)
}

/// `ls` reads the catalog alone: a directory's children as `ls -l` shows them, a subdirectory,
/// a file, `--json`, an earlier upload with `--at`, and clear refusals.
#[test]
fn ls_lists_a_backed_up_directory_from_the_ledger_alone() {
    let sb = Sandbox::new();
    let (album, config) = album_uploaded_twice(&sb, |album| {
        fs::write(album.join("added.txt"), "new").unwrap();
    });

    let ls = |args: &[&str]| {
        sb.with_config(&config, &[&["ls"], args].concat())
            .output()
            .unwrap()
    };
    let out = ls(&[album.to_str().unwrap()]);
    assert_exit(&out, 0);
    let listed = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 4, "{listed}");
    assert!(
        lines[0].starts_with("drwx") && lines[0].ends_with(" 2019/"),
        "{listed}"
    );
    assert!(lines[1].ends_with(" added.txt"), "{listed}");
    assert!(
        lines[2].starts_with("l") && lines[2].ends_with(" link -> notes.txt"),
        "{listed}"
    );
    assert!(
        lines[3].starts_with("-rw") && lines[3].contains(" 5 "),
        "{listed}"
    );

    let out = ls(&[album.join("2019").to_str().unwrap(), "--json"]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{doc}");
    assert_eq!(
        entries[0]["path"],
        album.join("2019/IMG_0412.jpg").to_str().unwrap()
    );
    assert_eq!(entries[0]["size"], 5000);
    assert_eq!(entries[0]["kind"], "file");

    let out = ls(&[album.to_str().unwrap(), "--at", "2026-03-31"]);
    assert_exit(&out, 0);
    let earlier = String::from_utf8(out.stdout).unwrap();
    assert!(!earlier.contains("added.txt"), "{earlier}");
    assert_eq!(earlier.lines().count(), 3, "{earlier}");

    let out = ls(&[album.join("no-such").to_str().unwrap()]);
    assert_exit(&out, 1);
    assert_says(&out, "not in the upload of");
    let out = ls(&[sb.path("elsewhere").to_str().unwrap()]);
    assert_exit(&out, 1);
    assert_says(&out, "no directory upload holds it");
}

/// An upload made without a catalog (a row as the Python tool writes it: no kind, no catalog)
/// is named as such, not listed empty nor said to be missing.
#[test]
fn ls_of_an_upload_without_a_catalog_says_its_contents_are_unknown() {
    let sb = Sandbox::new();
    let album = sb.path("data/album");
    fs::create_dir_all(&album).unwrap();
    fs::write(album.join("a.txt"), "a").unwrap();
    let config = sb.local_config(&format!(
        "[\"{}\"]\nupload_single_dir = true\n",
        album.display()
    ));
    assert_exit(&sb.run_config(&config), 0);
    Connection::open(sb.ledger())
        .unwrap()
        .execute_batch(
            "DELETE FROM catalogs; UPDATE uploads SET backend = NULL, kind = NULL, size = NULL, \
             tree_hash = NULL, fingerprint = NULL, started_at = NULL, uploaded_at = NULL",
        )
        .unwrap();
    let out = sb
        .with_config(&config, &["ls", album.to_str().unwrap()])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert_says(&out, "has no catalog");
    assert_says(&out, "unknown without restoring it whole");
}

/// `find` searches every directory's catalog by glob from the ledger alone: names, whole paths,
/// an earlier time, every version, `--json`, a bad pattern, and uploads without a catalog.
#[test]
fn find_searches_the_catalogs_by_glob() {
    let sb = Sandbox::new();
    let (album, config) = album_uploaded_twice(&sb, |album| {
        fs::create_dir_all(album.join("2020")).unwrap();
        fs::write(album.join("2020/IMG_9.jpg"), "new").unwrap();
    });

    let find = |args: &[&str]| {
        let out = sb
            .with_config(&config, &[&["find"], args].concat())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out,
        )
    };
    let old = album.join("2019/IMG_0412.jpg").display().to_string();
    let new = album.join("2020/IMG_9.jpg").display().to_string();
    let (code, latest, _) = find(&["*.jpg"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = latest.lines().collect();
    assert_eq!(lines.len(), 2, "{latest}");
    assert!(
        lines[0].starts_with(&format!("{old}  (uploaded ")),
        "{latest}"
    );
    assert!(
        lines[1].starts_with(&format!("{new}  (uploaded ")),
        "{latest}"
    );

    let (_, earlier, _) = find(&["*.jpg", "--at", "2026-03-31"]);
    assert_eq!(earlier.lines().count(), 1, "{earlier}");
    assert!(earlier.contains("2026-03-01T10:00:01Z"), "{earlier}");
    let (_, every, _) = find(&["*.jpg", "--all-versions"]);
    assert_eq!(every.lines().count(), 3, "{every}");
    let (_, by_path, _) = find(&["**/2019/*"]);
    assert_eq!(by_path.lines().collect::<Vec<_>>().len(), 1, "{by_path}");
    assert!(by_path.starts_with(&old), "{by_path}");
    // `*` stops at `/`: a whole-path pattern needs `**` to cross directories.
    let (_, none, _) = find(&["/*.jpg"]);
    assert!(none.is_empty(), "{none}");

    let (code, doc, _) = find(&["--json", "notes.*"]);
    assert_eq!(code, Some(0));
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["searched"], 1);
    let matches = doc["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{doc}");
    assert_eq!(
        matches[0]["path"],
        album.join("notes.txt").to_str().unwrap()
    );
    assert_eq!(matches[0]["size"], 5);

    let (code, _, out) = find(&["[abc"]);
    assert_eq!(code, Some(2));
    assert_says(&out, "pattern \"[abc\"");

    Connection::open(sb.ledger())
        .unwrap()
        .execute("DELETE FROM catalogs WHERE rowid = 1", [])
        .unwrap();
    let (code, _, out) = find(&["*.jpg", "--all-versions"]);
    assert_eq!(code, Some(0));
    assert_says(&out, "1 upload(s) have no catalog");
}
