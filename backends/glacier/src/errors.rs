//! SDK errors, which are large, mapped early into the archiver's error as `code: message` plus
//! whether trying again may help.

use aws_sdk_glacier::error::{ProvideErrorMetadata, SdkError};
use glacier_backup_archiver::Error;

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

/// Maps an SDK error for `action` (what we were doing, for the message).
pub fn map<E, R>(action: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (message, temporary) = match &error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("UnknownError");
            let text = e.message().unwrap_or("no message");
            (
                format!("{action}: {code}: {text}"),
                TEMPORARY_CODES.contains(&code),
            )
        }
        SdkError::TimeoutError(_) => (format!("{action}: timed out"), true),
        SdkError::DispatchFailure(failure) => {
            let detail = failure
                .as_connector_error()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "could not send the request".into());
            (format!("{action}: {detail}"), !failure.is_user())
        }
        SdkError::ResponseError(_) => (format!("{action}: unreadable response"), true),
        SdkError::ConstructionFailure(_) => {
            (format!("{action}: could not build the request"), false)
        }
        _ => (format!("{action}: {error}"), false),
    };
    Error::Remote {
        backend: NAME,
        message,
        temporary,
        source: Some(Box::new(error)),
    }
}

/// True when the error says the vault, upload or job does not exist.
pub fn is_not_found<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| NOT_FOUND_CODES.contains(&code))
}
