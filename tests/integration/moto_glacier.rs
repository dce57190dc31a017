//! The Glacier backend and the binary against moto_server on 127.0.0.1: UploadArchive, vault
//! checks, retrieval jobs (moto has no multipart; those paths are tested against the fake).

use crate::support;

use std::fs;

use glacier_backup::archiver::conformance::read_back;
use glacier_backup::archiver::{ArchiveRef, Archiver, RestoreOptions, RestoreTier};
use glacier_backup_glacier::{GlacierArchiver, GlacierSettings};
use support::config::TestConfig;
use support::moto::{sdk_config, test_credentials, Moto};
use support::sandbox::{output_text as shown, Sandbox};

async fn create_vault(endpoint: &str, name: &str) {
    let config = sdk_config(endpoint).await;
    aws_sdk_glacier::Client::new(&config)
        .create_vault()
        .account_id("-")
        .vault_name(name)
        .send()
        .await
        .unwrap();
}

/// The vault `name` on moto, in the Python tool's INI; archives in one part (moto serves the
/// simple Glacier calls, the fake the multipart ones).
fn moto_vault(moto: &Moto, name: &str) -> TestConfig {
    TestConfig::vault(&moto.endpoint, name).without("part_size")
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_through_the_binary_then_read_back_through_a_retrieval_job() {
    let moto = Moto::start();
    create_vault(&moto.endpoint, "family").await;
    let sb = Sandbox::new();
    let data = sb.path("data");
    fs::create_dir_all(data.join("letters")).unwrap();
    fs::write(data.join("notes.txt"), b"remember the milk").unwrap();
    fs::write(data.join("letters/one.txt"), b"dear moto").unwrap();
    let config = moto_vault(&moto, "family")
        .path(&data, "upload_files = yes\nupload_dirs = yes")
        .write(&sb.path("backup.conf"));
    let mut cmd = sb.with_config(&config, &[]);
    let out = cmd.output().unwrap();
    let shown = shown(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("uploaded 2, up to date 0, failed 0"),
        "{shown}"
    );

    let ledger = rusqlite::Connection::open(sb.path("glacier.family.sqlite3")).unwrap();
    let rows: Vec<(String, String, i64, String)> = ledger
        .prepare("SELECT path, archive_id, size, tree_hash FROM uploads ORDER BY path")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].0.ends_with("letters") && rows[1].0.ends_with("notes.txt"));

    let mut settings = GlacierSettings::from_config(None, Some("family"), None).unwrap();
    settings.connection.credentials = Some(test_credentials());
    settings.connection.endpoint_url = Some(moto.endpoint.clone());
    settings.connection.region = Some("us-east-1".into());
    let glacier = GlacierArchiver::new(settings);
    let (_, archive_id, size, tree_hash) = &rows[1];
    let archive = ArchiveRef {
        archive_id: archive_id.clone(),
        size: *size as u64,
        tree_hash: tree_hash.parse().unwrap(),
        description: None,
    };
    let options = RestoreOptions {
        tier: RestoreTier::Expedited,
        days: None,
        range: None,
    };
    glacier.request_restore(&archive, &options).await.unwrap();
    assert_eq!(read_back(&glacier, &archive).await, b"remember the milk");

    // A second run finds everything uploaded.
    let out = cmd.output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("uploaded 0, up to date 2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_vault_is_a_clear_config_error() {
    let moto = Moto::start();
    let mut settings = GlacierSettings::from_config(None, Some("absent"), None).unwrap();
    settings.connection.credentials = Some(test_credentials());
    settings.connection.region = Some("us-east-1".into());
    settings.connection.endpoint_url = Some(moto.endpoint.clone());
    let err = GlacierArchiver::new(settings).check().await.unwrap_err();
    assert!(
        err.to_string().contains("vault \"absent\" does not exist"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_ledger_comes_back_from_a_vault_inventory_and_restores_work() {
    let moto = Moto::start();
    create_vault(&moto.endpoint, "lost").await;
    let sb = Sandbox::new();
    let data = sb.path("data");
    let album = data.join("Фото (2026)");
    fs::create_dir_all(album.join("empty dir")).unwrap();
    fs::write(album.join("café.txt"), "unicode ✓").unwrap();
    std::os::unix::fs::symlink("café.txt", album.join("link")).unwrap();
    fs::write(data.join("notes .txt"), b"remember the milk").unwrap();
    let config = moto_vault(&moto, "lost")
        .path(
            &data,
            "upload_files = yes\nupload_dirs = yes\nupload_if_changed = yes",
        )
        .write(&sb.path("backup.conf"));
    let run = |args: &[&str]| sb.outcome(&config, args);
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    fs::remove_file(sb.path("glacier.lost.sqlite3")).unwrap();

    let (code, out) = run(&[
        "inventory",
        "--rebuild-ledger",
        "--wait",
        "--timeout",
        "120",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ledger rows added: 2"), "{out}");
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 0, up to date 2, failed 0"), "{out}");
    let (code, out) = run(&["verify", "--remote"]);
    assert_eq!(code, Some(0), "{out}");

    let to = sb.path("out");
    let (code, out) = run(&[
        "restore",
        "--tier",
        "expedited",
        "--wait",
        "--timeout",
        "120",
        "--to",
        to.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("restored 2, pending 0, failed 0"), "{out}");
    support::trees::assert_same_tree(&data, &to);
}
