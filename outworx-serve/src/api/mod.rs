//! The HTTP API, exactly as the SDKs and CLIs call it.
//!
//! Here are the shared state, the router, the split of hosts ([`origins`]) and the helpers
//! every handler answers with; the handlers live by concern:
//!
//! - [`auth`]: the API key of a request as its project, and `POST /api/sdk/verify`;
//! - [`ingest`]: event validation and `POST /api/ingest`;
//! - [`idempotency`]: `POST /api/sdk/idempotency/check` and `/complete`;
//! - [`forward`]: the tunnel sessions, their polls and responses, and the public ingress;
//! - [`query`]: `GET /api/events`, `GET /api/stats` and `GET /api/stats/series`;
//! - [`ops`]: `/api/outbound/...` and `/api/inbox/...`, the attached outbox and inbox.
//!
//! Every handler answers `Result<_, ApiError>`: a helper or an extractor that refuses a
//! request returns the [`ApiError`] it is answered with, and the handler passes it on with `?`.

mod auth;
mod forward;
mod idempotency;
mod ingest;
mod ops;
mod query;

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::ServeConfig;
use crate::db::Db;
use crate::tunnel::Tunnels;
use auth::verify;
use forward::{close_session, create_session, forward_status, ingress, poll, respond};
use idempotency::{check, complete};
use ingest::ingest;
use query::{events, series, stats};

pub(crate) use auth::project_id;
pub(crate) use forward::DEFAULT_POLL_WAIT;
#[cfg(test)]
pub(crate) use ingest::{MAX_EVENT_BYTES, validate};

/// Shared state of the handlers.
pub(crate) struct App {
    pub(crate) db: Db,
    pub(crate) config: ServeConfig,
    pub(crate) tunnels: Tunnels,
    /// The authority (`host[:port]`) of `config.tunnel_url`, when set.
    pub(crate) tunnel_host: Option<String>,
}

/// The router of `outworx serve`.
pub(crate) fn router(app: Arc<App>) -> Router {
    let max_body = app.config.max_body;
    Router::new()
        .route("/api/ingest", post(ingest))
        .route("/api/sdk/verify", post(verify))
        .route("/api/sdk/idempotency/check", post(check))
        .route("/api/sdk/idempotency/complete", post(complete))
        .route("/api/forward/sessions", post(create_session))
        .route("/api/forward/sessions/{id}", delete(close_session))
        .route("/api/forward/poll", get(poll))
        .route("/api/forward/responses", post(respond))
        .route("/api/forward/status", get(forward_status))
        .route("/api/events", get(events))
        .route("/api/stats", get(stats))
        .route("/api/stats/series", get(series))
        .route("/api/outbound", get(ops::overview))
        .route("/api/outbound/messages", get(ops::messages))
        .route("/api/outbound/messages/{id}", get(ops::message))
        .route(
            "/api/outbound/messages/{id}/replay",
            post(ops::replay_message),
        )
        .route(
            "/api/outbound/endpoints/{id}/replay",
            post(ops::replay_endpoint),
        )
        .route("/api/outbound/endpoints/{id}/rotate", post(ops::rotate))
        .route(
            "/api/outbound/endpoints/{id}/{action}",
            post(ops::set_enabled),
        )
        .route("/api/inbox", get(ops::inbox_list))
        .route("/api/inbox/replay", post(ops::inbox_replay_dead))
        .route("/api/inbox/{id}", get(ops::inbox_entry))
        .route("/api/inbox/{id}/replay", post(ops::inbox_replay_one))
        .route("/healthz", get(|| async { "ok" }))
        // Prometheus: the ingest, idempotency and tunnel counters (no project data).
        .merge(outworx_hooks::metrics::router().with_state(()))
        .merge(crate::dashboard::routes())
        .merge(svix(&app))
        // The ingress reads its own body, against the relay's budgets.
        .route("/t/{slug}", any(ingress))
        .route("/t/{slug}/{*rest}", any(ingress))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(app.clone(), origins))
        .with_state(app)
}

/// The Svix v1 API over the configured outbox, with the serve API keys as its tokens: each
/// key's project is its namespace. Nothing when none is configured.
fn svix(app: &Arc<App>) -> Router<Arc<App>> {
    let Some(svix) = &app.config.svix else {
        return Router::new();
    };
    let keys = app.config.api_keys.clone();
    let only = svix.only.clone();
    // Each project's portal tokens are signed with a key derived from its API key: removing
    // the key from the configuration revokes every token it issued.
    let portal_keys: Vec<(String, [u8; 32])> = keys
        .iter()
        .map(|k| (project_id(k), portal_key(k)))
        .filter(|(p, _)| only.as_ref().is_none_or(|o| o == p))
        .collect();
    let mut api = outworx_hooks::send::svix::SvixApi::new(svix.emitter.clone())
        .svix_header_names(svix.svix_header_names)
        .portal_tokens(move |ns| portal_keys.iter().find(|(p, _)| p == ns).map(|(_, k)| *k))
        .authorize(move |given| {
            let known = keys.iter().fold(false, |hit, k| {
                hit | bool::from(subtle::ConstantTimeEq::ct_eq(
                    k.as_bytes(),
                    given.as_bytes(),
                ))
            });
            let project = known.then(|| project_id(given))?;
            only.as_ref()
                .is_none_or(|o| *o == project)
                .then_some(project)
        });
    if let Some(public) = &app.config.public_url {
        api = api.portal_url(format!("{}/portal/", public.trim_end_matches('/')));
    }
    // Checked by `ServeConfig::check` at start; an origin refused here was refused there.
    let framed = api
        .clone()
        .portal_frame_ancestors(svix.frame_ancestors.iter().cloned());
    framed.unwrap_or(api).router()
}

/// The key a project's portal tokens are signed with: an HMAC of a fixed label under its API
/// key (a token reveals nothing of the key itself).
fn portal_key(api_key: &str) -> [u8; 32] {
    use hmac::Mac as _;
    let mut m =
        <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(api_key.as_bytes())
            .unwrap_or_else(|_| {
                <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new(&Default::default())
            });
    m.update(b"outworx portal tokens v1");
    m.finalize().into_bytes().into()
}

/// Keeps the tunnel ingress and the dashboard on separate origins when `tunnel_url` is set:
/// on the tunnel's host only `/t/...` is served, and `/t/...` only there. A page a tunnel
/// owner serves can then never share an origin with the dashboard where others type keys.
async fn origins(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(tunnel_host) = &app.tunnel_host {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(crate::normal_host)
            .unwrap_or_default();
        let on_tunnel_host = host == *tunnel_host;
        let is_ingress = req.uri().path().starts_with("/t/");
        if on_tunnel_host != is_ingress {
            return error(StatusCode::NOT_FOUND, "not found on this host");
        }
    }
    next.run(req).await
}

/// An error answer: `{"error": reason}` with its status. Every handler's error and every
/// extractor's rejection.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    reason: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, reason)
    }

    pub(crate) fn not_found(reason: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.reason }))).into_response()
    }
}

/// The server's own database failed: logged, and a 503 the client retries.
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        tracing::error!("{e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; retry later",
        )
    }
}

/// An error answer as a response, for the middleware and the relay.
fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    ApiError::new(status, reason).into_response()
}

/// Parses a JSON body into `T`, answering 400 with serde's reason otherwise.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The query string as `T`, parsed strictly: an unknown parameter is a 400, not silently
/// ignored (`T` says `#[serde(deny_unknown_fields)]`).
pub(super) struct StrictQuery<T>(pub(super) T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        strict_query(parts.uri.query().unwrap_or("")).map(StrictQuery)
    }
}

/// Parses the query string strictly (unknown parameters are a 400, not silently ignored).
fn strict_query<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    let pairs: serde_json::Map<String, Value> = form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| {
            let v = match k.as_ref() {
                "status" | "limit" | "before_id" => v
                    .parse::<i64>()
                    .map_or(Value::String(v.into_owned()), Value::from),
                "signature_valid" => v
                    .parse::<bool>()
                    .map_or(Value::String(v.into_owned()), Value::from),
                _ => Value::String(v.into_owned()),
            };
            (k.into_owned(), v)
        })
        .collect();
    serde_json::from_value(Value::Object(pairs))
        .map_err(|e| ApiError::bad_request(format!("bad query: {e}")))
}
