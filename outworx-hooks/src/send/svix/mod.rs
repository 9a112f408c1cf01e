//! The Svix v1 API over the outbox: every client Svix publishes (Python, JavaScript, Go,
//! Java, the Terraform provider, `svix-react`) can send through an [`Emitter`].
//!
//! [`SvixApi::router`] answers the routes of Svix's open-source server under `/api/v1`,
//! with its request and response shapes, status codes, errors (`{"code", "detail"}`, and
//! 422 `{"detail": [{"loc", "msg", "type"}]}`), cursor pagination (`iterator`,
//! `prevIterator`, `done`) and `idempotency-key` header, and CORS for browsers. An application (`app_...`) is an
//! owner of endpoints and messages, in the namespace its bearer token maps to: two
//! namespaces may each have an application `acme`, and never see each other's.
//! `docs/svix.md` lists every route and what differs from Svix.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use outworx_hooks::send::{Emitter, Outbox, svix::SvixApi};
//!
//! let emitter = Emitter::builder(Outbox::memory().await?).build();
//! let app: axum::Router = SvixApi::new(emitter)
//!     .token("sk_test_0123456789", "acme-corp") // the bearer token, and its namespace
//!     .router();
//! # Ok::<(), outworx_hooks::send::SendError>(())
//! # }).unwrap();
//! ```

mod handlers;
mod idempotency;
mod page;
mod portal;
pub(crate) mod store;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use serde_json::json;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use super::{Emitter, Format, SendError};

/// The largest payload Svix accepts (1 MiB): give the API's [`Emitter`] this
/// [`max_payload`](crate::send::EmitterBuilder::max_payload) to accept what Svix does.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The largest request body: a [`MAX_PAYLOAD`] payload and its envelope.
pub const MAX_BODY: usize = MAX_PAYLOAD + 64 * 1024;
/// How long a 2xx answer to a POST with an `idempotency-key` is replayed (as Svix: 12 h).
pub const IDEMPOTENCY_TTL: Duration = idempotency::TTL;
/// How long a request waits for the same key's request in flight before it is refused.
const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(5);

/// Maps a bearer token to its namespace, or refuses it.
type Authorize = dyn Fn(&str) -> Option<String> + Send + Sync;
/// A namespace's key for its app-scoped (portal) tokens.
type PortalKey = dyn Fn(&str) -> Option<[u8; 32]> + Send + Sync;

pub use portal::DEFAULT_LIFETIME_SECS as PORTAL_TOKEN_LIFETIME_SECS;

/// The Svix-compatible API over an [`Emitter`]: build it, then mount [`SvixApi::router`].
#[derive(Clone)]
pub struct SvixApi {
    emitter: Emitter,
    authorize: Arc<Authorize>,
    format: Format,
    portal_key: Option<Arc<PortalKey>>,
    portal_url: Option<String>,
    frame_ancestors: Vec<String>,
}

impl fmt::Debug for SvixApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvixApi")
            .field("emitter", &self.emitter)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl SvixApi {
    /// The API over `emitter`, refusing every token until [`SvixApi::token`] or
    /// [`SvixApi::authorize`] accepts some. Its endpoints are sent [`Format::Svix`] (the
    /// payload as the body, `webhook-*` headers).
    pub fn new(emitter: Emitter) -> Self {
        SvixApi {
            emitter,
            authorize: Arc::new(|_| None),
            format: Format::Svix,
            portal_key: None,
            portal_url: None,
            frame_ancestors: Vec::new(),
        }
    }

    /// Issues app-scoped tokens (`POST /auth/app-portal-access/{app}`, `{url, token}`) signed
    /// with each namespace's `key` (`None`: the namespace issues none, and every token it
    /// issued is refused from then on), and accepts them on the routes of their application:
    /// what a subscriber portal (ours at `/portal/`, or `svix-react`) calls the API with.
    /// Without it, that route answers 501.
    pub fn portal_tokens(
        mut self,
        key: impl Fn(&str) -> Option<[u8; 32]> + Send + Sync + 'static,
    ) -> Self {
        self.portal_key = Some(Arc::new(key));
        self
    }

    /// Origins that may embed the portal page in an `<iframe>` (`https://app.example.com`);
    /// none by default. An origin that is not `scheme://host[:port]` is refused.
    pub fn portal_frame_ancestors(
        mut self,
        origins: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, SendError> {
        for o in origins {
            let o: String = o.into();
            // https, or http for this machine only (a local development page).
            let ok = o.split_once("://").is_some_and(|(scheme, rest)| {
                let host = rest
                    .rsplit_once(':')
                    .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                    .map_or(rest, |(h, _)| h);
                let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
                (scheme == "https" || (scheme == "http" && local))
                    && !rest.is_empty()
                    && rest.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            });
            if !ok {
                return Err(SendError::invalid(
                    "frame_ancestors",
                    format!(
                        "`{}` is not an https origin (scheme://host[:port]; http only for localhost)",
                        o.escape_debug()
                    ),
                ));
            }
            self.frame_ancestors.push(o);
        }
        Ok(self)
    }

    /// The portal page a token opens (`{url}#token=..`); by default `/portal/` on the host the
    /// request came to.
    pub fn portal_url(mut self, url: impl Into<String>) -> Self {
        self.portal_url = Some(url.into());
        self
    }

    /// Accepts `token` (compared in constant time) for `namespace`, beside the tokens
    /// accepted before. Tokens starting with `opt_` are the portal's (app-scoped, see
    /// [`SvixApi::portal_tokens`]): a namespace's own token may not start so.
    pub fn token(self, token: impl Into<String>, namespace: impl Into<String>) -> Self {
        let (token, namespace) = (token.into(), namespace.into());
        let before = Arc::clone(&self.authorize);
        self.authorize(move |given| {
            if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                Some(namespace.clone())
            } else {
                before(given)
            }
        })
    }

    /// Maps each bearer token to its namespace (`None` refuses it with 401): for tokens
    /// kept elsewhere, such as `outworx serve`'s API keys.
    pub fn authorize(
        mut self,
        authorize: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Arc::new(authorize);
        self
    }

    /// Sends the endpoints this API creates with Svix's header names (`svix-id`,
    /// `svix-timestamp`, `svix-signature`: [`Format::SvixHeaders`]) instead of Standard
    /// Webhooks' (`webhook-*`), for receivers that read only those. Svix's own
    /// `Webhook.verify` accepts either.
    pub fn svix_header_names(mut self, on: bool) -> Self {
        self.format = if on {
            Format::SvixHeaders
        } else {
            Format::Svix
        };
        self
    }

    /// The routes, under `/api/v1`, for a router of any state: merge it at the root
    /// (`Router::merge`).
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let api = Arc::new(Api {
            emitter: self.emitter,
            authorize: self.authorize,
            format: self.format,
            portal_key: self.portal_key,
            portal_url: self.portal_url,
            idempotency: Arc::new(idempotency::Idempotency::default()),
        });
        let api_routes = handlers::routes()
            .fallback(|| async { SvixError::not_found() })
            .method_not_allowed_fallback(|| async {
                SvixError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "Method not allowed",
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&api),
                idempotent,
            ))
            .layer(axum::middleware::from_fn(cors))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(api);
        let csp = portal_csp(&self.frame_ancestors);
        Router::new()
            .nest("/api/v1", api_routes)
            .merge(page::routes(csp, self.frame_ancestors.is_empty()))
    }
}

/// The portal page's policy: its own script, style and API, nothing else; framed only by the
/// origins given.
fn portal_csp(frame_ancestors: &[String]) -> String {
    let ancestors = if frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )
}

/// What every handler shares.
pub(crate) struct Api {
    pub(crate) emitter: Emitter,
    authorize: Arc<Authorize>,
    pub(crate) format: Format,
    pub(crate) portal_key: Option<Arc<PortalKey>>,
    pub(crate) portal_url: Option<String>,
    idempotency: Arc<idempotency::Idempotency>,
}

pub(crate) type Shared = State<Arc<Api>>;

/// The namespace of the request's bearer token; 401 before anything else runs without one.
/// An app-scoped (portal) token is let through only to its own application's routes (404
/// for another's, as a missing one), never to a namespace-wide one (403), and, read-only, only
/// to reads (403).
pub(crate) struct Namespace(pub(crate) String);

impl FromRequestParts<Arc<Api>> for Namespace {
    type Rejection = SvixError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, SvixError> {
        let unauthorized = || {
            SvixError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_failed",
                "Invalid token",
            )
        };
        let token = bearer(&parts.headers).ok_or_else(unauthorized)?;
        if !portal::is_portal_token(token) {
            return (api.authorize)(token)
                .map(Namespace)
                .ok_or_else(unauthorized);
        }
        let key = api.portal_key.as_ref().ok_or_else(unauthorized)?;
        let claims =
            portal::verify(token, api.emitter.now(), |ns| key(ns)).ok_or_else(unauthorized)?;
        app_scoped(parts, api, &claims).await?;
        let ns = claims.ns.clone();
        parts.extensions.insert(AppScope(Arc::new(claims)));
        Ok(Namespace(ns))
    }
}

/// The claims of the request's app-scoped token (absent for a namespace's own token).
#[derive(Clone)]
pub(crate) struct AppScope(pub(crate) Arc<portal::Claims>);

/// Marks an answer that holds a secret: the idempotency cache does not keep it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoStore;

/// Who may call a route, declared where it is registered: an app-scoped token is let
/// through only where its route says so, and nowhere a route says nothing (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Any token, or none (health).
    Public,
    /// An app token for the application in the path: reads, and writes unless read-only.
    App,
    /// An app token for the application in the path: reads only (its writes are the
    /// namespace's: application changes, message create).
    AppRead,
    /// An app token reads (event types, for the portal's picker); writes are the namespace's.
    ReadAll,
    /// The namespace's own tokens only.
    Namespace,
}

/// Whether an app-scoped token may make this request (see [`Namespace`] and [`Access`]), and
/// whether its application still takes it (not deleted, its tokens not expired since).
async fn app_scoped(
    parts: &mut Parts,
    api: &Api,
    claims: &portal::Claims,
) -> Result<(), SvixError> {
    let denied = || {
        SvixError::new(
            StatusCode::FORBIDDEN,
            "insufficient access",
            "Insufficient access for the given operation.",
        )
    };
    let read = matches!(parts.method, Method::GET | Method::HEAD);
    let access = parts
        .extensions
        .get::<Access>()
        .copied()
        .unwrap_or(Access::Namespace);
    let allowed = match access {
        Access::Public => return Ok(()),
        Access::App => read || !claims.ro,
        Access::AppRead | Access::ReadAll => read,
        Access::Namespace => false,
    };
    if !allowed {
        return Err(denied());
    }
    // Its application, still there and still taking tokens issued when this one was.
    let app = handlers::app_row(api, &claims.ns, &claims.app)
        .await?
        .filter(|a| a.tokens_after.is_none_or(|t| claims.iat > t))
        .ok_or_else(|| {
            SvixError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_failed",
                "Invalid token",
            )
        })?;
    if access == Access::ReadAll {
        return Ok(());
    }
    let params = axum::extract::RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| SvixError::not_found())?;
    let Some((_, named)) = params.iter().find(|(k, _)| *k == "app") else {
        return Err(denied());
    };
    // By id, or by its uid; another application is a 404, as a missing one.
    if named == app.id || app.uid.as_deref() == Some(named) {
        Ok(())
    } else {
        Err(SvixError::not_found())
    }
}

/// The namespace a token belongs to, without any route's checks (the idempotency cache's
/// key): a namespace's own token, or a valid app-scoped one.
fn namespace_of(api: &Api, token: &str) -> Option<String> {
    if portal::is_portal_token(token) {
        let key = api.portal_key.as_ref()?;
        return portal::verify(token, api.emitter.now(), |ns| key(ns)).map(|c| c.ns);
    }
    (api.authorize)(token)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// An answer in Svix's error shapes.
#[derive(Debug)]
pub(crate) enum SvixError {
    /// `{"code", "detail"}` with its status.
    Http {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
    /// 422 `{"detail": [{"loc", "msg", "type"}]}`.
    Validation {
        loc: Vec<String>,
        msg: String,
        kind: &'static str,
    },
}

impl SvixError {
    pub(crate) fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        SvixError::Http {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub(crate) fn not_found() -> Self {
        SvixError::new(StatusCode::NOT_FOUND, "not_found", "Entity not found")
    }

    pub(crate) fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        SvixError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub(crate) fn conflict() -> Self {
        SvixError::new(StatusCode::CONFLICT, "conflict", "A conflict has occurred")
    }

    /// A 422 on `loc` (`["body", "url"]`), of Svix's type `value_error`.
    pub(crate) fn invalid(loc: &[&str], msg: impl Into<String>) -> Self {
        SvixError::Validation {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind: "value_error",
        }
    }
}

impl From<SendError> for SvixError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Invalid { field, reason } => SvixError::Validation {
                loc: vec!["body".into(), wire::camel(field)],
                msg: reason,
                kind: "value_error",
            },
            e @ SendError::Target(_) => SvixError::Validation {
                loc: vec!["body".into(), "url".into()],
                msg: e.to_string(),
                kind: "value_error",
            },
            SendError::TooLarge { .. } => SvixError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request payload is too large.",
            ),
            SendError::NotFound => SvixError::not_found(),
            SendError::Conflict => SvixError::conflict(),
            SendError::Forbidden(why) => {
                SvixError::new(StatusCode::FORBIDDEN, "insufficient access", why)
            }
            e @ SendError::RateLimited { .. } => {
                SvixError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            }
            e => {
                // The outbox's failure: logged (never a secret: SendError carries none), and
                // a 5xx every Svix client retries.
                tracing::error!(error = %e, "the Svix API's outbox failed");
                SvixError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "Internal Server Error",
                )
            }
        }
    }
}

impl IntoResponse for SvixError {
    fn into_response(self) -> Response {
        match self {
            SvixError::Http {
                status,
                code,
                detail,
            } => (
                status,
                axum::Json(json!({ "code": code, "detail": detail })),
            )
                .into_response(),
            SvixError::Validation { loc, msg, kind } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({ "detail": [{ "loc": loc, "msg": msg, "type": kind }] })),
            )
                .into_response(),
        }
    }
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes (413 past it, in Svix's shape), whatever
/// its content type, as Svix does; unknown fields are ignored.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, SvixError> {
    let bytes = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            SvixError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request payload is too large.",
            )
        })?
        .to_bytes();
    parse_json(&bytes)
}

/// Parses a JSON body: a 422 of type `value_error.jsondecode` naming where it failed.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, SvixError> {
    serde_json::from_slice(bytes).map_err(|e| SvixError::Validation {
        loc: vec!["body".into()],
        msg: e.to_string(),
        kind: "value_error.jsondecode",
    })
}

/// A JSON answer with its status.
pub(crate) fn answer(status: StatusCode, body: impl serde::Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// CORS as Svix answers it: any origin, any method, the headers the browser asks for
/// (`svix-react` calls this API from the subscriber's browser, with a bearer token and no
/// cookie, so no origin gains anything a token does not already give).
async fn cors(req: Request, next: Next) -> Response {
    if req.headers().get(header::ORIGIN).is_none() {
        return next.run(req).await;
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let asked = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned();
    let mut res = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
        );
        if let Some(asked) = asked {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    res
}

/// Replays the first 2xx answer to a POST with an `idempotency-key`, per token, key and URL
/// ([`idempotency`]); a request without a key, or without a known token, passes through.
async fn idempotent(State(api): Shared, req: Request, next: Next) -> Response {
    let found = (req.method() == Method::POST)
        .then(|| {
            let token = req.headers().get(header::AUTHORIZATION)?;
            let namespace = namespace_of(&api, bearer(req.headers())?)?;
            let key = req.headers().get("idempotency-key")?;
            let mut h = sha2::Sha256::new();
            for part in [
                token.as_bytes(),
                key.as_bytes(),
                req.uri().to_string().as_bytes(),
            ] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
            Some((namespace, <[u8; 32]>::from(h.finalize())))
        })
        .flatten();
    let Some((namespace, key)) = found else {
        return next.run(req).await;
    };
    let deadline = Instant::now() + IDEMPOTENCY_WAIT;
    let guard = loop {
        match api.idempotency.begin(&namespace, key) {
            idempotency::Begin::Replay(status, body) => {
                let mut r = (status, body).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return r;
            }
            idempotency::Begin::Run(guard) => break guard,
            idempotency::Begin::Wait(done) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return SvixError::new(
                        StatusCode::CONFLICT,
                        "conflict",
                        "A request with this idempotency-key is still running",
                    )
                    .into_response();
                }
                let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), done.notified())
                    .await;
            }
        }
    };
    // The guard releases the key if this request is dropped before it answers.
    let response = next.run(req).await;
    let (parts, body) = response.into_parts();
    let status = parts.status;
    if !status.is_success() || parts.extensions.get::<NoStore>().is_some() {
        guard.finish(None);
        return Response::from_parts(parts, body);
    }
    match http_body_util::Limited::new(body, idempotency::MAX_ANSWER)
        .collect()
        .await
    {
        Ok(b) => {
            let b = b.to_bytes();
            guard.finish(Some((status, b.clone())));
            Response::from_parts(parts, Body::from(b))
        }
        Err(_) => {
            guard.finish(None);
            SvixError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal Server Error",
            )
            .into_response()
        }
    }
}

/// The query string's pairs, in order (unknown names are ignored by the handlers, as Svix
/// does). A `+` stays a `+` (a time's offset sent unencoded).
pub(crate) fn query(parts_query: Option<&str>) -> Vec<(String, String)> {
    let q = parts_query.unwrap_or("").replace('+', "%2B");
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
