//! Compression (zstd) and encryption (age) through the binary on every backend: round trips
//! of each combination, stock `age` and `zstd` reading what we stored, resumed encrypted
//! uploads, wrong and missing identities, tampered and truncated archives, keygen, and the
//! configuration's errors.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fake_glacier::FakeGlacier;
use rusqlite::Connection;

use crate::support::config::TestConfig;
use crate::support::moto::{s3_client, Moto};
use crate::support::random_bytes;
use crate::support::sandbox::{assert_exit, assert_never_says, assert_says, text, Sandbox};
use crate::support::setup::Setup;
use crate::support::trees::{assert_same_tree, awkward_tree};

const MIB: usize = 1 << 20;

/// One combination of layers: its `[archive]`/`[encryption]` sections (`RECIPIENT`,
/// `RECIPIENTS` and `IDENTITY` stand for the sandbox's key), what the ledger records of it
/// (compression, level, encryption) and the suffix of stored names.
struct Layer {
    name: &'static str,
    sections: &'static str,
    compression: &'static str,
    level: Option<i64>,
    encryption: Option<&'static str>,
    suffix: &'static str,
}

const LAYERS: [Layer; 4] = [
    Layer {
        name: "neither",
        sections: "",
        compression: "none",
        level: None,
        encryption: None,
        suffix: "",
    },
    Layer {
        name: "zstd",
        sections: "[archive]\ncompression = \"zstd\"\nlevel = 5\n",
        compression: "zstd",
        level: Some(5),
        encryption: None,
        suffix: ".zst",
    },
    Layer {
        name: "age",
        sections: "[encryption]\nrecipients = [\"RECIPIENT\"]\nidentity_file = \"IDENTITY\"\n\
                   authentication_key_file = \"IDENTITY.auth\"\n",
        compression: "none",
        level: None,
        encryption: Some("age"),
        suffix: ".age",
    },
    Layer {
        name: "both",
        sections:
            "[archive]\ncompression = \"zstd\"\n\n[encryption]\nrecipients_file = \"RECIPIENTS\"\n\
                   identity_file = \"IDENTITY\"\nauthentication_key_file = \"IDENTITY.auth\"\n",
        compression: "zstd",
        level: Some(3),
        encryption: Some("age"),
        suffix: ".zst.age",
    },
];

fn layer(name: &str) -> &'static Layer {
    LAYERS.iter().find(|l| l.name == name).unwrap()
}

/// A new identity made by `keygen -o`, and its recipient as printed.
fn keygen(sb: &Sandbox, name: &str) -> (PathBuf, String) {
    let key = sb.path(name);
    let out = sb.command(&["keygen", "-o"]).arg(&key).output().unwrap();
    assert_exit(&out, 0);
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    (key, recipient)
}

/// The layer sections with the sandbox's key filled in.
fn layer_sections(sb: &Sandbox, sections: &str, identity: &Path, recipient: &str) -> String {
    let recipients_file = sb.path("recipients.txt");
    fs::write(&recipients_file, format!("# the backup key\n{recipient}\n")).unwrap();
    sections
        .replace("RECIPIENTS", &recipients_file.display().to_string())
        .replace("RECIPIENT", recipient)
        .replace("IDENTITY", &identity.display().to_string())
}

/// Bytes of the random file: more than S3's smallest part size (8 MiB), so it goes up in
/// several parts on every backend.
const VIDEO: usize = 9 * MIB + 3;

/// What is backed up: the awkward tree (a directory, a 0-byte file, a file with a trailing
/// space) and a random file, which goes up in several parts on every backend.
fn source_tree(sb: &Sandbox) -> PathBuf {
    let data = sb.path("data");
    awkward_tree(&data);
    fs::write(data.join("video.bin"), random_bytes(VIDEO, 7)).unwrap();
    data
}

/// One upload's layers as its ledger row records them.
#[derive(Debug, PartialEq)]
struct Row {
    path: String,
    archive_id: String,
    size: i64,
    compression: Option<String>,
    level: Option<i64>,
    encryption: Option<String>,
    recipients: Option<String>,
    plain_size: Option<i64>,
}

fn rows(ledger: &Path) -> Vec<Row> {
    let conn = Connection::open(ledger).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT path, archive_id, size, compression, level, encryption, recipients, \
             plain_size FROM uploads ORDER BY rowid",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            path: r.get(0)?,
            archive_id: r.get(1)?,
            size: r.get(2)?,
            compression: r.get(3)?,
            level: r.get(4)?,
            encryption: r.get(5)?,
            recipients: r.get(6)?,
            plain_size: r.get(7)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Backs `data` up with each layer combination through `config_for(sandbox, layers)`, checks
/// the ledger's record of the layers, hands each stored archive id to `check_stored`, restores
/// everything and compares it with the source, and runs again to find nothing to upload.
fn round_trip_each_layer(
    backend: &str,
    config_for: impl Fn(&Sandbox, &str) -> PathBuf,
    check_stored: impl Fn(&str, &str, &Row),
) {
    for Layer {
        name,
        sections,
        compression,
        level,
        encryption,
        ..
    } in &LAYERS
    {
        let (name, compression, level, encryption) = (*name, *compression, *level, *encryption);
        let sb = Sandbox::new();
        let data = source_tree(&sb);
        if backend == "glacier" && name == "neither" {
            // A vault refuses an empty archive, and a plain empty file is one.
            fs::remove_file(data.join("zero.bin")).unwrap();
        }
        let (identity, recipient) = keygen(&sb, "key.txt");
        let layers = layer_sections(&sb, sections, &identity, &recipient);
        let config = config_for(
            &sb,
            &format!(
                "{layers}\n[\"{}\"]\nupload_dirs = true\nupload_files = true\n",
                data.display()
            ),
        );
        let out = sb.with_config(&config, &[]).output().unwrap();
        assert_exit(&out, 0);
        assert_says(&out, "failed 0");

        let rows = rows(&sb.ledger());
        assert_eq!(
            rows.len(),
            fs::read_dir(&data).unwrap().count(),
            "{backend} {name}"
        );
        for row in &rows {
            let context = format!("{backend} {name} {}", row.path);
            assert_eq!(row.compression.as_deref(), Some(compression), "{context}");
            assert_eq!(row.level, level, "{context}");
            assert_eq!(row.encryption.as_deref(), encryption, "{context}");
            let expected_recipients = encryption.map(|_| recipient.clone());
            assert_eq!(row.recipients, expected_recipients, "{context}");
            if name == "neither" {
                assert_eq!(row.plain_size, None, "{context}");
            }
            if row.path.ends_with("video.bin") {
                let plain = VIDEO as i64;
                assert_eq!(row.plain_size.unwrap_or(row.size), plain, "{context}");
                if encryption.is_some() {
                    assert!(row.size > plain, "an age file is longer: {context}");
                }
            }
            if row.path.ends_with("Фото 2026 (copy)") && compression == "zstd" {
                assert!(
                    row.size < row.plain_size.unwrap() / 2,
                    "the tree's text and 3 MB repeating file compress: {context}"
                );
            }
            check_stored(name, &row.archive_id, row);
        }

        let restored = sb.path("restored");
        let out = restore(
            &sb,
            &config,
            &["--wait", "--timeout", "120"],
            &restored,
            &data,
        );
        assert_exit(&out, 0);
        assert_same_tree(&data, &restored);
        if backend == "local" {
            // Read where they are, the stored archives are left as they were.
            let verified = sb
                .with_config(&config, &["verify", "--remote"])
                .output()
                .unwrap();
            assert_exit(&verified, 0);
            assert_says(&verified, "0 problem(s)");
        }

        let again = sb.with_config(&config, &[]).output().unwrap();
        assert_exit(&again, 0);
        assert_says(&again, "uploaded 0,");
    }
}

#[test]
fn every_layer_combination_round_trips_on_a_local_directory() {
    round_trip_each_layer(
        "local",
        |sb, rest| sb.local_config(rest),
        |name, archive_id, _| {
            let suffix = layer(name).suffix;
            let stem = archive_id.trim_end_matches(suffix);
            assert!(
                archive_id.ends_with(suffix) && !stem.ends_with(".zst") && !stem.ends_with(".age"),
                "{name}: {archive_id}"
            );
        },
    );
}

/// The vault `photos` on `fake`, two parts at a time, then `rest`.
fn glacier_config(fake: &FakeGlacier) -> impl Fn(&Sandbox, &str) -> PathBuf + '_ {
    move |sb, rest| {
        TestConfig::vault(&fake.endpoint, "photos")
            .backend("concurrency", 2)
            .raw(rest)
            .write(&sb.path("config/backup.toml"))
    }
}

#[test]
fn every_layer_combination_round_trips_through_a_glacier_vault_in_parts() {
    let s = Setup::with_fake();
    let fake = s.fake();
    round_trip_each_layer("glacier", glacier_config(fake), |name, archive_id, row| {
        let (_, archive) = fake
            .archives("photos")
            .into_iter()
            .find(|(id, _)| id == archive_id)
            .unwrap();
        let tag = match name {
            "neither" => "",
            "zstd" => "+zstd5",
            "age" => "+age",
            _ => "+zstd3+age",
        };
        let kind = if row.path.ends_with(")") { 'd' } else { 'f' };
        assert!(
            archive.description.contains(&format!(" gb1:{kind}{tag}:")),
            "{name}: {}",
            archive.description
        );
        if let Some(recipients) = &row.recipients {
            assert!(archive.description.ends_with(&format!(":{recipients}")));
        }
        assert_eq!(archive.size as i64, row.size);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn every_layer_combination_round_trips_through_s3_in_parts_and_a_rebuilt_ledger_knows_them() {
    let moto = Moto::start();
    let client = s3_client(&moto.endpoint).await;
    client
        .create_bucket()
        .bucket("layers")
        .send()
        .await
        .unwrap();
    let endpoint = moto.endpoint.clone();
    let config_for = move |sb: &Sandbox, rest: &str| {
        // Each sandbox its own prefix: the bucket is shared.
        let prefix = sb.dir.path().file_name().unwrap().to_string_lossy();
        TestConfig::bucket(&endpoint, "layers")
            .backend("prefix", format!("{prefix}/"))
            .without("concurrency")
            .raw(rest)
            .write(&sb.path("config/backup.toml"))
    };
    let checked = std::sync::Mutex::new(Vec::new());
    tokio::task::block_in_place(|| {
        round_trip_each_layer("s3", &config_for, |name, key, row| {
            checked
                .lock()
                .unwrap()
                .push((name.to_owned(), key.to_owned(), row.recipients.clone()));
        })
    });
    for (name, key, recipients) in checked.into_inner().unwrap() {
        let suffix = layer(&name).suffix;
        assert!(key.ends_with(suffix), "{name}: {key}");
        let head = client
            .head_object()
            .bucket("layers")
            .key(&key)
            .send()
            .await
            .unwrap();
        let metadata = head.metadata().unwrap();
        let tag = match name.as_str() {
            "neither" => None,
            "zstd" => Some("zstd5"),
            "age" => Some("age"),
            _ => Some("zstd3+age"),
        };
        assert_eq!(
            metadata.get("gb-encoding").map(String::as_str),
            tag,
            "{key}"
        );
        assert_eq!(metadata.get("gb-recipients"), recipients.as_ref(), "{key}");
    }

    // A lost ledger rebuilt from the bucket knows the layers, and restores through them.
    let sb = Sandbox::new();
    let data = source_tree(&sb);
    let (identity, recipient) = keygen(&sb, "key.txt");
    let layers = layer_sections(&sb, LAYERS[3].sections, &identity, &recipient);
    let config = config_for(
        &sb,
        &format!(
            "{layers}\n[\"{}\"]\nupload_dirs = true\nupload_files = true\n",
            data.display()
        ),
    );
    assert_exit(&sb.with_config(&config, &[]).output().unwrap(), 0);
    let ledger = sb.ledger();
    let before = rows(&ledger);
    rebuild_ledger(&sb, &config);
    let after = rows(&ledger);
    assert_eq!(after.len(), before.len());
    for row in &after {
        let original = before
            .iter()
            .find(|b| b.archive_id == row.archive_id)
            .unwrap();
        assert_eq!(
            (
                &row.compression,
                row.level,
                &row.encryption,
                &row.recipients
            ),
            (
                &original.compression,
                original.level,
                &original.encryption,
                &original.recipients
            ),
            "{}",
            row.path
        );
    }
    let restored = sb.path("restored");
    let out = restore(&sb, &config, &[], &restored, &data);
    assert_exit(&out, 0);
    assert_same_tree(&data, &restored);
}

/// A local sandbox backing up one directory and one file with `sections`; returns the config,
/// the identity and the source.
fn local_setup(sb: &Sandbox, sections: &str) -> (PathBuf, PathBuf, String, PathBuf) {
    let data = sb.path("data");
    fs::create_dir_all(data.join("album/sub")).unwrap();
    fs::write(
        data.join("album/sub/random.bin"),
        random_bytes(2 * MIB + 5, 1),
    )
    .unwrap();
    fs::write(
        data.join("album/notes.txt"),
        "words words words\n".repeat(50_000),
    )
    .unwrap();
    fs::write(data.join("report.txt"), "a report\n".repeat(10_000)).unwrap();
    let (identity, recipient) = keygen(sb, "key.txt");
    let layers = layer_sections(sb, sections, &identity, &recipient);
    let config = sb.local_config(&format!(
        "{layers}\n[\"{}\"]\nupload_dirs = true\nupload_files = true\n",
        data.display()
    ));
    let out = sb.with_config(&config, &[]).output().unwrap();
    assert_exit(&out, 0);
    (config, identity, recipient, data)
}

/// The stored file of the archive of `path` in the local destination.
fn stored_file(sb: &Sandbox, source: &Path) -> PathBuf {
    let dir = sb.path("archives").join(source.strip_prefix("/").unwrap());
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".gbindex"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

/// Loses the sandbox's ledger and rebuilds it from the destination.
fn rebuild_ledger(sb: &Sandbox, config: &Path) -> Output {
    fs::remove_file(sb.ledger()).unwrap();
    let rebuilt = sb
        .with_config(config, &["inventory", "--rebuild-ledger"])
        .output()
        .unwrap();
    assert_exit(&rebuilt, 0);
    rebuilt
}

/// [`rebuild_ledger`] from a destination whose archive was changed after its index was
/// written: the rows come back, the index is refused, and the run says so (exit 1).
fn rebuild_ledger_of_a_changed_archive(sb: &Sandbox, config: &Path) {
    fs::remove_file(sb.ledger()).unwrap();
    let rebuilt = sb
        .with_config(config, &["inventory", "--rebuild-ledger"])
        .output()
        .unwrap();
    assert_exit(&rebuilt, 1);
    assert_says(&rebuilt, "ledger rows added: 2");
    assert_says(&rebuilt, "differs from what its index recorded");
}

/// `restore ARGS --to TO SOURCE` with `config`.
fn restore(sb: &Sandbox, config: &Path, args: &[&str], to: &Path, source: &Path) -> Output {
    sb.with_config(config, &["restore"])
        .args(args)
        .arg("--to")
        .arg(to)
        .arg(source)
        .output()
        .unwrap()
}

fn stock(tool: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "the stock `{tool}` tool is needed (scripts/test installs it: apt-get install {tool})"
    );
    Command::new(tool)
}

fn run_pipeline(script: &str) -> Output {
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", text(&out));
    out
}

/// The README's recovery command works: stock `age` and `zstd` open what each combination
/// stored, without glacier-backup.
#[test]
fn stock_age_and_zstd_recover_what_was_stored() {
    stock("age");
    stock("zstd");
    for Layer { name, sections, .. } in &LAYERS[1..] {
        let sb = Sandbox::new();
        let (_, identity, _, data) = local_setup(&sb, sections);
        let album = stored_file(&sb, &data.join("album"));
        let report = stored_file(&sb, &data.join("report.txt"));
        let undo = match *name {
            "zstd" => "zstd -dc".to_owned(),
            "age" => format!("age -d -i '{}'", identity.display()),
            _ => format!("age -d -i '{}' | zstd -d", identity.display()),
        };
        let out = sb.path("stock");
        fs::create_dir_all(&out).unwrap();
        run_pipeline(&format!(
            "< '{}' {undo} | tar xf - -C '{}'",
            album.display(),
            out.display()
        ));
        assert_same_tree(&data.join("album"), &out.join("album"));
        let plain = run_pipeline(&format!("< '{}' {undo}", report.display()));
        assert_eq!(
            plain.stdout,
            fs::read(data.join("report.txt")).unwrap(),
            "{name}"
        );
    }
}

/// What the local destination and the restore directory hold after a restore that must have
/// placed nothing: no file but hidden partial downloads.
fn placed(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Err(_) => Vec::new(),
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".glacier-backup-restore-"))
            .collect(),
    }
}

#[test]
fn a_wrong_or_missing_identity_is_named_and_nothing_is_placed() {
    let sb = Sandbox::new();
    let (config, _, recipient, data) = local_setup(&sb, LAYERS[3].sections);
    let (other, _) = keygen(&sb, "other.txt");
    let out_dir = sb.path("out");
    let wrong = restore(
        &sb,
        &config,
        &["--identity", other.to_str().unwrap()],
        &out_dir,
        &data,
    );
    assert_exit(&wrong, 1);
    assert_says(&wrong, format!("encrypted to {recipient}"));
    assert_says(&wrong, "no identity in");
    assert_says(&wrong, "failed 2");
    assert_eq!(placed(&out_dir), Vec::<String>::new());

    // The config's identity_file gone: restore says what to give.
    let text_config = fs::read_to_string(&config).unwrap();
    let without: String = text_config
        .lines()
        .filter(|l| !l.starts_with("identity_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&config, without).unwrap();
    let missing = restore(&sb, &config, &[], &out_dir, &data);
    assert_exit(&missing, 1);
    assert_says(&missing, "give the identity file with --identity FILE");
    assert_eq!(placed(&out_dir), Vec::<String>::new());

    // verify --remote checks stored bytes: no identity needed.
    let verify = sb
        .with_config(&config, &["verify", "--remote"])
        .output()
        .unwrap();
    assert_exit(&verify, 0);
}

#[test]
fn a_wrong_identity_asks_no_retrieval_of_a_vault() {
    let s = Setup::with_fake();
    let (sb, fake) = (&s.sb, s.fake());
    let file = sb.path("data/secret.txt");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, "secret").unwrap();
    let (identity, recipient) = keygen(sb, "key.txt");
    let layers = layer_sections(sb, LAYERS[2].sections, &identity, &recipient);
    let config = glacier_config(fake)(sb, &format!("{layers}\n[\"{}\"]\n", file.display()));
    assert_exit(&sb.with_config(&config, &[]).output().unwrap(), 0);
    let (other, _) = keygen(sb, "other.txt");
    let requests = fake.stats().requests;
    let out = restore(
        sb,
        &config,
        &["--identity", other.to_str().unwrap()],
        &sb.path("out"),
        &file,
    );
    assert_exit(&out, 1);
    assert_says(&out, format!("encrypted to {recipient}"));
    assert_never_says(&out, "retrieval requested");
    assert_eq!(
        fake.stats().requests,
        requests,
        "the vault was not asked anything"
    );
}

#[test]
fn a_flipped_or_cut_archive_is_refused_and_nothing_is_placed() {
    for damage in ["flip", "cut"] {
        let sb = Sandbox::new();
        let (config, _, _, data) = local_setup(&sb, LAYERS[3].sections);
        let album = stored_file(&sb, &data.join("album"));
        let mut bytes = fs::read(&album).unwrap();
        if damage == "flip" {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
        } else {
            bytes.truncate(bytes.len() - 100);
        }
        fs::write(&album, &bytes).unwrap();
        let out_dir = sb.path("out");
        let out = restore(&sb, &config, &[], &out_dir, &data.join("album"));
        assert_exit(&out, 1);
        // The stored file is checked where it is, before anything is read from it.
        assert_says(&out, "does not match the ledger");
        assert_eq!(placed(&out_dir), Vec::<String>::new(), "{damage}");

        // With the ledger rebuilt from the tampered destination, the recorded hash is the
        // tampered bytes' own (the index, which knows better, is refused): age's
        // authentication still refuses them, before anything is extracted.
        rebuild_ledger_of_a_changed_archive(&sb, &config);
        let out = restore(&sb, &config, &[], &out_dir, &data.join("album"));
        assert_exit(&out, 1);
        assert_says(&out, "damaged or was tampered with");
        assert_eq!(
            placed(&out_dir),
            Vec::<String>::new(),
            "{damage}, rebuilt ledger"
        );
    }
}

/// A run killed with three parts of an encrypted, compressed directory in the vault: the next
/// run writes the same bytes again from the kept seal, sends only the missing parts, and the
/// archive decrypts.
#[test]
fn a_killed_encrypted_upload_resumes_with_the_same_bytes_and_decrypts() {
    let s = Setup::with_fake();
    let (sb, fake) = (&s.sb, s.fake());
    let album = sb.path("data/album");
    fs::create_dir_all(&album).unwrap();
    fs::write(album.join("a.bin"), random_bytes(5 * MIB, 3)).unwrap();
    fs::write(album.join("b.bin"), random_bytes(3 * MIB + 11, 4)).unwrap();
    let (identity, recipient) = keygen(sb, "key.txt");
    let layers = layer_sections(sb, LAYERS[3].sections, &identity, &recipient);
    let config = glacier_config(fake)(
        sb,
        &format!(
            "{layers}\n[\"{}\"]\nupload_single_dir = true\n",
            album.display()
        ),
    );
    fake.set(|b| b.hold_parts_from = Some(3));
    let mut child = sb
        .with_config(&config, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_until("the upload never got going", || {
        fake.stats().parts_stored.len() >= 3
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before: Vec<u64> = fake.stats().parts_stored.iter().map(|p| p.1).collect();
    assert_eq!(before.len(), 3);
    let seal: Vec<u8> = Connection::open(sb.ledger())
        .unwrap()
        .query_row("SELECT seal FROM pending_uploads", [], |r| r.get(0))
        .expect("the pending upload keeps its seal");
    assert!(!seal.is_empty());

    fake.set(|b| b.hold_parts_from = None);
    let out = sb.with_config(&config, &[]).output().unwrap();
    assert_exit(&out, 0);
    assert_says(&out, "resuming upload");
    let stats = fake.stats();
    assert_eq!(stats.uploads_started, 1, "the same upload was continued");
    for offset in &before {
        assert_eq!(
            stats.parts_stored.iter().filter(|p| p.1 == *offset).count(),
            1,
            "part at {offset} sent again"
        );
    }
    let left: i64 = Connection::open(sb.ledger())
        .unwrap()
        .query_row("SELECT count(*) FROM pending_uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the seal is gone with the pending upload");

    let archives: Vec<_> = fake
        .archives("photos")
        .into_iter()
        .filter(|(_, a)| !a.description.starts_with("gb1-index:"))
        .collect();
    assert_eq!(archives.len(), 1);
    let stored = sb.path("stored.tar.zst.age");
    fs::write(&stored, archives[0].1.data.as_deref().unwrap()).unwrap();
    let out_dir = sb.path("stock");
    fs::create_dir_all(&out_dir).unwrap();
    stock("age");
    stock("zstd");
    run_pipeline(&format!(
        "age -d -i '{}' '{}' | zstd -d | tar xf - -C '{}'",
        identity.display(),
        stored.display(),
        out_dir.display()
    ));
    assert_same_tree(&album, &out_dir.join("album"));
}

/// A backup encrypted to keys none of which is the configured identity says so before it
/// uploads: found now, not at restore time.
#[test]
fn a_backup_whose_identity_opens_none_of_its_recipients_warns() {
    let sb = Sandbox::new();
    let (other, _) = keygen(&sb, "other.txt");
    let data = sb.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.txt"), "a").unwrap();
    let (identity, recipient) = keygen(&sb, "key.txt");
    let paths = format!("[\"{}\"]\nupload_files = true\n", data.display());
    let matching = layer_sections(&sb, LAYERS[2].sections, &identity, &recipient);
    let config = sb.local_config(&format!("{matching}\n{paths}"));
    let out = sb.with_config(&config, &["-d"]).output().unwrap();
    assert_exit(&out, 0);
    assert_never_says(&out, "opens none");
    let mismatched = layer_sections(&sb, LAYERS[2].sections, &other, &recipient);
    let config = sb.local_config(&format!("{mismatched}\n{paths}"));
    let out = sb.with_config(&config, &[]).output().unwrap();
    assert_exit(&out, 0);
    assert_says(&out, "opens none of [encryption] recipients");
}

#[test]
fn keygen_writes_a_private_key_once_and_prints_its_recipient() {
    let sb = Sandbox::new();
    let (key, recipient) = keygen(&sb, "key.txt");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let content = fs::read_to_string(&key).unwrap();
    assert!(content.contains(&format!("# public key: {recipient}")));
    assert!(content.contains("AGE-SECRET-KEY-1"));
    // Its authentication key beside it, private too, and the same when derived again.
    let auth = sb.path("key.txt.auth");
    assert_eq!(
        fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = sb.path("again.auth");
    let derived = sb
        .command(&["keygen", "--authentication-key-of"])
        .arg(&key)
        .arg("-o")
        .arg(&again)
        .output()
        .unwrap();
    assert_exit(&derived, 0);
    let key_line = |path: &Path| {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("GB-AUTH-KEY-"))
            .map(str::to_owned)
            .unwrap()
    };
    assert_eq!(key_line(&auth), key_line(&again));
    let again = sb.command(&["keygen", "-o"]).arg(&key).output().unwrap();
    assert_exit(&again, 2);
    assert_says(&again, "never replaces");
    assert_eq!(fs::read_to_string(&key).unwrap(), content, "untouched");
    // To stdout: the identity, and the recipient on stderr.
    let out = sb.command(&["keygen"]).output().unwrap();
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("AGE-SECRET-KEY-1"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Public key: age1"));

    // A key others can read is used, with a warning.
    let sb = Sandbox::new();
    let (config, identity, _, data) = local_setup(&sb, LAYERS[2].sections);
    fs::set_permissions(&identity, fs::Permissions::from_mode(0o644)).unwrap();
    let out = restore(&sb, &config, &[], &sb.path("out"), &data.join("report.txt"));
    assert_exit(&out, 0);
    assert_says(&out, "can be read by other users");
}

#[test]
fn changing_layers_applies_to_new_uploads_without_marking_everything_changed() {
    let sb = Sandbox::new();
    let (config, identity, recipient, data) = local_setup(&sb, LAYERS[1].sections);
    // Encryption added, and changed files uploaded again.
    let sections = layer_sections(&sb, LAYERS[3].sections, &identity, &recipient);
    let paths = format!(
        "[\"{}\"]\nupload_dirs = true\nupload_files = true\nupload_if_changed = true\n",
        data.display()
    );
    assert_eq!(sb.local_config(&format!("{sections}\n{paths}")), config);
    let out = sb.with_config(&config, &[]).output().unwrap();
    assert_exit(&out, 0);
    assert_says(&out, "uploaded 0, up to date 2");
    // A changed file goes up with the new layers.
    fs::write(data.join("report.txt"), "changed").unwrap();
    let out = sb.with_config(&config, &[]).output().unwrap();
    assert_exit(&out, 0);
    assert_says(&out, "uploaded 1,");
    let last = rows(&sb.ledger()).pop().unwrap();
    assert_eq!(last.encryption.as_deref(), Some("age"));
    assert!(last.archive_id.ends_with(".zst.age"), "{}", last.archive_id);

    // `list --json` shows each row's layers.
    let listed = sb
        .with_config(&config, &["list", "--json"])
        .output()
        .unwrap();
    assert_exit(&listed, 0);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    let first = &listed[0];
    assert_eq!(
        (&first["compression"], &first["level"], &first["encryption"]),
        (
            &serde_json::json!("zstd"),
            &serde_json::json!(5),
            &serde_json::Value::Null
        )
    );
    let newest = listed.last().unwrap();
    assert_eq!(newest["encryption"], "age");
    assert_eq!(newest["recipients"], serde_json::json!([recipient]));
    assert_eq!(newest["plain_size"], 7, "the size of \"changed\"");

    // One restore through a mixed ledger: the directory compressed only, the file encrypted.
    let restored = sb.path("restored");
    assert_exit(&restore(&sb, &config, &[], &restored, &data), 0);
    assert_same_tree(&data, &restored);
}

#[test]
fn layer_settings_that_cannot_work_exit_2_naming_the_key() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.path("data")).unwrap();
    let good = age::x25519::Identity::generate().to_public().to_string();
    for (sections, says) in [
        (
            "[encryption]\nrecipients = [\"age1nope\"]\n",
            "[encryption] recipients",
        ),
        ("[encryption]\nrecipients = \"\"\n", "is empty"),
        (
            "[encryption]\nrecipients_file = \"missing.txt\"\n",
            "[encryption] recipients_file",
        ),
        (
            "[archive]\ncompression = \"zstd\"\nlevel = 25\n",
            "[archive] level",
        ),
        ("[archive]\nlevel = 3\n", "nothing is compressed"),
        (
            "[archive]\ncompression = \"gzip\"\n",
            "unknown compression \"gzip\"",
        ),
        (
            "[archive]\ncompresion = \"zstd\"\n",
            "did you mean \"compression\"",
        ),
        (
            "[archive]\ncompression = \"zstd\"\n\n[glacier]\nplain_description = true\n",
            "[glacier] plain_description: cannot be used with [archive] compression",
        ),
        (
            &format!("[encryption]\nrecipient = \"{good}\"\n"),
            "did you mean \"recipients\"",
        ),
    ] {
        let config = sb.local_config(&format!(
            "{sections}\n[\"{}\"]\n",
            sb.path("data").display()
        ));
        let out = sb.with_config(&config, &[]).output().unwrap();
        assert_exit(&out, 2);
        assert_says(&out, says);
        assert!(!sb.path("archives").exists(), "nothing stored: {sections}");
    }
    // INI lists: comma- or space-separated.
    let other = age::x25519::Identity::generate().to_public().to_string();
    let ini = sb
        .local()
        .section("encryption", &format!("recipients = {good}, {other}"))
        .path(&sb.path("data"), "upload_files = yes")
        .write(&sb.path("config/backup.conf"));
    fs::write(sb.path("data/x"), "x").unwrap();
    let out = sb.with_config(&ini, &[]).output().unwrap();
    assert_exit(&out, 0);
    let row = rows(&sb.ledger()).pop().unwrap();
    assert_eq!(row.recipients, Some(format!("{good},{other}")));
}

/// Anyone with the public recipient can write a valid age file. After the ledger is rebuilt
/// from the destination (every size and tree hash then comes from there), an archive replaced
/// by such a file is refused, because it lacks the stanza only the backups' authentication
/// key makes; the genuine archives restore; `--trust-destination` overrides, saying so.
#[test]
fn an_archive_replaced_by_someone_with_the_recipient_is_refused_after_a_rebuild() {
    let sb = Sandbox::new();
    let (config, _, recipient, data) = local_setup(&sb, LAYERS[2].sections);
    let report = data.join("report.txt");
    let stored = stored_file(&sb, &report);
    let forged = {
        let recipient: age::x25519::Recipient = recipient.parse().unwrap();
        let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as _)).unwrap();
        let mut out = Vec::new();
        let mut writer = encryptor.wrap_output(&mut out).unwrap();
        std::io::Write::write_all(&mut writer, b"the attacker's report\n").unwrap();
        writer.finish().unwrap();
        out
    };
    fs::write(&stored, &forged).unwrap();

    // With this machine's own ledger, the recorded tree hash already refuses it.
    let out_dir = sb.path("out");
    let out = restore(&sb, &config, &[], &out_dir, &report);
    assert_exit(&out, 1);
    assert_says(&out, "does not match the ledger");

    rebuild_ledger(&sb, &config);
    let out = restore(&sb, &config, &[], &out_dir, &report);
    assert_exit(&out, 1);
    assert_says(&out, "carries no proof that these backups wrote it");
    assert_eq!(placed(&out_dir), Vec::<String>::new(), "nothing placed");

    let album = restore(&sb, &config, &[], &out_dir, &data.join("album"));
    assert_exit(&album, 0);
    assert_eq!(
        fs::read(out_dir.join("album/notes.txt")).unwrap(),
        fs::read(data.join("album/notes.txt")).unwrap()
    );

    let trusted = restore(&sb, &config, &["--trust-destination"], &out_dir, &report);
    assert_exit(&trusted, 0);
    assert_says(&trusted, "carries no proof");
    assert_eq!(
        fs::read(out_dir.join("report.txt")).unwrap(),
        b"the attacker's report\n"
    );
}
