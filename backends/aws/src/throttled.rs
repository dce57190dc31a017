//! Bandwidth limits on the SDK's own traffic: an interceptor wraps every attempt's request body
//! (retries included, as each attempt is sent anew) in the upload throttle and every response
//! body in the download throttle, so parts, retries and listings all share one bucket per
//! direction. It also gives each attempt's read timeout room for its body to be sent.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use glacier_backup_archiver::bandwidth::Throttle;
use glacier_backup_archiver::Bandwidth;
use http_body::{Body, Frame, SizeHint};
use sync_wrapper::SyncWrapper;

/// Registered on every AWS client: bodies go through the run's [`Bandwidth`], and a request's
/// read timeout leaves time for its body to be sent.
#[derive(Debug, Clone)]
pub struct Throttled(pub Bandwidth);

impl Intercept for Throttled {
    fn name(&self) -> &'static str {
        "Throttled"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let length = context
            .request()
            .headers()
            .get("content-length")
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0);
        let sending = Duration::from_secs(length / SLOWEST_UPLINK);
        extend_read_timeout(cfg, sending + self.0.upload.longest_wait(length));
        if self.0.upload.is_limited() {
            let body = context.request_mut().body_mut();
            *body = throttled(std::mem::replace(body, SdkBody::taken()), &self.0.upload);
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0.download.is_limited() {
            let body = context.response_mut().body_mut();
            *body = throttled(std::mem::replace(body, SdkBody::taken()), &self.0.download);
        }
        Ok(())
    }
}

/// The slowest a request body may go, in bytes a second, before the read timeout gives up on
/// it: 128 kbit/s, each of `concurrency` parts' share of an old ADSL uplink. An upload that
/// stalls outright is ended sooner, by the SDK's stalled-stream protection.
const SLOWEST_UPLINK: u64 = 16 << 10;

/// The SDK's read timeout runs from the moment a request is sent until its response starts,
/// so it counts the time its body takes to go: an 8 MiB part on a 1 Mbit/s uplink shared by 4
/// takes more than twice the default. Each attempt gets the configured timeout plus the time its
/// body takes at [`SLOWEST_UPLINK`] and the longest a bandwidth limit can hold it back.
fn extend_read_timeout(cfg: &mut ConfigBag, wait: Duration) {
    if wait.is_zero() {
        return;
    }
    let configured = match cfg.load::<ConfiguredReadTimeout>() {
        Some(configured) => configured.0,
        None => {
            let configured = cfg
                .load::<TimeoutConfig>()
                .and_then(TimeoutConfig::read_timeout);
            cfg.interceptor_state()
                .store_put(ConfiguredReadTimeout(configured));
            configured
        }
    };
    let (Some(configured), Some(timeouts)) = (configured, cfg.load::<TimeoutConfig>()) else {
        return;
    };
    let extended = timeouts
        .to_builder()
        .read_timeout(configured + wait)
        .build();
    cfg.interceptor_state().store_put(extended);
}

/// The operation's read timeout before [`extend_read_timeout`], kept across its attempts.
#[derive(Debug, Clone)]
struct ConfiguredReadTimeout(Option<Duration>);

impl Storable for ConfiguredReadTimeout {
    type Storer = StoreReplace<Self>;
}

fn throttled(body: SdkBody, throttle: &Throttle) -> SdkBody {
    SdkBody::from_body_1_x(ThrottledBody {
        inner: body,
        throttle: throttle.clone(),
        rest: Bytes::new(),
        waiting: None,
    })
}

type Wait = SyncWrapper<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// A body whose data frames pass in pieces, each after the throttle lets it; other frames
/// (trailers carrying checksums) pass as they come.
struct ThrottledBody {
    inner: SdkBody,
    throttle: Throttle,
    /// What is left of the data frame being let through.
    rest: Bytes,
    /// The piece waiting for its turn, and its wait.
    waiting: Option<(Bytes, Wait)>,
}

impl Body for ThrottledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some((_, wait)) = &mut this.waiting {
                ready!(wait.get_mut().as_mut().poll(cx));
                let (piece, _) = this.waiting.take().expect("waiting");
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if !this.rest.is_empty() {
                let size = this.throttle.piece().min(this.rest.len());
                let piece = this.rest.split_to(size);
                let throttle = this.throttle.clone();
                let len = piece.len();
                let wait = Box::pin(async move { throttle.take(len).await });
                this.waiting = Some((piece, SyncWrapper::new(wait)));
                continue;
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let waiting = self.waiting.as_ref().map_or(0, |(piece, _)| piece.len());
        let held = (self.rest.len() + waiting) as u64;
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}
