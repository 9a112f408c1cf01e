//! The HTTP API, exactly as the SDKs and CLIs call it.
// Helpers return the ready error `Response` to the handler, which answers with it: the error
// path builds it once, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use crate::ServeConfig;
use crate::db::{Check, Db, EventFilter, EventRow};
use crate::tunnel::{Incoming, LocalResponse, TunnelError, Tunnels};
use outworx_hooks::wire::{
    CheckAnswer, CheckRequest, CompleteRequest, EVENT_FIELDS, IngestAnswer, PROCESSING_STATUSES,
    Polled, Rejected, SessionAnswer, SessionRequest,
};

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
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::dashboard::routes())
        // The ingress reads its own body, against the relay's budgets.
        .route("/t/{slug}", any(ingress))
        .route("/t/{slug}/{*rest}", any(ingress))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(app.clone(), origins))
        .with_state(app)
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

/// Checks one event; its timestamp in milliseconds since 1970, or why it is refused.
pub(crate) fn validate(e: &Value) -> Result<i64, String> {
    let obj = e.as_object().ok_or("an event must be a JSON object")?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !EVENT_FIELDS.iter().any(|(name, _)| name == k))
    {
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
        && !PROCESSING_STATUSES.contains(&p)
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
    caps(obj)?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| "`timestamp` out of range".into())
}

/// The largest an event may be, serialized (the SDK's own limit, shared through the wire
/// module).
pub(crate) const MAX_EVENT_BYTES: usize = outworx_hooks::wire::limits::EVENT;

fn caps(obj: &serde_json::Map<String, Value>) -> Result<(), String> {
    let mut total = 0;
    for (k, v) in obj {
        let size = json_size(v);
        if let Some((_, Some(cap))) = EVENT_FIELDS.iter().find(|(name, _)| name == k)
            && size > *cap
        {
            return Err(format!("`{k}` is {size} bytes; at most {cap}"));
        }
        total += k.len() + size;
    }
    if total > MAX_EVENT_BYTES {
        return Err(format!(
            "the event is {total} bytes; at most {MAX_EVENT_BYTES}"
        ));
    }
    Ok(())
}

/// The length of `v` serialized as JSON, without building the text.
fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

async fn ingest(State(app): State<Arc<App>>, Project(project): Project, body: Bytes) -> Response {
    /// The batch with each event left as its raw text: one event at a time is parsed, and
    /// what is stored is the text as sent.
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    let batch: Batch<'_> = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be {\"events\": [...]} in JSON",
            );
        }
    };
    let events = batch.events;
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
    for (index, raw) in events.iter().enumerate() {
        let text = raw.get();
        let checked = if text.len() > MAX_EVENT_BYTES {
            Err(format!(
                "the event is {} bytes; at most {MAX_EVENT_BYTES}",
                text.len()
            ))
        } else {
            serde_json::from_str::<Value>(text)
                .map_err(|e| e.to_string())
                .and_then(|v| validate(&v).map(|at| EventRow::new(at, &v, text.to_owned())))
        };
        match checked {
            Ok(row) => valid.push(row),
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    if let Err(e) = app.db.insert_rows(&project, &valid).await {
        return db_error(e);
    }
    let all_valid = rejected.is_empty();
    let answer = IngestAnswer {
        accepted: valid.len() as u64,
        rejected,
    };
    if all_valid {
        Json(answer).into_response()
    } else {
        // The valid ones are stored; a retry of the batch would duplicate them.
        (StatusCode::UNPROCESSABLE_ENTITY, Json(answer)).into_response()
    }
}

/// Default and bounds of an idempotency key's TTL, seconds (as the SDKs clamp it).
const DEFAULT_TTL: i64 = 86_400;

async fn check(State(app): State<Arc<App>>, Project(project): Project, body: Bytes) -> Response {
    let req: CheckRequest = match parse(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(why) = key_and_token(&req.key, req.token.as_deref()) {
        return error(StatusCode::BAD_REQUEST, why);
    }
    let ttl = req.ttl.unwrap_or(DEFAULT_TTL).clamp(60, 7 * 86_400);
    match app
        .db
        .check(&project, &req.key, req.token.as_deref(), ttl * 1000)
        .await
    {
        Ok(Check::New) => Json(CheckAnswer {
            status: "new".into(),
            ..CheckAnswer::default()
        })
        .into_response(),
        // The Python package reads any non-"new" as a duplicate; ours reads a duplicate
        // without a cached status as in flight.
        Ok(Check::InFlight) => Json(CheckAnswer {
            status: "duplicate".into(),
            in_flight: Some(true),
            ..CheckAnswer::default()
        })
        .into_response(),
        Ok(Check::Duplicate {
            status,
            content_type,
            body,
        }) => Json(CheckAnswer {
            status: "duplicate".into(),
            cached_status_code: Some(status),
            cached_body: body,
            cached_content_type: content_type,
            in_flight: None,
        })
        .into_response(),
        Err(e) => db_error(e),
    }
}

/// Keys and tokens as the SDKs send them: a key of 1 to 512 bytes (longer ones arrive as a
/// digest), a token of at most 128.
fn key_and_token(key: &str, token: Option<&str>) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > 512 {
        return Err("`key` must be 1..=512 bytes");
    }
    if token.is_some_and(|t| t.is_empty() || t.len() > 128) {
        return Err("`token` must be 1..=128 bytes");
    }
    Ok(())
}

/// The largest cached response body kept (the SDKs cache at most 64 KiB); larger bodies are
/// refused with 413, and the response is then replayed by status only.
const MAX_CACHED_BODY: usize = 64 * 1024;

async fn complete(State(app): State<Arc<App>>, Project(project): Project, body: Bytes) -> Response {
    let req: CompleteRequest = match parse(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(why) = key_and_token(&req.key, req.token.as_deref()) {
        return error(StatusCode::BAD_REQUEST, why);
    }
    let token = req.token.as_deref();
    let done = if req.renew {
        let Some(token) = token else {
            return error(
                StatusCode::BAD_REQUEST,
                "`renew` needs the reservation's `token`",
            );
        };
        app.db.renew(&project, &req.key, token).await
    } else if req.release {
        app.db.release(&project, &req.key, token).await
    } else {
        let Some(status) = req.response_status_code.filter(|s| (100..=599).contains(s)) else {
            return error(
                StatusCode::BAD_REQUEST,
                "`response_status_code` must be an HTTP status",
            );
        };
        if req
            .response_body
            .as_ref()
            .is_some_and(|b| b.len() > MAX_CACHED_BODY)
        {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "`response_body` is over 64 KiB: cache the status only",
            );
        }
        if req.content_type.as_ref().is_some_and(|c| c.len() > 256) {
            return error(StatusCode::BAD_REQUEST, "`content_type` is over 256 bytes");
        }
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

async fn create_session(
    State(app): State<Arc<App>>,
    Project(project): Project,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: SessionRequest = if body.is_empty() {
        SessionRequest::default()
    } else {
        match parse(&body) {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
    let s = match app.tunnels.create(&project, app.config.session_ttl) {
        Ok(s) => s,
        Err(e @ TunnelError::TooManySessions) => {
            return error(StatusCode::TOO_MANY_REQUESTS, e.to_string());
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let base = app.config.tunnel_url.as_deref().map_or_else(
        || public_base(&app.config, &headers),
        |u| u.trim_end_matches('/').to_owned(),
    );
    let expires =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(s.expires_at) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    tracing::info!(session = %s.id, destination = req.destination_url.as_deref().unwrap_or(""), "tunnel opened");
    Json(SessionAnswer {
        session_id: s.id,
        ingress_url: format!("{base}/t/{}", s.slug),
        expires_at: expires,
    })
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
        // Serialized straight from the requests: no copy of the bodies as a JSON tree.
        Ok(events) => Json(Polled { events }).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// The project's tunnels: how many sessions are open and how many bytes of public requests
/// they hold now.
async fn forward_status(State(app): State<Arc<App>>, Project(project): Project) -> Response {
    let (sessions, pending) = app.tunnels.project_status(&project);
    Json(json!({ "sessions": sessions, "pending_bytes": pending })).into_response()
}

async fn respond(State(app): State<Arc<App>>, Project(project): Project, body: Bytes) -> Response {
    let mut resp: LocalResponse = match parse(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    // A report that cannot become a response is refused, and the public caller is answered
    // 502 at once rather than left to time out.
    // 1xx would switch the public connection's protocol (101) or leave it waiting.
    let invalid = if !(200..=599).contains(&resp.status) {
        Some("`status` must be a final HTTP status (200..=599)")
    } else if resp
        .body_base64
        .as_deref()
        .is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_err())
    {
        Some("`bodyBase64` is not base64")
    } else {
        None
    };
    if let Some(why) = invalid {
        resp = LocalResponse {
            event_id: resp.event_id,
            status: 502,
            headers: HashMap::from([("content-type".to_owned(), "text/plain".to_owned())]),
            body: Some("the tunnel client sent an invalid response".into()),
            body_base64: None,
            duration_ms: resp.duration_ms,
        };
        app.tunnels.respond(&project, resp);
        return error(StatusCode::BAD_REQUEST, why);
    }
    if app.tunnels.respond(&project, resp) {
        Json(json!({ "ok": true })).into_response()
    } else {
        error(
            StatusCode::GONE,
            "no public request waits for this event (it timed out or was answered)",
        )
    }
}

/// Holds a public request until the CLI reports the local response (504 after the hold).
///
/// The path is taken raw (still percent-encoded) from the request line, and the request is
/// admitted to its session, with its bytes reserved, before a byte of the body is read.
async fn ingress(State(app): State<Arc<App>>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw = parts.uri.path().strip_prefix("/t/").unwrap_or_default();
    let (slug, path) = match raw.find('/') {
        Some(i) => (&raw[..i], &raw[i..]),
        None => (raw, "/"),
    };
    let limit = app.config.max_body;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        );
    }
    let mut admission = match app.tunnels.admit(slug, declared.unwrap_or(0)) {
        Ok(a) => a,
        Err(e) => return tunnel_error(e),
    };
    // A bounded read, charged to the session as it grows.
    let mut body = body;
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let Ok(frame) = frame else {
            return error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            );
        }
        if let Err(e) = admission.grow(buf.len() + data.len()) {
            return tunnel_error(e);
        }
        buf.extend_from_slice(&data);
    }
    // A browser sends its cookies, and any Basic credentials it holds for this origin, with
    // every request to it: they belong to whoever runs this server, not to the tunnel owner.
    // On a tunnel origin of its own (`tunnel_url`), `Authorization` is the sender's to pass.
    let shared_origin = app.tunnel_host.is_none();
    let headers = parts
        .headers
        .iter()
        .filter(|(k, _)| *k != header::COOKIE && !(shared_origin && *k == header::AUTHORIZATION))
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let incoming = Incoming {
        method: parts.method.to_string(),
        path: path.to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: buf.freeze(),
    };
    // The guard abandons the request however this ends: an answer, the hold timing out, or
    // the caller going away (axum drops this future).
    let mut waiting = match admission.hold(incoming) {
        Ok(w) => w,
        Err(e) => return tunnel_error(e),
    };
    match tokio::time::timeout(app.config.hold_timeout, waiting.answer()).await {
        Ok(Some(r)) => local_response(r),
        Ok(None) => error(
            StatusCode::BAD_GATEWAY,
            "the tunnel closed before the local server answered",
        ),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "the local server did not answer in time",
        ),
    }
}

fn tunnel_error(e: TunnelError) -> Response {
    match e {
        TunnelError::NoSession => error(StatusCode::NOT_FOUND, "no such tunnel"),
        other => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, other.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            r
        }
    }
}

/// Response headers of the local server that are never relayed: framing and hop-by-hop
/// headers (ours to set), and what would let a tunnelled page act on this server's origin
/// (cookies, service workers, site data, CORS grants).
fn relayed(name: &str) -> bool {
    !matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "set-cookie"
            | "service-worker-allowed"
            | "clear-site-data"
            // Policies a browser applies to the whole origin (or its subdomains).
            | "strict-transport-security"
            | "alt-svc"
            | "nel"
            | "report-to"
            | "reporting-endpoints"
    ) && !name.starts_with("proxy-")
        && !name.starts_with("access-control-")
}

/// The public answer from the CLI's report of the local response. Whatever the local server
/// sent, the page is sandboxed (`Content-Security-Policy: sandbox`: no script, no same-origin
/// access) and never sniffed, so a tunnel cannot reach the dashboard or other tunnels.
fn local_response(r: LocalResponse) -> Response {
    let body = match (&r.body_base64, r.body) {
        (Some(b64), _) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(b) => b,
            Err(_) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    "the tunnel client's body is not base64",
                );
            }
        },
        (None, Some(text)) => text.into_bytes(),
        (None, None) => Vec::new(),
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(r.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in r.headers {
        let lower = k.to_ascii_lowercase();
        if !relayed(&lower) {
            continue;
        }
        // The body is passed on exactly as the local server encoded it, so its
        // `content-encoding` goes with it.
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(lower.as_bytes()),
            header::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    let h = resp.headers_mut();
    h.append(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
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
