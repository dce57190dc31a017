//! How Glacier's errors map into the archiver's (through `glacier_backup_aws`).

use glacier_backup_aws::ServiceErrors;

/// Glacier's codes: "try again later", and a vault, upload or job that does not exist (moto
/// says `VaultNotFound`).
pub const ERRORS: ServiceErrors = ServiceErrors {
    backend: crate::NAME,
    temporary_codes: &[
        "ThrottlingException",
        "RequestTimeoutException",
        "ServiceUnavailableException",
        "InsufficientCapacityException",
        "LimitExceededException",
    ],
    not_found_codes: &["ResourceNotFoundException", "VaultNotFound"],
};
