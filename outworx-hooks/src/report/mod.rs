//! Where delivery events go, and the process-wide configuration (`init`).

use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

#[cfg(feature = "outworx-api")]
mod outworx;
#[cfg(feature = "outworx-api")]
pub use outworx::{OnError, OutworxSink, OutworxSinkOptions, ReportError};

use crate::event::DeliveryEvent;
use crate::store::{BoxFuture, MemoryStore, Store};

/// A destination for delivery events. `send` is called on the request path and must not
/// block: queue, count, or drop.
pub trait Sink: Send + Sync + 'static {
    /// Takes one event.
    fn send(&self, event: &Arc<DeliveryEvent>);

    /// Delivers whatever is queued; called by [`Guard::shutdown`].
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
    Subscription {
        inner: BroadcastStream::new(events().subscribe()),
    }
}

pub(crate) struct Runtime {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sinks: Vec<Arc<dyn Sink>>,
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
        Runtime {
            store: Arc::new(MemoryStore::new()),
            sinks: vec![Arc::new(TracingSink)],
            debug: false,
            fail_closed: false,
            service: crate::pipeline::escape_component(&default_service()),
            public_url: None,
            trusted_proxies: Vec::new(),
        }
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
        // No subscriber is the common case; that is not an error.
        let _ = events().send(event);
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

/// Process-wide configuration, read by [`init`].
///
/// ```
/// use outworx_hooks::{Config, MemoryStore};
/// let config = Config::new().store(MemoryStore::with_max_entries(10_000)).debug(true);
/// ```
pub struct Config {
    api_key: Option<String>,
    endpoint: Option<String>,
    debug: bool,
    store: Option<Arc<dyn Store>>,
    sinks: Vec<Arc<dyn Sink>>,
    fail_closed: bool,
    timeout: Duration,
    queue_capacity: usize,
    on_error: Option<ErrorCallback>,
    service: Option<String>,
    public_url: Option<String>,
    trusted_proxies: Vec<String>,
}

/// The callback of [`Config::on_error`].
type ErrorCallback = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("endpoint", &self.endpoint)
            .field("debug", &self.debug)
            .field("sinks", &self.sinks.len())
            .field("service", &self.service)
            .field("public_url", &self.public_url)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// The embedded defaults: no API key (no network), the memory store, the tracing sink.
    pub fn new() -> Self {
        Config {
            api_key: None,
            endpoint: None,
            debug: false,
            store: None,
            sinks: Vec::new(),
            fail_closed: false,
            timeout: Duration::from_secs(5),
            queue_capacity: 10_000,
            on_error: None,
            service: None,
            public_url: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// Reads `OUTWORX_HOOKS_API_KEY`, `OUTWORX_HOOKS_ENDPOINT`, `OUTWORX_HOOKS_DEBUG`
    /// (`1`/`true`) and `OUTWORX_HOOKS_SERVICE` ([`Config::service`]); [`init`] validates the
    /// result.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Config {
            api_key: var("OUTWORX_HOOKS_API_KEY"),
            endpoint: var("OUTWORX_HOOKS_ENDPOINT"),
            debug: var("OUTWORX_HOOKS_DEBUG")
                .is_some_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes")),
            service: var("OUTWORX_HOOKS_SERVICE").map(|s| s.trim().to_owned()),
            ..Config::new()
        }
    }

    /// The Outworx API key (`ohk_` + 32 lowercase hex).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The ingest URL events are posted to (default [`DEFAULT_ENDPOINT`], as the Python
    /// package); `POST /api/sdk/verify` is called beside it, once.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Logs signature hints and more detail.
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// The idempotency store (default: [`MemoryStore`]).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// What a store error does: by default the delivery is handled without deduplication
    /// (fail open: a warning, and `metadata.idempotency_error` on the event); with
    /// `fail_closed(true)` it is answered 503 so the provider retries later.
    pub fn fail_closed(mut self, on: bool) -> Self {
        self.fail_closed = on;
        self
    }

    /// How long one request to the ingest may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many events may wait to be sent (default 10,000); past it new events are dropped
    /// and counted ([`Guard::dropped_events`]).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Called with a message whenever sending a batch fails (each attempt).
    pub fn on_error(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(f));
        self
    }

    /// Adds a sink; with none added, events go to the tracing sink.
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// This service's name (default: the executable's file name). It begins every
    /// idempotency key, so two services sharing one Redis or one Outworx project never answer
    /// each other's deliveries as duplicates, while every instance of one service shares its
    /// keys. Set it when instances run under different executable names.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// The public base URL providers post to (`https://hooks.example.com`): Twilio, Square and
    /// HubSpot sign the full URL, and behind a proxy the server cannot see it. The request's
    /// path and query are appended.
    pub fn public_url(mut self, base: impl Into<String>) -> Self {
        self.public_url = Some(base.into());
        self
    }

    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For`, `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` are believed; from anyone else those headers are ignored. The peer
    /// address comes from axum's `ConnectInfo<SocketAddr>`, so serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`. [`init`] refuses a malformed one.
    ///
    /// ```
    /// let config = outworx_hooks::Config::new().trusted_proxies(["10.0.0.0/8", "::1"]);
    /// assert!(outworx_hooks::init(config).is_ok());
    /// ```
    pub fn trusted_proxies<S: Into<String>>(mut self, cidrs: impl IntoIterator<Item = S>) -> Self {
        self.trusted_proxies
            .extend(cidrs.into_iter().map(Into::into));
        self
    }
}

/// The hosted Outworx ingest endpoint, used with an API key when no endpoint is configured.
pub const DEFAULT_ENDPOINT: &str = "https://hooks.outworx.io/api/ingest";

/// A `#[webhook]` route whose secret cannot be read or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// The handler function's name.
    pub handler: &'static str,
    /// Where the handler is: `file:line`.
    pub location: String,
    /// What is wrong (never the secret's value).
    pub problem: String,
}

/// Why [`init`] refused the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The API key does not have the `ohk_` + 32 lowercase hex form.
    #[error("OUTWORX_HOOKS_API_KEY must be `ohk_` followed by 32 lowercase hex characters")]
    InvalidApiKey,
    /// Reporting to Outworx needs the `outworx-api` feature.
    #[error(
        "an API key is set, but reporting to Outworx needs the `outworx-api` feature of outworx-hooks"
    )]
    FeatureDisabled,
    /// `init` with an API key must run inside a tokio runtime (it starts the reporter task).
    #[error("outworx_hooks::init must be called inside a tokio runtime when an API key is set")]
    NoRuntime,
    /// A trusted proxy is not an IP address or CIDR.
    #[error("Config::trusted_proxies: {0}")]
    TrustedProxy(String),
    /// The public URL is not an absolute `http(s)://` URL.
    #[error("Config::public_url must be an absolute http:// or https:// URL")]
    PublicUrl,
    /// Some routes cannot verify: their secrets are unset or unusable.
    #[error("{} webhook route(s) cannot verify deliveries:{}", .0.len(), .0.iter().map(|p| format!("\n  - handler `{}` ({}): {}", p.handler, p.location, p.problem)).collect::<String>())]
    Secrets(Vec<SecretProblem>),
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

pub(crate) fn valid_api_key(key: &str) -> bool {
    key.len() == 36
        && key.starts_with("ohk_")
        && key[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Validates `config`, checks that every `#[webhook]` route in the binary can read and use its
/// secret, and installs the configuration for every delivery from now on.
///
/// ```
/// let guard = outworx_hooks::init(outworx_hooks::Config::new());
/// # let _ = guard;
/// ```
pub fn init(config: Config) -> Result<Guard, ConfigError> {
    if let Some(key) = &config.api_key
        && !valid_api_key(key.trim())
    {
        return Err(ConfigError::InvalidApiKey);
    }
    let trusted_proxies =
        crate::peer::parse_cidrs(config.trusted_proxies.iter().map(String::as_str))
            .map_err(ConfigError::TrustedProxy)?;
    let public_url = match config.public_url {
        Some(u)
            if !(u.starts_with("https://") || u.starts_with("http://"))
                || u.parse::<http::Uri>().is_err() =>
        {
            return Err(ConfigError::PublicUrl);
        }
        other => other,
    };
    let problems = crate::pipeline::check_all_routes();
    if !problems.is_empty() {
        return Err(ConfigError::Secrets(problems));
    }
    let mut sinks = config.sinks;
    #[cfg(feature = "outworx-api")]
    let mut outworx = None;
    if let Some(key) = config.api_key {
        let endpoint = config
            .endpoint
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        #[cfg(feature = "outworx-api")]
        {
            let mut options = OutworxSinkOptions::new(endpoint, key.trim());
            options.timeout = config.timeout;
            options.capacity = config.queue_capacity;
            if let Some(cb) = config.on_error {
                options.on_error = Some(Arc::new(move |e: &ReportError| cb(&e.to_string())));
            }
            let sink = OutworxSink::spawn(options).ok_or(ConfigError::NoRuntime)?;
            sinks.insert(0, Arc::new(sink.clone()));
            outworx = Some(sink);
        }
        #[cfg(not(feature = "outworx-api"))]
        {
            let _ = (
                endpoint,
                key,
                config.on_error,
                config.timeout,
                config.queue_capacity,
            );
            return Err(ConfigError::FeatureDisabled);
        }
    } else if sinks.is_empty() {
        sinks.push(Arc::new(TracingSink));
    }
    let guard = Guard {
        sinks: sinks.clone(),
        #[cfg(feature = "outworx-api")]
        outworx,
    };
    let store = config
        .store
        .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn Store>);
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
        sinks,
        debug: config.debug,
        fail_closed: config.fail_closed,
        service: crate::pipeline::escape_component(&config.service.unwrap_or_else(default_service)),
        public_url,
        trusted_proxies,
    };
    *RUNTIME.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(rt));
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_form() {
        assert!(valid_api_key("ohk_0123456789abcdef0123456789abcdef"));
        assert!(!valid_api_key("ohk_0123456789ABCDEF0123456789abcdef"));
        assert!(!valid_api_key("ohk_0123"));
        assert!(!valid_api_key("sk_0123456789abcdef0123456789abcdef0"));
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

    #[test]
    fn debug_of_config_redacts_the_key() {
        let c = Config::new().api_key("ohk_0123456789abcdef0123456789abcdef");
        assert!(!format!("{c:?}").contains("0123456789"));
    }
}
