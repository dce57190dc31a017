//! object_store's errors as the archiver's, saying what was being done.

use glacier_backup_archiver::Error;

use crate::NAME;

/// Maps a failed call made while doing `doing`. object_store has already retried what was
/// worth retrying (throttling, 5xx, dropped connections), so what is left of those is still
/// temporary; refusals (credentials, permissions, bad requests) are not.
pub(crate) fn map(doing: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let text = chain(&e);
    let statuses = statuses(&text);
    let code = azure_code(&text);
    let refused_credentials = statuses.iter().any(|s| *s == 401 || *s == 403);
    match e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => credentials(doing, code),
        E::Generic { .. } if refused_credentials => credentials(doing, code),
        E::Generic { .. } if code == Some("ContainerNotFound") => Error::Config {
            backend: NAME,
            message: format!(
                "{doing}: the container does not exist; create it (az storage container \
                 create) or fix [azure] container / account"
            ),
        },
        E::Generic { .. } => Error::Remote {
            backend: NAME,
            message: format!("{doing}: {e}"),
            temporary: !statuses
                .iter()
                .any(|s| (400..500).contains(s) && *s != 408 && *s != 429),
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

/// Azure refused who we are: what to set, with Azure's error code (the key itself is never in
/// a message: object_store signs with it and hides SAS URLs).
fn credentials(doing: &str, code: Option<&str>) -> Error {
    Error::Config {
        backend: NAME,
        message: format!(
            "{doing}: Azure refused the credentials ({}); set AZURE_STORAGE_ACCOUNT_KEY, \
             AZURE_STORAGE_SAS_KEY or an Azure AD identity (AZURE_CLIENT_ID, \
             AZURE_CLIENT_SECRET, AZURE_TENANT_ID) with access to the container, and check \
             [azure] account",
            code.unwrap_or("refused")
        ),
    }
}

/// The error and its sources, as one text.
fn chain(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The HTTP statuses Azure answered, as the message tells them: object_store keeps its status
/// private (`... status code: 400 Bad Request ...`).
fn statuses(text: &str) -> Vec<u16> {
    text.split("status code: ")
        .skip(1)
        .filter_map(|rest| rest.get(..3)?.parse().ok())
        .collect()
}

/// Azure's error code (`<Code>ContainerNotFound</Code>` in the answer's body), if given.
fn azure_code(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once("<Code>")?;
    rest.split_once("</Code>").map(|(code, _)| code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: message.to_owned().into(),
        }
    }

    #[test]
    fn refusals_are_final_and_the_rest_temporary() {
        let refused = map(
            "uploading",
            generic("Error performing PUT in 5ms - Server returned non-2xx status code: 400 Bad Request: x"),
        );
        assert!(!refused.is_temporary(), "{refused}");
        for text in [
            "Error performing PUT in 5ms - Server returned non-2xx status code: 503 Service Unavailable",
            "Error performing PUT in 5ms - Server returned non-2xx status code: 429 Too Many Requests",
            "Error performing PUT in 5ms - error sending request: connection refused",
        ] {
            assert!(map("uploading", generic(text)).is_temporary(), "{text}");
        }
        let missing = map(
            "checking",
            generic("status code: 404: <Error><Code>ContainerNotFound</Code>"),
        );
        assert!(
            missing.to_string().contains("[azure] container"),
            "{missing}"
        );
        let refused = map(
            "checking",
            generic("status code: 403 Forbidden: <Error><Code>AuthorizationFailure</Code>"),
        );
        assert!(matches!(refused, Error::Config { .. }), "{refused:?}");
        assert!(
            refused.to_string().contains("(AuthorizationFailure)"),
            "{refused}"
        );
    }
}
