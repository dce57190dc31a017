//! The Glacier backend against the in-repo fake vault service on 127.0.0.1.

use bytes::Bytes;
use fake_glacier::{FakeGlacier, FaultKind};
use futures::StreamExt;
use glacier_backup_archiver::bandwidth::Throttle;
use glacier_backup_archiver::conformance::{self, meta, sample};
use glacier_backup_archiver::parts::parts_from_bytes;
use glacier_backup_archiver::treehash::tree_hash;
use glacier_backup_archiver::{Archiver, Error, OnFailure, PutOptions, Resume, UploadEvent};
use glacier_backup_glacier::{Credentials, GlacierArchiver, GlacierSettings};

const MIB: usize = 1 << 20;

fn archiver(fake: &FakeGlacier, vault: &str, part_mib: u64) -> GlacierArchiver {
    let mut settings = GlacierSettings::from_config(None, Some(vault), None).unwrap();
    // The fake checks every signature against its test keys.
    settings.connection.credentials = Some(Credentials::new(
        fake_glacier::sigv4::ACCESS_KEY,
        fake_glacier::sigv4::SECRET_KEY,
        None,
        None,
        "tests",
    ));
    settings.connection.region = Some("us-east-1".into());
    settings.connection.endpoint_url = Some(fake.endpoint.clone());
    settings.part_size = Some(part_mib << 20);
    settings.connection.max_attempts = 10;
    GlacierArchiver::new(settings)
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_the_conformance_suite() {
    let fake = FakeGlacier::start();
    fake.create_vault("conformance");
    conformance::run_all(&archiver(&fake, "conformance", 1)).await;
    assert_eq!(
        fake.uploads_in_progress("conformance"),
        0,
        "failed uploads were aborted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_round_trip_with_descriptions_the_vault_accepts() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    let glacier = archiver(&fake, "v", 1);
    let data = sample(5 * MIB + 777, 5);
    let mut m = meta("ünïcødé name", data.len() as u64);
    m.source_path = "/home/zoë/Документы/ünïcødé name".into();
    m.name = "%C3%BCn%C3%AFc%C3%B8d%C3%A9_name.tar".into();
    let stored = glacier
        .put(
            &m,
            &PutOptions::default(),
            parts_from_bytes(data.clone(), 1 << 20),
        )
        .await
        .unwrap();
    assert_eq!(stored.tree_hash, tree_hash(&data));
    let archives = fake.archives("v");
    assert_eq!(archives.len(), 1);
    let (id, archive) = &archives[0];
    assert_eq!(id, &stored.archive_id);
    assert_eq!(archive.data.as_deref(), Some(&data[..]));
    let decoded = glacier_backup_archiver::origin::decode(&archive.description).unwrap();
    assert_eq!(decoded.source_path, m.source_path);
    assert!(archive
        .description
        .starts_with("%C3%BCn%C3%AFc%C3%B8d%C3%A9_name.tar gb1:"));
    assert_eq!(fake.stats().uploads_started, 1);
    assert_eq!(
        conformance::read_back(&glacier, &stored).await,
        data.to_vec()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_percent_of_part_uploads_failing_still_succeeds() {
    for fault in [
        FaultKind::Unavailable,
        FaultKind::Throttling,
        FaultKind::DropConnection,
    ] {
        let fake = FakeGlacier::start();
        fake.create_vault("flaky");
        fake.set(|b| {
            b.part_failure_rate = 0.3;
            b.part_fault = fault;
        });
        let glacier = archiver(&fake, "flaky", 1);
        let data = sample(24 * MIB + 5, 7);
        let stored = glacier
            .put(
                &meta("flaky", data.len() as u64),
                &PutOptions::default(),
                parts_from_bytes(data.clone(), 1 << 20),
            )
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(stored.tree_hash, tree_hash(&data), "{fault:?}");
        assert!(
            fake.stats().injected_faults >= 3,
            "{fault:?}: faults were injected"
        );
        assert_eq!(fake.archives("flaky")[0].1.data.as_deref(), Some(&data[..]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanently_refused_part_fails_the_upload_and_leaves_nothing() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    fake.set(|b| b.refuse_parts_from = Some(2));
    let glacier = archiver(&fake, "v", 1);
    let data = sample(4 * MIB, 1);
    let err = glacier
        .put(
            &meta("refused", data.len() as u64),
            &PutOptions::default(),
            parts_from_bytes(data, 1 << 20),
        )
        .await
        .unwrap_err();
    assert!(!err.is_temporary(), "{err}");
    assert!(err.to_string().contains("uploading part"), "{err}");
    assert!(fake.archives("v").is_empty());
    assert_eq!(
        fake.uploads_in_progress("v"),
        0,
        "an unrecorded upload is aborted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upload_resumes_without_resending_stored_parts() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    // One part at a time, so that exactly the parts before the refused one are stored.
    let mut settings = archiver(&fake, "v", 1).settings().clone();
    settings.connection.concurrency = 1;
    let glacier = GlacierArchiver::new(settings);
    let data = sample(6 * MIB + 10, 3);
    fake.set(|b| b.refuse_parts_from = Some(4));
    let (tx, events) = recording_events();
    let m = meta("resumable", data.len() as u64);
    let mut options = PutOptions {
        events: Some(tx.clone()),
        on_failure: OnFailure::Keep,
        ..PutOptions::default()
    };
    let first = glacier
        .put(&m, &options, parts_from_bytes(data.clone(), 1 << 20))
        .await;
    assert!(first.is_err());
    let Some(UploadEvent::Started(token)) = events.lock().unwrap().first().cloned() else {
        panic!("the upload id was reported first");
    };
    assert_eq!(fake.uploads_in_progress("v"), 1, "kept for resuming");
    let sent_before = fake.stats().parts_stored.len();
    assert_eq!(sent_before, 4);

    fake.set(|b| b.refuse_parts_from = None);
    options.resume = Some(Resume::new(token.clone()));
    let stored = glacier
        .put(&m, &options, parts_from_bytes(data.clone(), 1 << 20))
        .await
        .unwrap();
    let stats = fake.stats();
    let mut resent: Vec<_> = stats.parts_stored[sent_before..]
        .iter()
        .map(|(_, offset)| *offset)
        .collect();
    resent.sort();
    assert_eq!(
        resent,
        [4 << 20, 5 << 20, 6 << 20],
        "only the missing parts were sent"
    );
    assert_eq!(stats.uploads_started, 1, "no new upload was started");
    assert_eq!(stored.tree_hash, tree_hash(&data));
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2, "no second upload id: {events:?}");
    assert!(
        matches!(events[1], UploadEvent::Completing { size, tree_hash: hash, .. }
            if size == data.len() as u64 && hash == tree_hash(&data)),
        "{events:?}"
    );
}

/// An event sink as the engine is: it keeps every event and answers each `Completing` once
/// recorded.
fn recording_events() -> (
    tokio::sync::mpsc::UnboundedSender<UploadEvent>,
    std::sync::Arc<std::sync::Mutex<Vec<UploadEvent>>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<UploadEvent>();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = events.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            kept.lock().unwrap().push(event.clone());
            if let UploadEvent::Completing { recorded, .. } = event {
                recorded.done();
            }
        }
    });
    (tx, events)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_resume_token_starts_over() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    let glacier = archiver(&fake, "v", 1);
    let data = sample(3 * MIB, 3);
    let m = meta("stale", data.len() as u64);
    let stale = PutOptions {
        resume: Some(Resume::new("upload-that-expired")),
        ..PutOptions::default()
    };
    let stored = glacier
        .put(&m, &stale, parts_from_bytes(data.clone(), 1 << 20))
        .await
        .unwrap();
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(fake.stats().uploads_started, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_outgrows_the_part_limit_fails_before_sending_one_too_many() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    let mut glacier = archiver(&fake, "v", 1);
    // Glacier's limit is 10,000 parts; the same check with a limit of 5 keeps the test small.
    let mut settings = glacier.settings().clone();
    settings.max_parts = 5;
    glacier = GlacierArchiver::new(settings);
    let zeros = Bytes::from(vec![0u8; MIB]);
    let hash = tree_hash(&zeros);
    let parts = futures::stream::iter((0..6u64).map(move |i| {
        Ok(glacier_backup_archiver::Part {
            index: i,
            offset: i * MIB as u64,
            data: zeros.clone(),
            tree_hash: hash,
            hash_from_data: true,
            held: None,
        })
    }))
    .boxed();
    let err = glacier
        .put(&meta("huge", 1), &PutOptions::default(), parts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outgrew 5 parts"), "{err}");
    let sent = fake.stats().parts_stored;
    assert!(
        !sent.is_empty() && sent.iter().all(|(_, offset)| *offset < 5 * MIB as u64),
        "{sent:?}"
    );
    assert_eq!(
        fake.uploads_in_progress("v"),
        0,
        "the broken upload was aborted"
    );
    assert!(fake.archives("v").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_vault_is_a_config_error_and_empty_archives_are_refused() {
    let fake = FakeGlacier::start();
    let glacier = archiver(&fake, "nope", 1);
    let err = glacier.check().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(
        err.to_string().contains("vault \"nope\" does not exist"),
        "{err}"
    );

    fake.create_vault("nope");
    glacier.check().await.unwrap();
    let err = glacier
        .put(
            &meta("empty", 0),
            &PutOptions::default(),
            parts_from_bytes(Bytes::new(), 1 << 20),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

/// What the conformance suite cannot see for a vault (it cannot list at once): a put given a
/// corrupt part, or whose source fails midway, leaves no archive and no open upload in the
/// vault, per the fake's own state.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_or_corrupt_put_leaves_nothing_in_the_vault() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    let glacier = archiver(&fake, "v", 1);
    let data = sample(4 * MIB, 5);

    let corrupt = parts_from_bytes(data.clone(), 1 << 20)
        .map(|part| {
            part.map(|mut part| {
                if part.index == 2 {
                    part.tree_hash = tree_hash(b"not these bytes");
                    part.hash_from_data = false;
                }
                part
            })
        })
        .boxed();
    let err = glacier
        .put(
            &meta("corrupt", data.len() as u64),
            &PutOptions::default(),
            corrupt,
        )
        .await
        .unwrap_err();
    assert!(!err.is_temporary(), "{err}");

    let failing = parts_from_bytes(data.clone(), 1 << 20)
        .take(2)
        .chain(futures::stream::iter([Err(Error::Source(
            "the source changed while being read".into(),
        ))]))
        .boxed();
    glacier
        .put(
            &meta("failing", data.len() as u64),
            &PutOptions::default(),
            failing,
        )
        .await
        .unwrap_err();

    assert!(fake.archives("v").is_empty(), "an archive was stored");
    assert_eq!(fake.uploads_in_progress("v"), 0, "an upload was left open");
}

/// Retries go through the upload limit again: every byte sent, the failed attempts' too, is
/// counted in the one bucket.
#[tokio::test(flavor = "multi_thread")]
async fn retried_parts_pass_through_the_upload_limit_again() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    fake.set(|b| b.part_failure_rate = 0.4);
    let bandwidth = glacier_backup_archiver::Bandwidth {
        upload: Throttle::per_second(256 << 20),
        download: Default::default(),
    };
    let glacier = archiver(&fake, "v", 1).with_bandwidth(bandwidth.clone());
    let data = sample(8 * MIB, 3);
    let stored = glacier
        .put(
            &meta("limited", data.len() as u64),
            &PutOptions::default(),
            parts_from_bytes(data.clone(), 1 << 20),
        )
        .await
        .unwrap();
    assert_eq!(stored.tree_hash, tree_hash(&data));
    let failed = fake.stats().injected_faults;
    assert!(failed >= 1, "some parts failed and were sent again");
    assert_eq!(
        bandwidth.upload.bytes_through(),
        (data.len() + failed as usize * MIB) as u64,
        "every attempt's body went through the limit ({failed} failed)"
    );
    assert_eq!(bandwidth.download.bytes_through(), 0);
}

/// The SDK's read timeout runs from when a request is sent until its response starts, so it
/// counts a paced body's sending: under a limit each attempt's timeout is extended by what
/// the limit can hold its body back, or a slow enough limit would fail every part.
#[tokio::test(flavor = "multi_thread")]
async fn a_part_paced_longer_than_the_read_timeout_is_not_given_up_on() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    let mut glacier = archiver(&fake, "v", 1);
    let bandwidth = glacier_backup_archiver::Bandwidth {
        upload: Throttle::per_second(512 << 10),
        download: Default::default(),
    };
    let mut settings = glacier.settings().clone();
    // Two parts at once share 512 KiB/s: each takes 4 s, four times the read timeout.
    settings.connection.read_timeout = std::time::Duration::from_secs(1);
    settings.connection.concurrency = 2;
    settings.connection.max_attempts = 1;
    glacier = GlacierArchiver::new(settings).with_bandwidth(bandwidth);
    let data = sample(2 * MIB, 4);
    let started = std::time::Instant::now();
    let stored = glacier
        .put(
            &meta("paced", data.len() as u64),
            &PutOptions::default(),
            parts_from_bytes(data.clone(), 1 << 20),
        )
        .await
        .unwrap();
    assert_eq!(stored.tree_hash, tree_hash(&data));
    assert!(
        started.elapsed().as_secs_f64() >= 3.5,
        "{:?}",
        started.elapsed()
    );
}

/// Without a limit too, a part whose answer comes later than the read timeout (a slow uplink
/// sending it, here a slow vault answering it) is waited for: the timeout leaves its body
/// time to be sent at 16 KiB/s. Before, every attempt timed out.
#[tokio::test(flavor = "multi_thread")]
async fn a_part_slower_than_the_read_timeout_is_waited_for() {
    let fake = FakeGlacier::start();
    fake.create_vault("v");
    fake.set(|b| b.part_delay = std::time::Duration::from_secs(2));
    let mut settings = archiver(&fake, "v", 1).settings().clone();
    settings.connection.read_timeout = std::time::Duration::from_secs(1);
    settings.connection.max_attempts = 1;
    let glacier = GlacierArchiver::new(settings);
    let data = sample(2 * MIB, 6);
    let stored = glacier
        .put(
            &meta("slow", data.len() as u64),
            &PutOptions::default(),
            parts_from_bytes(data.clone(), 1 << 20),
        )
        .await
        .unwrap();
    assert_eq!(stored.tree_hash, tree_hash(&data));
}
