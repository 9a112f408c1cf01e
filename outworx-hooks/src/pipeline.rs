//! The receive pipeline: one delivery from raw bytes to response and event.
//!
//! `receive` reads the body (with the size limit), verifies it and answers provider
//! handshakes; `Verified::finish` reserves the idempotency key, runs the handler (catching
//! panics), resolves the processing mark, completes or releases the key and reports the
//! event. The `#[webhook]` attribute and the layer are two front doors to these functions.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::capture;
use crate::event::{self, DeliveryEvent, ProcessingStatus};
use crate::report::{Runtime, SecretProblem, runtime};
use crate::security::{Delivery, FailureReason, Provider, SignatureResult, Verifier};
use crate::store::{CachedResponse, MAX_CACHED_BODY, Reservation, ReservationToken, clamp_ttl};
use crate::track::{Outcome, Track};

/// Where a route's secret comes from.
#[derive(Debug, Clone, Copy)]
pub enum SecretSource {
    /// An environment variable, read once.
    Env(&'static str),
    /// A literal in the source.
    Literal(&'static str),
    /// A function returning the secret (`secret = path::to::fn`).
    Func(fn() -> Option<String>),
}

/// Values a secret function (`secret = path::to::fn`) may return.
pub trait IntoSecret {
    /// The secret, or `None` when there is none.
    fn into_secret(self) -> Option<String>;
}

impl IntoSecret for String {
    fn into_secret(self) -> Option<String> {
        Some(self)
    }
}
impl IntoSecret for &str {
    fn into_secret(self) -> Option<String> {
        Some(self.to_owned())
    }
}
impl<T: IntoSecret> IntoSecret for Option<T> {
    fn into_secret(self) -> Option<String> {
        self.and_then(IntoSecret::into_secret)
    }
}

/// What a custom verifier says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The verifier ran and decided.
    Decided(bool),
    /// The verifier failed; the message becomes the hint.
    Threw(String),
}

/// Values a custom verifier function may return.
pub trait IntoVerdict {
    /// Converts to a [`Verdict`].
    fn into_verdict(self) -> Verdict;
}

impl IntoVerdict for bool {
    fn into_verdict(self) -> Verdict {
        Verdict::Decided(self)
    }
}

impl<E: std::fmt::Display> IntoVerdict for Result<bool, E> {
    fn into_verdict(self) -> Verdict {
        match self {
            Ok(v) => Verdict::Decided(v),
            Err(e) => Verdict::Threw(e.to_string()),
        }
    }
}

/// A custom verifier: the raw delivery in, a verdict out.
pub type CustomVerifier = fn(&Delivery<'_>) -> Verdict;

/// A run-time verifier over the raw bytes and headers.
pub(crate) type SyncVerifyFn =
    dyn Fn(&[u8], &http::HeaderMap) -> Result<bool, String> + Send + Sync;

/// An async run-time verifier; the future owns its copies of the bytes and headers.
pub(crate) type AsyncVerifyFn = dyn Fn(Bytes, http::HeaderMap) -> crate::store::BoxFuture<'static, Result<bool, String>>
    + Send
    + Sync;

/// A custom verifier set at run time (the layer's): a closure over the raw bytes and headers.
#[derive(Clone)]
pub(crate) enum DynVerifier {
    Sync(Arc<SyncVerifyFn>),
    Async(Arc<AsyncVerifyFn>),
}

impl std::fmt::Debug for DynVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DynVerifier::Sync(_) => "DynVerifier::Sync",
            DynVerifier::Async(_) => "DynVerifier::Async",
        })
    }
}

/// A handler's failure that is not a panic (an inner service's error), carried to the event.
#[derive(Debug, Clone)]
pub(crate) struct HandlerError(pub(crate) String);

/// Where a provider default (key or event type) is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Header(&'static str),
    Body(&'static [&'static str]),
}

/// The static description of one `#[webhook]` route, built in a `const` by generated code.
#[derive(Debug)]
pub struct Route {
    handler: &'static str,
    file: &'static str,
    line: u32,
    provider: Option<Provider>,
    secrets: &'static [SecretSource],
    custom: Option<CustomVerifier>,
    dyn_verifier: Option<DynVerifier>,
    tolerance: Duration,
    ttl: Duration,
    require_processed: bool,
    reject_invalid: bool,
    capture_body: bool,
    capture_headers: bool,
    metadata: &'static [(&'static str, &'static str)],
    max_body: usize,
    resolved: OnceLock<Resolved>,
}

#[derive(Debug)]
struct Resolved {
    verifier: Option<Verifier>,
    /// The first secret, for handshakes that answer with an HMAC of it (Zoom).
    first_secret: Option<String>,
}

/// axum's default body limit, used when the route sets no `max_body`.
pub const DEFAULT_MAX_BODY: usize = 2 * 1024 * 1024;

impl Route {
    /// A route for `handler` defined at `file:line`, with the DESIGN defaults.
    pub const fn new(handler: &'static str, file: &'static str, line: u32) -> Self {
        Route {
            handler,
            file,
            line,
            provider: None,
            secrets: &[],
            custom: None,
            dyn_verifier: None,
            tolerance: Duration::from_secs(300),
            ttl: Duration::from_secs(86_400),
            require_processed: false,
            reject_invalid: true,
            capture_body: false,
            capture_headers: true,
            metadata: &[],
            max_body: DEFAULT_MAX_BODY,
            resolved: OnceLock::new(),
        }
    }

    /// Sets the provider.
    pub const fn provider(mut self, p: Provider) -> Self {
        self.provider = Some(p);
        self
    }
    /// Sets the secrets (any may match).
    pub const fn secrets(mut self, s: &'static [SecretSource]) -> Self {
        self.secrets = s;
        self
    }
    /// Sets a custom verifier.
    pub const fn custom_verifier(mut self, v: CustomVerifier) -> Self {
        self.custom = Some(v);
        self
    }
    /// Sets a run-time custom verifier (the layer's).
    pub(crate) fn dyn_verifier(mut self, v: DynVerifier) -> Self {
        self.dyn_verifier = Some(v);
        self
    }

    /// Whether a custom verifier (of either kind) decides instead of the provider scheme.
    fn has_custom(&self) -> bool {
        self.custom.is_some() || self.dyn_verifier.is_some()
    }

    /// Sets the replay window in seconds.
    pub const fn tolerance_secs(mut self, s: u64) -> Self {
        self.tolerance = Duration::from_secs(s);
        self
    }
    /// Sets the idempotency TTL in seconds.
    pub const fn ttl_secs(mut self, s: u64) -> Self {
        self.ttl = Duration::from_secs(s);
        self
    }
    /// Requires a processing mark.
    pub const fn require_processed(mut self, on: bool) -> Self {
        self.require_processed = on;
        self
    }
    /// Answers 401 to invalid signatures (default) or lets them through, reported.
    pub const fn reject_invalid(mut self, on: bool) -> Self {
        self.reject_invalid = on;
        self
    }
    /// Captures request and response bodies in events.
    pub const fn capture_body(mut self, on: bool) -> Self {
        self.capture_body = on;
        self
    }
    /// Captures request headers in events (default on).
    pub const fn capture_headers(mut self, on: bool) -> Self {
        self.capture_headers = on;
        self
    }
    /// Static metadata for every event of the route.
    pub const fn metadata(mut self, m: &'static [(&'static str, &'static str)]) -> Self {
        self.metadata = m;
        self
    }
    /// The largest body accepted (413 beyond).
    pub const fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    fn provider_name(&self) -> &'static str {
        self.provider.map_or("custom", Provider::name)
    }

    fn read_secrets(&self) -> Result<Vec<String>, String> {
        self.secrets
            .iter()
            .map(|s| match *s {
                SecretSource::Env(var) => match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => Ok(v),
                    _ => Err(format!("the environment variable {var} is not set")),
                },
                SecretSource::Literal(v) => Ok(v.to_owned()),
                SecretSource::Func(f) => {
                    f().ok_or_else(|| "the secret function returned none".into())
                }
            })
            .collect()
    }

    fn build(&self) -> Result<Resolved, String> {
        if self.has_custom() && self.secrets.is_empty() {
            return Ok(Resolved {
                verifier: None,
                first_secret: None,
            });
        }
        let provider = self
            .provider
            .ok_or_else(|| "the route has neither a provider nor a verifier".to_owned())?;
        let secrets = self.read_secrets()?;
        let verifier = Verifier::new(provider, &secrets)
            .map_err(|e| e.to_string())?
            .with_tolerance(self.tolerance);
        Ok(Resolved {
            first_secret: secrets.into_iter().next(),
            verifier: Some(verifier),
        })
    }

    /// Secrets are read once and cached; a failure is retried on the next delivery, so
    /// setting the variable and restarting is not the only fix.
    fn resolved(&self) -> Result<&Resolved, String> {
        if let Some(r) = self.resolved.get() {
            return Ok(r);
        }
        let built = self.build()?;
        Ok(self.resolved.get_or_init(|| built))
    }

    /// Resolves the secrets now: `Err` says what is wrong (never the secret).
    pub(crate) fn check(&self) -> Result<(), String> {
        self.resolved().map(drop)
    }

    fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The request together with the router's state: the one extractor of a `#[webhook]`
/// handler, so the user's own extractors can run later with the same state.
#[derive(Debug)]
pub struct WithState<S>(pub Request, pub S);

impl<S: Clone + Send + Sync> axum::extract::FromRequest<S> for WithState<S> {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(WithState(req, state.clone()))
    }
}

/// Registers a route so [`crate::init`] can check its secrets.
#[derive(Debug)]
pub struct RouteRef(pub &'static Route);

inventory::collect!(RouteRef);

pub(crate) fn check_all_routes() -> Vec<SecretProblem> {
    let mut problems: Vec<SecretProblem> = inventory::iter::<RouteRef>
        .into_iter()
        .filter_map(|r| {
            r.0.build().err().map(|problem| SecretProblem {
                handler: r.0.handler,
                location: r.0.location(),
                problem,
            })
        })
        .collect();
    problems.sort_by(|a, b| a.location.cmp(&b.location));
    problems
}

/// Everything known about a delivery once its signature is checked.
pub struct Verified {
    route: &'static Route,
    rt: Arc<Runtime>,
    parts: Parts,
    body: Bytes,
    started: Instant,
    arrived: SystemTime,
    signature: Option<SignatureResult>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("handler", &self.route.handler)
            .field("payload_size", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Reads, limits and verifies one delivery; answers early (413, 401, 500, handshakes).
pub async fn receive(route: &'static Route, req: Request) -> Result<Verified, Response> {
    let started = Instant::now();
    let arrived = SystemTime::now();
    let rt = runtime();
    let (parts, body) = req.into_parts();
    let mut v = Verified {
        route,
        rt,
        parts,
        body: Bytes::new(),
        started,
        arrived,
        signature: None,
    };

    let declared = v
        .parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body as u64) {
        return Err(v.early(StatusCode::PAYLOAD_TOO_LARGE, too_large(route.max_body)));
    }
    v.body = match axum::body::to_bytes(Body::new(body), route.max_body).await {
        Ok(b) => b,
        Err(e) => {
            return Err(if is_length_limit(&e) {
                v.early(StatusCode::PAYLOAD_TOO_LARGE, too_large(route.max_body))
            } else {
                v.early(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            });
        }
    };

    let resolved = match route.resolved() {
        Ok(r) => r,
        // A configuration fault: 5xx so the provider retries after the fix, never 401.
        Err(problem) => {
            tracing::error!(handler = route.handler, location = %route.location(), "{problem}");
            return Err(v.early(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("webhook route misconfigured: {problem}"),
            ));
        }
    };

    // Only URL-signing schemes (and custom verifiers) need the public URL.
    let url = (route.has_custom() || route.provider.is_some_and(Provider::signs_url))
        .then(|| public_url(&v.parts));
    let mut delivery =
        Delivery::new(&v.parts.headers, &v.body).with_method(v.parts.method.as_str());
    if let Some(url) = &url {
        delivery = delivery.with_url(url);
    }
    let verdict = match (&resolved.verifier, route.custom, &route.dyn_verifier) {
        (Some(verifier), _, _) => verifier.verify(&delivery),
        (None, Some(custom), _) => run_custom(custom, &delivery),
        (None, None, Some(dynamic)) => {
            run_dyn(dynamic, v.body.clone(), v.parts.headers.clone()).await
        }
        (None, None, None) => {
            SignatureResult::fail(FailureReason::UnsupportedProvider, "no verifier")
        }
    };
    let valid = verdict.valid;
    v.signature = Some(verdict);
    if !valid && route.reject_invalid {
        return Err(v.answer(
            (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":"invalid webhook signature"}"#,
            )
                .into_response(),
            None,
        ));
    }
    if valid && let Some((resp, kind)) = handshake(route.provider, &v, resolved) {
        return Err(v.answer(resp, Some(kind.to_owned())));
    }
    Ok(v)
}

/// The URL the provider sent the request to, as it saw it: a server sees only the path, so
/// the scheme and host come from `X-Forwarded-Proto` / `X-Forwarded-Host` (a proxy in front),
/// else the `Host` header, and the scheme defaults to `https` (providers post to public
/// HTTPS endpoints).
pub(crate) fn public_url(parts: &Parts) -> String {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = header("x-forwarded-proto")
        .or(parts.uri.scheme_str())
        .unwrap_or("https");
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{host}{path}")
}

/// Whether a body error is axum's length limit (the body was larger than allowed).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn too_large(limit: usize) -> String {
    format!("the body is larger than the route's limit of {limit} bytes")
}

fn run_custom(custom: CustomVerifier, d: &Delivery<'_>) -> SignatureResult {
    run_custom_outcome(std::panic::catch_unwind(AssertUnwindSafe(|| custom(d))))
}

fn verdict_of(
    outcome: Result<Result<bool, String>, Box<dyn std::any::Any + Send>>,
) -> SignatureResult {
    run_custom_outcome(outcome.map(|r| r.into_verdict()))
}

fn run_custom_outcome(outcome: Result<Verdict, Box<dyn std::any::Any + Send>>) -> SignatureResult {
    match outcome {
        Ok(Verdict::Decided(true)) => SignatureResult::ok(),
        Ok(Verdict::Decided(false)) => SignatureResult::fail(
            FailureReason::HmacMismatch,
            "the custom verifier rejected the delivery",
        ),
        Ok(Verdict::Threw(msg)) => SignatureResult::fail(
            FailureReason::VerifierThrew,
            format!("the custom verifier failed: {msg}"),
        ),
        Err(panic) => SignatureResult::fail(
            FailureReason::VerifierThrew,
            format!("the custom verifier panicked: {}", panic_message(&*panic)),
        ),
    }
}

async fn run_dyn(v: &DynVerifier, body: Bytes, headers: http::HeaderMap) -> SignatureResult {
    match v {
        DynVerifier::Sync(f) => verdict_of(std::panic::catch_unwind(AssertUnwindSafe(|| {
            f(&body, &headers)
        }))),
        DynVerifier::Async(f) => {
            let fut = std::panic::catch_unwind(AssertUnwindSafe(|| f(body, headers)));
            match fut {
                Ok(fut) => verdict_of(AssertUnwindSafe(fut).catch_unwind().await),
                Err(panic) => verdict_of(Err(panic)),
            }
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Provider handshakes, answered after the signature check and never passed to the handler.
fn handshake(
    provider: Option<Provider>,
    v: &Verified,
    resolved: &Resolved,
) -> Option<(Response, &'static str)> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: Option<serde_json::Value>,
        challenge: Option<String>,
        event: Option<String>,
        payload: Option<ZoomPayload>,
    }
    #[derive(serde::Deserialize)]
    struct ZoomPayload {
        #[serde(rename = "plainToken")]
        plain_token: Option<String>,
    }
    let body = &v.body;
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    match provider? {
        Provider::Slack if contains(b"url_verification") => {
            let p: Probe = serde_json::from_slice(body).ok()?;
            (p.kind.as_ref()?.as_str()? == "url_verification").then_some(())?;
            let challenge = p.challenge?;
            Some((
                axum::Json(serde_json::json!({ "challenge": challenge })).into_response(),
                "url_verification",
            ))
        }
        Provider::Zoom if contains(b"endpoint.url_validation") => {
            let p: Probe = serde_json::from_slice(body).ok()?;
            (p.event.as_deref()? == "endpoint.url_validation").then_some(())?;
            let token = p.payload?.plain_token?;
            let secret = resolved.first_secret.as_deref()?;
            let mac = crate::security::scheme::mac(
                crate::security::scheme::Algo::Sha256,
                secret.as_bytes(),
                &[token.as_bytes()],
            );
            let encrypted = hex::encode(mac.bytes());
            Some((
                axum::Json(serde_json::json!({ "plainToken": token, "encryptedToken": encrypted }))
                    .into_response(),
                "endpoint.url_validation",
            ))
        }
        Provider::Twitch => {
            let kind = v.parts.headers.get("twitch-eventsub-message-type")?;
            (kind == "webhook_callback_verification").then_some(())?;
            let p: Probe = serde_json::from_slice(body).ok()?;
            let challenge = p.challenge?;
            Some((
                ([(header::CONTENT_TYPE, "text/plain")], challenge).into_response(),
                "webhook_callback_verification",
            ))
        }
        Provider::Discord => {
            let p: Probe = serde_json::from_slice(body).ok()?;
            (p.kind.as_ref()?.as_u64()? == 1).then_some(())?;
            Some((
                axum::Json(serde_json::json!({ "type": 1 })).into_response(),
                "ping",
            ))
        }
        _ => None,
    }
}

fn body_path(source: Option<Source>) -> Option<&'static [&'static str]> {
    match source {
        Some(Source::Body(p)) => Some(p),
        _ => None,
    }
}

/// The top-level (or nested) field at `path` as a string, read in one pass over the bytes
/// without building the document (strings as they are, numbers and booleans as text): for
/// routes whose handler does not parse the body itself.
pub(crate) fn skim(body: &[u8], paths: [Option<&[&str]>; 2]) -> [Option<String>; 2] {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    struct Seek<'p> {
        wanted: Vec<(usize, &'p [&'p str])>,
    }
    type Found = Vec<(usize, String)>;

    impl<'de> DeserializeSeed<'de> for Seek<'_> {
        type Value = Found;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Seek<'_> {
        type Value = Found;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E>(self, s: &str) -> Result<Found, E> {
            Ok(self.hits(s.to_owned()))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Found, E> {
            Ok(self.hits(n.to_string()))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Found, E> {
            Ok(self.hits(n.to_string()))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Found, E> {
            Ok(self.hits(n.to_string()))
        }
        fn visit_bool<E>(self, b: bool) -> Result<Found, E> {
            Ok(self.hits(b.to_string()))
        }
        fn visit_unit<E>(self) -> Result<Found, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Found, A::Error> {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Found, A::Error> {
            let mut found = Vec::new();
            while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                let next: Vec<_> = self
                    .wanted
                    .iter()
                    .filter(|(_, p)| p.first() == Some(&&*key))
                    .map(|(i, p)| (*i, &p[1..]))
                    .collect();
                if next.is_empty() {
                    m.next_value::<IgnoredAny>()?;
                } else {
                    found.extend(m.next_value_seed(Seek { wanted: next })?);
                }
            }
            Ok(found)
        }
    }

    impl Seek<'_> {
        fn hits(&self, value: String) -> Found {
            self.wanted
                .iter()
                .filter(|(_, p)| p.is_empty())
                .map(|(i, _)| (*i, value.clone()))
                .collect()
        }
    }

    let wanted: Vec<_> = paths
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    let mut out = [None, None];
    if wanted.is_empty() {
        return out;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Ok(found) = (Seek { wanted }).deserialize(&mut de) {
        for (i, v) in found {
            out[i] = Some(v);
        }
    }
    out
}

/// Values usable as idempotency keys and event types.
pub trait IntoKey {
    /// The key text; `None` skips deduplication for this delivery.
    fn into_key(self) -> Option<String>;
}

impl IntoKey for &String {
    fn into_key(self) -> Option<String> {
        (!self.is_empty()).then(|| self.clone())
    }
}
impl IntoKey for &&str {
    fn into_key(self) -> Option<String> {
        (!self.is_empty()).then(|| (*self).to_owned())
    }
}
impl IntoKey for &str {
    fn into_key(self) -> Option<String> {
        (!self.is_empty()).then(|| self.to_owned())
    }
}
impl IntoKey for &std::borrow::Cow<'_, str> {
    fn into_key(self) -> Option<String> {
        (**self).into_key()
    }
}
macro_rules! int_keys {
    ($($t:ty),*) => { $( impl IntoKey for &$t { fn into_key(self) -> Option<String> { Some(self.to_string()) } } )* };
}
int_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);
impl<T> IntoKey for &Option<T>
where
    for<'a> &'a T: IntoKey,
{
    fn into_key(self) -> Option<String> {
        self.as_ref().and_then(IntoKey::into_key)
    }
}
impl IntoKey for &serde_json::Value {
    fn into_key(self) -> Option<String> {
        match self {
            serde_json::Value::String(s) => s.into_key(),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

impl Verified {
    /// The request line and headers.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// A request header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Parses the body as `T` (the handler's `Json<T>`), once.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }

    /// Parses the body as `T`, or `None` (a provider envelope for keys).
    pub fn json_opt<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The provider's natural idempotency key and event type, as asked for, in one pass.
    pub fn provider_defaults(
        &self,
        key: bool,
        event_type: bool,
    ) -> (Option<String>, Option<String>) {
        let (k, t) = self.default_sources(key, event_type);
        let [bk, bt] = skim(&self.body, [body_path(k), body_path(t)]);
        (self.resolve(k, bk), self.resolve(t, bt))
    }

    /// Parses the body as `T` (the handler's `Json<T>`) and reads the provider's natural key
    /// and event type, as asked for, in a single pass over the bytes when they are top-level
    /// fields (a second, borrowed pass otherwise).
    pub fn json_and_defaults<T: DeserializeOwned>(
        &self,
        key: bool,
        event_type: bool,
    ) -> Result<(T, Option<String>, Option<String>), String> {
        let (k, t) = self.default_sources(key, event_type);
        let (pk, pt) = (body_path(k), body_path(t));
        let top = |p: Option<&'static [&'static str]>| match p {
            Some([one]) => Ok(Some(*one)),
            Some(_) => Err(()),
            None => Ok(None),
        };
        let (value, [bk, bt]) = match (top(pk), top(pt)) {
            (Ok(a), Ok(b)) => capture::parse(&self.body, [a, b]).map_err(|e| e.to_string())?,
            _ => (self.json()?, skim(&self.body, [pk, pt])),
        };
        Ok((value, self.resolve(k, bk), self.resolve(t, bt)))
    }

    fn default_sources(&self, key: bool, event_type: bool) -> (Option<Source>, Option<Source>) {
        let Some(p) = self.route.provider else {
            return (None, None);
        };
        let d = p.defaults();
        let pick = |want: bool, s: Option<Source>| if want { s } else { None };
        (pick(key, d.key), pick(event_type, d.event_type))
    }

    fn resolve(&self, source: Option<Source>, from_body: Option<String>) -> Option<String> {
        match source {
            Some(Source::Header(h)) => self.header(h),
            Some(Source::Body(_)) => from_body,
            None => None,
        }
    }

    /// Answers a body the handler's type cannot read: a 500, so the provider retries after
    /// the handler is fixed; reported with the parse error.
    pub fn reject_body(self, error: String) -> Response {
        let message = format!("the verified body does not match the handler's type: {error}");
        self.early(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// An early answer with a message, reported with it as `error_message`.
    fn early(self, status: StatusCode, message: String) -> Response {
        let resp = (status, message.clone()).into_response();
        let mut e = self.event(status.as_u16(), None);
        e.error_message = Some(message);
        self.rt.emit(e);
        resp
    }

    /// An early answer reported as is (401, handshakes).
    fn answer(self, resp: Response, event_type: Option<String>) -> Response {
        let mut e = self.event(resp.status().as_u16(), event_type);
        if let Some(kind) = e.event_type.clone().filter(|_| resp.status().is_success()) {
            e.metadata
                .get_or_insert_with(Default::default)
                .insert("handshake".into(), kind.into());
        }
        self.rt.emit(e);
        resp
    }

    /// An answer without running the handler, reported with one metadata flag.
    fn flagged(
        self,
        resp: Response,
        event_type: Option<String>,
        flag: &str,
        value: serde_json::Value,
    ) -> Response {
        let mut e = self.event(resp.status().as_u16(), event_type);
        e.metadata
            .get_or_insert_with(Default::default)
            .insert(flag.into(), value);
        self.rt.emit(e);
        resp
    }

    fn event(&self, status: u16, event_type: Option<String>) -> DeliveryEvent {
        let route = self.route;
        let sig = self.signature.as_ref();
        let metadata: serde_json::Map<String, serde_json::Value> = route
            .metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        DeliveryEvent {
            provider: route.provider_name().to_owned(),
            status_code: status,
            success: (200..300).contains(&status),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            payload_size: self.body.len(),
            timestamp: event::iso8601(self.arrived),
            event_type,
            request_headers: route
                .capture_headers
                .then(|| event::redact_headers(&self.parts.headers, &[])),
            request_body: route.capture_body.then(|| event::capture(&self.body)),
            response_body: None,
            signature_valid: sig.map(|s| s.valid),
            signature_failure_reason: sig.and_then(|s| s.reason),
            error_message: None,
            metadata: (!metadata.is_empty()).then_some(metadata),
            source_url: Some(self.parts.uri.to_string()),
            processing_status: None,
            processing_marked_at: None,
            processing_failure_reason: None,
            handler: route.handler,
            signature_hint: sig.and_then(|s| s.hint.clone()),
        }
    }

    /// Reserves `key`, runs `call` (the handler with its extractors) unless the delivery is a
    /// duplicate or in flight, and reports the outcome.
    pub async fn finish<F, Fut>(
        mut self,
        key: Option<String>,
        event_type: Option<String>,
        call: F,
    ) -> Response
    where
        F: FnOnce(Parts, Bytes) -> Fut,
        Fut: Future<Output = Response>,
    {
        let route = self.route;
        let mut extra = serde_json::Map::new();
        let key = key.map(|k| format!("{}:{}:{k}", route.provider_name(), route.handler));
        let mut token: Option<ReservationToken> = None;
        let ttl = clamp_ttl(route.ttl);
        if let Some(k) = &key {
            match self.rt.store.reserve(k, ttl).await {
                Ok(Reservation::New(t)) => token = Some(t),
                Ok(Reservation::Duplicate(cached)) => {
                    return self.flagged(replay(&cached), event_type, "duplicate", true.into());
                }
                Ok(Reservation::InFlight) => {
                    let resp = (
                        StatusCode::CONFLICT,
                        [(header::RETRY_AFTER, "5")],
                        "this delivery is being processed; retry later",
                    )
                        .into_response();
                    return self.flagged(resp, event_type, "in_flight", true.into());
                }
                Err(err) if self.rt.fail_closed => {
                    tracing::warn!(
                        handler = route.handler,
                        "{err}; answering 503 (fail closed)"
                    );
                    let resp = (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "30")],
                        "the idempotency store is unavailable; retry later",
                    )
                        .into_response();
                    let why = err.to_string().into();
                    return self.flagged(resp, event_type, "idempotency_error", why);
                }
                Err(err) => {
                    // Fail open: the handler runs; the event says why dedup was skipped.
                    tracing::warn!(
                        handler = route.handler,
                        "{err}; handling without deduplication"
                    );
                    extra.insert("idempotency_error".into(), err.to_string().into());
                }
            }
        }

        // The event's request side is taken now, so the request itself moves to the handler.
        let mut e = self.event(0, event_type);
        let track = Track::detached();
        let mut parts = std::mem::replace(&mut self.parts, http::Request::new(()).into_parts().0);
        parts.extensions.insert(track.clone());
        let body = self.body.clone();
        let outcome = AssertUnwindSafe(call(parts, body)).catch_unwind().await;

        let (status, headers, resp_body, panic) = match outcome {
            Ok(resp) => {
                let (rparts, rbody) = resp.into_parts();
                let failure = rparts.extensions.get::<HandlerError>().map(|e| e.0.clone());
                match axum::body::to_bytes(rbody, usize::MAX).await {
                    Ok(b) => (rparts.status, rparts.headers, b, failure),
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        http::HeaderMap::new(),
                        Bytes::from_static(b"the handler's response body failed"),
                        Some(format!("the handler's response body failed: {e}")),
                    ),
                }
            }
            Err(p) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                http::HeaderMap::new(),
                Bytes::from_static(b"internal error"),
                Some(format!("handler panicked: {}", panic_message(&*p))),
            ),
        };

        if let (Some(k), Some(t)) = (&key, &token) {
            let stored = if status.is_success() {
                let cached = CachedResponse {
                    status: status.as_u16(),
                    content_type: headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body: (resp_body.len() <= MAX_CACHED_BODY).then(|| resp_body.clone()),
                };
                self.rt.store.complete(k, t, cached, ttl).await
            } else {
                self.rt.store.release(k, t).await
            };
            if let Err(err) = stored {
                tracing::warn!(handler = route.handler, "{err}");
                extra.insert("idempotency_error".into(), err.to_string().into());
            }
        }

        e.status_code = status.as_u16();
        e.success = status.is_success();
        e.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        e.error_message = panic;
        e.response_body = route.capture_body.then(|| event::capture(&resp_body));
        match track.mark() {
            Some(mark) => {
                e.processing_marked_at = Some(event::iso8601(mark.at));
                match &mark.outcome {
                    Outcome::Processed => e.processing_status = Some(ProcessingStatus::Completed),
                    Outcome::Failed(reason) => {
                        e.processing_status = Some(ProcessingStatus::Failed);
                        e.processing_failure_reason = Some(reason.clone());
                    }
                }
                if let Some(serde_json::Value::Object(m)) = &mark.metadata {
                    extra.extend(m.clone());
                } else if let Some(other) = &mark.metadata {
                    extra.insert("mark".into(), other.clone());
                }
            }
            None if route.require_processed && status.is_success() => {
                e.processing_status = Some(ProcessingStatus::SilentDrop);
            }
            None => {}
        }
        if !extra.is_empty() {
            e.metadata
                .get_or_insert_with(Default::default)
                .extend(extra);
        }
        self.body = Bytes::new();
        self.rt.emit(e);

        let mut resp = Response::new(Body::from(resp_body));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }
}

fn replay(cached: &CachedResponse) -> Response {
    let status = StatusCode::from_u16(cached.status).unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Body::from(cached.body.clone().unwrap_or_default()));
    *resp.status_mut() = status;
    if let Some(ct) = cached
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::try_from(c).ok())
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert("x-outworx-duplicate", HeaderValue::from_static("true"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skim_reads_nested_and_top_level_fields_in_one_pass() {
        let body =
            br#"{"type":"charge.succeeded","data":{"object":{"id":"ch_1","n":5}},"id":"evt_1"}"#;
        let [a, b] = skim(body, [Some(&["id"]), Some(&["data", "object", "n"])]);
        assert_eq!((a.as_deref(), b.as_deref()), (Some("evt_1"), Some("5")));
        let [a, b] = skim(body, [Some(&["missing"]), None]);
        assert_eq!((a, b), (None, None));
        let [a, _] = skim(b"not json", [Some(&["id"]), None]);
        assert_eq!(a, None);
        let [a, _] = skim(br#"{"id":{"nested":1}}"#, [Some(&["id"]), None]);
        assert_eq!(a, None);
    }

    #[test]
    fn public_urls_come_from_forwarded_headers_or_the_host() {
        let parts = |uri: &str, headers: &[(&str, &str)]| {
            let mut b = http::Request::builder().uri(uri);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap().into_parts().0
        };
        let p = parts("/twilio?x=1", &[("host", "hooks.example.com")]);
        assert_eq!(public_url(&p), "https://hooks.example.com/twilio?x=1");
        let p = parts(
            "/t",
            &[
                ("host", "10.0.0.5:3000"),
                ("x-forwarded-proto", "https, http"),
                ("x-forwarded-host", "api.example.com"),
            ],
        );
        assert_eq!(public_url(&p), "https://api.example.com/t");
        let p = parts(
            "/t",
            &[("host", "127.0.0.1:8080"), ("x-forwarded-proto", "http")],
        );
        assert_eq!(public_url(&p), "http://127.0.0.1:8080/t");
    }

    #[test]
    fn keys_from_values() {
        assert_eq!((&Some(String::from("a"))).into_key(), Some("a".into()));
        assert_eq!((&None::<String>).into_key(), None);
        assert_eq!((&String::new()).into_key(), None);
        assert_eq!((&42u64).into_key(), Some("42".into()));
        assert_eq!((&serde_json::json!("x")).into_key(), Some("x".into()));
        assert_eq!((&serde_json::json!(null)).into_key(), None);
    }

    #[test]
    fn custom_verifiers_that_fail_or_panic_are_verifier_threw() {
        fn panics(_: &Delivery<'_>) -> Verdict {
            panic!("boom")
        }
        fn errs(_: &Delivery<'_>) -> Verdict {
            Err::<bool, _>("no key").into_verdict()
        }
        let h = http::HeaderMap::new();
        let d = Delivery::new(&h, b"");
        let r = run_custom(panics, &d);
        assert_eq!(r.reason, Some(FailureReason::VerifierThrew));
        assert!(r.hint.unwrap().contains("boom"));
        assert_eq!(
            run_custom(errs, &d).reason,
            Some(FailureReason::VerifierThrew)
        );
    }
}
