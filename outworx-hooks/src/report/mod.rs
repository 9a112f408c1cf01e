//! Where delivery events go: the [`Sink`]s [`init`](crate::init) installs, and [`subscribe`]
//! for everything in this process.
//!
//! Every delivery becomes one [`DeliveryEvent`] in the wire format of the Outworx ingest API
//! (`docs/wire-protocol.md`). Credential and signature headers and a route's own `redact` list
//! are `[REDACTED]`; `source_url` keeps the query's names, not its values; bodies only with
//! `capture_body`, cut at 64 KiB; no secret ever appears.
//!
//! ```no_run
//! # async fn run(app: axum::Router, listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! // OUTWORX_HOOKS_API_KEY (ohk_ + 32 lowercase hex), OUTWORX_HOOKS_ENDPOINT, OUTWORX_HOOKS_DEBUG
//! let guard = outworx_hooks::init(outworx_hooks::Config::from_env())?;
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! guard.shutdown().await; // flushes queued events (gives up after 10 s)
//! # Ok(()) }
//! ```
//!
//! - **No API key** (the embedded default): no network; each delivery is one structured
//!   `tracing` event at INFO ([`TracingSink`], target `outworx_hooks::delivery`).
//! - **With an API key** (feature `outworx-api`): the `OutworxSink`. The request path only
//!   `try_send`s into a bounded queue (10,000 events and 64 MiB by default,
//!   [`Config::queue_capacity`](crate::Config::queue_capacity)); a full queue drops the newest
//!   event, counts it ([`Guard::dropped_events`](crate::Guard::dropped_events)) and logs it. A
//!   background task batches up to 100 events, 512 KiB or 100 ms, posts them with the key,
//!   retries network errors and 5xx with exponential backoff and jitter, sends a batch the
//!   ingest refuses as too large in halves, and stops for good after 401 or 403 with one
//!   warning.
//! - **Your own** sink: implement [`Sink`] and add it with
//!   [`Config::sink`](crate::Config::sink); [`subscribe`] gives a [`Stream`] of every event in
//!   this process (the demo and the tests use it).
//!
//! Proven against real loopback ingest servers (`report/outworx.rs` tests and
//! `tests/tests/reporter.rs`): the schema and redaction of real deliveries, batching, the auth
//! header, an outage followed by recovery losing nothing, a refused key stopping all sending,
//! shutdown flushing, and a black-hole ingest while every delivery is still answered at once.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

#[cfg(feature = "outworx-api")]
mod outworx;
#[cfg(feature = "outworx-api")]
pub use outworx::{OnError, OutworxSink, OutworxSinkOptions, ReportError};

use crate::event::DeliveryEvent;
use crate::util::BoxFuture;

/// A destination for delivery events. `send` is called on the request path and must not
/// block: queue, count, or drop.
pub trait Sink: Send + Sync + 'static {
    /// Takes one event.
    fn send(&self, event: &Arc<DeliveryEvent>);

    /// Whether this sink reads [`DeliveryEvent::request_headers`]. When no sink (and no
    /// [`subscribe`]r) does, deliveries skip building that map (every header, copied and
    /// redacted): work for no reader. The default is `true`, so a sink that does not say
    /// still gets them.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use outworx_hooks::{Sink, event::DeliveryEvent};
    ///
    /// struct Counts;
    /// impl Sink for Counts {
    ///     fn send(&self, e: &Arc<DeliveryEvent>) { let _ = e.status_code; }
    ///     fn wants_request_headers(&self) -> bool { false }
    /// }
    /// # let _ = Counts;
    /// ```
    fn wants_request_headers(&self) -> bool {
        true
    }

    /// Delivers whatever is queued; called by [`Guard::shutdown`](crate::Guard::shutdown).
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The embedded default sink: one structured `tracing` event at INFO per delivery.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl Sink for TracingSink {
    fn send(&self, e: &Arc<DeliveryEvent>) {
        tracing::info!(
            target: "outworx_hooks::delivery",
            handler = e.handler,
            provider = %e.provider,
            status = e.status_code,
            duration_ms = e.duration_ms,
            payload_size = e.payload_size,
            event_type = e.event_type.as_deref().unwrap_or(""),
            signature_valid = ?e.signature_valid,
            signature_failure_reason = e.signature_failure_reason.map(|r| r.as_str()).unwrap_or(""),
            signature_hint = e.signature_hint.as_deref().unwrap_or(""),
            processing_status = ?e.processing_status,
            duplicate = e.meta("duplicate").is_some(),
            error = e.error_message.as_deref().unwrap_or(""),
            "webhook delivery"
        );
    }

    fn wants_request_headers(&self) -> bool {
        false
    }
}

/// Events of every delivery in this process, as they happen (see [`subscribe`]): a
/// [`Stream`] of events, or [`Subscription::recv`] one at a time. A subscriber that falls
/// more than 1,024 events behind skips the oldest.
pub struct Subscription {
    inner: BroadcastStream<Arc<DeliveryEvent>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl Stream for Subscription {
    type Item = Arc<DeliveryEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(e))) => return Poll::Ready(Some(e)),
                // Lagged: skip what was missed, keep going.
                Poll::Ready(Some(Err(_))) => continue,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Subscription {
    /// The next event.
    pub async fn recv(&mut self) -> Option<Arc<DeliveryEvent>> {
        futures_util::StreamExt::next(self).await
    }
}

/// How many [`Subscription`]s are alive: read on every delivery without taking the
/// channel's lock.
static SUBSCRIBERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether anyone holds a [`Subscription`] now.
pub(crate) fn has_subscribers() -> bool {
    SUBSCRIBERS.load(std::sync::atomic::Ordering::Relaxed) > 0
}

/// Sends `event` to every [`Subscription`]. No subscriber is the common case.
pub(crate) fn publish(event: Arc<DeliveryEvent>) {
    let _ = events().send(event);
}

fn events() -> &'static broadcast::Sender<Arc<DeliveryEvent>> {
    static EVENTS: OnceLock<broadcast::Sender<Arc<DeliveryEvent>>> = OnceLock::new();
    EVENTS.get_or_init(|| broadcast::channel(1024).0)
}

/// Subscribes to the events of every delivery handled in this process from now on.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut events = outworx_hooks::subscribe();
/// // ... deliveries happen ...
/// # drop(events);
/// # });
/// ```
pub fn subscribe() -> Subscription {
    SUBSCRIBERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Subscription {
        inner: BroadcastStream::new(events().subscribe()),
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        SUBSCRIBERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The sink that turns delivery events into metrics ([`crate::metrics`]). `init` (and the
/// embedded defaults) add it when the `metrics` feature is on; without it, it records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsSink;

impl Sink for MetricsSink {
    fn send(&self, event: &Arc<DeliveryEvent>) {
        crate::metrics::record(event);
    }

    fn wants_request_headers(&self) -> bool {
        false
    }
}
