//! The S3 backend and the binary against moto_server on 127.0.0.1 (path-style, static test
//! credentials).

use crate::support;

use std::fs;

use aws_sdk_s3::types::StorageClass;
use futures::StreamExt;
use glacier_backup::archiver::conformance::{meta, read_back, sample};
use glacier_backup::archiver::parts::parts_from_bytes;
use glacier_backup::archiver::treehash::tree_hash;
use glacier_backup::archiver::{
    Archiver, Error, OnFailure, PutOptions, RestoreState, Resume, UploadEvent,
};
use glacier_backup_s3::{S3Archiver, S3Settings};
use support::config::TestConfig;
use support::moto::{s3_client, sdk_config, test_credentials, Moto};
use support::sandbox::{output_text as shown, Sandbox};

const MIB: usize = 1 << 20;

async fn bucket(endpoint: &str, name: &str) -> aws_sdk_s3::Client {
    let client = s3_client(endpoint).await;
    client.create_bucket().bucket(name).send().await.unwrap();
    client
}

fn settings(endpoint: &str, bucket: &str, class: &str) -> S3Settings {
    let section = glacier_backup::archiver::settings::Section::from_strings(
        "s3",
        &[
            ("bucket", bucket),
            ("storage_class", class),
            ("endpoint_url", endpoint),
            ("region", "us-east-1"),
            ("prefix", "backups/"),
            ("force_path_style", "true"),
        ],
    );
    let mut settings = S3Settings::from_section(&section).unwrap();
    settings.connection.credentials = Some(test_credentials());
    settings
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_land_with_class_metadata_tag_and_key_scheme_and_need_restore() {
    let moto = Moto::start();
    let client = bucket(&moto.endpoint, "family").await;
    let s3 = S3Archiver::new(settings(&moto.endpoint, "family", "DEEP_ARCHIVE"));
    let data = sample(17 * MIB + 3, 4);
    let mut m = meta("photos", data.len() as u64);
    m.source_path = "/home/zoë/photos".into();
    m.kind = glacier_backup::archiver::SourceKind::Directory;
    let stored = s3
        .put(
            &m,
            &PutOptions::default(),
            parts_from_bytes(data.clone(), 8 * MIB as u64),
        )
        .await
        .unwrap();
    assert!(
        stored
            .archive_id
            .starts_with("backups/home/zo%C3%AB/photos/"),
        "{}",
        stored.archive_id
    );
    assert!(
        stored.archive_id.ends_with("Z.tar"),
        "{}",
        stored.archive_id
    );
    assert_eq!(s3.parts_sent(), 3, "17 MiB in 8 MiB parts");

    let head = client
        .head_object()
        .bucket("family")
        .key(&stored.archive_id)
        .send()
        .await
        .unwrap();
    assert_eq!(head.storage_class(), Some(&StorageClass::DeepArchive));
    let metadata = head.metadata().unwrap();
    assert_eq!(metadata["gb-kind"], "directory");
    assert_eq!(metadata["gb-source-path"], "%2Fhome%2Fzo%C3%AB%2Fphotos");
    assert!(metadata.contains_key("gb-fingerprint"));

    // Cold: not readable before a restore, and that is reported as such.
    let err = s3
        .get(&stored, None)
        .await
        .err()
        .expect("refused before restore");
    assert!(matches!(err, Error::NeedsRestore { .. }), "{err}");
    assert_eq!(
        s3.restore_state(&stored, None).await.unwrap(),
        RestoreState::NotRequested
    );
    let expedited = glacier_backup::archiver::RestoreOptions {
        tier: glacier_backup::archiver::RestoreTier::Expedited,
        days: Some(1),
        range: None,
    };
    assert!(matches!(
        s3.request_restore(&stored, &expedited).await,
        Err(Error::Unsupported { .. })
    ));
    assert!(read_back(&s3, &stored).await == data);
}

/// moto 5.2.5 answers ListParts with a `ListPartsResponse` root that the SDK cannot read, so this
/// also covers the fallback: the part receipts recorded as parts went up.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_multipart_upload_is_resumed() {
    let moto = Moto::start();
    bucket(&moto.endpoint, "resume").await;
    let s3 = std::sync::Arc::new(S3Archiver::new(settings(
        &moto.endpoint,
        "resume",
        "GLACIER_IR",
    )));
    let data = sample(33 * MIB, 8);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let m = meta("big", data.len() as u64);
    let keep = PutOptions {
        events: Some(tx),
        on_failure: OnFailure::Keep,
        ..PutOptions::default()
    };
    // The source fails after three parts.
    let good: Vec<_> = parts_from_bytes(data.clone(), 8 * MIB as u64)
        .collect()
        .await;
    let watched = s3.clone();
    let failure = futures::stream::once(async move {
        // Fail only once the parts already handed over have reached S3.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while watched.parts_sent() < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(Error::Source("changed while being read".into()))
    });
    let failing = futures::stream::iter(good.into_iter().take(3))
        .chain(failure)
        .boxed();
    assert!(s3.put(&m, &keep, failing).await.is_err());
    let Ok(UploadEvent::Started(token)) = rx.try_recv() else {
        panic!("the upload token comes first");
    };
    let mut receipts = Vec::new();
    while let Ok(UploadEvent::PartStored { number, receipt }) = rx.try_recv() {
        receipts.push((number, receipt));
    }
    let sent_first = s3.parts_sent();
    assert_eq!(sent_first, 3, "the three parts went up before the failure");
    assert_eq!(receipts.len(), 3);

    let resume = PutOptions {
        resume: Some(Resume {
            token,
            receipts,
            completing: None,
        }),
        ..PutOptions::default()
    };
    let stored = s3
        .put(&m, &resume, parts_from_bytes(data.clone(), 8 * MIB as u64))
        .await
        .unwrap();
    assert_eq!(
        s3.parts_sent() - sent_first,
        2,
        "only the two missing parts were sent"
    );
    let client = s3_client(&moto.endpoint).await;
    let open = client
        .list_multipart_uploads()
        .bucket("resume")
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "no upload left behind");
    assert_eq!(stored.tree_hash, tree_hash(&data));
    assert!(read_back(s3.as_ref(), &stored).await == data);
    assert!(s3
        .list()
        .await
        .unwrap()
        .archives
        .iter()
        .any(|a| a.archive_id == stored.archive_id));
    let tags = client
        .get_object_tagging()
        .bucket("resume")
        .key(&stored.archive_id)
        .send()
        .await
        .unwrap();
    let tag = tags
        .tag_set()
        .iter()
        .find(|t| t.key() == "gb-tree-hash")
        .unwrap();
    assert_eq!(tag.value(), tree_hash(&data).to_hex());
}

/// A run stopped after S3 completed its upload, before recording it: the next run, asking to
/// complete again, finds the object (and sets its tree-hash tag if the stop came before it)
/// instead of uploading the archive a second time.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_completed_by_a_stopped_run_is_found_not_sent_again() {
    let moto = Moto::start();
    let client = bucket(&moto.endpoint, "again").await;
    let s3 = S3Archiver::new(settings(&moto.endpoint, "again", "GLACIER_IR"));
    let data = sample(17 * MIB, 9);
    let m = meta("done", data.len() as u64);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let options = PutOptions {
        events: Some(tx),
        on_failure: OnFailure::Keep,
        ..PutOptions::default()
    };
    let answer = tokio::spawn(async move {
        let mut token = None;
        while let Some(event) = rx.recv().await {
            match event {
                UploadEvent::Started(started) => token = Some(started),
                UploadEvent::Completing { recorded, .. } => recorded.done(),
                UploadEvent::PartStored { .. } => {}
            }
        }
        token
    });
    let first = s3
        .put(&m, &options, parts_from_bytes(data.clone(), 8 * MIB as u64))
        .await
        .unwrap();
    drop(options);
    let token = answer.await.unwrap().expect("a multipart upload");
    // The stop came before the tag was set.
    client
        .delete_object_tagging()
        .bucket("again")
        .key(&first.archive_id)
        .send()
        .await
        .unwrap();
    let sent = s3.parts_sent();
    let resume = PutOptions {
        resume: Some(Resume {
            token,
            receipts: Vec::new(),
            completing: Some((data.len() as u64, tree_hash(&data))),
        }),
        ..PutOptions::default()
    };
    let again = s3
        .put(&m, &resume, parts_from_bytes(data.clone(), 8 * MIB as u64))
        .await
        .unwrap();
    assert_eq!(again.archive_id, first.archive_id);
    assert_eq!(s3.parts_sent(), sent, "nothing was sent again");
    let listed = client
        .list_objects_v2()
        .bucket("again")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 1, "one object, not two");
    let tags = client
        .get_object_tagging()
        .bucket("again")
        .key(&first.archive_id)
        .send()
        .await
        .unwrap();
    assert!(tags
        .tag_set()
        .iter()
        .any(|t| t.key() == "gb-tree-hash" && t.value() == tree_hash(&data).to_hex()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_config_works_with_local_s3_and_glacier_by_switching_the_backend_only() {
    let moto = Moto::start();
    bucket(&moto.endpoint, "switch").await;
    let shared = sdk_config(&moto.endpoint).await;
    aws_sdk_glacier::Client::new(&shared)
        .create_vault()
        .account_id("-")
        .vault_name("switch")
        .send()
        .await
        .unwrap();
    let sb = Sandbox::new();
    let data = sb.path("data");
    fs::create_dir_all(data.join("album")).unwrap();
    fs::write(data.join("album/pic.jpg"), sample(3000, 1)).unwrap();
    fs::write(data.join("notes.txt"), b"notes").unwrap();
    // One file with every destination's section; only `backend` changes.
    let endpoint = &moto.endpoint;
    let every_destination = TestConfig::bare()
        .main("vault_name", "switch")
        .section(
            "local",
            &format!(
                "directory = {}\ncreate_directory = yes",
                sb.path("archives").display()
            ),
        )
        .section(
            "glacier",
            &format!("endpoint_url = {endpoint}\nregion = us-east-1"),
        )
        .section(
            "s3",
            &format!(
                "bucket = switch\nendpoint_url = {endpoint}\nregion = us-east-1\n\
                 force_path_style = yes"
            ),
        )
        .path(&data, "upload_dirs = yes\nupload_files = yes");
    for backend in ["local", "s3", "glacier"] {
        let config = every_destination
            .clone()
            .main("backend", backend)
            .write(&sb.path("backup.conf"));
        let mut cmd = sb.with_config(&config, &[]);
        let out = cmd.output().unwrap();
        let shown = shown(&out);
        assert_eq!(out.status.code(), Some(0), "{backend}: {shown}");
        assert!(
            shown.contains("uploaded 2, up to date 0, failed 0"),
            "{backend}: {shown}"
        );
        let again = cmd.output().unwrap();
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("uploaded 0, up to date 2"),
            "{backend}"
        );
    }
    let client = s3_client(&moto.endpoint).await;
    let listed = client
        .list_objects_v2()
        .bucket("switch")
        .send()
        .await
        .unwrap();
    let archives = listed
        .contents()
        .iter()
        .filter(|o| !o.key().unwrap_or_default().ends_with(".gbindex"))
        .count();
    assert_eq!(archives, 2, "{:?}", listed.contents());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_killed_mid_upload_resumes_from_the_parts_recorded_in_the_ledger() {
    let moto = Moto::start();
    let client = bucket(&moto.endpoint, "killed").await;
    let sb = Sandbox::new();
    let file = sb.path("disk.img");
    let data = sample(40 * MIB + 1, 6);
    fs::write(&file, &data).unwrap();
    let config = TestConfig::bucket(&moto.endpoint, "killed")
        .path(&file, "")
        .write(&sb.path("backup.toml"));
    let command = || sb.with_config(&config, &[]);
    let ledger_path = sb.path("s3.killed.sqlite3");
    // Read-only: opening read-write would create an empty ledger file before the run makes
    // its own, and the run rightly refuses an empty ledger.
    let recorded_parts = || -> i64 {
        rusqlite::Connection::open_with_flags(
            &ledger_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| c.query_row("SELECT count(*) FROM pending_parts", [], |r| r.get(0)))
        .unwrap_or(0)
    };
    let mut child = command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_until("no parts were recorded", || recorded_parts() >= 2);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = command().output().unwrap();
    let shown = shown(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("recorded in the ledger"), "{shown}");
    assert!(
        shown.contains("part(s) were already stored and were not sent again"),
        "{shown}"
    );
    let listed = client
        .list_objects_v2()
        .bucket("killed")
        .send()
        .await
        .unwrap();
    let key = listed.contents()[0].key().unwrap().to_owned();
    let body = client
        .get_object()
        .bucket("killed")
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(body == data, "the resumed object is byte-exact");
    assert_eq!(recorded_parts(), 0, "nothing pending after completion");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_waits_for_a_slow_retrieval_and_a_rebuilt_ledger_restores_too() {
    let moto = Moto::start();
    bucket(&moto.endpoint, "cold").await;
    let sb = Sandbox::new();
    let data = sb.path("data");
    support::trees::awkward_tree(&data);
    let glacier = TestConfig::bucket(&moto.endpoint, "cold")
        .backend("storage_class", "GLACIER")
        .without("part_size")
        .without("concurrency")
        .path(
            &data,
            "upload_dirs = true\nupload_files = true\nupload_if_changed = true",
        );
    let config = glacier.write(&sb.path("backup.toml"));
    let run = |args: &[&str]| sb.outcome(&config, args);
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["verify", "--remote"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verified 3 upload(s): 0 problem(s)"), "{out}");
    let ledger = sb.path("s3.cold.sqlite3");
    let retrievals = || -> i64 {
        rusqlite::Connection::open(&ledger)
            .unwrap()
            .query_row("SELECT count(*) FROM retrievals", [], |r| r.get(0))
            .unwrap()
    };

    // The test, not a clock, moves each restore along. moto's "manual" progression takes an
    // object one step (requested -> in progress -> restored) when it is read after `times`
    // reads since its last step: one step per read while `times` is 1, none while it is huge.
    let step_on_each_read =
        || moto.set_transition("s3::keyrestore", r#"{"progression": "manual", "times": 1}"#);
    let hold = || {
        moto.set_transition(
            "s3::keyrestore",
            r#"{"progression": "manual", "times": 1000000}"#,
        )
    };
    // The first run's read after its request takes each object to "in progress".
    step_on_each_read();
    let out_dir = sb.path("out");
    let to = out_dir.to_str().unwrap();
    let source = data.to_str().unwrap();
    let (code, out) = run(&["restore", "--to", to, source]);
    assert_eq!(code, Some(3), "pending: {out}");
    assert!(out.contains("retrieval requested (standard tier)"), "{out}");
    assert!(out.contains("restored 0, pending 3, failed 0"), "{out}");
    assert_eq!(retrievals(), 3, "each request is recorded");
    assert!(!out_dir.exists() || fs::read_dir(&out_dir).unwrap().next().is_none());
    hold();

    let (code, out) = run(&["restore", "--to", to, source]);
    assert_eq!(code, Some(3), "still pending: {out}");
    assert!(!out.contains("retrieval requested"), "asked twice: {out}");
    assert!(out.contains("is still in progress"), "{out}");

    // Released: the next read of each object finds it restored.
    step_on_each_read();
    let (code, out) = run(&["restore", "--wait", "--timeout", "120", "--to", to, source]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("restored 3, pending 0, failed 0"), "{out}");
    support::trees::assert_same_tree(&data, &out_dir);
    assert_eq!(retrievals(), 0, "finished retrievals are forgotten");

    // Expedited retrievals do not exist for DEEP_ARCHIVE: refused before anything is asked.
    let deep_config = glacier
        .backend("storage_class", "DEEP_ARCHIVE")
        .write(&sb.path("deep.toml"));
    let out = sb
        .with_config(&deep_config, &[])
        .args(["restore", "--tier", "expedited", "--to", to, source])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        shown(&out).contains("use --tier standard"),
        "{}",
        shown(&out)
    );

    fs::remove_file(&ledger).unwrap();
    let (code, out) = run(&["inventory", "--rebuild-ledger"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ledger rows added: 3"), "{out}");
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("uploaded 0, up to date 3, failed 0"), "{out}");
    let again = sb.path("again");
    let (code, out) = run(&["restore", "--to", again.to_str().unwrap(), source]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("restored 3, pending 0, failed 0"), "{out}");
    support::trees::assert_same_tree(&data, &again);

    // An object replaced behind our back is reported.
    let key: String = rusqlite::Connection::open(&ledger)
        .unwrap()
        .query_row(
            "SELECT archive_id FROM uploads WHERE path LIKE '%notes .txt'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    s3_client(&moto.endpoint)
        .await
        .put_object()
        .bucket("cold")
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"tampered"))
        .send()
        .await
        .unwrap();
    let (code, out) = run(&["verify", "--remote"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("differs from the ledger: size 8"), "{out}");
}

/// A listing taken before a backup completes its object finds that upload's row too recent,
/// not missing: what an inventory running beside a backup reports.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_taken_before_an_upload_completes_finds_its_row_too_recent_not_missing() {
    let moto = Moto::start();
    bucket(&moto.endpoint, "beside").await;
    let s3 = S3Archiver::new(settings(&moto.endpoint, "beside", "GLACIER"));
    let listing = s3.list().await.unwrap();
    let sb = Sandbox::new();
    let file = sb.path("report.pdf");
    fs::write(&file, b"quarterly").unwrap();
    let items = [glacier_backup::resolve::Planned {
        candidate: std::sync::Arc::new(glacier_backup::candidate::PathCandidate::new(
            file,
            glacier_backup::archiver::SourceKind::File,
        )),
        upload_if_changed: false,
        chain: None,
    }];
    let mut ledger = glacier_backup::ledger::Ledger::in_memory().unwrap();
    let options = glacier_backup::backup::RunOptions::default();
    let report = glacier_backup::backup::run_backup(&items, &mut ledger, &s3, &options)
        .await
        .unwrap();
    assert_eq!(report.uploaded.len(), 1, "{:?}", report.failed);
    let reconciled = glacier_backup::inventory::reconcile_ledger(&ledger, &listing).unwrap();
    assert!(reconciled.missing.is_empty(), "{reconciled:?}");
    assert_eq!(reconciled.too_recent.len(), 1);
}

/// A byte flipped in an S3 object whose tag and metadata were left alone passes the plain
/// `verify --remote` (which says it read nothing back), and fails `verify --remote --read`,
/// which shows what reading costs first. A class that needs a retrieval refuses `--read`.
#[tokio::test(flavor = "multi_thread")]
async fn verify_read_catches_a_flipped_byte_that_the_tag_check_cannot() {
    let moto = Moto::start();
    let client = bucket(&moto.endpoint, "instant").await;
    let sb = Sandbox::new();
    let file = sb.path("data/report.pdf");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, sample(300_000, 2)).unwrap();
    let config_for = |class: &str| {
        TestConfig::bucket(&moto.endpoint, "instant")
            .main("ledger", sb.path("ledger.sqlite3").display())
            .backend("storage_class", class)
            .without("part_size")
            .without("concurrency")
            .path(&file, "")
            .write(&sb.path(&format!("{class}.conf")))
    };
    let config = config_for("GLACIER_IR");
    let out = sb.with_config(&config, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));

    // Rewrite the object with one byte flipped, keeping its tag and metadata.
    let listed = client
        .list_objects_v2()
        .bucket("instant")
        .send()
        .await
        .unwrap();
    let key = listed.contents()[0].key().unwrap().to_owned();
    let head = client
        .head_object()
        .bucket("instant")
        .key(&key)
        .send()
        .await
        .unwrap();
    let tags = client
        .get_object_tagging()
        .bucket("instant")
        .key(&key)
        .send()
        .await
        .unwrap();
    let tagging: Vec<String> = tags
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect();
    let got = client
        .get_object()
        .bucket("instant")
        .key(&key)
        .send()
        .await
        .unwrap();
    let mut bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
    bytes[1234] ^= 1;
    client
        .put_object()
        .bucket("instant")
        .key(&key)
        .storage_class(StorageClass::GlacierIr)
        .set_metadata(head.metadata().cloned())
        .tagging(tagging.join("&"))
        .body(bytes.into())
        .send()
        .await
        .unwrap();

    let plain = sb
        .with_config(&config, &["verify", "--remote"])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(0), "{}", shown(&plain));
    assert!(
        shown(&plain).contains("no archive was read back"),
        "{}",
        shown(&plain)
    );

    let read = sb
        .with_config(&config, &["verify", "--remote", "--read"])
        .output()
        .unwrap();
    assert_eq!(read.status.code(), Some(1), "{}", shown(&read));
    assert!(
        shown(&read).contains("read back differs from the ledger"),
        "{}",
        shown(&read)
    );
    assert!(shown(&read).contains("about $"), "{}", shown(&read));

    let cold = sb
        .with_config(&config_for("GLACIER"), &["verify", "--remote", "--read"])
        .output()
        .unwrap();
    assert_eq!(cold.status.code(), Some(2), "{}", shown(&cold));
    assert!(shown(&cold).contains("need a"), "{}", shown(&cold));
}
