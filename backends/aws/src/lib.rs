//! What the Glacier and S3 backends share: the connection settings every AWS section accepts,
//! loading the SDK configuration from them (credentials only ever from the standard chain), and
//! mapping the SDK's large errors early into the archiver's error.

#![warn(missing_docs)]

mod throttled;

use std::time::Duration;

use aws_config::SdkConfig;
pub use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_archiver::{Bandwidth, Error};
pub use throttled::Throttled;

/// Keys of the connection settings, accepted in `[glacier]` and `[s3]`.
pub const CONNECTION_SETTINGS: &[&str] = &[
    "region",
    "endpoint_url",
    "profile",
    "concurrency",
    "max_attempts",
    "connect_timeout",
    "read_timeout",
];

/// Where and how to talk to AWS (or a stand-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// AWS region; otherwise from the standard chain (environment, profile).
    pub region: Option<String>,
    /// Endpoint to talk to instead of AWS's (a test server, a proxy).
    pub endpoint_url: Option<String>,
    /// Named profile from the AWS config files.
    pub profile: Option<String>,
    /// Parts uploaded at once.
    pub concurrency: usize,
    /// Attempts per request, retries included.
    pub max_attempts: u32,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Longest wait for response bytes.
    pub read_timeout: Duration,
    /// Credentials handed over in code (tests against a local stand-in, programs embedding a
    /// backend), used instead of the standard chain. Never read from a config file.
    pub credentials: Option<Credentials>,
    /// The run's bandwidth limits, applied to every request and response body
    /// ([`Connection::throttled`]).
    pub bandwidth: Bandwidth,
}

impl Connection {
    /// Reads the connection settings of `section`, with their defaults.
    pub fn from_section(s: &Section) -> Result<Self, SettingsError> {
        let concurrency = s.u64("concurrency")?.unwrap_or(4);
        if !(1..=64).contains(&concurrency) {
            return Err(s.error(Some("concurrency"), "use a number of parts from 1 to 64"));
        }
        let max_attempts = s.u64("max_attempts")?.unwrap_or(8);
        if !(1..=100).contains(&max_attempts) {
            return Err(s.error(
                Some("max_attempts"),
                "use a number of attempts from 1 to 100",
            ));
        }
        let seconds = |key: &str, default: u64| -> Result<Duration, SettingsError> {
            match s.u64(key)?.unwrap_or(default) {
                0 => Err(s.error(Some(key), "use a number of seconds above 0")),
                n => Ok(Duration::from_secs(n)),
            }
        };
        let endpoint_url = s.string("endpoint_url")?.filter(|e| !e.is_empty());
        if let Some(url) = &endpoint_url {
            if !is_endpoint_url(url) {
                return Err(s.error(
                    Some("endpoint_url"),
                    "is not a URL; write it as http://host:port or https://host (or remove it \
                     to use AWS)",
                ));
            }
        }
        Ok(Connection {
            region: s.string("region")?.filter(|r| !r.is_empty()),
            endpoint_url,
            profile: s.string("profile")?.filter(|p| !p.is_empty()),
            concurrency: concurrency as usize,
            max_attempts: max_attempts as u32,
            connect_timeout: seconds("connect_timeout", 10)?,
            read_timeout: seconds("read_timeout", 120)?,
            credentials: None,
            bandwidth: Bandwidth::default(),
        })
    }

    /// The interceptor every client of this connection registers, so its bodies go through the
    /// bandwidth limits.
    pub fn throttled(&self) -> Throttled {
        Throttled(self.bandwidth.clone())
    }

    /// Loads the SDK configuration: credentials and anything not set here from the standard
    /// AWS chain. A missing region is a configuration error naming `section`.
    pub async fn load(&self, backend: &'static str, section: &str) -> Result<SdkConfig, Error> {
        let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(self.max_attempts);
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::Config {
                backend,
                message: format!(
                    "no AWS region: set [{section}] region, or AWS_REGION, or a region in your \
                     AWS profile"
                ),
            });
        }
        Ok(config)
    }
}

/// How one AWS service's errors become the archiver's: which codes mean "try again later" and
/// which mean "does not exist". Each AWS backend has one, and maps every SDK error through it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceErrors {
    /// Backend name, for messages.
    pub backend: &'static str,
    /// Service error codes worth retrying later.
    pub temporary_codes: &'static [&'static str],
    /// Service error codes for a container, object, upload or job that does not exist.
    pub not_found_codes: &'static [&'static str],
}

impl ServiceErrors {
    /// Maps an SDK error met while doing `action` (see [`map_error`]).
    pub fn map<E>(&self, action: &str, error: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        map_error(self.backend, action, self.temporary_codes, error)
    }

    /// Whether the error says the thing asked about does not exist (by code, or a bare 404 as
    /// HEAD requests answer).
    pub fn is_not_found<E: ProvideErrorMetadata>(&self, error: &SdkError<E, HttpResponse>) -> bool {
        error_code(error).is_some_and(|code| self.not_found_codes.contains(&code))
            || error
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 404)
    }

    /// Like [`ServiceErrors::map`], but "does not exist" becomes [`Error::NotFound`] for
    /// `missing`.
    pub fn map_missing<E>(
        &self,
        action: &str,
        missing: &str,
        error: SdkError<E, HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if self.is_not_found(&error) {
            Error::NotFound {
                backend: self.backend,
                archive_id: missing.to_owned(),
            }
        } else {
            self.map(action, error)
        }
    }
}

/// The service's error code, when the error came from the service.
pub fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.as_service_error().and_then(|e| e.code())
}

/// Maps an SDK error met while doing `action` into [`Error::Remote`], `code: message` first.
/// Service errors whose code is in `temporary_codes`, timeouts, connection failures and
/// unreadable responses count as temporary.
pub fn map_error<E, R>(
    backend: &'static str,
    action: &str,
    temporary_codes: &[&str],
    error: SdkError<E, R>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = &error {
        let e = service.err();
        let code = e.code().unwrap_or("UnknownError");
        let text = redact(e.message().unwrap_or("no message"));
        // The service's error itself is not kept as the source: its text is the message,
        // unredacted.
        return Error::Remote {
            backend,
            message: format!("{action}: {code}: {text}"),
            temporary: temporary_codes.contains(&code),
            source: None,
        };
    }
    let (message, temporary) = match &error {
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
        backend,
        message,
        temporary,
        source: Some(Box::new(error)),
    }
}

/// A service's message with the secrets it may echo cut out. AWS answers a refused signature
/// with the canonical request it expected, headers included, so a session token would be
/// printed (and logged) with it; the secret key itself never travels, but is cut out too
/// wherever it appears.
pub fn redact(text: &str) -> String {
    let mut text = text.to_owned();
    for name in ["x-amz-security-token", "x-amz-credential", "signature"] {
        text = redact_values_after(&text, name);
    }
    for variable in ["AWS_SESSION_TOKEN", "AWS_SECRET_ACCESS_KEY"] {
        if let Ok(secret) = std::env::var(variable) {
            if secret.len() >= 8 {
                text = text.replace(&secret, "[redacted]");
            }
        }
    }
    text
}

/// Replaces the value after every `name:` or `name=` (any case) with `[redacted]`, up to the
/// end of the value (whitespace, a quote, `&`, `,`, `<`).
fn redact_values_after(text: &str, name: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(name) {
        let start = from + found + name.len();
        from = start;
        if !matches!(text.as_bytes().get(start), Some(b':' | b'=')) {
            continue;
        }
        let value_start = start + 1;
        let value_end = text[value_start..]
            .find(|c: char| c.is_whitespace() || "'\"&,<".contains(c))
            .map_or(text.len(), |end| value_start + end);
        if value_end > value_start {
            out.push_str(&text[rest..value_start]);
            out.push_str("[redacted]");
            rest = value_end;
            from = value_end;
        }
    }
    out.push_str(&text[rest..]);
    out
}

/// `http://` or `https://`, a host, an optional numeric port and path: what the SDK can connect
/// to. Checked here, since the SDK reports a bad one only as a debug dump.
fn is_endpoint_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    !host.is_empty()
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
        && rest
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"<>\\`{}|^".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_requests_lose_their_tokens_and_signatures() {
        let echoed = "The Canonical String for this request should have been\n'POST\n/-/vaults\n\n\
                      host:127.0.0.1\nx-amz-date:20261204T000000Z\n\
                      x-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLETOKEN+/=\n\n\
                      host;x-amz-date;x-amz-security-token\nabc'\n\
                      X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-Signature=deadbeef \
                      Signature=cafe1234, next";
        let redacted = redact(echoed);
        for secret in [
            "IQoJb3JpZ2luX2VjEXAMPLETOKEN",
            "FwoGZXIvYXdzEXAMPLE",
            "deadbeef",
            "cafe1234",
        ] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(
            redacted.contains("x-amz-security-token:[redacted]\n"),
            "{redacted}"
        );
        assert!(
            redacted.contains("host;x-amz-date;x-amz-security-token\n"),
            "{redacted}"
        );
        assert!(redacted.contains(", next"), "{redacted}");
        assert_eq!(redact("no secrets here"), "no secrets here");
    }

    #[test]
    fn endpoint_urls_are_checked_before_the_sdk_sees_them() {
        for good in [
            "http://127.0.0.1:5000",
            "https://s3.eu-west-1.amazonaws.com",
            "http://[::1]:9000/",
            "http://minio.local/path",
        ] {
            assert!(is_endpoint_url(good), "{good}");
        }
        for bad in [
            "not a url",
            "127.0.0.1:5000",
            "http://",
            "http://host:port",
            "ftp://host",
            "http://ho st",
        ] {
            assert!(!is_endpoint_url(bad), "{bad}");
        }
        let section = Section::from_strings("s3", &[("endpoint_url", "not a url")]);
        let err = Connection::from_section(&section).unwrap_err();
        assert!(
            err.to_string().contains("[s3] endpoint_url: is not a URL"),
            "{err}"
        );
    }
}
