//! The S3 backend against moto_server on 127.0.0.1: the conformance suite every backend
//! passes, in a class that needs a restore and in one read at once.

use glacier_backup_archiver::conformance;
use glacier_backup_archiver::settings::Section;
use glacier_backup_archiver::Archiver;
use glacier_backup_s3::{Credentials, S3Archiver, S3Settings};
use moto_server::Moto;

/// moto takes any static keys; the environment is never read.
fn credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "tests")
}

async fn create_bucket(endpoint: &str, name: &str) {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials())
        .load()
        .await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap();
}

fn archiver(endpoint: &str, bucket: &str, class: &str) -> S3Archiver {
    let section = Section::from_strings(
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
    settings.connection.credentials = Some(credentials());
    S3Archiver::new(settings)
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_the_conformance_suite_in_cold_and_instant_classes() {
    let moto = Moto::start();
    for (bucket, class) in [("cold-bucket", "GLACIER"), ("instant-bucket", "GLACIER_IR")] {
        create_bucket(&moto.endpoint, bucket).await;
        let s3 = archiver(&moto.endpoint, bucket, class);
        assert_eq!(s3.capabilities().needs_restore, class == "GLACIER");
        conformance::run_all(&s3).await;
    }
}

/// With bandwidth limits, every request and response body (multipart parts with their checksum
/// trailers, ranged reads, listings) passes through the paced body and the suite still holds.
#[tokio::test(flavor = "multi_thread")]
async fn passes_the_conformance_suite_through_the_limits() {
    use glacier_backup_archiver::bandwidth::Throttle;
    let moto = Moto::start();
    create_bucket(&moto.endpoint, "limited").await;
    let throttle = || Throttle::per_second(512 << 20);
    let bandwidth = glacier_backup_archiver::Bandwidth {
        upload: throttle(),
        download: throttle(),
    };
    let s3 = archiver(&moto.endpoint, "limited", "GLACIER_IR").with_bandwidth(bandwidth.clone());
    conformance::run_all(&s3).await;
    assert!(
        bandwidth.upload.bytes_through() > 0,
        "uploads went through the limit"
    );
    assert!(
        bandwidth.download.bytes_through() > 0,
        "reads went through the limit"
    );
}
