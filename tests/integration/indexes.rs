//! The index beside each directory archive (issue 25): a machine that lost its ledger gets the
//! catalogs back from the destination with `inventory --rebuild-ledger`, then browses and
//! restores single files; a damaged index, one not proven ours, or one of another archive is
//! refused.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::config::TestConfig;
use crate::support::sandbox::{assert_exit, assert_says, output_text, Sandbox};

/// `album/` with `sub/a.txt` and `b.bin` (300 KB), backed up to `archives/` with `layers`
/// (TOML sections); the config.
fn backed_up(sb: &Sandbox, layers: &str) -> (PathBuf, PathBuf) {
    let album = sb.path("data/album");
    fs::create_dir_all(album.join("sub")).unwrap();
    fs::write(album.join("sub/a.txt"), "a".repeat(4000)).unwrap();
    fs::write(album.join("b.bin"), vec![7u8; 300_000]).unwrap();
    let config = TestConfig::local(&sb.path("archives"))
        .raw(&format!(
            "{layers}\n[\"{}\"]\nupload_single_dir = true\nupload_if_changed = true\n",
            album.display()
        ))
        .write(&sb.path("config/backup.toml"));
    assert_exit(&sb.run_config(&config), 0);
    (album, config)
}

/// The one index file at the destination.
fn index_file(sb: &Sandbox) -> PathBuf {
    let mut found = crate::support::files_below(&sb.path("archives"));
    found.retain(|path| path.to_string_lossy().ends_with(".gbindex"));
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn lose_ledger(sb: &Sandbox) {
    fs::remove_file(sb.ledger()).unwrap();
}

fn rebuild(sb: &Sandbox, config: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["inventory", "--rebuild-ledger"];
    args.extend(extra);
    sb.with_config(config, &args).output().unwrap()
}

#[test]
fn a_lost_ledger_gets_its_catalogs_back_from_the_indexes_and_one_file_restores() {
    let sb = Sandbox::new();
    let (key, recipient) = sb.keygen();
    let layers = format!(
        "[archive]\ncompression = \"zstd\"\n[encryption]\nrecipients = [\"{recipient}\"]\n\
         identity_file = \"{k}\"\nauthentication_key_file = \"{k}.auth\"\n",
        k = key.display()
    );
    let (album, config) = backed_up(&sb, &layers);
    let index = fs::read(index_file(&sb)).unwrap();
    assert!(
        index.starts_with(b"age-encryption.org/v1"),
        "encrypted like its archive"
    );
    assert!(
        !index.windows(5).any(|w| w == b"a.txt"),
        "names are private"
    );

    lose_ledger(&sb);
    let rebuilt = rebuild(&sb, &config, &[]);
    assert_exit(&rebuilt, 0);
    assert_says(&rebuilt, "ledger rows added: 1");
    assert_says(&rebuilt, "1 restored");
    let listed = sb
        .with_config(&config, &["ls"])
        .arg(album.join("sub"))
        .output()
        .unwrap();
    assert_exit(&listed, 0);
    assert!(
        output_text(&listed).contains("a.txt"),
        "{}",
        output_text(&listed)
    );
    let out = sb.path("out");
    let restored = sb
        .with_config(&config, &["restore", "--to"])
        .arg(&out)
        .arg(album.join("sub/a.txt"))
        .output()
        .unwrap();
    assert_exit(&restored, 0);
    assert_says(&restored, "restored 1 entries of");
    assert_eq!(
        fs::read(out.join("album/sub/a.txt")).unwrap(),
        fs::read(album.join("sub/a.txt")).unwrap()
    );
    assert!(!out.join("album/b.bin").exists());
    // The inventory lists the index apart: not an archive, not unrecorded.
    let again = sb.with_config(&config, &["inventory"]).output().unwrap();
    assert_exit(&again, 0);
    assert_says(&again, "not in the ledger: 0");
}

#[test]
fn a_damaged_index_is_refused_and_its_upload_stays_restorable_whole() {
    let sb = Sandbox::new();
    let (album, config) = backed_up(&sb, "");
    let index = index_file(&sb);
    let text = fs::read(&index).unwrap();
    assert!(
        text.starts_with(b"glacier-backup index 1\n{"),
        "readable by stock tools"
    );
    let mut damaged = text.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x01;
    fs::write(&index, damaged).unwrap();

    lose_ledger(&sb);
    let rebuilt = rebuild(&sb, &config, &[]);
    assert_exit(&rebuilt, 1);
    assert_says(&rebuilt, "damaged index: its hash does not match its bytes");
    let listed = sb
        .with_config(&config, &["ls"])
        .arg(&album)
        .output()
        .unwrap();
    assert_exit(&listed, 1);
    assert_says(&listed, "contents are unknown");
    let out = sb.path("out");
    let whole = sb
        .with_config(&config, &["restore", "--to"])
        .arg(&out)
        .arg(&album)
        .output()
        .unwrap();
    assert_exit(&whole, 0);
    assert_eq!(
        fs::read(out.join("album/b.bin")).unwrap(),
        vec![7u8; 300_000]
    );
}

#[test]
fn an_index_of_another_archive_or_not_proven_ours_is_refused() {
    let sb = Sandbox::new();
    let (key, recipient) = sb.keygen();
    // No authentication key: the index (like the archive) cannot prove who wrote it.
    let layers = format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        key.display()
    );
    let (_, config) = backed_up(&sb, &layers);
    lose_ledger(&sb);
    let refused = rebuild(&sb, &config, &[]);
    assert_exit(&refused, 1);
    assert_says(&refused, "no proof that these backups wrote it");
    let trusted = rebuild(&sb, &config, &["--trust-destination"]);
    assert_exit(&trusted, 0);
    assert_says(&trusted, "1 restored");

    // A plain index moved beside another archive describes the wrong one.
    let sb = Sandbox::new();
    let (album, config) = backed_up(&sb, "");
    let first_index = index_file(&sb);
    fs::write(album.join("sub/new.txt"), "new").unwrap();
    let second = sb.run_config(&config);
    assert_exit(&second, 0);
    assert_says(&second, "uploaded 1");
    let indexes: Vec<PathBuf> = fs::read_dir(first_index.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".gbindex"))
        .collect();
    assert_eq!(indexes.len(), 2, "{indexes:?}");
    let other = indexes.iter().find(|p| **p != first_index).unwrap();
    fs::copy(&first_index, other).unwrap();
    lose_ledger(&sb);
    let swapped = rebuild(&sb, &config, &[]);
    assert_exit(&swapped, 1);
    assert_says(&swapped, "describes another archive");
}

#[test]
fn verify_remote_names_an_archive_whose_index_is_gone() {
    let sb = Sandbox::new();
    let (_, config) = backed_up(&sb, "");
    let verified = sb
        .with_config(&config, &["verify", "--remote"])
        .output()
        .unwrap();
    assert_exit(&verified, 0);
    fs::remove_file(index_file(&sb)).unwrap();
    let verified = sb
        .with_config(&config, &["verify", "--remote"])
        .output()
        .unwrap();
    assert_exit(&verified, 1);
    assert_says(
        &verified,
        "is missing from the destination; a ledger rebuilt",
    );
}
