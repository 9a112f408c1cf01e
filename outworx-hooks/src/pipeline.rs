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

use crate::capture::{self, skim};
use crate::event::{self, DeliveryEvent, ProcessingStatus};
use crate::report::{Runtime, SecretProblem, runtime};
use crate::security::{Delivery, FailureReason, Provider, SignatureResult, Source, Verifier};
use crate::store::{
    CachedResponse, MAX_CACHED_BODY, Reservation, ReservationToken, Store, clamp_ttl,
};
use crate::track::{Outcome, Track};

/// Where a route's secret comes from. Its `Debug` never shows a literal secret.
#[derive(Clone, Copy)]
pub enum SecretSource {
    /// An environment variable, read once.
    Env(&'static str),
    /// A literal in the source.
    Literal(&'static str),
    /// A function returning the secret (`secret = path::to::fn`).
    Func(fn() -> Option<String>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(var) => f.debug_tuple("Env").field(var).finish(),
            SecretSource::Literal(_) => f.write_str("Literal([REDACTED])"),
            SecretSource::Func(_) => f.write_str("Func(..)"),
        }
    }
}

/// Where a route's `allow_ips` list comes from.
#[derive(Debug, Clone, Copy)]
pub enum IpSource {
    /// CIDRs in the source (checked at compile time by the attribute).
    List(&'static [&'static str]),
    /// A comma-separated list in an environment variable, read once.
    Env(&'static str),
}

/// Where an idempotency key came from: the provider's natural key, or the route's own
/// expression. A natural key in a header the signature does not cover is also checked
/// against a digest of the signed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Bare `idempotency`: the provider's natural key.
    Natural,
    /// `idempotency = body.x` / `header("..")`, or the layer's key closure.
    Given,
}

/// Escapes one component of an idempotency key (`%`, `:` and `@`, the separators), so
/// components never run into each other: `a:b` + `c` and `a` + `b:c` stay different keys.
pub(crate) fn escape_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped(&mut out, s);
    out
}

fn push_escaped(out: &mut String, s: &str) {
    if !s.contains(['%', ':', '@']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '@' => out.push_str("%40"),
            c => out.push(c),
        }
    }
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

/// The static description of one `#[webhook]` route, built in a `const` by generated code.
pub struct Route {
    handler: &'static str,
    module: &'static str,
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
    redact: &'static [&'static str],
    allow_ips: Option<IpSource>,
    /// Layers: the request's matched path is part of the key namespace.
    namespace_by_path: bool,
    resolved: OnceLock<Resolved>,
}

impl std::fmt::Debug for Route {
    // Written out: the secrets (and what they resolved to) must never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("handler", &self.handler)
            .field("module", &self.module)
            .field("location", &self.location())
            .field("provider", &self.provider)
            .field("secrets", &self.secrets)
            .field("require_processed", &self.require_processed)
            .field("reject_invalid", &self.reject_invalid)
            .field("max_body", &self.max_body)
            .field("allow_ips", &self.allow_ips)
            .finish_non_exhaustive()
    }
}

struct Resolved {
    verifier: Option<Verifier>,
    /// The first secret, for handshakes that answer with an HMAC of it (Zoom).
    first_secret: Option<String>,
    /// The parsed `allow_ips`, when the route has one.
    allow: Option<Vec<ipnet::IpNet>>,
    /// `provider:route` escaped, the part of every key that names this route.
    namespace: String,
}

/// axum's default body limit, used when the route sets no `max_body`.
pub const DEFAULT_MAX_BODY: usize = 2 * 1024 * 1024;

impl Route {
    /// A route for `handler` defined at `file:line`, with the documented defaults.
    pub const fn new(handler: &'static str, file: &'static str, line: u32) -> Self {
        Route {
            handler,
            module: "",
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
            redact: &[],
            allow_ips: None,
            namespace_by_path: false,
            resolved: OnceLock::new(),
        }
    }

    /// The module the handler is defined in (`module_path!()`): with the handler's name it
    /// names the route in idempotency keys, so equal names in two modules never meet.
    pub const fn module(mut self, module: &'static str) -> Self {
        self.module = module;
        self
    }
    /// Headers whose values are never reported, beyond the credential and signature headers.
    pub const fn redact(mut self, headers: &'static [&'static str]) -> Self {
        self.redact = headers;
        self
    }
    /// Only these sources may deliver (403 otherwise).
    pub const fn allow_ips(mut self, source: IpSource) -> Self {
        self.allow_ips = Some(source);
        self
    }
    /// Keys are namespaced by the request's matched path too (layers).
    pub(crate) fn namespace_by_path(mut self, on: bool) -> Self {
        self.namespace_by_path = on;
        self
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
        let allow = self.read_allow_ips()?;
        let mut namespace = escape_component(self.provider_name());
        namespace.push(':');
        if self.module.is_empty() {
            push_escaped(&mut namespace, self.handler);
        } else {
            push_escaped(&mut namespace, self.module);
            namespace.push_str("%3A%3A");
            push_escaped(&mut namespace, self.handler);
        }
        if self.has_custom() && self.secrets.is_empty() {
            return Ok(Resolved {
                verifier: None,
                first_secret: None,
                allow,
                namespace,
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
            allow,
            namespace,
        })
    }

    fn read_allow_ips(&self) -> Result<Option<Vec<ipnet::IpNet>>, String> {
        let nets = match self.allow_ips {
            None => return Ok(None),
            Some(IpSource::List(list)) => crate::peer::parse_cidrs(list.iter().copied()),
            Some(IpSource::Env(var)) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => crate::peer::parse_cidrs(v.split(',')),
                _ => Err(format!(
                    "the environment variable {var} (allow_ips) is not set"
                )),
            },
        }
        .map_err(|e| format!("allow_ips: {e}"))?;
        if nets.is_empty() {
            return Err("allow_ips lists no address: no source could deliver".into());
        }
        Ok(Some(nets))
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

/// Reads, limits and verifies one delivery; answers early (403, 413, 401, 500, handshakes).
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

    let resolved = match route.resolved() {
        Ok(r) => r,
        // A configuration fault: 5xx so the provider retries after the fix, never 401.
        Err(problem) => {
            tracing::error!(handler = route.handler, location = %route.location(), "{problem}");
            return Err(v.early(StatusCode::INTERNAL_SERVER_ERROR, MISCONFIGURED, problem));
        }
    };
    // The source is checked before a byte of the body is read.
    if let Some(allow) = &resolved.allow
        && let Err((status, public, why)) = v.check_source(allow)
    {
        return Err(v.early(status, public, why));
    }

    let declared = v
        .parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body as u64) {
        let why = too_large(route.max_body);
        return Err(v.early(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE, why));
    }
    v.body = match axum::body::to_bytes(Body::new(body), route.max_body).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => {
            let why = too_large(route.max_body);
            return Err(v.early(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE, why));
        }
        Err(e) => {
            let why = format!("could not read the body: {e}");
            return Err(v.early(StatusCode::BAD_REQUEST, UNREADABLE, why));
        }
    };

    let verdict = v.verify(resolved).await;
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

/// The body of a 500 for a configuration fault: the details go to the log and the event only.
const MISCONFIGURED: &str = "the webhook endpoint is misconfigured; retry later";

/// The body of a 413.
const TOO_LARGE: &str = "the request body is larger than this endpoint accepts";

/// The body of a 400 for a body that could not be read.
const UNREADABLE: &str = "the request body could not be read";

impl Verified {
    /// `allow_ips`: the client's address (through trusted proxies only) must be listed; the
    /// refusal's status, public body and reported reason otherwise.
    fn check_source(
        &self,
        allow: &[ipnet::IpNet],
    ) -> Result<(), (StatusCode, &'static str, String)> {
        let trusted = &self.rt.trusted_proxies;
        Err(match crate::peer::client_ip(&self.parts, trusted) {
            Some(ip) if crate::peer::allowed(allow, ip) => return Ok(()),
            Some(ip) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the source address {ip} is not in the route's allow_ips"),
            ),
            None if crate::peer::peer(&self.parts).is_none() => {
                let why = "allow_ips needs the peer address: serve the app with \
                           `into_make_service_with_connect_info::<SocketAddr>()`";
                tracing::error!(handler = self.route.handler, location = %self.route.location(), "{why}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    MISCONFIGURED,
                    why.to_owned(),
                )
            }
            None => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "a trusted proxy forwarded an X-Forwarded-For entry that is not an address"
                    .to_owned(),
            ),
        })
    }

    /// The signature verdict: the provider's scheme over the exact bytes (with the public URL
    /// for the schemes that sign it), or the route's custom verifier.
    async fn verify(&self, resolved: &Resolved) -> SignatureResult {
        let route = self.route;
        let public_base = self.rt.public_url.as_deref();
        let trusted = &self.rt.trusted_proxies;
        // Only URL-signing schemes (and custom verifiers) need the public URL.
        let url = (route.has_custom() || route.provider.is_some_and(Provider::signs_url))
            .then(|| crate::peer::public_url(&self.parts, public_base, trusted));
        let mut delivery =
            Delivery::new(&self.parts.headers, &self.body).with_method(self.parts.method.as_str());
        if let Some(url) = &url {
            delivery = delivery.with_url(url);
        }
        let mut verdict = match (&resolved.verifier, route.custom, &route.dyn_verifier) {
            (Some(verifier), _, _) => verifier.verify(&delivery),
            (None, Some(custom), _) => run_custom(custom, &delivery),
            (None, None, Some(dynamic)) => {
                run_dyn(dynamic, self.body.clone(), self.parts.headers.clone()).await
            }
            (None, None, None) => {
                SignatureResult::fail(FailureReason::UnsupportedProvider, "no verifier")
            }
        };
        if !verdict.valid
            && url.is_some()
            && crate::peer::ignored_forwarding(&self.parts, public_base, trusted)
            && let Some(hint) = &mut verdict.hint
        {
            hint.push_str(
                "; X-Forwarded-Host/-Proto were ignored because the peer is not a trusted \
                 proxy: set Config::public_url or Config::trusted_proxies",
            );
        }
        verdict
    }
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
        kind: Option<capture::Scalar>,
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
    use outworx_hooks_providers::Handshake;
    match provider?.spec().handshake? {
        Handshake::SlackUrlVerification if contains(b"url_verification") => {
            let p: Probe = serde_json::from_slice(body).ok()?;
            (p.kind? == capture::Scalar::Str("url_verification".into())).then_some(())?;
            let challenge = p.challenge?;
            Some((
                axum::Json(serde_json::json!({ "challenge": challenge })).into_response(),
                "url_verification",
            ))
        }
        Handshake::ZoomUrlValidation if contains(b"endpoint.url_validation") => {
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
        Handshake::TwitchCallbackVerification => {
            let kind = v.parts.headers.get("twitch-eventsub-message-type")?;
            (kind == "webhook_callback_verification").then_some(())?;
            let p: Probe = serde_json::from_slice(body).ok()?;
            let challenge = p.challenge?;
            Some((
                ([(header::CONTENT_TYPE, "text/plain")], challenge).into_response(),
                "webhook_callback_verification",
            ))
        }
        Handshake::DiscordPing => {
            let p: Probe = serde_json::from_slice(body).ok()?;
            (p.kind? == capture::Scalar::Num("1".into())).then_some(())?;
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
        let d = p.spec();
        let pick = |want: bool, s: Option<Source>| if want { s } else { None };
        (pick(key, d.natural_key), pick(event_type, d.event_type))
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
        tracing::error!(handler = self.route.handler, "{message}");
        self.early(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the webhook handler could not read this event; retry later",
            message,
        )
    }

    /// An early answer: `public` is all the sender sees; `detail` (which may name variables,
    /// types or parse errors) goes to the event's `error_message` only.
    fn early(self, status: StatusCode, public: &'static str, detail: String) -> Response {
        let resp = (status, public).into_response();
        let mut e = self.event(status.as_u16(), None);
        e.error_message = Some(detail);
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
                .then(|| event::redact_headers(&self.parts.headers, route.redact)),
            request_body: route.capture_body.then(|| event::capture(&self.body)),
            response_body: None,
            signature_valid: sig.map(|s| s.valid),
            signature_failure_reason: sig.and_then(|s| s.reason),
            error_message: None,
            metadata: (!metadata.is_empty()).then_some(metadata),
            source_url: Some(event::source_url(&self.parts.uri)),
            processing_status: None,
            processing_marked_at: None,
            processing_failure_reason: None,
            handler: route.handler,
            signature_hint: sig.and_then(|s| s.hint.clone()),
        }
    }

    /// The store keys of a delivery: the route's namespace and `key`, and for a natural key
    /// the signature does not cover, a second key from a digest of the signed body. Escaped
    /// components (`service:provider:route:key`), cut to [`crate::store::MAX_KEY_LEN`].
    fn store_keys(&self, key: String, origin: KeyOrigin) -> Vec<String> {
        let Ok(resolved) = self.route.resolved() else {
            return Vec::new();
        };
        let mut prefix = String::with_capacity(
            self.rt.service.len() + resolved.namespace.len() + key.len() + 80,
        );
        prefix.push_str(&self.rt.service);
        prefix.push(':');
        prefix.push_str(&resolved.namespace);
        if self.route.namespace_by_path {
            // A layer names no function: the endpoint it guards does.
            let path = self
                .parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map_or_else(|| self.parts.uri.path(), |m| m.as_str());
            prefix.push('@');
            push_escaped(&mut prefix, path);
        }
        prefix.push(':');
        let digest = (origin == KeyOrigin::Natural
            && self
                .route
                .provider
                .is_some_and(Provider::natural_key_is_unsigned))
        .then(|| {
            // The id header is not signed: a replay with a new id still has this body.
            let hex = crate::security::scheme::sha256_hex(&self.body);
            format!("{prefix}:{hex}")
        });
        let mut primary = prefix;
        push_escaped(&mut primary, &key);
        let fit = |k: String| match crate::store::fit_key(&k) {
            std::borrow::Cow::Borrowed(_) => k,
            std::borrow::Cow::Owned(f) => f,
        };
        std::iter::once(primary).chain(digest).map(fit).collect()
    }

    /// Reserves every key, in order; the first that is a duplicate or in flight decides, and
    /// the reservations already taken are given back.
    async fn reserve_all(&self, keys: Vec<String>, ttl: Duration) -> Reserved {
        let mut held = Lease::default();
        for key in keys {
            let answer = self.rt.store.reserve(&key, ttl).await;
            match answer {
                Ok(Reservation::New(token)) => held.keys.push((key, token)),
                other => {
                    // Best effort: a reservation left behind goes stale and is taken over.
                    if let Err(e) = held.release(&*self.rt.store).await {
                        tracing::warn!("releasing an idempotency reservation: {e}");
                    }
                    return match other {
                        Ok(Reservation::Duplicate(cached)) => Reserved::Duplicate(cached),
                        Err(e) => Reserved::Failed(e),
                        _ => Reserved::InFlight,
                    };
                }
            }
        }
        Reserved::Held(held)
    }

    /// Reserves the delivery's keys, runs `call` (the handler with its extractors) unless the
    /// delivery is a duplicate or in flight, and reports the outcome.
    ///
    /// A delivery whose signature did not verify (possible only with `reject_invalid =
    /// false`) never reserves a key and is never answered from the store: a forger can
    /// neither pre-empt the real event nor read its cached response.
    pub async fn finish<F, Fut>(
        mut self,
        key: Option<String>,
        origin: KeyOrigin,
        event_type: Option<String>,
        call: F,
    ) -> Response
    where
        F: FnOnce(Parts, Bytes) -> Fut,
        Fut: Future<Output = Response>,
    {
        let route = self.route;
        let valid = self.signature.as_ref().is_none_or(|s| s.valid);
        let mut extra = serde_json::Map::new();
        let ttl = clamp_ttl(route.ttl);
        let keys = match key {
            Some(k) if valid => self.store_keys(k, origin),
            _ => Vec::new(),
        };
        let mut lease = Lease::default();
        if !keys.is_empty() {
            match self.reserve_all(keys, ttl).await {
                Reserved::Held(held) => lease = held,
                Reserved::Duplicate(cached) => {
                    return self.flagged(replay(&cached), event_type, "duplicate", true.into());
                }
                Reserved::InFlight => {
                    let resp = (
                        StatusCode::CONFLICT,
                        [(header::RETRY_AFTER, "5")],
                        "this delivery is being processed; retry later",
                    )
                        .into_response();
                    return self.flagged(resp, event_type, "in_flight", true.into());
                }
                Reserved::Failed(err) if self.rt.fail_closed => {
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
                Reserved::Failed(err) => {
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
        let track = Track::for_delivery(valid);
        let mut parts = std::mem::replace(&mut self.parts, http::Request::new(()).into_parts().0);
        parts.extensions.insert(track.clone());
        let body = self.body.clone();
        let handler = AssertUnwindSafe(call(parts, body)).catch_unwind();
        let outcome = lease
            .renewing(&*self.rt.store, self.rt.store.renew_every(), handler)
            .await;

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

        if !lease.keys.is_empty() {
            let stored = if status.is_success() {
                let cached = CachedResponse {
                    status: status.as_u16(),
                    content_type: headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body: (resp_body.len() <= MAX_CACHED_BODY).then(|| resp_body.clone()),
                };
                lease.complete(&*self.rt.store, cached, ttl).await
            } else {
                lease.release(&*self.rt.store).await
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
        mark_event(&mut e, &mut extra, &track, route.require_processed, status);
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

/// What the handler's mark (or its absence) says about the event.
fn mark_event(
    e: &mut DeliveryEvent,
    extra: &mut serde_json::Map<String, serde_json::Value>,
    track: &Track,
    require_processed: bool,
    status: StatusCode,
) {
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
        None if require_processed && status.is_success() => {
            e.processing_status = Some(ProcessingStatus::SilentDrop);
        }
        None => {}
    }
}

/// How reserving a delivery's keys turned out.
enum Reserved {
    /// Every key is ours: run the handler.
    Held(Lease),
    /// A key was completed before: replay its response.
    Duplicate(CachedResponse),
    /// A key is held by a delivery being handled now.
    InFlight,
    /// The store could not answer.
    Failed(crate::store::StoreError),
}

/// The reservations a running delivery holds.
#[derive(Default)]
struct Lease {
    keys: Vec<(String, ReservationToken)>,
}

impl Lease {
    /// Runs `work` to its end, renewing the reservations every `every` (the store's
    /// [`Store::renew_every`]) meanwhile, so a handler slower than the stale time keeps its
    /// keys and a retry is not run beside it.
    async fn renewing<T>(
        &self,
        store: &dyn Store,
        every: Duration,
        work: impl Future<Output = T>,
    ) -> T {
        if self.keys.is_empty() {
            return work.await;
        }
        let renew = async {
            loop {
                tokio::time::sleep(every).await;
                for (key, token) in &self.keys {
                    if let Err(e) = store.renew(key, token).await {
                        tracing::warn!("renewing an idempotency reservation: {e}");
                    }
                }
            }
        };
        let (work, renew) = (std::pin::pin!(work), std::pin::pin!(renew));
        match futures_util::future::select(work, renew).await {
            futures_util::future::Either::Left((out, _)) => out,
            futures_util::future::Either::Right((never, _)) => match never {},
        }
    }

    async fn complete(
        &self,
        store: &dyn Store,
        cached: CachedResponse,
        ttl: Duration,
    ) -> Result<(), crate::store::StoreError> {
        let mut result = Ok(());
        for (key, token) in &self.keys {
            if let Err(e) = store.complete(key, token, cached.clone(), ttl).await {
                result = Err(e);
            }
        }
        result
    }

    async fn release(&self, store: &dyn Store) -> Result<(), crate::store::StoreError> {
        let mut result = Ok(());
        for (key, token) in &self.keys {
            if let Err(e) = store.release(key, token).await {
                result = Err(e);
            }
        }
        result
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
    use crate::store::RENEW_EVERY;

    #[test]
    fn key_components_are_escaped_so_they_never_run_into_each_other() {
        assert_eq!(escape_component("plain"), "plain");
        assert_eq!(escape_component("a:b%c"), "a%3Ab%25c");
        assert_ne!(
            format!("{}:{}", escape_component("a:b"), escape_component("c")),
            format!("{}:{}", escape_component("a"), escape_component("b:c"))
        );
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

    /// A store that counts renewals and answers everything else at once.
    #[derive(Default)]
    struct Renewals(std::sync::atomic::AtomicUsize);

    impl Store for Renewals {
        fn reserve<'a>(
            &'a self,
            _key: &'a str,
            _ttl: Duration,
        ) -> crate::store::BoxFuture<'a, Result<Reservation, crate::store::StoreError>> {
            Box::pin(async { Ok(Reservation::InFlight) })
        }
        fn complete<'a>(
            &'a self,
            _key: &'a str,
            _token: &'a ReservationToken,
            _response: CachedResponse,
            _ttl: Duration,
        ) -> crate::store::BoxFuture<'a, Result<(), crate::store::StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn release<'a>(
            &'a self,
            _key: &'a str,
            _token: &'a ReservationToken,
        ) -> crate::store::BoxFuture<'a, Result<(), crate::store::StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn renew<'a>(
            &'a self,
            _key: &'a str,
            _token: &'a ReservationToken,
        ) -> crate::store::BoxFuture<'a, Result<(), crate::store::StoreError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_are_renewed_while_a_slow_handler_runs() {
        let store = Renewals::default();
        let lease = Lease {
            keys: vec![
                ("a".into(), ReservationToken("t1".into())),
                ("b".into(), ReservationToken("t2".into())),
            ],
        };
        // 35 s: past the 30 s stale time. Renewed at 10, 20 and 30 s, both keys each time.
        let slow = async {
            tokio::time::sleep(Duration::from_secs(35)).await;
            "done"
        };
        assert_eq!(lease.renewing(&store, RENEW_EVERY, slow).await, "done");
        assert_eq!(store.0.load(std::sync::atomic::Ordering::Relaxed), 6);
        // A fast handler costs no renewal, and nothing is renewed after it returns.
        let fast = Renewals::default();
        assert_eq!(lease.renewing(&fast, RENEW_EVERY, async { 1 }).await, 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fast.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::RngSeed;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 512,
                rng_seed: RngSeed::Fixed(0x6f75_7477_6f72_7832),
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        proptest! {
            #![proptest_config(config())]

            /// Keys built from different components are different keys, whatever the
            /// components hold (`:` and `%` included).
            #[test]
            fn escaped_components_never_collide(
                a in "[a-z:%@/]{0,6}", b in "[a-z:%@/]{0,6}",
                c in "[a-z:%@/]{0,6}", d in "[a-z:%@/]{0,6}",
            ) {
                // Both separators: `:` between components, `@` between a layer and its path.
                for sep in [":", "@"] {
                    let key = |x: &str, y: &str| format!("{}{sep}{}", escape_component(x), escape_component(y));
                    prop_assert_eq!(key(&a, &b) == key(&c, &d), a == c && b == d);
                }
            }

            /// Any value a key expression yields becomes a key of bounded size in every store.
            #[test]
            fn keys_of_any_length_fit_the_stores(k in ".{0,2000}") {
                let fitted = crate::store::fit_key(&k);
                prop_assert!(fitted.len() <= crate::store::MAX_KEY_LEN);
                prop_assert_eq!(fitted.len() < k.len(), k.len() > crate::store::MAX_KEY_LEN);
            }
        }
    }
}
