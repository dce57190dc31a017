//! Partial restores (issue 25): a file or a subtree inside a backed-up directory, or the entries
//! an `--include` glob matches, fetched as only the spans of the stored archive that hold them,
//! each MiB checked against the catalog before anything is placed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::sandbox::{assert_exit, assert_says, output_text, Sandbox};

/// `album/`: a 9 MiB random file first in the tar, then `empty`, a link, `sub/a.txt`,
/// `sub/deep/b.txt` (mode 0600, an old mtime) and 40 small files in `sub/many/`.
fn album(data: &Path) -> PathBuf {
    let album = data.join("album");
    fs::create_dir_all(album.join("sub/deep")).unwrap();
    fs::create_dir_all(album.join("sub/many")).unwrap();
    let big = crate::support::random_bytes(9 << 20, 0x9E37_79B9_7F4A_7C15);
    fs::write(album.join("big.bin"), big).unwrap();
    fs::write(album.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("sub/a.txt", album.join("link")).unwrap();
    fs::write(album.join("sub/a.txt"), "a".repeat(5000)).unwrap();
    let b = album.join("sub/deep/b.txt");
    fs::write(&b, "deep down").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&b, fs::Permissions::from_mode(0o600)).unwrap();
    filetime::set_file_mtime(&b, filetime::FileTime::from_unix_time(1_400_000_000, 0)).unwrap();
    for i in 0..40 {
        fs::write(
            album.join(format!("sub/many/{i:02}.dat")),
            vec![i as u8; 3000],
        )
        .unwrap();
    }
    album
}

/// The layers a test config gets: none, zstd, age, or both.
#[derive(Debug, Clone, Copy)]
enum Layers {
    Plain,
    Zstd,
    Age,
    Both,
}

/// A local config for `album` with `layers`, its ledger and archives named after them.
fn config(sb: &Sandbox, album: &Path, layers: Layers) -> PathBuf {
    let name = format!("{layers:?}").to_lowercase();
    let (key, recipient) = sb.keygen();
    let zstd = "[archive]\ncompression = \"zstd\"\n";
    let age = format!(
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n",
        key.display()
    );
    let layers = match layers {
        Layers::Plain => String::new(),
        Layers::Zstd => zstd.to_owned(),
        Layers::Age => age,
        Layers::Both => format!("{zstd}{age}"),
    };
    crate::support::config::TestConfig::local(&sb.path(&format!("archives-{name}")))
        .main(
            "ledger",
            sb.path(&format!("ledger-{name}.sqlite3")).display(),
        )
        .raw(&format!(
            "{layers}\n[\"{}\"]\nupload_single_dir = true\n",
            album.display()
        ))
        .write(&sb.path(&format!("{name}.toml")))
}

/// The dry run's plan of restoring `paths`: each archive's `partial` object.
fn planned(sb: &Sandbox, config: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--dryrun", "--json", "restore", "--to", "out"];
    all.extend(args);
    let out = sb.with_config(config, &all).output().unwrap();
    assert_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["archives"][0]["partial"].clone()
}

/// `restore --to OUT ARGS` with `config`.
fn restore(sb: &Sandbox, config: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    sb.with_config(config, &["restore", "--to"])
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

fn assert_same_file(original: &Path, restored: &Path) {
    let (a, b) = (
        fs::metadata(original).unwrap(),
        fs::metadata(restored).unwrap(),
    );
    assert_eq!(
        fs::read(original).unwrap(),
        fs::read(restored).unwrap(),
        "{restored:?}"
    );
    assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777, "mode of {restored:?}");
    assert_eq!(a.mtime(), b.mtime(), "mtime of {restored:?}");
}

#[test]
fn a_file_and_a_subtree_inside_a_directory_restore_alone_with_every_layering() {
    let sb = Sandbox::new();
    let album = album(&sb.path("data"));
    for layers in [Layers::Plain, Layers::Zstd, Layers::Age, Layers::Both] {
        let config = config(&sb, &album, layers);
        assert_exit(&sb.run_config(&config), 0);
        let deep = album.join("sub/deep");
        let a = album.join("sub/a.txt");
        let (deep_arg, a_arg) = (deep.to_str().unwrap(), a.to_str().unwrap());

        let plan = planned(&sb, &config, &[deep_arg, a_arg]);
        assert_eq!(plan["entries"], 3, "{layers:?}: {plan}");
        let fetch = plan["fetch_bytes"].as_u64().unwrap();
        let stored = plan["stored_bytes"].as_u64().unwrap();
        // The small entries lie after the 9 MiB file: a few MiB at most, not the archive.
        assert!(fetch <= 6 << 20 && stored > 9 << 20, "{layers:?}: {plan}");

        let out = sb.path(&format!("out-{layers:?}"));
        let restored = restore(&sb, &config, &out, &[deep_arg, a_arg]);
        assert_exit(&restored, 0);
        assert_says(&restored, "restored 3 entries of");
        let back = out.join("album");
        assert_same_file(&album.join("sub/deep/b.txt"), &back.join("sub/deep/b.txt"));
        assert_same_file(&a, &back.join("sub/a.txt"));
        for absent in ["big.bin", "empty", "link", "sub/many"] {
            assert!(
                !back.join(absent).exists(),
                "{layers:?}: {absent} restored too"
            );
        }
        let leftovers: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["album"], "{layers:?}: nothing but the album");

        // The large file alone, across many MiB, and the link.
        let big = album.join("big.bin");
        let link = album.join("link");
        let restored = restore(
            &sb,
            &config,
            &out,
            &[big.to_str().unwrap(), link.to_str().unwrap()],
        );
        assert_exit(&restored, 0);
        assert_same_file(&big, &back.join("big.bin"));
        assert_eq!(
            fs::read_link(back.join("link")).unwrap(),
            Path::new("sub/a.txt")
        );
    }
}

#[test]
fn include_restores_only_the_entries_a_glob_matches() {
    let sb = Sandbox::new();
    let album = album(&sb.path("data"));
    let config = config(&sb, &album, Layers::Zstd);
    assert_exit(&sb.run_config(&config), 0);
    let out = sb.path("out");
    let included = restore(
        &sb,
        &config,
        &out,
        &["--include", "*.txt", album.to_str().unwrap()],
    );
    assert_exit(&included, 0);
    let mut restored: Vec<String> = walk(&out.join("album"));
    restored.sort();
    assert_eq!(restored, ["sub", "sub/a.txt", "sub/deep", "sub/deep/b.txt"]);
    assert_same_file(
        &album.join("sub/deep/b.txt"),
        &out.join("album/sub/deep/b.txt"),
    );

    // A glob with a `/` matches whole paths; one that matches nothing restores nothing.
    let nothing = restore(
        &sb,
        &config,
        &out,
        &["--include", "*.jpg", album.to_str().unwrap()],
    );
    assert_exit(&nothing, 1);
    assert_says(&nothing, "matches --include *.jpg");
    let bad = sb
        .with_config(
            &config,
            &["restore", "--include", "[", album.to_str().unwrap()],
        )
        .output()
        .unwrap();
    assert_exit(&bad, 2);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            names.extend(walk(&path).into_iter().map(|n| format!("{name}/{n}")));
        }
        names.push(name);
    }
    names
}

/// Only the spans a partial restore needs are read: a byte flipped elsewhere in the stored
/// archive does not stop it (the whole restore does fail on it), and a byte flipped inside the
/// span is refused with nothing placed.
#[test]
fn only_the_fetched_spans_are_read_and_a_flipped_byte_in_one_places_nothing() {
    let sb = Sandbox::new();
    let album = album(&sb.path("data"));
    for layers in [Layers::Plain, Layers::Both] {
        let config = config(&sb, &album, layers);
        assert_exit(&sb.run_config(&config), 0);
        let name = format!("{layers:?}").to_lowercase();
        let stored = find_archive(&sb.path(&format!("archives-{name}")));
        let a = album.join("sub/a.txt");
        let plan = planned(&sb, &config, &[a.to_str().unwrap()]);
        let span = &plan["ranges"][0];
        let (start, end) = (span[0].as_u64().unwrap(), span[1].as_u64().unwrap());
        assert!(start >= 3 << 20, "{layers:?}: {plan}");

        flip(&stored, 2 << 20); // inside big.bin, outside the span
        let out = sb.path(&format!("out-{name}"));
        let restore_one = |what: &Path| restore(&sb, &config, &out, &[what.to_str().unwrap()]);
        assert_exit(&restore_one(&a), 0);
        assert_same_file(&a, &out.join("album/sub/a.txt"));
        fs::remove_dir_all(&out).unwrap();
        let whole = restore_one(&album);
        assert_exit(&whole, 1);
        assert!(!out.join("album/big.bin").exists());

        flip(&stored, (start + end) / 2);
        let refused = restore_one(&a);
        assert_exit(&refused, 1);
        assert_says(&refused, "does not match its tree hash leaf");
        assert!(
            !out.join("album/sub/a.txt").exists(),
            "{}",
            output_text(&refused)
        );
        let left = fs::read_dir(&out).map_or(0, |d| d.count());
        assert_eq!(left, 0, "{layers:?}: nothing left in the target");
    }
}

fn find_archive(dir: &Path) -> PathBuf {
    let mut found = crate::support::files_below(dir);
    found.retain(|path| !path.to_string_lossy().ends_with(".gbindex"));
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn flip(file: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
}

#[test]
fn a_path_an_upload_does_not_hold_or_an_upload_without_a_catalog_is_refused_with_the_reason() {
    let sb = Sandbox::new();
    let album = album(&sb.path("data"));
    let config = config(&sb, &album, Layers::Plain);
    assert_exit(&sb.run_config(&config), 0);
    let out = sb.path("out");
    let missing = album.join("sub/never.txt");
    let refused = restore(&sb, &config, &out, &[missing.to_str().unwrap()]);
    assert_exit(&refused, 1);
    assert_says(&refused, "nothing in the upload of");
    assert_says(&refused, "sub/never.txt");

    let ledger = rusqlite::Connection::open(sb.path("ledger-plain.sqlite3")).unwrap();
    ledger.execute("DELETE FROM catalogs", []).unwrap();
    let a = album.join("sub/a.txt");
    let refused = restore(&sb, &config, &out, &[a.to_str().unwrap()]);
    assert_exit(&refused, 1);
    assert_says(&refused, "has no catalog");
    assert!(!out.join("album").exists());
    // A directory row of the Python tool (kind unknown, a `.tar` name): a path inside it is
    // refused for want of a catalog, never answered with the whole archive.
    ledger
        .execute(
            "INSERT INTO uploads (path, name, archive_id, uploaded_date) \
             VALUES ('/py/photos', 'photos.tar', 'python-tool-archive', 1700000000)",
            [],
        )
        .unwrap();
    let python = restore(&sb, &config, &out, &["/py/photos/a.jpg"]);
    assert_exit(&python, 1);
    assert_says(&python, "has no catalog");
    assert!(!out.join("photos").exists());
    // The whole directory still restores.
    let whole = restore(&sb, &config, &out, &[album.to_str().unwrap()]);
    assert_exit(&whole, 0);
    assert_same_file(&a, &out.join("album/sub/a.txt"));
}

/// From a vault, each span is its own archive-retrieval job of that range alone (aligned to
/// whole MiB, as Glacier requires), asked once, waited for, and read.
#[cfg(feature = "glacier")]
#[test]
fn a_vault_retrieves_only_the_ranges_a_partial_restore_needs() {
    use crate::support::setup::Setup;
    let s = Setup::with_fake();
    let album = album(&s.path("data"));
    let (key, recipient) = s.keygen();
    let config = s.vault_config(&format!(
        "[archive]\ncompression = \"zstd\"\n[encryption]\nrecipients = [\"{recipient}\"]\n\
         identity_file = \"{}\"\n[\"{}\"]\nupload_single_dir = true\n",
        key.display(),
        album.display()
    ));
    assert_exit(&s.run_config(&config), 0);
    let a = album.join("sub/a.txt");
    let plan = planned(&s, &config, &[a.to_str().unwrap()]);
    let ranges: Vec<(u64, u64)> = plan["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect();
    let stored = plan["stored_bytes"].as_u64().unwrap();
    assert!(plan["fetch_bytes"].as_u64().unwrap() <= 3 << 20, "{plan}");
    s.fake().set(|b| b.hold_jobs = true);

    let out = s.path("out");
    let restore = || {
        let mut command = s.with_config(&config, &["restore", "--to"]);
        command.arg(&out).arg(&a);
        command
    };
    let asked = restore().output().unwrap();
    assert_exit(&asked, 3);
    assert_says(&asked, "retrieval requested");
    let retrieved: Vec<_> = s.fake().stats().retrieval_ranges;
    assert_eq!(
        retrieved,
        ranges.iter().map(|&r| Some(r)).collect::<Vec<_>>(),
        "one job per range, nothing whole (archive of {stored} bytes)"
    );
    // Asked again: the jobs under way are found, none started twice.
    assert_exit(&restore().output().unwrap(), 3);
    assert_eq!(s.fake().stats().retrievals_started, ranges.len() as u64);

    let done = crate::glacier_fake::finish_jobs_while_waiting(
        &s,
        restore().args(["--wait", "--timeout", "60"]),
    );
    assert_exit(&done, 0);
    assert_same_file(&a, &out.join("album/sub/a.txt"));
    let fetched: u64 = ranges.iter().map(|(start, end)| end - start).sum();
    assert!(s.fake().stats().output_bytes <= fetched);
    assert_eq!(s.fake().stats().retrievals_started, ranges.len() as u64);
    assert!(!out.join("album/big.bin").exists());
}

/// From S3, every GET of the archive is ranged: GLACIER_IR serves the spans at once;
/// DEEP_ARCHIVE restores the object first (AWS restores whole objects) and then serves only the
/// spans. moto's own log counts the GETs.
#[cfg(feature = "s3")]
#[test]
fn a_bucket_serves_a_partial_restore_by_ranged_gets_alone() {
    use crate::support::setup::Setup;
    for class in ["GLACIER_IR", "DEEP_ARCHIVE"] {
        let s = Setup::with_fake().and_moto();
        let album = album(&s.path("data"));
        let (key, recipient) = s.keygen();
        let config = s
            .bucket()
            .backend("storage_class", class)
            .raw(&format!(
                "[archive]\ncompression = \"zstd\"\n[encryption]\nrecipients = [\"{recipient}\"]\n\
                 identity_file = \"{}\"\n[\"{}\"]\nupload_single_dir = true\n",
                key.display(),
                album.display()
            ))
            .write(&s.path("config/s3.toml"));
        assert_exit(&s.run_config(&config), 0);
        let (archive_key, size) = s.objects().pop().unwrap();
        let paths = [album.join("sub/a.txt"), album.join("sub/deep")];
        let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
        let plan = planned(&s, &config, &args);
        let ranges = plan["ranges"].as_array().unwrap().len();
        assert!(plan["fetch_bytes"].as_u64().unwrap() <= 3 << 20, "{plan}");

        let before = s.moto().requests().len();
        let out = s.path("out");
        let mut all = vec!["--wait", "--timeout", "60"];
        all.extend(&args);
        let restored = restore(&s, &config, &out, &all);
        assert_exit(&restored, 0);
        assert_same_file(&paths[0], &out.join("album/sub/a.txt"));
        assert_same_file(
            &album.join("sub/deep/b.txt"),
            &out.join("album/sub/deep/b.txt"),
        );
        assert!(!out.join("album/big.bin").exists());

        let of_archive = format!("/{}/{archive_key}", crate::support::setup::BUCKET);
        let gets: Vec<u16> = s.moto().requests()[before..]
            .iter()
            .filter(|r| {
                let path = r.path.split('?').next().unwrap();
                r.method == "GET"
                    && percent_encoding::percent_decode_str(path).decode_utf8_lossy() == of_archive
            })
            .map(|r| r.status)
            .collect();
        assert_eq!(
            gets,
            vec![206; ranges],
            "{class}: one ranged GET per span of {plan}, nothing whole ({size} bytes)"
        );
        let restores = s.moto().requests()[before..]
            .iter()
            .filter(|r| r.method == "POST" && r.path.contains("restore"))
            .count();
        assert_eq!(restores, usize::from(class == "DEEP_ARCHIVE"), "{class}");
    }
}
