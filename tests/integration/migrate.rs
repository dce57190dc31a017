//! `migrate` from the fake Glacier vault to moto's S3, through the binary: the plan and its
//! cost, every kind of archive moved with its history, a run killed mid-copy and continued
//! without reading or sending again what was copied, `--delete-source`, and backups and
//! restores against S3 afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::sandbox::{assert_exit, assert_says, text};
use crate::support::setup::Setup;
use crate::support::wait_until;

const MIB: usize = 1 << 20;

impl Setup {
    /// The vault's config (1 MiB parts, so directory archives go up in several) and the
    /// bucket's (8 MiB parts), both backing up `paths`.
    fn configs(&self, paths: &str) -> (PathBuf, PathBuf) {
        (self.vault_config(paths), self.bucket_config(paths))
    }

    /// A file of `len` bytes backed up to the vault: its path, bytes and the two configs.
    fn vaulted_file(&self, len: usize, seed: u8) -> (PathBuf, Vec<u8>, PathBuf, PathBuf) {
        let file = self.path("data/disk.img");
        let data = sample(len, seed);
        write(&file, &data);
        let (vault, bucket) = self.configs(&format!("[\"{}\"]\n", file.display()));
        assert_exit(&self.with_config(&vault, &[]).output().unwrap(), 0);
        (file, data, vault, bucket)
    }

    /// Starts a migration whose reads from `held_from` on wait, unanswered, and returns it
    /// once `parts` parts (of 8 MiB) are copied: stopped there, however fast the machine.
    fn migration_held_at(
        &self,
        vault: &Path,
        bucket: &Path,
        held_from: u64,
        parts: i64,
    ) -> std::process::Child {
        self.fake().set(|b| b.hold_output_from = Some(held_from));
        let child = self
            .with_config(vault, &["migrate", "--to"])
            .arg(bucket)
            .arg("--wait")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let copied = || -> i64 {
            rusqlite::Connection::open_with_flags(
                self.path("config/glacier.photos.sqlite3"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|c| c.query_row("SELECT count(*) FROM move_parts", [], |r| r.get(0)))
            .unwrap_or(0)
        };
        wait_until("parts copied", || copied() == parts);
        child
    }
}

fn sample(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// The rows of a ledger that a migration must carry over, oldest first.
fn rows(ledger: &rusqlite::Connection) -> Vec<(String, String, String, i64, String, String)> {
    let mut stmt = ledger
        .prepare(
            "SELECT path, name, kind, size, tree_hash, coalesce(fingerprint, '') || ' ' || \
             coalesce(uploaded_at, '') FROM uploads ORDER BY rowid",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn a_vault_moves_to_s3_with_its_history_and_backups_and_restores_go_on_there() {
    let s = Setup::with_fake().and_moto();
    let data = s.path("data");
    let notes = sample(1000, 1);
    write(&data.join("notes.txt"), &notes);
    let big = sample(9 * MIB + 17, 2);
    write(&data.join("album/raw/big.bin"), &big);
    write(&data.join("album/small.txt"), b"small");
    write(&data.join("log.txt"), b"first version");
    let paths = format!(
        "[\"{d}/notes.txt\"]\n\n[\"{d}/album\"]\nupload_single_dir = true\n\n\
         [\"{d}/log.txt\"]\nupload_if_changed = true\n",
        d = data.display()
    );
    let (vault, bucket) = s.configs(&paths);
    let backup = s.with_config(&vault, &[]).output().unwrap();
    assert_exit(&backup, 0);
    // A second upload of one path: its history must move too.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&data.join("log.txt"), b"second version, longer");
    let again = s.with_config(&vault, &[]).output().unwrap();
    assert_exit(&again, 0);
    let vault_rows = rows(&s.vault_ledger());
    assert_eq!(vault_rows.len(), 4, "{vault_rows:?}");

    // The plan: what moves, and what it costs; nothing is asked or stored.
    let plan = s.migrate(&vault, &bucket, &["-d", "--json", "--delete-source"]);
    assert_exit(&plan, 0);
    let document: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned = &document["plan"];
    assert_eq!(planned["archives"], 4, "{document}");
    let bytes: i64 = vault_rows.iter().map(|r| r.3).sum();
    assert_eq!(planned["bytes"], bytes);
    assert_eq!(planned["tier"], "bulk");
    let cost = &planned["cost"];
    for key in [
        "retrieval",
        "transfer",
        "upload_requests",
        "monthly",
        "early_deletion",
    ] {
        assert!(cost[key].as_f64().unwrap() > 0.0, "{key}: {cost}");
    }
    assert_says(&plan, "estimated cost");
    assert!(s.objects().is_empty());
    assert!(s.fake().stats().outputs.is_empty());

    let moved = s.migrate(&vault, &bucket, &["--wait", "--timeout", "120"]);
    assert_exit(&moved, 0);
    assert_says(&moved, "moved 4, already moved 0, pending 0, failed 0");
    let objects = s.objects();
    assert_eq!(objects.len(), 4, "{objects:?}");
    // The album's index was written beside its copy, named after it.
    let indexes = s.indexes();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(indexes[0].0.contains("/album/"), "{indexes:?}");
    let class_of = |key: &str| {
        s.block_on(s.s3().head_object().bucket("cold").key(key).send())
            .unwrap()
            .storage_class()
            .map(|c| c.as_str().to_owned())
    };
    // Readable at once whatever the archives' class (S3 omits STANDARD).
    assert!(matches!(
        class_of(&indexes[0].0).as_deref(),
        None | Some("STANDARD")
    ));
    assert_eq!(class_of(&objects[0].0).as_deref(), Some("GLACIER_IR"));
    // Each archive is read once, whole, from the vault.
    let read: u64 = s.fake().stats().outputs.iter().map(|o| o.1).sum();
    assert_eq!(read as i64, bytes);

    // The bucket's ledger has the vault's rows: same path, name, kind, size, tree hash,
    // fingerprint and upload time, oldest first.
    assert_eq!(rows(&s.bucket_ledger()), vault_rows);
    let moved_marks: i64 = s
        .vault_ledger()
        .query_row("SELECT count(*) FROM moved", [], |r| r.get(0))
        .unwrap();
    assert_eq!(moved_marks, 4);
    let listed = s.with_config(&vault, &["list"]).output().unwrap();
    assert_says(&listed, "(moved to s3.cold ");
    // Keys are the S3 backend's own, at the original upload time.
    let album_key = objects
        .iter()
        .find(|(k, _)| k.contains("/album/") && k.ends_with(".tar"))
        .map(|(k, _)| k.clone())
        .expect("the directory archive's key");
    let tar_file = s.path("album.tar");
    fs::write(&tar_file, s.object(&album_key)).unwrap();
    let out = s.path("untarred");
    fs::create_dir_all(&out).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("xf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", text(&tar));
    assert_eq!(fs::read(out.join("album/raw/big.bin")).unwrap(), big);

    // Backups continue on S3 without uploading anything unchanged.
    let on_s3 = s.with_config(&bucket, &[]).output().unwrap();
    assert_exit(&on_s3, 0);
    assert_eq!(s.objects().len(), 4, "{}", text(&on_s3));

    // Restores from S3 are byte-exact, the history included.
    let restored = s.path("restored");
    let restore = s
        .with_config(&bucket, &["restore", "--to"])
        .arg(&restored)
        .arg(&data)
        .output()
        .unwrap();
    assert_exit(&restore, 0);
    assert_eq!(fs::read(restored.join("notes.txt")).unwrap(), notes);
    assert_eq!(fs::read(restored.join("album/raw/big.bin")).unwrap(), big);
    assert_eq!(
        fs::read(restored.join("log.txt")).unwrap(),
        b"second version, longer"
    );
    let first_time: String = s
        .bucket_ledger()
        .query_row(
            "SELECT uploaded_at FROM uploads WHERE path LIKE '%log.txt' ORDER BY rowid LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let earlier = s.path("earlier");
    let restore_at = s
        .with_config(&bucket, &["restore", "--at", &first_time, "--to"])
        .arg(&earlier)
        .arg(data.join("log.txt"))
        .output()
        .unwrap();
    assert_exit(&restore_at, 0);
    assert_eq!(fs::read(earlier.join("log.txt")).unwrap(), b"first version");

    // The catalogs moved with the rows: `ls` reads the album from the bucket's ledger, and
    // one file comes back from S3 by ranged reads, not the whole archive.
    let listed = s
        .with_config(&bucket, &["ls"])
        .arg(data.join("album"))
        .output()
        .unwrap();
    assert_exit(&listed, 0);
    assert!(text(&listed).contains("small.txt"), "{}", text(&listed));
    let one = s.path("one");
    let small = data.join("album/small.txt");
    let plan = s
        .with_config(&bucket, &["-d", "--json", "restore", "--to"])
        .arg(&one)
        .arg(&small)
        .output()
        .unwrap();
    assert_exit(&plan, 0);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let partial = &plan["archives"][0]["partial"];
    assert!(
        partial["fetch_bytes"].as_u64().unwrap() < 9 * MIB as u64,
        "{partial}"
    );
    let partial_restore = s
        .with_config(&bucket, &["restore", "--to"])
        .arg(&one)
        .arg(&small)
        .output()
        .unwrap();
    assert_exit(&partial_restore, 0);
    assert_eq!(fs::read(one.join("album/small.txt")).unwrap(), b"small");
    assert!(!one.join("album/raw").exists());

    // Nothing moves twice.
    let rerun = s.migrate(&vault, &bucket, &[]);
    assert_exit(&rerun, 0);
    assert_says(&rerun, "moved 0, already moved 4");
    assert_eq!(s.objects().len(), 4);
    assert_eq!(rows(&s.bucket_ledger()).len(), 4);

    // The objects carry what a lost ledger is rebuilt from, as S3 backups do.
    fs::remove_file(s.path("config/s3.cold.sqlite3")).unwrap();
    let rebuilt = s
        .with_config(&bucket, &["inventory", "--rebuild-ledger"])
        .output()
        .unwrap();
    assert_exit(&rebuilt, 0);
    assert_says(&rebuilt, "ledger rows added: 4");
    assert_says(&rebuilt, "1 restored");
    let identity = |rows: Vec<(String, String, String, i64, String, String)>| {
        let mut rows: Vec<_> = rows
            .into_iter()
            .map(|(path, name, kind, size, hash, times)| {
                let fingerprint = times.split(' ').next().unwrap_or_default().to_owned();
                (path, name, kind, size, hash, fingerprint)
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(identity(rows(&s.bucket_ledger())), identity(vault_rows));
    // The rebuilt ledger has the album's catalog again: one file of it restores alone.
    let after_rebuild = s.path("after-rebuild");
    let one_file = s
        .with_config(&bucket, &["restore", "--to"])
        .arg(&after_rebuild)
        .arg(&small)
        .output()
        .unwrap();
    assert_exit(&one_file, 0);
    assert_says(&one_file, "restored 1 entries of");
    assert_eq!(
        fs::read(after_rebuild.join("album/small.txt")).unwrap(),
        b"small"
    );
    assert!(!after_rebuild.join("album/raw").exists());

    // Another destination gets its own copy of every archive still in the vault.
    s.block_on(s.s3().create_bucket().bucket("other").send())
        .unwrap();
    let other = s
        .bucket()
        .backend("bucket", "other")
        .raw(&paths)
        .write(&s.path("config/other.toml"));
    let second = s.migrate(&vault, &other, &["--wait"]);
    assert_exit(&second, 0);
    assert_says(&second, "moved 4, already moved 0");
}

#[test]
fn a_copy_killed_midway_continues_without_reading_or_sending_its_copied_parts_again() {
    let s = Setup::with_fake().and_moto();
    let (_, data, vault, bucket) = s.vaulted_file(40 * MIB + 1, 3);
    // Reads from 24 MiB on wait until the test lets them through: the copy is killed with
    // exactly three 8 MiB parts read and stored.
    let mut child = s.migration_held_at(&vault, &bucket, 24 << 20, 3);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(s.objects().is_empty(), "no object for an incomplete copy");
    let bucket_rows: i64 = s
        .bucket_ledger()
        .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(bucket_rows, 0, "no row for an incomplete copy");
    let read_before: Vec<u64> = s.fake().stats().outputs.iter().map(|o| o.0).collect();

    s.fake().set(|b| b.hold_output_from = None);
    let out = s.migrate(&vault, &bucket, &["--wait", "--timeout", "120"]);
    assert_exit(&out, 0);
    assert_says(
        &out,
        "3 part(s) are already in the destination and are not read again",
    );
    assert_says(
        &out,
        "3 part(s) were already stored and were not sent again",
    );
    // The first 24 MiB were read once, by the killed run, never again.
    let outputs = s.fake().stats().outputs;
    for start in [0u64, 8 << 20, 16 << 20] {
        let times = outputs.iter().filter(|o| o.0 == start).count();
        assert_eq!(times, 1, "range at {start} read {times} times: {outputs:?}");
    }
    assert!(read_before.iter().all(|&start| start < 24 << 20));
    for start in [24u64 << 20, 32 << 20, 40 << 20] {
        assert!(outputs.iter().any(|o| o.0 == start), "{start}: {outputs:?}");
    }
    let objects = s.objects();
    assert_eq!(objects.len(), 1);
    assert_eq!(s.object(&objects[0].0), data);
    assert_eq!(
        s.fake().stats().retrievals_started,
        1,
        "the retrieval job of the killed run was used again"
    );
    let left: i64 = s
        .vault_ledger()
        .query_row("SELECT count(*) FROM moves", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the copy in progress is forgotten once recorded");
    assert_eq!(rows(&s.bucket_ledger()), rows(&s.vault_ledger()));
}

#[test]
fn delete_source_deletes_a_vault_archive_only_after_its_copy_checks_out() {
    let s = Setup::with_fake().and_moto();
    let file = s.path("data/photo.raw");
    let data = sample(3 * MIB + 5, 4);
    write(&file, &data);
    let (vault, bucket) = s.configs(&format!("[\"{}\"]\n", file.display()));
    assert_exit(&s.with_config(&vault, &[]).output().unwrap(), 0);
    assert_eq!(s.fake().archives("photos").len(), 1);

    // A copy whose tree hash is not the archive's: the vault's archive stays.
    let moved = s.migrate(&vault, &bucket, &["--wait"]);
    assert_exit(&moved, 0);
    let key = s.objects()[0].0.clone();
    s.tag_tree_hash(&key, &"00".repeat(32));
    let refused = s.migrate(&vault, &bucket, &["--delete-source"]);
    assert_exit(&refused, 1);
    assert_says(&refused, "the source's archive was not deleted");
    assert_eq!(s.fake().archives("photos").len(), 1);

    // Its tag put right, the copy checks out and the vault's archive goes.
    let tree_hash: String = s
        .vault_ledger()
        .query_row("SELECT tree_hash FROM uploads", [], |r| r.get(0))
        .unwrap();
    s.tag_tree_hash(&key, &tree_hash);
    let deleted = s.migrate(&vault, &bucket, &["--delete-source"]);
    assert_exit(&deleted, 0);
    assert!(s.fake().archives("photos").is_empty());
    let listed = s.with_config(&vault, &["list"]).output().unwrap();
    assert_says(&listed, "deleted here");
    // The vault's ledger never loses a row.
    assert_eq!(rows(&s.vault_ledger()).len(), 1);
    assert_eq!(s.object(&key), data);
    // The vault's archive is gone on purpose: not missing from an inventory taken after the
    // upload, nor to `verify --remote`, and a restore from the vault says where it went.
    s.fake()
        .set(|b| b.inventory_date = "2099-01-01T00:00:00Z".into());
    let inventory = s
        .with_config(&vault, &["inventory", "--wait"])
        .output()
        .unwrap();
    assert_exit(&inventory, 0);
    assert_says(
        &inventory,
        "deleted here (migrate --delete-source): not counted as missing",
    );
    assert_says(&inventory, "recorded but missing from the destination: 0");
    let verify = s
        .with_config(&vault, &["verify", "--remote"])
        .output()
        .unwrap();
    assert_exit(&verify, 0);
    assert_says(&verify, "0 problem(s)");
    let restore = s
        .with_config(&vault, &["restore", "--to"])
        .arg(s.path("out"))
        .arg(&file)
        .output()
        .unwrap();
    assert_exit(&restore, 1);
    assert_says(&restore, "was moved to s3.cold");
    assert_says(&restore, "restore it with the config of s3.cold");
}

#[test]
fn a_destination_that_is_the_source_or_shares_its_ledger_is_refused() {
    let s = Setup::with_fake().and_moto();
    let file = s.path("data/a.txt");
    write(&file, b"a");
    let (vault, bucket) = s.configs(&format!("[\"{}\"]\n", file.display()));
    assert_exit(&s.with_config(&vault, &[]).output().unwrap(), 0);
    let same = s.migrate(&vault, &vault, &[]);
    assert_exit(&same, 2);
    assert_says(&same, "the destination is the source");
    let nowhere = s.migrate(&vault, Path::new("/no/such/config.toml"), &[]);
    assert_exit(&nowhere, 2);
    assert_says(&nowhere, "--to /no/such/config.toml: no such config file");
    let unknown = s.migrate(&vault, &bucket, &["/no/such/path"]);
    assert_exit(&unknown, 2);
    assert_says(&unknown, "records no upload of those paths");
    let shared = s
        .bucket()
        .main("ledger", s.path("config/glacier.photos.sqlite3").display())
        .write(&s.path("config/shared.toml"));
    let sharing = s.migrate(&vault, &shared, &[]);
    assert_exit(&sharing, 2);
    assert_says(&sharing, "the destination's ledger is the source's");
    assert!(s.objects().is_empty());

    // One file for both sides, the backend chosen on each: each side has its own ledger.
    let both = s
        .vault()
        .section(
            "s3",
            &format!(
                "bucket = \"{}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n\
                 force_path_style = true",
                crate::support::setup::BUCKET,
                s.moto().endpoint
            ),
        )
        .path(&file, "")
        .write(&s.path("config/both.toml"));
    let one_file = s
        .command(&["-c"])
        .arg(&both)
        .args(["--backend", "glacier", "migrate", "--to"])
        .arg(&both)
        .args(["--to-backend", "s3", "-d"])
        .output()
        .unwrap();
    assert_exit(&one_file, 0);
    assert_says(
        &one_file,
        "plan: move 1 archive(s), 1 B, from glacier.photos to s3.cold",
    );
}

#[test]
fn all_moves_the_python_tools_archives_and_other_tools_by_their_descriptions() {
    let s = Setup::with_fake().and_moto();
    let ours = s.path("data/ours.txt");
    write(&ours, b"ours");
    let old = s.path("data/old.txt");
    let old_data = sample(2 * MIB + 3, 5);
    write(&old, &old_data);
    let (vault, bucket) = s.configs(&format!("[\"{}\"]\n", ours.display()));
    assert_exit(&s.with_config(&vault, &[]).output().unwrap(), 0);
    // The Python tool's upload: a plain description, and a row with only its four columns.
    let python = s
        .vault()
        .backend("plain_description", true)
        .path(&old, "")
        .write(&s.path("config/python.toml"));
    assert_exit(&s.with_config(&python, &[]).output().unwrap(), 0);
    s.vault_ledger()
        .execute(
            "UPDATE uploads SET backend = NULL, kind = NULL, size = NULL, tree_hash = NULL, \
             fingerprint = NULL, started_at = NULL, uploaded_at = NULL, description = NULL \
             WHERE path LIKE '%old.txt'",
            [],
        )
        .unwrap();
    // Another tool's archive, which no ledger records.
    let scans = sample(MIB + 9, 6);
    s.fake().plant("photos", "scans-2019.zip", &scans);

    // From the ledger alone, the Python tool's row cannot be checked: it says what to run.
    let partial = s.migrate(&vault, &bucket, &["--wait"]);
    assert_exit(&partial, 1);
    assert_says(&partial, "inventory --rebuild-ledger");
    assert_eq!(s.objects().len(), 1);

    let all = s.migrate(&vault, &bucket, &["--all", "--wait"]);
    assert_exit(&all, 0);
    assert_says(&all, "moved 2, already moved 1");
    let objects = s.objects();
    assert_eq!(objects.len(), 3, "{objects:?}");
    let key_of = |name: &str| {
        objects
            .iter()
            .find(|(k, _)| k.contains(name))
            .unwrap_or_else(|| panic!("no key for {name}: {objects:?}"))
            .0
            .clone()
    };
    assert_eq!(s.object(&key_of("scans-2019.zip")), scans);
    assert_eq!(s.object(&key_of("old.txt")), old_data);
    let names: Vec<String> = s
        .bucket_ledger()
        .prepare("SELECT name FROM uploads ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["old.txt", "ours.txt", "scans-2019.zip"]);
    // The Python tool's file comes back from S3 to its own path's name, byte for byte.
    let restored = s.path("restored");
    let restore = s
        .with_config(&bucket, &["restore", "--to"])
        .arg(&restored)
        .arg(&old)
        .output()
        .unwrap();
    assert_exit(&restore, 0);
    assert_eq!(fs::read(restored.join("old.txt")).unwrap(), old_data);
}

#[test]
fn compressed_and_encrypted_archives_move_as_stored_without_a_key() {
    let s = Setup::with_fake().and_moto();
    let key = s.path("keys/identity.txt");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    let made = s.run(&["keygen", "-o", key.to_str().unwrap()]);
    assert_exit(&made, 0);
    let recipient = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    let data = s.path("data");
    let text: Vec<u8> = b"the same line again and again\n".repeat(200_000);
    write(&data.join("docs/notes.txt"), &text);
    let layers = format!(
        "[archive]\ncompression = \"zstd\"\n\n[encryption]\nrecipients = [\"{recipient}\"]\n\n\
         [\"{}\"]\nupload_single_dir = true\n",
        data.join("docs").display()
    );
    let (vault, bucket) = s.configs(&layers);
    assert_exit(&s.with_config(&vault, &[]).output().unwrap(), 0);
    let stored = s.fake().archives("photos")[0].1.size;
    assert!(stored < text.len() as u64 / 10, "compressed: {stored}");

    // Neither config names an identity: the bytes move as they are.
    let moved = s.migrate(&vault, &bucket, &["--wait"]);
    assert_exit(&moved, 0);
    let objects = s.objects();
    assert_eq!(objects.len(), 1);
    assert!(objects[0].0.ends_with(".tar.zst.age"), "{objects:?}");
    assert_eq!(objects[0].1, stored);
    let layers_row: (String, String) = s
        .bucket_ledger()
        .query_row("SELECT compression, encryption FROM uploads", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(layers_row, ("zstd".to_owned(), "age".to_owned()));
    let restored = s.path("restored");
    let restore = s
        .with_config(
            &bucket,
            &["restore", "--identity", key.to_str().unwrap(), "--to"],
        )
        .arg(&restored)
        .arg(data.join("docs"))
        .output()
        .unwrap();
    assert_exit(&restore, 0);
    assert_eq!(fs::read(restored.join("docs/notes.txt")).unwrap(), text);
}

#[test]
fn a_copy_stopped_by_ctrl_c_or_cut_off_by_the_network_goes_on_where_it_stopped() {
    let s = Setup::with_fake().and_moto();
    let (_, data, vault, bucket) = s.vaulted_file(32 * MIB + 7, 7);
    let child = s.migration_held_at(&vault, &bucket, 16 << 20, 2);
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopped = child.wait_with_output().unwrap();
    assert_exit(&stopped, 130);
    assert_says(&stopped, "the same command continues from them");
    assert!(s.objects().is_empty());

    // The next run's read of the third part is cut off; read again, it completes the copy.
    s.fake().set(|b| {
        b.hold_output_from = None;
        b.drop_output_at = Some(16 << 20);
    });
    let last = s.migrate(&vault, &bucket, &["--wait"]);
    assert_exit(&last, 0);
    assert_eq!(
        s.fake().stats().injected_faults,
        1,
        "the connection was cut"
    );
    assert_says(
        &last,
        "2 part(s) were already stored and were not sent again",
    );
    let objects = s.objects();
    assert_eq!(objects.len(), 1);
    assert_eq!(s.object(&objects[0].0), data);
    let reads = |start: u64| {
        s.fake()
            .stats()
            .outputs
            .iter()
            .filter(|o| o.0 == start)
            .count()
    };
    assert_eq!(
        (reads(0), reads(8 << 20)),
        (1, 1),
        "copied parts are not read again"
    );
}

/// The bytes read must have the tree hash the ledger recorded, or the upload is never
/// completed: nothing is stored in S3 and nothing recorded.
#[test]
fn a_copy_whose_bytes_do_not_match_the_ledger_is_abandoned_before_completing() {
    let s = Setup::with_fake().and_moto();
    let (_, _, vault, bucket) = s.vaulted_file(12 * MIB + 3, 8);
    s.vault_ledger()
        .execute("UPDATE uploads SET tree_hash = ?1", [format!("{:064x}", 7)])
        .unwrap();
    let out = s.migrate(&vault, &bucket, &["--wait"]);
    assert_exit(&out, 1);
    assert_says(&out, "integrity check failed");
    assert!(s.objects().is_empty());
    let open = s.block_on(async {
        s.s3()
            .list_multipart_uploads()
            .bucket("cold")
            .send()
            .await
            .unwrap()
    });
    assert!(open.uploads().is_empty(), "the upload was aborted");
    let recorded: i64 = s
        .bucket_ledger()
        .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(recorded, 0);
    let in_progress: i64 = s
        .vault_ledger()
        .query_row("SELECT count(*) FROM moves", [], |r| r.get(0))
        .unwrap();
    assert_eq!(in_progress, 0, "nothing left to continue");
}

/// The destination dropped the upload a killed copy left (S3 expires idle uploads): the next
/// run reads the parts again into a new upload, and leaves no upload behind.
#[test]
fn a_copy_whose_upload_vanished_starts_a_new_one_and_leaves_none_behind() {
    let s = Setup::with_fake().and_moto();
    let (_, data, vault, bucket) = s.vaulted_file(24 * MIB + 5, 9);
    let mut child = s.migration_held_at(&vault, &bucket, 16 << 20, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let open_uploads = || {
        s.block_on(async {
            s.s3()
                .list_multipart_uploads()
                .bucket("cold")
                .send()
                .await
                .unwrap()
                .uploads()
                .iter()
                .map(|u| {
                    (
                        u.key().unwrap().to_owned(),
                        u.upload_id().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    for (key, id) in open_uploads() {
        s.block_on(async {
            s.s3()
                .abort_multipart_upload()
                .bucket("cold")
                .key(key)
                .upload_id(id)
                .send()
                .await
                .unwrap();
        });
    }
    s.fake().set(|b| b.hold_output_from = None);
    let out = s.migrate(&vault, &bucket, &["--wait"]);
    assert_exit(&out, 0);
    assert_says(&out, "no longer in the destination's upload");
    let objects = s.objects();
    assert_eq!(objects.len(), 1);
    assert_eq!(s.object(&objects[0].0), data);
    assert!(open_uploads().is_empty(), "no upload left behind");
}

/// A run killed after S3 stored a one-part copy but before either ledger recorded it, or
/// between the bucket's row and the vault's moved mark: the rerun finds the object at its key
/// instead of storing it again, and writes no second row.
#[test]
fn a_one_part_copy_stored_before_a_kill_is_found_not_made_twice() {
    let s = Setup::with_fake().and_moto();
    let (_, data, vault, bucket) = s.vaulted_file(200_000, 3);
    assert_exit(&s.migrate(&vault, &bucket, &["--wait"]), 0);
    let objects = s.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let count = |ledger: &rusqlite::Connection, table: &str| -> i64 {
        ledger
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };

    // Killed between the bucket's row and the vault's moved mark.
    s.vault_ledger().execute("DELETE FROM moved", []).unwrap();
    let out = s.migrate(&vault, &bucket, &["--wait"]);
    assert_exit(&out, 0);
    assert_says(&out, "already holds this archive");
    assert_eq!(s.objects(), objects, "no second object");
    assert_eq!(count(&s.bucket_ledger(), "uploads"), 1, "no second row");
    assert_eq!(count(&s.vault_ledger(), "moved"), 1);

    // Killed after S3 stored the object, before either ledger knew.
    s.vault_ledger().execute("DELETE FROM moved", []).unwrap();
    s.bucket_ledger()
        .execute("DELETE FROM uploads", [])
        .unwrap();
    assert_exit(&s.migrate(&vault, &bucket, &["--wait"]), 0);
    assert_eq!(s.objects(), objects, "no second object");
    let key: String = s
        .bucket_ledger()
        .query_row("SELECT archive_id FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(key, objects[0].0);
    assert_eq!(count(&s.vault_ledger(), "moved"), 1);
    assert_eq!(s.object(&key), data);
}
