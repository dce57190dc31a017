//! object_store's errors as the archiver's, saying what was being done.

use glacier_backup_archiver::Error;

use crate::NAME;

/// Maps a failed call made while doing `doing`. object_store has already retried what was
/// worth retrying (throttling, 5xx, dropped connections), so what is left of those is still
/// temporary; refusals (credentials, permissions, bad requests) are not.
pub(crate) fn map(doing: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    match e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::Config {
            backend: NAME,
            message: format!(
                "{doing}: Azure refused the credentials ({e}); set AZURE_STORAGE_ACCOUNT_KEY, \
                 AZURE_STORAGE_SAS_KEY or an Azure AD identity (AZURE_CLIENT_ID, \
                 AZURE_CLIENT_SECRET, AZURE_TENANT_ID) with access to the container"
            ),
        },
        E::Generic { .. } if is_missing_container(&e) => Error::Config {
            backend: NAME,
            message: format!(
                "{doing}: the container does not exist; create it (az storage container \
                 create) or fix [azure] container / account"
            ),
        },
        E::Generic { .. } => Error::Remote {
            backend: NAME,
            message: format!("{doing}: {e}"),
            temporary: !is_refusal(&e),
            source: Some(Box::new(e)),
        },
        other => Error::Remote {
            backend: NAME,
            message: format!("{doing}: {other}"),
            temporary: false,
            source: Some(Box::new(other)),
        },
    }
}

/// As [`map`], with a missing blob as [`Error::NotFound`] for `archive_id`.
pub(crate) fn map_missing(doing: &str, archive_id: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound {
            backend: NAME,
            archive_id: archive_id.to_owned(),
        },
        other => map(doing, other),
    }
}

fn is_missing_container(e: &object_store::Error) -> bool {
    e.to_string().contains("ContainerNotFound")
}

/// A 4xx answer: asking again will not help.
fn is_refusal(e: &object_store::Error) -> bool {
    let text = e.to_string();
    (400..500).any(|status| text.contains(&format!("status: {status}")))
        && !text.contains("status: 408")
        && !text.contains("status: 429")
}
