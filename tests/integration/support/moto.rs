//! Clients of the AWS stand-ins for the integration tests; the moto launcher is the
//! `moto-server` crate, shared with the backend crates' tests.

pub use moto_server::Moto;

/// Environment for anything that talks to a local AWS stand-in: static credentials, and no
/// metadata service or profile files, so nothing but 127.0.0.1 is ever contacted.
pub const AWS_TEST_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    ),
    ("AWS_REGION", "us-east-1"),
];

/// The static keys local stand-ins accept (the fake Glacier checks every signature with them),
/// handed to in-process clients directly: the test process's environment is never changed.
pub fn test_credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        fake_glacier::sigv4::ACCESS_KEY,
        fake_glacier::sigv4::SECRET_KEY,
        None,
        None,
        "tests",
    )
}

/// SDK configuration for a stand-in at `endpoint`, with the test keys and region.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .load()
        .await
}

/// An S3 client for moto at `endpoint` (path-style, as moto serves buckets).
#[cfg(feature = "s3")]
pub async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let shared = sdk_config(endpoint).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            // moto's response checksums do not match multipart objects; bytes are compared.
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build(),
    )
}
