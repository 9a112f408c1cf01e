//! The process runtime: what [`init`] installs (the store, the sinks, the service name, the
//! proxies) and every delivery reads, with the embedded defaults until then; and the
//! [`Guard`] that flushes the sinks at shutdown.

use std::sync::{Arc, RwLock};

use crate::config::{Config, ConfigError, DEFAULT_ENDPOINT, parse_cidrs, valid_api_key};
use crate::event::DeliveryEvent;
#[cfg(feature = "outworx-api")]
use crate::report::{OutworxSink, OutworxSinkOptions, ReportError};
use crate::report::{Sink, TracingSink};
use crate::route::escape_component;
use crate::store::{MemoryStore, Store};

pub(crate) struct Runtime {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sinks: Vec<Arc<dyn Sink>>,
    /// Whether any sink reads the request headers (see [`Sink::wants_request_headers`]).
    headers_wanted: bool,
    pub(crate) debug: bool,
    pub(crate) fail_closed: bool,
    /// This service's name, escaped as a key component: the first part of every idempotency
    /// key, so services sharing one store never meet.
    pub(crate) service: String,
    /// The public base URL URL-signing providers post to, when configured.
    pub(crate) public_url: Option<String>,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
}

/// The default service name: the executable's file name, so every instance of one service
/// agrees on it and two services do not.
fn default_service() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "service".to_owned())
}

impl Runtime {
    fn embedded() -> Runtime {
        let sinks = with_metrics(vec![Arc::new(TracingSink)]);
        Runtime {
            store: Arc::new(MemoryStore::new()),
            headers_wanted: sinks.iter().any(|s| s.wants_request_headers()),
            sinks,
            debug: false,
            fail_closed: false,
            service: escape_component(&default_service()),
            public_url: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// Whether a delivery's event should carry its request headers: some sink or subscriber
    /// reads them.
    pub(crate) fn wants_request_headers(&self) -> bool {
        self.headers_wanted || crate::report::has_subscribers()
    }

    /// Reports a delivery's event; its span (`webhook.receive`) gets the outcome, and a
    /// `webhook.report` span under it covers the sinks.
    pub(crate) fn emit_in(&self, event: DeliveryEvent, span: &tracing::Span) {
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
        self.emit(event);
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

static RUNTIME: RwLock<Option<Arc<Runtime>>> = RwLock::new(None);

pub(crate) fn runtime() -> Arc<Runtime> {
    if let Some(rt) = RUNTIME.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        return rt.clone();
    }
    let mut slot = RUNTIME.write().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| Arc::new(Runtime::embedded()))
        .clone()
}

/// Returned by [`init`]: call [`Guard::shutdown`] before exit so queued events are delivered.
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
    sinks: Vec<Arc<dyn Sink>>,
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

/// Validates `config`, checks that every `#[webhook]` route in the binary can read and use its
/// secret, and installs the configuration for every delivery from now on.
///
/// ```
/// let guard = outworx_hooks::init(outworx_hooks::Config::new());
/// # let _ = guard;
/// ```
pub fn init(mut config: Config) -> Result<Guard, ConfigError> {
    let (trusted_proxies, public_url) = validate(&config)?;
    let problems = crate::route::check_all_routes();
    if !problems.is_empty() {
        return Err(ConfigError::Secrets(problems));
    }
    let guard = start_sinks(&mut config)?;
    // A configured store is networked (or may be): guarded by a timeout and a breaker. The
    // embedded memory store answers in memory, never fails, and stays unwrapped.
    let store = match config.store.take() {
        Some(store) => {
            Arc::new(crate::store::Guarded::new(store, config.store_breaker)) as Arc<dyn Store>
        }
        None => Arc::new(MemoryStore::new()) as Arc<dyn Store>,
    };
    if store.is_shared() && config.service.is_none() {
        tracing::warn!(
            service = %default_service(),
            "the idempotency store is shared, and no Config::service (OUTWORX_HOOKS_SERVICE) \
             is set: keys use the executable's name, so two services built under the same \
             name would answer each other's deliveries; name this service"
        );
    }
    let rt = Runtime {
        store,
        headers_wanted: guard.sinks.iter().any(|s| s.wants_request_headers()),
        sinks: guard.sinks.clone(),
        debug: config.debug,
        fail_closed: config.fail_closed,
        service: escape_component(&config.service.unwrap_or_else(default_service)),
        public_url,
        trusted_proxies,
    };
    *RUNTIME.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(rt));
    Ok(guard)
}

/// Checks the parts of `config` that can be wrong on their own: the API key's form, the
/// trusted proxies and the public URL (returned parsed).
fn validate(config: &Config) -> Result<(Vec<ipnet::IpNet>, Option<String>), ConfigError> {
    if let Some(key) = &config.api_key
        && !valid_api_key(key.trim())
    {
        return Err(ConfigError::InvalidApiKey);
    }
    let trusted_proxies = parse_cidrs(config.trusted_proxies.iter().map(String::as_str))
        .map_err(ConfigError::TrustedProxy)?;
    match &config.public_url {
        Some(u)
            if !(u.starts_with("https://") || u.starts_with("http://"))
                || u.parse::<http::Uri>().is_err() =>
        {
            Err(ConfigError::PublicUrl)
        }
        other => Ok((trusted_proxies, other.clone())),
    }
}

/// The sinks events go to, in the guard that flushes them: with an API key the Outworx sink
/// first (it needs the `outworx-api` feature and a tokio runtime), then the configured ones;
/// the tracing sink when there is none.
/// With the `metrics` feature, every runtime records metrics too.
fn with_metrics(sinks: Vec<Arc<dyn Sink>>) -> Vec<Arc<dyn Sink>> {
    #[cfg(feature = "metrics")]
    let sinks = {
        let mut sinks = sinks;
        sinks.push(Arc::new(crate::report::metrics::MetricsSink) as Arc<dyn Sink>);
        sinks
    };
    sinks
}

fn start_sinks(config: &mut Config) -> Result<Guard, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_api_key_is_refused_without_echoing_it() {
        let err = init(Config::new().api_key("nope")).unwrap_err();
        assert_eq!(err, ConfigError::InvalidApiKey);
        assert!(!err.to_string().contains("nope"));
    }
    #[cfg(feature = "outworx-api")]
    #[test]
    fn reporting_needs_a_runtime() {
        let key = "ohk_0123456789abcdef0123456789abcdef";
        let c = Config::new()
            .api_key(key)
            .endpoint("http://127.0.0.1:9/api/ingest");
        assert_eq!(init(c).unwrap_err(), ConfigError::NoRuntime);
        // Without an endpoint, the hosted default applies (the Python package's).
        assert_eq!(
            init(Config::new().api_key(key)).unwrap_err(),
            ConfigError::NoRuntime
        );
    }

    #[test]
    fn proxies_and_public_urls_are_checked() {
        let e = init(Config::new().trusted_proxies(["10.0.0.0/99"])).unwrap_err();
        assert!(matches!(e, ConfigError::TrustedProxy(ref m) if m.contains("10.0.0.0/99")));
        let e = init(Config::new().public_url("hooks.example.com")).unwrap_err();
        assert_eq!(e, ConfigError::PublicUrl);
    }
}
