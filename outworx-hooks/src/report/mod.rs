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
        // Its parent is the span the request arrived in (the application's request span, for
        // its request id), not the delivery's own `webhook.receive` span: under that one a
        // formatter would print the same facts twice, the span's before the line's.
        let parent = LOG_PARENT
            .with(|p| p.borrow().clone())
            .unwrap_or_else(tracing::Span::none);
        tracing::info!(
            target: "outworx_hooks::delivery",
            parent: &parent,
            handler = e.handler,
            provider = %e.provider,
            event_type = e.event_type.as_deref(),
            status = e.status_code,
            duration_ms = e.duration_ms,
            payload_size = e.payload_size,
            signature_valid = e.signature_valid,
            signature_failure_reason = e.signature_failure_reason.map(|r| r.as_str()),
            processing_status = e.processing_status.map(crate::event::processing_name),
            duplicate = e.meta("duplicate").is_some().then_some(true),
            error = e.error_message.as_deref(),
            "{}",
            summary(e)
        );
    }

    fn wants_request_headers(&self) -> bool {
        false
    }
}

thread_local! {
    /// The parent of the [`TracingSink`]'s line while a delivery's sinks run (they run on
    /// one thread, without awaiting): see [`with_log_parent`].
    static LOG_PARENT: std::cell::RefCell<Option<tracing::Span>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a delivery's sinks) with `parent` as the parent of the [`TracingSink`]'s line.
pub(crate) fn with_log_parent<R>(parent: &tracing::Span, f: impl FnOnce() -> R) -> R {
    /// Puts the previous parent back, even when a sink panics.
    struct Restore(Option<tracing::Span>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            LOG_PARENT.with(|p| *p.borrow_mut() = previous);
        }
    }
    let _restore = Restore(LOG_PARENT.with(|p| p.replace(Some(parent.clone()))));
    f()
}

/// One delivery in words, for a log line: the provider and the status, then the signature's
/// verdict (its reason and hint when it failed) and what became of the event.
///
/// `stripe 200 in 3 ms: signature valid, completed`;
/// `stripe 401 in 0 ms: signature invalid: timestamp_drift (made 3600 s ago, tolerance 300 s)`.
pub(crate) fn summary(e: &DeliveryEvent) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(96);
    let sent = e.direction == Some(crate::event::Direction::Outbound);
    let _ = write!(
        s,
        "{}{} {} in {} ms",
        e.provider,
        if sent { " sent," } else { "" },
        e.status_code,
        e.duration_ms
    );
    let mut parts: Vec<String> = Vec::new();
    match (e.signature_valid, e.signature_failure_reason) {
        (Some(true), _) => parts.push("signature valid".into()),
        (Some(false), reason) => {
            let mut p = String::from("signature invalid");
            if let Some(r) = reason {
                let _ = write!(p, ": {}", r.as_str());
            }
            if let Some(h) = &e.signature_hint {
                let _ = write!(p, " ({h})");
            }
            parts.push(p);
        }
        (None, _) => {}
    }
    if e.meta("duplicate").is_some() {
        parts.push("duplicate: the first response replayed, the handler not run".into());
    }
    match e.processing_status {
        Some(crate::event::ProcessingStatus::SilentDrop) => {
            parts.push("SILENT DROP: answered 2xx, never marked processed".into());
        }
        Some(crate::event::ProcessingStatus::Failed) => match &e.processing_failure_reason {
            Some(why) => parts.push(format!("failed: {why}")),
            None => parts.push("failed".into()),
        },
        Some(p) => parts.push(crate::event::processing_name(p).into()),
        None => {}
    }
    if let Some(err) = &e.error_message {
        parts.push(format!("error: {err}"));
    }
    if !parts.is_empty() {
        s.push_str(": ");
        s.push_str(&parts.join(", "));
    }
    // Reasons and errors can carry a sender's text: a line break in them must not start a
    // forged log line.
    if s.chars().any(char::is_control) {
        s = s
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
    }
    s
}

/// Events of every delivery in this process, as they happen (see [`subscribe`]): a
/// [`Stream`] of events, or [`Subscription::recv`] one at a time. A subscriber that falls
/// more than 1,024 events behind skips the oldest.
pub struct Subscription {
    // `Sync` as well as `Send`: only ever polled through `&mut`.
    inner: sync_wrapper::SyncWrapper<futures_util::stream::BoxStream<'static, Arc<DeliveryEvent>>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl Stream for Subscription {
    type Item = Arc<DeliveryEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.get_mut().as_mut().poll_next(cx)
    }
}

impl Subscription {
    /// The next event.
    pub async fn recv(&mut self) -> Option<Arc<DeliveryEvent>> {
        futures_util::StreamExt::next(self).await
    }
}

// A subscription can live in shared state (`Send + Sync`): checked at compile time.
const _: fn() = || {
    fn check<T: Send + Sync>() {}
    check::<Subscription>();
};

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
    let events = futures_util::stream::unfold(events().subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                // Lagged: skip what was missed, keep going.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Subscription {
        inner: sync_wrapper::SyncWrapper::new(Box::pin(events)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ProcessingStatus, sample};
    use crate::security::FailureReason;

    /// A delivery's log line says, in words, the status, the verdict and the processing:
    /// never `Some(..)`, never an empty field.
    #[test]
    fn a_summary_reads_as_words() {
        let mut e = sample();
        e.processing_status = Some(ProcessingStatus::Completed);
        assert_eq!(
            summary(&e),
            "stripe 200 in 3 ms: signature valid, completed"
        );

        let mut bad = sample();
        bad.status_code = 401;
        bad.signature_valid = Some(false);
        bad.signature_failure_reason = Some(FailureReason::TimestampDrift);
        bad.signature_hint = Some("made 3600 s ago, tolerance 300 s".into());
        assert_eq!(
            summary(&bad),
            "stripe 401 in 3 ms: signature invalid: timestamp_drift (made 3600 s ago, tolerance 300 s)"
        );

        let mut dropped = sample();
        dropped.processing_status = Some(ProcessingStatus::SilentDrop);
        assert!(summary(&dropped).ends_with("SILENT DROP: answered 2xx, never marked processed"));

        let mut failed = sample();
        failed.status_code = 500;
        failed.processing_status = Some(ProcessingStatus::Failed);
        failed.processing_failure_reason = Some("card declined".into());
        assert!(
            summary(&failed).ends_with("failed: card declined"),
            "{}",
            summary(&failed)
        );

        let mut dup = sample();
        dup.metadata = Some(serde_json::Map::from_iter([(
            "duplicate".into(),
            true.into(),
        )]));
        assert!(summary(&dup).contains("duplicate: the first response replayed"));

        let mut forged = sample();
        forged.status_code = 500;
        forged.processing_status = Some(ProcessingStatus::Failed);
        forged.processing_failure_reason = Some("no\n2026-01-01 INFO forged".into());
        assert!(!summary(&forged).contains('\n'), "{}", summary(&forged));
        assert!(
            summary(&forged).contains("no\\n2026"),
            "{}",
            summary(&forged)
        );

        let mut sent = sample();
        sent.signature_valid = None;
        sent.direction = Some(crate::event::Direction::Outbound);
        assert_eq!(summary(&sent), "stripe sent, 200 in 3 ms");
    }
}
