//! The HTTP API, exactly as the SDKs and CLIs call it.
// Helpers return the ready error `Response` to the handler, which answers with it: the error
// path builds it once, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use crate::ServeConfig;
use crate::db::{Check, Db, EventFilter};
use crate::tunnel::{HeldRequest, LocalResponse, TunnelError, Tunnels};

/// Shared state of the handlers.
pub(crate) struct App {
    pub(crate) db: Db,
    pub(crate) config: ServeConfig,
    pub(crate) tunnels: Tunnels,
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
        .route("/api/events", get(events))
        .route("/api/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::dashboard::routes())
        .route("/t/{slug}", any(ingress_root))
        .route("/t/{slug}/{*rest}", any(ingress))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// An error answer: `{"error": reason}` with its status.
fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": reason.into() }))).into_response()
}

fn db_error(e: crate::db::DbError) -> Response {
    tracing::error!("{e}");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; retry later",
    )
}

/// The project of a request: a stable, non-secret id of its API key. As an extractor it
/// answers 401 without a known key, before the handler runs.
struct Project(String);

impl axum::extract::FromRequestParts<Arc<App>> for Project {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Response> {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "missing Authorization: Bearer <api key>",
                )
            })?;
        let known = app.config.api_keys.iter().fold(false, |hit, k| {
            hit | bool::from(k.as_bytes().ct_eq(given.as_bytes()))
        });
        if !known {
            return Err(error(StatusCode::UNAUTHORIZED, "unknown API key"));
        }
        Ok(Project(project_id(given)))
    }
}

/// A stable, non-secret id for an API key (events and keys are scoped by it).
pub(crate) fn project_id(api_key: &str) -> String {
    hex::encode(&sha2::Sha256::digest(api_key.as_bytes())[..8])
}

/// Parses a JSON body into `T`, answering 400 with serde's reason otherwise.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

async fn verify(Project(project): Project) -> Response {
    Json(json!({ "ok": true, "project": project })).into_response()
}

/// The fields an event may carry (DESIGN's wire format).
const EVENT_FIELDS: &[&str] = &[
    "provider",
    "status_code",
    "success",
    "duration_ms",
    "payload_size",
    "timestamp",
    "event_type",
    "request_headers",
    "request_body",
    "response_body",
    "signature_valid",
    "signature_failure_reason",
    "error_message",
    "metadata",
    "source_url",
    "processing_status",
    "processing_marked_at",
    "processing_failure_reason",
];

/// Checks one event; its timestamp in milliseconds since 1970, or why it is refused.
pub(crate) fn validate(e: &Value) -> Result<i64, String> {
    let obj = e.as_object().ok_or("an event must be a JSON object")?;
    if let Some(unknown) = obj.keys().find(|k| !EVENT_FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field `{unknown}`"));
    }
    let need = |k: &str| {
        obj.get(k)
            .filter(|v| !v.is_null())
            .ok_or(format!("missing field `{k}`"))
    };
    let string = |k: &str| -> Result<(), String> {
        match obj.get(k) {
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    };
    if need("provider")?.as_str().is_none_or(str::is_empty) {
        return Err("`provider` must be a non-empty string".into());
    }
    if !need("status_code")?
        .as_u64()
        .is_some_and(|s| (100..=599).contains(&s))
    {
        return Err("`status_code` must be an HTTP status (100..=599)".into());
    }
    if !need("success")?.is_boolean() {
        return Err("`success` must be a boolean".into());
    }
    for k in ["duration_ms", "payload_size"] {
        if !need(k)?.is_u64() {
            return Err(format!("`{k}` must be a non-negative integer"));
        }
    }
    let ts = need("timestamp")?
        .as_str()
        .ok_or("`timestamp` must be a string")?;
    let at = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`timestamp` is not RFC 3339: {ts:?}"))?;
    for k in [
        "event_type",
        "signature_failure_reason",
        "error_message",
        "source_url",
        "processing_status",
        "processing_marked_at",
        "processing_failure_reason",
    ] {
        string(k)?;
    }
    if let Some(p) = obj.get("processing_status").and_then(Value::as_str)
        && !["completed", "failed", "silent_drop"].contains(&p)
    {
        return Err(format!("unknown `processing_status` {p:?}"));
    }
    match obj.get("signature_valid") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => return Err("`signature_valid` must be a boolean".into()),
    }
    for k in ["request_headers", "metadata"] {
        match obj.get(k) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => return Err(format!("`{k}` must be an object")),
        }
    }
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| "`timestamp` out of range".into())
}

async fn ingest(State(app): State<Arc<App>>, Project(project): Project, body: Bytes) -> Response {
    let batch: Value = match parse(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(events) = batch.get("events").and_then(Value::as_array) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be {\"events\": [...]}",
        );
    };
    if events.len() > app.config.max_batch {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} events in one batch; at most {}",
                events.len(),
                app.config.max_batch
            ),
        );
    }
    let mut valid = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for (index, e) in events.iter().enumerate() {
        match validate(e) {
            Ok(at) => valid.push((at, e.clone())),
            Err(reason) => rejected.push(json!({ "index": index, "reason": reason })),
        }
    }
    if let Err(e) = app.db.insert_events(&project, &valid).await {
        return db_error(e);
    }
    let answer = json!({ "accepted": valid.len(), "rejected": rejected });
    if rejected.is_empty() {
        Json(answer).into_response()
    } else {
        // The valid ones are stored; a retry of the batch would duplicate them.
        (StatusCode::UNPROCESSABLE_ENTITY, Json(answer)).into_response()
    }
}

#[derive(serde::Deserialize)]
struct CheckRequest {
    key: String,
    ttl: Option<i64>,
    token: Option<String>,
}

/// Default and bounds of an idempotency key's TTL, seconds (as the SDKs clamp it).
const DEFAULT_TTL: i64 = 86_400;

async fn check(State(app): State<Arc<App>>, Project(project): Project, body: Bytes) -> Response {
    let req: CheckRequest = match parse(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if req.key.is_empty() || req.key.len() > 512 {
        return error(StatusCode::BAD_REQUEST, "`key` must be 1..=512 bytes");
    }
    let ttl = req.ttl.unwrap_or(DEFAULT_TTL).clamp(60, 7 * 86_400);
    match app
        .db
        .check(&project, &req.key, req.token.as_deref(), ttl * 1000)
        .await
    {
        Ok(Check::New) => Json(json!({ "status": "new" })).into_response(),
        // The Python package reads any non-"new" as a duplicate; ours reads a duplicate
        // without a cached status as in flight.
        Ok(Check::InFlight) => {
            Json(json!({ "status": "duplicate", "in_flight": true })).into_response()
        }
        Ok(Check::Duplicate {
            status,
            content_type,
            body,
        }) => Json(json!({
            "status": "duplicate",
            "cached_status_code": status,
            "cached_body": body,
            "cached_content_type": content_type,
        }))
        .into_response(),
        Err(e) => db_error(e),
    }
}

#[derive(serde::Deserialize)]
struct CompleteRequest {
    key: String,
    response_status_code: Option<i64>,
    response_body: Option<String>,
    content_type: Option<String>,
    token: Option<String>,
    #[serde(default)]
    release: bool,
}

async fn complete(State(app): State<Arc<App>>, Project(project): Project, body: Bytes) -> Response {
    let req: CompleteRequest = match parse(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let token = req.token.as_deref();
    let done = if req.release {
        app.db.release(&project, &req.key, token).await
    } else {
        let Some(status) = req.response_status_code.filter(|s| (100..=599).contains(s)) else {
            return error(
                StatusCode::BAD_REQUEST,
                "`response_status_code` must be an HTTP status",
            );
        };
        app.db
            .complete(
                &project,
                &req.key,
                token,
                status,
                req.content_type.as_deref(),
                req.response_body.as_deref(),
            )
            .await
    };
    match done {
        Ok(changed) => Json(json!({ "ok": true, "changed": changed })).into_response(),
        Err(e) => db_error(e),
    }
}

#[derive(serde::Deserialize)]
struct SessionRequest {
    destination_url: Option<String>,
}

async fn create_session(
    State(app): State<Arc<App>>,
    Project(project): Project,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: SessionRequest = if body.is_empty() {
        SessionRequest {
            destination_url: None,
        }
    } else {
        match parse(&body) {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
    let s = app.tunnels.create(&project, app.config.session_ttl);
    let base = public_base(&app.config, &headers);
    let expires =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(s.expires_at) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    tracing::info!(session = %s.id, destination = req.destination_url.as_deref().unwrap_or(""), "tunnel opened");
    Json(json!({
        "sessionId": s.id,
        "ingressUrl": format!("{base}/t/{}", s.slug),
        "expiresAt": expires,
    }))
    .into_response()
}

/// The public base URL: `--public-url`, else what the caller reached us at.
fn public_base(config: &ServeConfig, headers: &HeaderMap) -> String {
    if let Some(u) = &config.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn close_session(
    State(app): State<Arc<App>>,
    Project(project): Project,
    Path(id): Path<String>,
) -> Response {
    match app.tunnels.close(&project, &id) {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct PollQuery {
    session: String,
}

async fn poll(
    State(app): State<Arc<App>>,
    Project(project): Project,
    Query(q): Query<PollQuery>,
) -> Response {
    match app
        .tunnels
        .poll(&project, &q.session, app.config.poll_wait)
        .await
    {
        Ok(events) => Json(json!({ "events": events })).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn respond(State(app): State<Arc<App>>, _: Project, body: Bytes) -> Response {
    let resp: LocalResponse = match parse(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if app.tunnels.respond(resp) {
        Json(json!({ "ok": true })).into_response()
    } else {
        error(
            StatusCode::GONE,
            "no public request waits for this event (it timed out or was answered)",
        )
    }
}

async fn ingress_root(
    State(app): State<Arc<App>>,
    Path(slug): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    relay(&app, &slug, "/".into(), method, uri, headers, body).await
}

async fn ingress(
    State(app): State<Arc<App>>,
    Path((slug, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    relay(&app, &slug, format!("/{rest}"), method, uri, headers, body).await
}

/// Holds a public request until the CLI reports the local response (504 after the hold).
async fn relay(
    app: &App,
    slug: &str,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut request_headers: HashMap<String, String> = HashMap::new();
    for (name, value) in &headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        request_headers
            .entry(name.as_str().to_owned())
            .and_modify(|prev| {
                prev.push_str(", ");
                prev.push_str(&v);
            })
            .or_insert(v);
    }
    let utf8 = std::str::from_utf8(&body).ok();
    let held = app.tunnels.hold(slug, |id| HeldRequest {
        id,
        method: method.to_string(),
        path,
        query_string: uri.query().map(str::to_owned),
        request_headers,
        request_body: utf8.map_or_else(
            || String::from_utf8_lossy(&body).into_owned(),
            str::to_owned,
        ),
        request_body_base64: utf8
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(&body)),
    });
    let (event_id, rx) = match held {
        Ok(h) => h,
        Err(TunnelError::NoSession) => return error(StatusCode::NOT_FOUND, "no such tunnel"),
        Err(e @ TunnelError::Full) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match tokio::time::timeout(app.config.hold_timeout, rx).await {
        Ok(Ok(r)) => local_response(r),
        Ok(Err(_)) => error(
            StatusCode::BAD_GATEWAY,
            "the tunnel closed before the local server answered",
        ),
        Err(_) => {
            app.tunnels.abandon(&event_id);
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "the local server did not answer in time",
            )
        }
    }
}

/// The public answer from the CLI's report of the local response.
fn local_response(r: LocalResponse) -> Response {
    let body = match (&r.body_base64, r.body) {
        (Some(b64), _) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default(),
        (None, Some(text)) => text.into_bytes(),
        (None, None) => Vec::new(),
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in r.headers {
        // Framing is ours to set; the rest is passed on as the local server sent it.
        let lower = k.to_ascii_lowercase();
        if [
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "content-encoding",
        ]
        .contains(&lower.as_str())
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            header::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

async fn events(State(app): State<Arc<App>>, Project(project): Project, uri: Uri) -> Response {
    let filter: EventFilter = match strict_query(uri.query().unwrap_or("")) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (since, until) = match window(&filter.since, &filter.until) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match app.db.events(&project, &filter, since, until).await {
        Ok(rows) => {
            let next = rows.last().map(|r| r.id);
            let events: Vec<Value> = rows
                .into_iter()
                .map(|r| json!({ "id": r.id, "received_at": r.received_at, "event": r.event }))
                .collect();
            Json(json!({ "events": events, "next_before_id": next })).into_response()
        }
        Err(e) => db_error(e),
    }
}

/// The time window of `/api/stats`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    since: Option<String>,
    until: Option<String>,
}

/// Counts of the project's events in a time window, for the dashboard's summary.
async fn stats(State(app): State<Arc<App>>, Project(project): Project, uri: Uri) -> Response {
    let q: StatsQuery = match strict_query(uri.query().unwrap_or("")) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let (since, until) = match window(&q.since, &q.until) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match app.db.stats(&project, since, until).await {
        Ok(stats) => Json(stats).into_response(),
        Err(e) => db_error(e),
    }
}

/// `since` / `until` (RFC 3339) as milliseconds since 1970; a 400 names the bad one.
fn window(
    since: &Option<String>,
    until: &Option<String>,
) -> Result<(Option<i64>, Option<i64>), Response> {
    let ms = |s: &Option<String>, name: &str| {
        s.as_deref()
            .map(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map(|t| {
                        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
                    })
                    .map_err(|_| {
                        error(StatusCode::BAD_REQUEST, format!("`{name}` is not RFC 3339"))
                    })
            })
            .transpose()
    };
    Ok((ms(since, "since")?, ms(until, "until")?))
}

/// Parses the query string strictly (unknown parameters are a 400, not silently ignored).
fn strict_query<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, Response> {
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
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad query: {e}")))
}

/// How long `/api/forward/poll` waits for a request before answering empty.
pub(crate) const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(25);
