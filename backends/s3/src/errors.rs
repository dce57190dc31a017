//! SDK errors mapped early into the archiver's error, as `code: message` plus whether trying
//! again may help.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use glacier_backup_archiver::Error;

use crate::NAME;

const TEMPORARY_CODES: &[&str] = &[
    "SlowDown",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeTooSkewed",
];

const NOT_FOUND_CODES: &[&str] = &["NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchBucket"];

pub use glacier_backup_aws::error_code as code;

/// True when the bucket, key or upload does not exist (HEAD answers a bare 404).
pub fn is_not_found<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool
where
    R: HttpStatus,
{
    code(error).is_some_and(|c| NOT_FOUND_CODES.contains(&c))
        || error.raw_response().is_some_and(|r| r.status_code() == 404)
}

/// Access to a raw response's status code.
pub trait HttpStatus {
    /// The HTTP status.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Maps an SDK error met while doing `action`.
pub fn map<E, R>(action: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    glacier_backup_aws::map_error(NAME, action, TEMPORARY_CODES, error)
}

/// Like [`map`], but a "does not exist" answer becomes [`Error::NotFound`] for `missing`.
pub fn map_missing<E, R>(action: &str, missing: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug + Send + Sync + 'static,
{
    if is_not_found(&error) {
        Error::NotFound {
            backend: NAME,
            archive_id: missing.to_owned(),
        }
    } else {
        map(action, error)
    }
}
