//! Bandwidth limits on Azure's traffic. object_store hands its HTTP client a request body
//! whole, from memory, with no hook between its bytes; so when a limit is set, requests go
//! through a reqwest client of ours whose bodies are streams the throttle lets through piece by
//! piece, and responses come back the same way. object_store's retries call this client again,
//! so they count too. Unlimited, object_store's own client is used.

use std::error::Error as _;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use glacier_backup_archiver::Bandwidth;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};
use sync_wrapper::SyncStream;

/// Builds the limited client for object_store.
#[derive(Debug)]
pub(crate) struct ThrottledConnector(pub Bandwidth);

impl HttpConnector for ThrottledConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v == "true");
        // A read timeout, never one on the whole request: a limited upload of a large block
        // takes as long as the limit makes it.
        let client = reqwest::Client::builder()
            .https_only(!allow_http)
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "MicrosoftAzure",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(Throttled {
            client,
            bandwidth: self.0.clone(),
        }))
    }
}

#[derive(Debug)]
struct Throttled {
    client: reqwest::Client,
    bandwidth: Bandwidth,
}

#[async_trait::async_trait]
impl HttpService for Throttled {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        // The address may carry a SAS token: errors never include it.
        let url = reqwest::Url::parse(&parts.uri.to_string()).map_err(|e| {
            HttpError::new(HttpErrorKind::Request, std::io::Error::other(e.to_string()))
        })?;
        let mut outgoing = reqwest::Request::new(parts.method, url);
        *outgoing.headers_mut() = parts.headers;
        // By length, not `is_empty`: object_store 0.14's answers the opposite for a payload of
        // several chunks.
        let length = body.content_length();
        if length > 0 {
            outgoing
                .headers_mut()
                .insert(http::header::CONTENT_LENGTH, length.into());
            let chunks = body.into_data_stream().boxed();
            *outgoing.body_mut() = Some(reqwest::Body::wrap_stream(
                self.bandwidth.upload.limit_stream(chunks),
            ));
        }
        let response = self.client.execute(outgoing).await.map_err(http_error)?;
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let chunks = body.into_data_stream().map_err(http_error).boxed();
        let frames = SyncStream::new(
            self.bandwidth
                .download
                .limit_stream(chunks)
                .map_ok(Frame::data),
        );
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::new(StreamBody::new(frames)),
        ))
    }
}

/// reqwest's error as object_store's, of the kind its retries go by, without the address.
fn http_error(e: reqwest::Error) -> HttpError {
    let mut kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else if e.is_request() || e.is_body() {
        HttpErrorKind::Request
    } else {
        HttpErrorKind::Unknown
    };
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                TimedOut => kind = HttpErrorKind::Timeout,
                ConnectionAborted | ConnectionReset | BrokenPipe | UnexpectedEof => {
                    kind = HttpErrorKind::Interrupted
                }
                _ => {}
            }
        }
        source = cause.source();
    }
    HttpError::new(kind, e.without_url())
}
