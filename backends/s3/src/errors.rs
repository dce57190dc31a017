//! How S3's errors map into the archiver's (through `glacier_backup_aws`).

use glacier_backup_aws::ServiceErrors;

/// S3's codes: "try again later", and a bucket, key or upload that does not exist.
pub const ERRORS: ServiceErrors = ServiceErrors {
    backend: crate::NAME,
    temporary_codes: &[
        "SlowDown",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeTooSkewed",
    ],
    not_found_codes: &["NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchBucket"],
};
