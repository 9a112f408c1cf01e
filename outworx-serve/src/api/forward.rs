//! The forward relay over HTTP: the CLI opens and closes tunnel sessions, polls their public
//! requests and reports the local responses, which `/t/{slug}/...` answers with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use super::auth::Project;
use super::{ApiError, App, error, parse};
use crate::ServeConfig;
use crate::tunnel::{Incoming, LocalResponse, TunnelError};
use outworx_hooks::wire::{Polled, SessionAnswer, SessionRequest};

pub(super) async fn create_session(
    State(app): State<Arc<App>>,
    Project(project): Project,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SessionRequest = if body.is_empty() {
        SessionRequest::default()
    } else {
        parse(&body)?
    };
    let s = app
        .tunnels
        .create(&project, app.config.session_ttl)
        .map_err(|e| match e {
            TunnelError::TooManySessions => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
            }
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        })?;
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
    Ok(Json(SessionAnswer {
        session_id: s.id,
        ingress_url: format!("{base}/t/{}", s.slug),
        expires_at: expires,
    })
    .into_response())
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

pub(super) async fn close_session(
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
pub(super) struct PollQuery {
    session: String,
}

pub(super) async fn poll(
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
pub(super) async fn forward_status(
    State(app): State<Arc<App>>,
    Project(project): Project,
) -> Response {
    let (sessions, pending) = app.tunnels.project_status(&project);
    Json(json!({ "sessions": sessions, "pending_bytes": pending })).into_response()
}

pub(super) async fn respond(
    State(app): State<Arc<App>>,
    Project(project): Project,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut resp: LocalResponse = parse(&body)?;
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
        return Err(ApiError::bad_request(why));
    }
    if app.tunnels.respond(&project, resp) {
        Ok(Json(json!({ "ok": true })).into_response())
    } else {
        Err(ApiError::new(
            StatusCode::GONE,
            "no public request waits for this event (it timed out or was answered)",
        ))
    }
}

/// Holds a public request until the CLI reports the local response (504 after the hold).
///
/// The path is taken raw (still percent-encoded) from the request line, and the request is
/// admitted to its session, with its bytes reserved, before a byte of the body is read.
pub(super) async fn ingress(State(app): State<Arc<App>>, req: axum::extract::Request) -> Response {
    metrics::counter!("outworx_serve_tunnel_requests_total").increment(1);
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
    let headers = forwarded_headers(&parts.headers, app.tunnel_host.is_none());
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

/// The headers of a public request as the tunnel client receives them; `shared_origin` when
/// tunnels are served on the dashboard's origin (no `tunnel_url`).
fn forwarded_headers(headers: &HeaderMap, shared_origin: bool) -> Vec<(String, String)> {
    // A browser sends its cookies, and any Basic credentials it holds for this origin, with
    // every request to it: they belong to whoever runs this server, not to the tunnel owner.
    // On a tunnel origin of its own (`tunnel_url`), `Authorization` is the sender's to pass.
    headers
        .iter()
        .filter(|(k, _)| *k != header::COOKIE && !(shared_origin && *k == header::AUTHORIZATION))
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
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

/// How long `/api/forward/poll` waits for a request before answering empty.
pub(crate) const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(25);
