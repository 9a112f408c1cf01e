//! `TrackOptions`: the run-time configuration of one layer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;

use crate::route::{IpSource, Route, SecretSource, Text};
use crate::security::Provider;
use crate::security::custom::DynVerifier;
use crate::store::BoxFuture;

/// The idempotency-key closure: request parts, the parsed JSON body (if it is JSON) and the
/// headers in; `None` skips deduplication for that delivery.
pub type KeyFn =
    Arc<dyn Fn(&Parts, Option<&serde_json::Value>, &HeaderMap) -> Option<String> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum EventType {
    Header(String),
    /// A dotted path into the JSON body: `data.object.type`.
    Field(Vec<String>),
}

/// Everything one [`crate::OutworxHooksLayer`] needs: the attribute's options, by the
/// attribute's names (the Python package's `TrackOptions` names work too:
/// `require_processing_mark`, `reject_invalid_signatures`), plus closures for the key and a
/// custom verifier.
///
/// ```
/// use std::time::Duration;
/// use outworx_hooks::TrackOptions;
/// use outworx_hooks::security::Provider;
///
/// let options = TrackOptions::new(Provider::Stripe)
///     .secret_env("STRIPE_WEBHOOK_SECRET")
///     .secret("whsec_old")                       // rotation: any may match
///     .idempotency_key(|_parts, body, _headers| body?["id"].as_str().map(str::to_owned))
///     .event_type_field("type")
///     .ttl(Duration::from_secs(3 * 86_400))
///     .require_processed(true)
///     .capture_body(true)
///     .metadata("team", "billing");
/// ```
#[derive(Clone)]
pub struct TrackOptions {
    pub(crate) name: String,
    pub(crate) provider: Option<Provider>,
    pub(crate) secrets: Vec<SecretSource>,
    pub(crate) verifier: Option<DynVerifier>,
    pub(crate) event_type: Option<EventType>,
    pub(crate) key: Option<KeyFn>,
    pub(crate) natural_key: bool,
    pub(crate) capture_body: bool,
    pub(crate) capture_headers: bool,
    pub(crate) metadata: Vec<(Text, Text)>,
    pub(crate) reject_invalid: bool,
    pub(crate) tolerance: Duration,
    pub(crate) ttl: Duration,
    pub(crate) require_mark: bool,
    pub(crate) max_body: usize,
    pub(crate) redact: Vec<Text>,
    pub(crate) allow_ips: Option<IpSource>,
    pub(crate) queue: Option<crate::route::QueueConfig>,
    pub(crate) events: Vec<Text>,
}

impl std::fmt::Debug for TrackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackOptions")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("secrets", &self.secrets.len())
            .field("require_processing_mark", &self.require_mark)
            .finish_non_exhaustive()
    }
}

impl TrackOptions {
    /// Options for `provider`'s signature scheme; add its secret with [`TrackOptions::secret`]
    /// or [`TrackOptions::secret_env`].
    pub fn new(provider: Provider) -> Self {
        let mut o = TrackOptions::base();
        o.name = format!("layer:{provider}");
        o.provider = Some(provider);
        o
    }

    /// Options for a custom verifier instead of a provider scheme (see [`TrackOptions::verifier`]).
    pub fn custom(
        verifier: impl Fn(&[u8], &HeaderMap) -> Result<bool, String> + Send + Sync + 'static,
    ) -> Self {
        let mut o = TrackOptions::base();
        o.name = "layer:custom".into();
        o.verifier(verifier)
    }

    fn base() -> Self {
        TrackOptions {
            name: String::new(),
            provider: None,
            secrets: Vec::new(),
            verifier: None,
            event_type: None,
            key: None,
            natural_key: false,
            capture_body: false,
            capture_headers: true,
            metadata: Vec::new(),
            reject_invalid: true,
            tolerance: Duration::from_secs(300),
            ttl: Duration::from_secs(86_400),
            require_mark: false,
            max_body: crate::route::DEFAULT_MAX_BODY,
            redact: Vec::new(),
            allow_ips: None,
            queue: None,
            events: Vec::new(),
        }
    }

    /// The name events carry as their handler (default `layer:<provider>`). With the path the
    /// layer guards (axum's matched path, else the request path) it namespaces idempotency
    /// keys: two layers on two endpoints never answer each other's deliveries, even when the
    /// provider sends both the same event id, as Stripe does.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a literal secret (several: rotation, any may match).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets
            .push(SecretSource::Literal(Text::Owned(secret.into())));
        self
    }

    /// Adds a secret read from the environment variable `var` (once, at the first delivery).
    pub fn secret_env(mut self, var: impl Into<String>) -> Self {
        self.secrets
            .push(SecretSource::Env(Text::Owned(var.into())));
        self
    }

    /// A custom verifier over the raw bytes and headers; `Err` or a panic is `verifier_threw`.
    pub fn verifier(
        mut self,
        f: impl Fn(&[u8], &HeaderMap) -> Result<bool, String> + Send + Sync + 'static,
    ) -> Self {
        self.verifier = Some(DynVerifier::Sync(Arc::new(f)));
        self
    }

    /// An async custom verifier over the raw bytes and headers.
    pub fn verifier_async<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Bytes, HeaderMap) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<bool, String>> + Send + 'static,
    {
        self.verifier = Some(DynVerifier::Async(Arc::new(
            move |b, h| -> BoxFuture<'static, _> { Box::pin(f(b, h)) },
        )));
        self
    }

    /// The event type from a header.
    pub fn event_type_header(mut self, name: impl Into<String>) -> Self {
        self.event_type = Some(EventType::Header(name.into().to_ascii_lowercase()));
        self
    }

    /// The event type from a JSON body field, as a dotted path (`type`, `data.object.type`).
    pub fn event_type_field(mut self, path: &str) -> Self {
        self.event_type = Some(EventType::Field(
            path.split('.').map(str::to_owned).collect(),
        ));
        self
    }

    /// The idempotency key: a closure over the request parts, the parsed JSON body (if any)
    /// and the headers; `None` skips deduplication for that delivery.
    pub fn idempotency_key(
        mut self,
        f: impl Fn(&Parts, Option<&serde_json::Value>, &HeaderMap) -> Option<String>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.key = Some(Arc::new(f));
        self
    }

    /// Deduplicates on the provider's natural key (Stripe body id, GitHub delivery header, ...).
    pub fn natural_idempotency_key(mut self) -> Self {
        self.natural_key = true;
        self
    }

    /// Captures request and response bodies in events (cut at 64 KiB).
    pub fn capture_body(mut self, on: bool) -> Self {
        self.capture_body = on;
        self
    }

    /// Captures request headers in events (default on; sensitive ones redacted).
    pub fn capture_headers(mut self, on: bool) -> Self {
        self.capture_headers = on;
        self
    }

    /// Adds static metadata to every event.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .push((Text::Owned(key.into()), Text::Owned(value.into())));
        self
    }

    /// Whether invalid signatures get 401 (default) or pass through, reported (the handler
    /// sees [`Track::signature_valid`](crate::Track::signature_valid)); the attribute's
    /// `reject_invalid`.
    #[doc(alias = "reject_invalid_signatures")]
    pub fn reject_invalid(mut self, on: bool) -> Self {
        self.reject_invalid = on;
        self
    }

    /// [`TrackOptions::reject_invalid`], by the Python package's name.
    pub fn reject_invalid_signatures(self, on: bool) -> Self {
        self.reject_invalid(on)
    }

    /// The replay window (default 300 s).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How long a completed delivery is remembered (default 24 h; clamped to 60 s ..= 7 days).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Reports a 2xx without a `Track` mark as a silent drop; the attribute's
    /// `require_processed` (which the compiler also checks; here it is reported only).
    #[doc(alias = "require_processing_mark")]
    pub fn require_processed(mut self, on: bool) -> Self {
        self.require_mark = on;
        self
    }

    /// [`TrackOptions::require_processed`], by the Python package's name.
    pub fn require_processing_mark(self, on: bool) -> Self {
        self.require_processed(on)
    }

    /// The largest body accepted (default 2 MiB; 413 beyond).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Headers whose values are never reported, beyond the credential headers and every
    /// provider's signature headers, which are always redacted.
    pub fn redact<S: AsRef<str>>(mut self, headers: impl IntoIterator<Item = S>) -> Self {
        self.redact.extend(
            headers
                .into_iter()
                .map(|h| Text::Owned(h.as_ref().trim().to_ascii_lowercase())),
        );
        self
    }

    /// Only these sources may deliver: CIDRs or addresses (`"192.0.2.0/24"`, `"::1"`); any
    /// other gets 403, reported with its address. The address is the peer's, or behind
    /// [`crate::Config::trusted_proxies`] the forwarded client's; serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`. [`crate::OutworxHooksLayer::check`]
    /// reports a malformed entry.
    pub fn allow_ips<S: AsRef<str>>(mut self, cidrs: impl IntoIterator<Item = S>) -> Self {
        let list: Vec<Text> = cidrs
            .into_iter()
            .map(|c| Text::Owned(c.as_ref().to_owned()))
            .collect();
        self.allow_ips = Some(IpSource::List(list.into()));
        self
    }

    /// As [`TrackOptions::allow_ips`], from a comma-separated environment variable read once.
    pub fn allow_ips_env(mut self, var: impl Into<String>) -> Self {
        self.allow_ips = Some(IpSource::Env(Text::Owned(var.into())));
        self
    }

    /// The pipeline route these options describe, owned by the layer. Only the name is kept
    /// for the life of the process (events carry it as `&'static str`), once per distinct name.
    pub(crate) fn route(&self) -> Route {
        let mut r = Route::new(crate::util::intern(&self.name), "(OutworxHooksLayer)", 0)
            .tolerance_secs(self.tolerance.as_secs())
            .ttl_secs(self.ttl.as_secs())
            .require_processed(self.require_mark)
            .reject_invalid(self.reject_invalid)
            .capture_body(self.capture_body)
            .capture_headers(self.capture_headers)
            .max_body(self.max_body)
            .namespace_by_path(true);
        r.secrets = self.secrets.clone().into();
        r.metadata = self.metadata.clone().into();
        r.redact = self.redact.clone().into();
        r.allow_ips.clone_from(&self.allow_ips);
        r.provider = self.provider;
        r.dyn_verifier.clone_from(&self.verifier);
        r.queue = self.queue;
        r.events = self.events.clone().into();
        r
    }

    /// Queue-first (feature `inbox`): each verified delivery is committed to the installed
    /// [`crate::inbox::Inbox`] and answered 200 at once; its worker runs the service later,
    /// `attempts` times at most, the retries `backoff` apart and doubling (with jitter).
    #[cfg(feature = "inbox")]
    pub fn queue(mut self, options: crate::inbox::QueueOptions) -> Self {
        // The attribute's ranges: 1 to 100 attempts, a backoff of 1 s to 1 h.
        let backoff = options
            .backoff
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        self.queue = Some(crate::route::QueueConfig {
            attempts: options.attempts.clamp(1, 100),
            backoff_ms: u64::try_from(backoff.as_millis()).unwrap_or(3_600_000),
        });
        self
    }

    /// Only events of these types reach the service (`invoice.paid`, `customer.*`, `*`);
    /// any other is answered 200 without it, and without the store, reported `ignored`.
    pub fn events<S: AsRef<str>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.events.extend(
            patterns
                .into_iter()
                .map(|p| Text::Owned(p.as_ref().to_owned())),
        );
        self
    }
}
