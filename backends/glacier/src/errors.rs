//! SDK errors mapped early into the archiver's error, with Glacier's codes.

use aws_sdk_glacier::error::{ProvideErrorMetadata, SdkError};
use glacier_backup_archiver::Error;
use glacier_backup_aws::{error_code, map_error};

use crate::NAME;

/// Service error codes that mean "try again later".
const TEMPORARY_CODES: &[&str] = &[
    "ThrottlingException",
    "RequestTimeoutException",
    "ServiceUnavailableException",
    "InsufficientCapacityException",
    "LimitExceededException",
];

/// Codes for a vault, upload or job that does not exist (moto says `VaultNotFound`).
const NOT_FOUND_CODES: &[&str] = &["ResourceNotFoundException", "VaultNotFound"];

/// Maps an SDK error met while doing `action`.
pub fn map<E, R>(action: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    map_error(NAME, action, TEMPORARY_CODES, error)
}

/// True when the error says the vault, upload or job does not exist.
pub fn is_not_found<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error_code(error).is_some_and(|code| NOT_FOUND_CODES.contains(&code))
}

/// Like [`map`], but a "does not exist" answer becomes [`Error::NotFound`] for `missing`.
pub fn map_missing<E, R>(action: &str, missing: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
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
