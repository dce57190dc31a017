//! The HTTP client object_store talks to Azure through. object_store's own gives a request 30
//! seconds in all, which one block of several MiB on a home uplink cannot meet (nor one held
//! back by a bandwidth limit), and takes request bodies whole from memory, with no hook between
//! their bytes. This one sends bodies as streams paced by the run's [`Bandwidth`], receives
//! responses the same way, and gives up on a request only when the network stays silent for
//! [`QUIET`]. object_store's retries call it again, so retried bytes pass the limits too.

use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use futures::stream::BoxStream;
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

/// Builds the client for object_store.
#[derive(Debug)]
pub(crate) struct Connector(pub Bandwidth);

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v == "true");
        // No timeouts of reqwest's own: they count the time a body takes to send (reqwest's
        // read timeout runs from the start of a request). `Paced::call` times silence instead.
        // As object_store's own: HTTP/1 (its HTTP/2 moves large bodies markedly slower), and
        // bytes exactly as stored, never decoded by a Content-Encoding.
        let client = reqwest::Client::builder()
            .https_only(!allow_http)
            .connect_timeout(Duration::from_secs(5))
            .http1_only()
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .user_agent(concat!("glacier-backup/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "MicrosoftAzure",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(Paced {
            client,
            bandwidth: self.0.clone(),
        }))
    }
}

#[derive(Debug)]
struct Paced {
    client: reqwest::Client,
    bandwidth: Bandwidth,
}

#[async_trait::async_trait]
impl HttpService for Paced {
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
        let activity = Activity::new();
        if length > 0 {
            outgoing
                .headers_mut()
                .insert(http::header::CONTENT_LENGTH, length.into());
            let chunks = body.into_data_stream().boxed();
            let paced = self.bandwidth.upload.limit_stream(chunks);
            *outgoing.body_mut() = Some(reqwest::Body::wrap_stream(activity.watch(paced)));
        }
        let response = tokio::select! {
            response = self.client.execute(outgoing) => response.map_err(http_error)?,
            () = activity.silence() => return Err(timed_out(QUIET)),
        };
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let chunks = quiet_limited(body.into_data_stream().map_err(http_error).boxed());
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

/// The longest the network may stay silent: while a request body is sent, for its response
/// to start, and between the bytes of a response body (time the limits hold bytes back, or the
/// source is read, is not silence).
const QUIET: Duration = Duration::from_secs(60);

/// When a request body last moved, and whether reqwest is waiting for its next bytes (then
/// the network is not the one silent).
#[derive(Clone)]
struct Activity(Arc<Mutex<(Instant, bool)>>);

impl Activity {
    fn new() -> Self {
        Activity(Arc::new(Mutex::new((Instant::now(), false))))
    }

    /// `chunks`, noting each time reqwest asks for more and each time it gets them.
    fn watch(
        &self,
        chunks: BoxStream<'static, Result<bytes::Bytes, HttpError>>,
    ) -> BoxStream<'static, Result<bytes::Bytes, HttpError>> {
        let activity = self.clone();
        futures::stream::unfold(chunks, move |mut chunks| {
            let activity = activity.clone();
            async move {
                activity.set(true);
                let next = chunks.next().await;
                activity.set(false);
                next.map(|chunk| (chunk, chunks))
            }
        })
        // hyper may ask again once it has had the end.
        .fuse()
        .boxed()
    }

    fn set(&self, waiting_for_us: bool) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), waiting_for_us);
    }

    /// Ends once the network has been silent for [`QUIET`]: nothing taken of the body, or
    /// since it was all taken no response.
    async fn silence(&self) {
        loop {
            let (moved, waiting_for_us) = *self.0.lock().unwrap_or_else(|e| e.into_inner());
            if waiting_for_us {
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else if Instant::now() >= moved + QUIET {
                return;
            } else {
                tokio::time::sleep_until(moved + QUIET).await;
            }
        }
    }
}

/// `chunks`, ended by a timeout error when the next chunk takes longer than [`QUIET`] to come.
/// The throttle asks for the next chunk only once it let the last through, so its waits are
/// not counted.
fn quiet_limited(
    chunks: BoxStream<'static, Result<bytes::Bytes, HttpError>>,
) -> BoxStream<'static, Result<bytes::Bytes, HttpError>> {
    futures::stream::unfold(Some(chunks), |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout(QUIET, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => Some((Err(timed_out(QUIET)), None)),
        }
    })
    .fuse()
    .boxed()
}

fn timed_out(after: Duration) -> HttpError {
    HttpError::new(
        HttpErrorKind::Timeout,
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("nothing came from Azure for {} s", after.as_secs()),
        ),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk() -> Result<bytes::Bytes, HttpError> {
        Ok(bytes::Bytes::from_static(&[0; 1024]))
    }

    /// A body that keeps moving, however slowly, is never silence; one reqwest stops taking
    /// is, after a minute; and the time the body makes reqwest wait (a limit, the source) is
    /// not counted.
    #[tokio::test(start_paused = true)]
    async fn only_a_silent_network_ends_a_request() {
        // A chunk every 50 s for ten minutes, taken as soon as it comes.
        let activity = Activity::new();
        let slow = futures::stream::iter(0..12)
            .then(|_| async {
                tokio::time::sleep(Duration::from_secs(50)).await;
                chunk()
            })
            .boxed();
        let mut body = activity.watch(slow);
        let taking = async { while body.next().await.is_some() {} };
        let started = Instant::now();
        tokio::select! {
            () = taking => {}
            () = activity.silence() => panic!("a body held back by its source is not silence"),
        }
        assert_eq!(started.elapsed(), Duration::from_secs(600));

        // Then nothing is taken (reqwest cannot write): silence after a minute.
        let started = Instant::now();
        activity.silence().await;
        assert_eq!(started.elapsed(), QUIET);

        // A chunk taken, then no more asked for: a minute from the last one.
        let activity = Activity::new();
        let mut body = activity.watch(futures::stream::iter([chunk(), chunk()]).boxed());
        tokio::time::sleep(Duration::from_secs(30)).await;
        body.next().await;
        let started = Instant::now();
        activity.silence().await;
        assert_eq!(started.elapsed(), QUIET);
    }
}
