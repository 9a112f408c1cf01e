//! Idempotency over HTTP: `check` reserves a key or replays its first response, `complete`
//! records that response (or renews or releases the reservation).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Project;
use super::{ApiError, App, parse};
use crate::db::Check;
use outworx_hooks::wire::{CheckAnswer, CheckRequest, CompleteRequest};

/// Default and bounds of an idempotency key's TTL, seconds (as the SDKs clamp it).
const DEFAULT_TTL: i64 = 86_400;

pub(super) async fn check(
    State(app): State<Arc<App>>,
    Project(project): Project,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CheckRequest = parse(&body)?;
    key_and_token(&req.key, req.token.as_deref()).map_err(ApiError::bad_request)?;
    let ttl = req.ttl.unwrap_or(DEFAULT_TTL).clamp(60, 7 * 86_400);
    let checked = app
        .db
        .check(&project, &req.key, req.token.as_deref(), ttl * 1000)
        .await;
    let answer = match &checked {
        Ok(Check::New) => "new",
        Ok(Check::InFlight) => "in_flight",
        Ok(Check::Duplicate { .. }) => "duplicate",
        Err(_) => "error",
    };
    metrics::counter!("outworx_serve_idempotency_checks_total", "answer" => answer).increment(1);
    Ok(match checked? {
        Check::New => Json(CheckAnswer {
            status: "new".into(),
            ..CheckAnswer::default()
        })
        .into_response(),
        // The Python package reads any non-"new" as a duplicate; ours reads a duplicate
        // without a cached status as in flight.
        Check::InFlight => Json(CheckAnswer {
            status: "duplicate".into(),
            in_flight: Some(true),
            ..CheckAnswer::default()
        })
        .into_response(),
        Check::Duplicate {
            status,
            content_type,
            body,
        } => Json(CheckAnswer {
            status: "duplicate".into(),
            cached_status_code: Some(status),
            cached_body: body,
            cached_content_type: content_type,
            in_flight: None,
        })
        .into_response(),
    })
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

pub(super) async fn complete(
    State(app): State<Arc<App>>,
    Project(project): Project,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CompleteRequest = parse(&body)?;
    key_and_token(&req.key, req.token.as_deref()).map_err(ApiError::bad_request)?;
    let token = req.token.as_deref();
    let done = if req.renew {
        let Some(token) = token else {
            return Err(ApiError::bad_request(
                "`renew` needs the reservation's `token`",
            ));
        };
        app.db.renew(&project, &req.key, token).await
    } else if req.release {
        app.db.release(&project, &req.key, token).await
    } else {
        let Some(status) = req.response_status_code.filter(|s| (100..=599).contains(s)) else {
            return Err(ApiError::bad_request(
                "`response_status_code` must be an HTTP status",
            ));
        };
        if req
            .response_body
            .as_ref()
            .is_some_and(|b| b.len() > MAX_CACHED_BODY)
        {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "`response_body` is over 64 KiB: cache the status only",
            ));
        }
        if req.content_type.as_ref().is_some_and(|c| c.len() > 256) {
            return Err(ApiError::bad_request("`content_type` is over 256 bytes"));
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
    let changed = done?;
    Ok(Json(json!({ "ok": true, "changed": changed })).into_response())
}
