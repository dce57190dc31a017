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

/// The service's error code, if the error came from the service.
pub fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.as_service_error().and_then(|e| e.code())
}

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
