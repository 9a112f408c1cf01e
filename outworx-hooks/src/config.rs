//! [`Config`]: the process-wide configuration [`crate::init`] reads, and why it may refuse it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::report::Sink;
use crate::store::Store;

/// Process-wide configuration, read by [`init`](crate::init).
///
/// ```
/// use outworx_hooks::{Config, MemoryStore};
/// let config = Config::new().store(MemoryStore::with_max_entries(10_000)).debug(true);
/// ```
pub struct Config {
    pub(crate) api_key: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) debug: bool,
    pub(crate) store: Option<Arc<dyn Store>>,
    pub(crate) store_breaker: crate::store::BreakerOptions,
    pub(crate) sinks: Vec<Arc<dyn Sink>>,
    pub(crate) fail_closed: bool,
    pub(crate) timeout: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) on_error: Option<ErrorCallback>,
    pub(crate) service: Option<String>,
    pub(crate) public_url: Option<String>,
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) emit_by_extension: bool,
}

/// The callback of [`Config::on_error`].
pub(crate) type ErrorCallback = Arc<dyn Fn(&str) + Send + Sync>;

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
            store_breaker: crate::store::BreakerOptions::default(),
            sinks: Vec::new(),
            fail_closed: false,
            timeout: Duration::from_secs(5),
            queue_capacity: 10_000,
            on_error: None,
            service: None,
            public_url: None,
            trusted_proxies: Vec::new(),
            emit_by_extension: false,
        }
    }

    /// Reads `OUTWORX_HOOKS_API_KEY`, `OUTWORX_HOOKS_ENDPOINT`, `OUTWORX_HOOKS_DEBUG`
    /// (`1`/`true`) and `OUTWORX_HOOKS_SERVICE` ([`Config::service`]); [`init`](crate::init) validates the
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

    /// The idempotency store (default: [`MemoryStore`](crate::MemoryStore)). A store given
    /// here is guarded: each call is bounded by a timeout (2 s), and after 5 failures in a row
    /// a circuit breaker skips it until a probe succeeds, so an outage costs a delivery
    /// nothing once the breaker is open ([`Config::store_breaker`]).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The timeout and circuit breaker around the configured [`store`](Config::store)
    /// (default [`BreakerOptions::default`](crate::store::BreakerOptions)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use outworx_hooks::{Config, store::BreakerOptions};
    ///
    /// let config = Config::new()
    ///     .store_breaker(BreakerOptions::default().timeout(Duration::from_millis(300)));
    /// # let _ = config;
    /// ```
    pub fn store_breaker(mut self, options: crate::store::BreakerOptions) -> Self {
        self.store_breaker = options;
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
    /// and counted ([`Guard::dropped_events`](crate::Guard::dropped_events)).
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

    /// Every `#[emit]` route of this process gets its emitter from an `Extension<Emitter>` on
    /// its router (or is not served by this process at all): [`init`](crate::init) then does
    /// not require an installed emitter. Without it, `init` refuses to start while `#[emit]`
    /// routes are compiled in and no emitter is installed
    /// ([`ConfigError::NoEmitter`]), rather than have each request answered 500.
    ///
    /// ```
    /// let config = outworx_hooks::Config::new().emit_by_extension();
    /// assert!(outworx_hooks::init(config).is_ok());
    /// ```
    pub fn emit_by_extension(mut self) -> Self {
        self.emit_by_extension = true;
        self
    }

    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For`, `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` are believed; from anyone else those headers are ignored. The peer
    /// address comes from axum's `ConnectInfo<SocketAddr>`, so serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`. [`init`](crate::init) refuses a malformed one.
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

/// Why [`init`](crate::init) refused the configuration.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
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
    /// `#[emit]` routes are compiled in, no emitter is installed to commit their messages,
    /// and [`Config::emit_by_extension`] does not say their routers carry one: a request to
    /// one without would be answered 500. Each item names a handler and where it is.
    #[error("{} #[emit] route(s) may have no emitter: call `emitter.install()` before init, or, when each of their routers has `.layer(Extension(emitter))`, init with `Config::emit_by_extension()`:{}", .0.len(), .0.iter().map(|r| format!("\n  - handler {r}")).collect::<String>())]
    NoEmitter(Vec<String>),
}

/// Its text, as `Display` writes it: `main` returning this error (`?` into `Box<dyn Error>`)
/// prints the readable explanation, not a struct dump.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

pub(crate) fn valid_api_key(key: &str) -> bool {
    key.len() == 36
        && key.starts_with("ohk_")
        && key[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses CIDRs (`192.0.2.0/24`, `2001:db8::/32`) and bare addresses (as `/32` or `/128`),
/// trimming white space and skipping empty items; the error names the first bad one.
///
/// ```ignore
/// let nets = parse_cidrs(["10.0.0.0/8", " ::1 ", ""]).unwrap();
/// assert_eq!(nets.len(), 2);
/// ```
pub(crate) fn parse_cidrs<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        let net = item
            .parse::<IpNet>()
            .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("`{item}` is not an IP address or CIDR (e.g. 192.0.2.0/24)"))?;
        nets.push(net.trunc());
    }
    Ok(nets)
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
    }

    #[test]
    fn debug_of_config_redacts_the_key() {
        let c = Config::new().api_key("ohk_0123456789abcdef0123456789abcdef");
        assert!(!format!("{c:?}").contains("0123456789"));
    }
}
