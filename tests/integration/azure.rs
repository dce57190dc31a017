//! The azure backend through the real binary against Azurite on 127.0.0.1: the awkward tree
//! round trip, the tier and metadata Azure's own client reads back, a killed upload rerun, a
//! lost ledger rebuilt, ls/find and a partial restore, prune, and an archive never left
//! without its index.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::config::TestConfig;
use crate::support::sandbox::output_text;
use crate::support::setup::{Setup, CONTAINER};
use crate::support::stall::Stall;
use crate::support::trees::{assert_same_tree, awkward_tree};
use crate::support::{random_bytes, wait_until};

const TREE: &str = "upload_dirs = true\nupload_files = true\nupload_if_changed = true";

fn count(ledger: &rusqlite::Connection, sql: &str) -> i64 {
    ledger.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Backs up the awkward tree in `tier`, checks what Azure's client reads of every blob, and
/// restores it byte for byte; then loses the ledger, rebuilds it from the container, and finds
/// everything up to date and restorable, by entry too.
fn round_trip_in(tier: &str) {
    let s = Setup::with_azurite();
    let data = s.path("data");
    awkward_tree(&data);
    let config = s
        .container(tier)
        .path(&data, TREE)
        .write(&s.path("config/azure.toml"));
    let (code, out) = s.outcome(&config, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 3"), "{out}");

    let blobs = s.blobs();
    let (indexes, archives): (Vec<_>, Vec<_>) = blobs
        .iter()
        .partition(|(name, _)| name.ends_with(".gbindex"));
    assert_eq!(archives.len(), 3, "{blobs:?}");
    // Every archive, a file's too, has its index beside it.
    assert_eq!(indexes.len(), 3, "{blobs:?}");
    for (name, properties) in &archives {
        assert_eq!(properties.tier, tier, "{name}");
        let origin = &properties.metadata["gb_origin"];
        assert!(origin.contains(" gb1:"), "{name}: {origin}");
        assert!(properties.metadata.contains_key("gb_tree_hash"), "{name}");
    }
    for (name, properties) in &indexes {
        assert_eq!(properties.tier, "Hot", "{name}");
        assert!(
            properties.metadata.contains_key("gb_indexed_tree_hash"),
            "{name}: {properties:?}"
        );
    }

    let (code, out) = s.outcome(&config, &["verify", "--remote"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verified 3 upload(s): 0 problem(s)"), "{out}");
    let restored = s.path("restored");
    // Azure's tiers are online: a restore is priced as reads, with the tier's own fees.
    let (code, out) = s.outcome(
        &config,
        &[
            "restore",
            "-d",
            "--to",
            restored.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("archive(s) read at once") && out.contains("Azure East US LRS list prices"),
        "{out}"
    );
    let out = restored_tree(&s, &config, &data);
    assert!(out.contains("restored 3, pending 0, failed 0"), "{out}");

    let ledger = s.path(&format!(
        "config/azure.devstoreaccount1.{CONTAINER}.sqlite3"
    ));
    let rows_before = count(
        &rusqlite::Connection::open(&ledger).unwrap(),
        "SELECT count(*) FROM uploads WHERE tree_hash IS NOT NULL",
    );
    assert_eq!(rows_before, 3);
    fs::remove_file(&ledger).unwrap();
    let (code, out) = s.outcome(&config, &["inventory", "--rebuild-ledger"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ledger rows added: 3"), "{out}");
    let rebuilt = rusqlite::Connection::open(&ledger).unwrap();
    assert_eq!(
        count(
            &rebuilt,
            "SELECT count(*) FROM uploads WHERE tree_hash IS NOT NULL"
        ),
        3,
        "a rebuilt row lacks its tree hash"
    );
    let (code, out) = s.outcome(&config, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 0, up to date 3, failed 0"), "{out}");
    let (code, out) = s.outcome(
        &config,
        &["ls", data.join("Фото 2026 (copy)").to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("café.txt") && out.contains("big.bin"), "{out}");
    let (code, out) = s.outcome(&config, &["find", "*.sh"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("run.sh"), "{out}");
    let wanted = data.join("Фото 2026 (copy)/café.txt");
    assert_eq!(
        restored_file(&s, &config, &wanted),
        fs::read(&wanted).unwrap()
    );
}

#[test]
fn the_awkward_tree_round_trips_in_the_cool_tier_and_a_lost_ledger_is_rebuilt() {
    round_trip_in("Cool");
}

#[test]
fn the_awkward_tree_round_trips_in_the_cold_tier_and_a_lost_ledger_is_rebuilt() {
    round_trip_in("Cold");
}

/// A multipart archive's tree hash lives only in its index: the rebuilt ledger has it from
/// there, and verify --remote --read checks the bytes against it.
#[test]
fn a_multipart_archives_tree_hash_comes_back_from_its_index() {
    let s = Setup::with_azurite();
    let file = source_file(&s, "video.bin", &random_bytes(20 << 20, 7));
    let config = one_path(&s, s.container("Cold"), &file, "");
    let (code, out) = s.outcome(&config, &[]);
    assert_eq!(code, Some(0), "{out}");
    let blobs = s.blobs();
    // The archive's key sorts first: its index's is the same key with a suffix.
    let (archive, index) = (
        blobs.values().next().unwrap(),
        blobs.values().nth(1).unwrap(),
    );
    assert!(
        !archive.metadata.contains_key("gb_tree_hash"),
        "a multipart blob cannot carry its tree hash: {archive:?}"
    );
    let ledger = s.container_ledger(&config);
    let recorded = || -> String {
        ledger
            .query_row("SELECT tree_hash FROM uploads", [], |r| r.get(0))
            .unwrap()
    };
    let tree_hash = recorded();
    assert_eq!(index.metadata["gb_indexed_tree_hash"], tree_hash);
    ledger.execute("DELETE FROM uploads", []).unwrap();
    let (code, out) = s.outcome(&config, &["inventory", "--rebuild-ledger"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(recorded(), tree_hash);
    let (code, out) = s.outcome(&config, &["verify", "--remote", "--read"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(restored_file(&s, &config, &file), fs::read(&file).unwrap());
}

/// kill -9 in the middle of a block upload: nothing is committed, nothing recorded, and the
/// rerun stores the archive once (one blob and its index) under one ledger row.
#[test]
fn a_killed_upload_leaves_nothing_and_the_rerun_stores_one_archive() {
    let s = Setup::with_azurite();
    let file = source_file(&s, "video.bin", &random_bytes(40 << 20, 3));
    // Two blocks and a half of the third get through; then the upload can go no further.
    let stall = Stall::new(&azurite_address(&s), 20 << 20);
    let stalled = one_path(&s, through(&s, &stall, "Cool"), &file, "");
    killed_once(&s, &stalled, || stall.passed() >= 20 << 20);
    assert!(s.blobs().is_empty(), "{:?}", s.blobs());
    let ledger = s.container_ledger(&stalled);
    assert_eq!(count(&ledger, "SELECT count(*) FROM uploads"), 0);
    assert_eq!(count(&ledger, "SELECT count(*) FROM pending_uploads"), 0);

    let direct = one_path(&s, s.container("Cool"), &file, "");
    let (code, out) = s.outcome(&direct, &[]);
    assert_eq!(code, Some(0), "{out}");
    let names: Vec<String> = s.blobs().into_keys().collect();
    assert_eq!(names.len(), 2, "one archive and its index: {names:?}");
    assert!(names[1] == format!("{}.gbindex", names[0]), "{names:?}");
    assert_eq!(count(&ledger, "SELECT count(*) FROM uploads"), 1);
    assert_eq!(restored_file(&s, &direct, &file), fs::read(&file).unwrap());
}

/// kill -9 between an archive's commit and its index: the archive is never recorded, a
/// rebuilt ledger leaves it out, and the next backup of its path (an hour later by the run's
/// clock, so another machine's upload between the two is never taken for it) deletes it.
#[test]
fn an_archive_a_killed_run_left_without_its_index_is_deleted_by_the_next_backup() {
    let s = Setup::with_azurite();
    let file = source_file(&s, "notes.txt", &random_bytes(50_000, 9));
    let stall = Stall::at(&azurite_address(&s), ".gbindex ");
    let stalled = one_path(&s, through(&s, &stall, "Cool"), &file, "");
    killed_once(&s, &stalled, || stall.holding_one());
    let left: Vec<String> = s.blobs().into_keys().collect();
    assert_eq!(left.len(), 1, "the archive alone: {left:?}");
    let ledger = s.container_ledger(&stalled);
    assert_eq!(count(&ledger, "SELECT count(*) FROM uploads"), 0);

    let direct = one_path(&s, s.container("Cool"), &file, "");
    let (code, out) = s.outcome(&direct, &["inventory", "--rebuild-ledger"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ledger rows added: 0"), "{out}");
    assert!(out.contains("without their index"), "{out}");
    let later = time::OffsetDateTime::now_utc().unix_timestamp() + 2 * 3600;
    let (code, out) = outcome_at(&s, &direct, &[], later);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("deleting {}", left[0])), "{out}");
    let names: Vec<String> = s.blobs().into_keys().collect();
    assert_eq!(names.len(), 2, "one archive and its index: {names:?}");
    assert!(!names.contains(&left[0]), "{names:?}");
    assert_eq!(count(&ledger, "SELECT count(*) FROM uploads"), 1);
}

/// A file `data/<name>` holding `bytes`.
fn source_file(s: &Setup, name: &str, bytes: &[u8]) -> PathBuf {
    let file = s.path("data").join(name);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, bytes).unwrap();
    file
}

/// The container's config in `tier`, reached through `stall`.
fn through(s: &Setup, stall: &Stall, tier: &str) -> TestConfig {
    s.container(tier)
        .backend("endpoint_url", format!("{}/devstoreaccount1", stall.origin))
}

/// Starts a backup with `config` and kills it (-9) once `stalled` says its upload is held.
fn killed_once(s: &Setup, config: &Path, stalled: impl Fn() -> bool) {
    let child = s
        .with_config(config, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the upload never got going", stalled);
    let out = crate::glacier_fake::signal_child(child, "-KILL");
    assert_eq!(out.status.code(), None, "killed by a signal");
}

/// Runs with `config` and `args` by a clock set to `at` (Unix seconds): exit code and output.
fn outcome_at(s: &Setup, config: &Path, args: &[&str], at: i64) -> (Option<i32>, String) {
    let out = s
        .with_config(config, args)
        .env("GLACIER_BACKUP_NOW", at.to_string())
        .output()
        .unwrap();
    (out.status.code(), output_text(&out))
}

/// Restores `source` from `config` into a new directory: the one file placed there.
fn restored_file(s: &Setup, config: &Path, source: &Path) -> Vec<u8> {
    let back = s.path("back");
    let _ = fs::remove_dir_all(&back);
    let (code, out) = s.outcome(
        config,
        &[
            "restore",
            "--to",
            back.to_str().unwrap(),
            source.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let placed = crate::support::files_below(&back);
    assert_eq!(placed.len(), 1, "{placed:?}");
    fs::read(&placed[0]).unwrap()
}

/// Restores the tree `source` from `config` into `restored` and checks it is `source` byte for
/// byte: the restore's output.
fn restored_tree(s: &Setup, config: &Path, source: &Path) -> String {
    let restored = s.path("restored");
    let (code, out) = s.outcome(
        config,
        &[
            "restore",
            "--to",
            restored.to_str().unwrap(),
            source.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_same_tree(source, &restored);
    out
}

/// Azurite's `host:port`, for a proxy in front of it.
fn azurite_address(s: &Setup) -> String {
    s.azurite()
        .endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// A config for `config`'s destination backing up `path` with the path section's `settings`.
fn one_path(s: &Setup, config: TestConfig, path: &Path, settings: &str) -> PathBuf {
    config
        .raw(&format!("[\"{}\"]\n{settings}", path.display()))
        .write(&s.path("config/azure.toml"))
}

/// An archive the ledger records is never deleted for want of its index: one whose index
/// someone deleted is kept by the next backup of its path, which says it lost its index.
#[test]
fn a_recorded_archive_that_lost_its_index_is_kept() {
    let s = Setup::with_azurite();
    let file = source_file(&s, "notes.txt", b"version 0");
    let config = one_path(&s, s.container("Cool"), &file, "upload_if_changed = true\n");
    let start = time::OffsetDateTime::now_utc().unix_timestamp();
    let (code, out) = outcome_at(&s, &config, &[], start);
    assert_eq!(code, Some(0), "{out}");
    let names: Vec<String> = s.blobs().into_keys().collect();
    s.azurite().delete_blob(CONTAINER, &names[1]);
    fs::write(&file, b"version 1").unwrap();
    let (code, out) = outcome_at(&s, &config, &[], start + 2 * 3600);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("archive {} has lost its index", names[0])),
        "{out}"
    );
    assert!(
        s.blobs().contains_key(&names[0]),
        "a recorded archive was deleted"
    );
    assert_eq!(s.blobs().len(), 3);
}

/// When the index cannot be stored, the archive is deleted and the upload fails: no archive
/// is left at the destination without its index, and nothing is recorded.
#[test]
fn an_archive_whose_index_cannot_be_stored_is_deleted() {
    let s = Setup::with_azurite();
    let file = source_file(&s, "notes.txt", b"an archive that loses its index");
    let config = one_path(&s, s.container("Cool"), &file, "");
    // The run's clock fixes the archive's key; another writer holds a lease on its index's.
    let at = 1_800_000_000;
    let key = glacier_backup::archiver::keys::archive_key(
        &file,
        time::OffsetDateTime::from_unix_timestamp(at).unwrap(),
        false,
    );
    let index = glacier_backup::archiver::keys::index_key(&key);
    s.azurite().leased_blob(CONTAINER, &index);
    let (code, out) = outcome_at(&s, &config, &[], at);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("its index could not be"), "{out}");
    let names: Vec<String> = s.blobs().into_keys().collect();
    assert_eq!(names, vec![index], "only the other writer's blob is left");
    let ledger = s.container_ledger(&config);
    assert_eq!(count(&ledger, "SELECT count(*) FROM uploads"), 0);
}

/// prune deletes an Azure archive with its index, and waits out the Cool tier's 30 days.
#[test]
fn prune_deletes_archives_and_their_indexes_after_the_minimum_duration() {
    let s = Setup::with_azurite();
    let file = source_file(&s, "notes.txt", b"");
    let config = one_path(
        &s,
        s.container("Cool").section("retention", "keep_last = 1"),
        &file,
        "upload_if_changed = true\n",
    );
    let (day, start) = (86_400, 1_800_000_000);
    for (n, at) in [start, start + day].into_iter().enumerate() {
        fs::write(&file, format!("version {n}")).unwrap();
        let (code, out) = outcome_at(&s, &config, &[], at);
        assert_eq!(code, Some(0), "{out}");
    }
    assert_eq!(s.blobs().len(), 4);
    // Two days in, Cool's 30 days are not up: the old archive waits.
    let (code, out) = outcome_at(&s, &config, &["prune", "--yes"], start + 2 * day);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(s.blobs().len(), 4, "{out}");
    let (code, out) = outcome_at(&s, &config, &["prune", "--yes"], start + 40 * day);
    assert_eq!(code, Some(0), "{out}");
    let names: Vec<String> = s.blobs().into_keys().collect();
    assert_eq!(names.len(), 2, "{names:?}\n{out}");
    assert_eq!(restored_file(&s, &config, &file), b"version 1");
}

/// A wrong key is refused before anything is uploaded, with a message that says where
/// credentials come from and never shows the key.
#[test]
fn a_wrong_key_is_refused_naming_where_credentials_come_from() {
    let s = Setup::with_azurite();
    let file = source_file(&s, "notes.txt", b"notes");
    let config = one_path(&s, s.container("Cold"), &file, "");
    let wrong =
        "d3JvbmcgYnV0IHdlbGwgZm9ybWVkIGtleSBvZiBzaXh0eS1mb3VyIGJ5dGVzIGxvbmcgZW5vdWdoISEhIQ==";
    let out = s
        .with_config(&config, &[])
        .env("AZURE_STORAGE_ACCOUNT_KEY", wrong)
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    assert!(s.blobs().is_empty());
}

/// What a killed run costs a tree split into archives (`upload_dirs`): only the archive in
/// flight. Every archive it finished is recorded, and the rerun sends only the others: here
/// two of four 10 MiB archives, counted in bytes on the wire.
#[test]
fn a_killed_run_loses_only_the_archive_in_flight() {
    let s = Setup::with_azurite();
    for (n, name) in ["a", "b", "c", "d"].iter().enumerate() {
        source_file(
            &s,
            &format!("{name}/big.bin"),
            &random_bytes(10 << 20, n as u64),
        );
    }
    let data = s.path("data");
    let archive = 10u64 << 20;
    let split = "upload_dirs = true\nupload_if_changed = true\n";
    // Two archives and a half: the third is in flight when the upload can go no further.
    let stall = Stall::new(&azurite_address(&s), 2 * archive + archive / 2);
    let stalled = one_path(&s, through(&s, &stall, "Cool"), &data, split);
    killed_once(&s, &stalled, || stall.holding_one());
    let ledger = s.container_ledger(&stalled);
    assert_eq!(count(&ledger, "SELECT count(*) FROM uploads"), 2);

    let counted = Stall::new(&azurite_address(&s), u64::MAX);
    let rerun = one_path(&s, through(&s, &counted, "Cool"), &data, split);
    let (code, out) = s.outcome(&rerun, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 2, up to date 2"), "{out}");
    let sent = counted.passed();
    assert!(
        sent > 2 * archive && sent < 2 * archive + archive / 4,
        "the rerun sent {sent} bytes for two archives of {archive}"
    );
    assert_eq!(count(&ledger, "SELECT count(*) FROM uploads"), 4);
    let archives = s
        .blobs()
        .keys()
        .filter(|k| !k.ends_with(".gbindex"))
        .count();
    assert_eq!(archives, 4);
}

/// `migrate` into Azure gives every copy its index, a file's too, so each copy's tree hash is
/// at the destination; the copies restore byte for byte from the Azure ledger alone.
#[test]
fn migrated_copies_get_their_indexes_and_restore() {
    let s = Setup::with_azurite();
    let data = s.path("data");
    awkward_tree(&data);
    let local = s.local_config(&format!(
        "[\"{}\"]\nupload_dirs = true\nupload_files = true\n",
        data.display()
    ));
    let (code, out) = s.outcome(&local, &[]);
    assert_eq!(code, Some(0), "{out}");
    let azure = s.container("Cold").write(&s.path("config/azure.toml"));
    let moved = s.migrate(&local, &azure, &[]);
    let text = crate::support::sandbox::output_text(&moved);
    assert_eq!(moved.status.code(), Some(0), "{text}");
    assert!(
        text.contains("moved 3, already moved 0, pending 0, failed 0"),
        "{text}"
    );
    let blobs = s.blobs();
    let indexes = blobs.keys().filter(|k| k.ends_with(".gbindex")).count();
    assert_eq!((blobs.len(), indexes), (6, 3), "{blobs:?}");
    restored_tree(&s, &azure, &data);
}
