//! Where every delivery's event goes: the runtime's sinks and subscribers, the span that
//! gets the outcome, and the [`Guard`] that flushes the sinks at shutdown.

use std::sync::Arc;

use super::Runtime;
use crate::config::{Config, ConfigError, DEFAULT_ENDPOINT};
use crate::event::DeliveryEvent;
#[cfg(feature = "outworx-api")]
use crate::report::{OutworxSink, OutworxSinkOptions, ReportError};
use crate::report::{Sink, TracingSink};

impl Runtime {
    /// Whether a delivery's event should carry its request headers: some sink or subscriber
    /// reads them.
    pub(crate) fn wants_request_headers(&self) -> bool {
        self.headers_wanted || crate::report::has_subscribers()
    }

    /// Reports a delivery's event; its span (`webhook.receive`) gets the outcome, and a
    /// `webhook.report` span under it covers the sinks. `outer` is the span the request
    /// arrived in: the parent of the [`TracingSink`]'s line.
    pub(crate) fn emit_in(
        &self,
        event: DeliveryEvent,
        span: &tracing::Span,
        outer: &tracing::Span,
    ) {
        span.record("http.response.status_code", event.status_code);
        if let Some(p) = event.processing_status {
            span.record(
                "webhook.processing_status",
                crate::event::processing_name(p),
            );
        }
        if let Some(id) = event.meta("inbox_id").and_then(serde_json::Value::as_i64) {
            span.record("webhook.inbox_id", id);
        }
        let _report = tracing::debug_span!(parent: span, "webhook.report").entered();
        crate::report::with_log_parent(outer, || self.emit(event));
    }

    pub(crate) fn emit(&self, mut event: DeliveryEvent) {
        event.enforce_limits();
        if self.debug
            && let Some(hint) = &event.signature_hint
        {
            tracing::warn!(handler = event.handler, reason = ?event.signature_failure_reason, "{hint}");
        }
        let event = Arc::new(event);
        for sink in &self.sinks {
            sink.send(&event);
        }
        crate::report::publish(event);
    }
}

/// Returned by [`init`](crate::init): call [`Guard::shutdown`] before exit so queued events are delivered.
///
/// With axum's graceful shutdown:
///
/// ```no_run
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let guard = outworx_hooks::init(outworx_hooks::Config::from_env())?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// guard.shutdown().await;
/// # Ok(()) }
/// ```
#[must_use = "keep the guard and call `shutdown().await` before exit, or queued events are lost"]
pub struct Guard {
    pub(super) sinks: Vec<Arc<dyn Sink>>,
    #[cfg(feature = "outworx-api")]
    outworx: Option<OutworxSink>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("sinks", &self.sinks.len())
            .field("dropped_events", &self.dropped_events())
            .finish()
    }
}

impl Guard {
    /// Flushes every sink (the Outworx sink gives up after 10 s).
    pub async fn shutdown(self) {
        self.flush().await;
    }

    /// Delivers what every sink holds now, and keeps them running (the Outworx sink gives up
    /// after 10 s): then [`dropped_events`](Guard::dropped_events) plus what the ingest
    /// received is every event reported.
    pub async fn flush(&self) {
        for sink in &self.sinks {
            sink.flush().await;
        }
    }

    /// Events the Outworx sink dropped (queue full, or the key refused); 0 without one.
    pub fn dropped_events(&self) -> u64 {
        #[cfg(feature = "outworx-api")]
        if let Some(s) = &self.outworx {
            return s.dropped();
        }
        0
    }
}

/// The sinks events go to, in the guard that flushes them: with an API key the Outworx sink
/// first (it needs the `outworx-api` feature and a tokio runtime), then the configured ones;
/// the tracing sink when there is none.
/// With the `metrics` feature, every runtime records metrics too.
pub(super) fn with_metrics(sinks: Vec<Arc<dyn Sink>>) -> Vec<Arc<dyn Sink>> {
    let mut sinks = sinks;
    if crate::metrics::ENABLED {
        sinks.push(Arc::new(crate::report::MetricsSink) as Arc<dyn Sink>);
    }
    sinks
}

pub(super) fn start_sinks(config: &mut Config) -> Result<Guard, ConfigError> {
    let mut sinks = std::mem::take(&mut config.sinks);
    #[cfg(feature = "outworx-api")]
    let mut outworx = None;
    if let Some(key) = config.api_key.take() {
        let endpoint = config
            .endpoint
            .take()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        #[cfg(feature = "outworx-api")]
        {
            let mut options = OutworxSinkOptions::new(endpoint, key.trim());
            options.timeout = config.timeout;
            options.capacity = config.queue_capacity;
            if let Some(cb) = config.on_error.take() {
                options.on_error = Some(Arc::new(move |e: &ReportError| cb(&e.to_string())));
            }
            let sink = OutworxSink::spawn(options).ok_or(ConfigError::NoRuntime)?;
            sinks.insert(0, Arc::new(sink.clone()));
            outworx = Some(sink);
        }
        #[cfg(not(feature = "outworx-api"))]
        {
            let _ = (endpoint, key, config.on_error.take());
            let _ = (config.timeout, config.queue_capacity);
            return Err(ConfigError::FeatureDisabled);
        }
    } else if sinks.is_empty() {
        sinks.push(Arc::new(TracingSink));
    }
    let sinks = with_metrics(sinks);
    Ok(Guard {
        sinks,
        #[cfg(feature = "outworx-api")]
        outworx,
    })
}
