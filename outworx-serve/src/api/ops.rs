//! The sending and queue-first receiving sides of an application, for its operators: the
//! endpoints of its outbox with their health, messages with their attempts, dead letters and
//! replay, disable/enable and secret rotation; the deliveries of its inbox, and their replay.
//!
//! The rows live in the application's own databases (`--outbox-db`, `--inbox-db`), attached
//! to one project ([`crate::Attached`]). They are read and changed only through the SDK's
//! `Emitter` and `Inbox`, the same code the application and `outworx` CLI run, so this module
//! holds no SQL of its own. Another project's key is answered 404, as if nothing were
//! attached: it learns nothing of these rows, not even that they exist.
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use outworx_hooks::inbox::{self, Inbox, InboxError};
use outworx_hooks::send::{DeliveryFilter, DeliveryStatus, Emitter, Scope, SendError};
use serde_json::{Value, json};

use super::auth::Project;
use super::query::{WindowQuery, window};
use super::{ApiError, App, StrictQuery};

/// How many of an endpoint's last attempts its success rate is read from.
pub(crate) const HEALTH_ATTEMPTS: u32 = 100;
/// Most rows one list answers (the SDK caps at 1,000; a page needs fewer).
const MAX_ROWS: u32 = 500;
/// Most attempts one message's detail answers.
const MAX_ATTEMPTS: u32 = 200;
/// Most endpoints the overview shows (oldest first), so a refresh stays small.
pub(crate) const MAX_ENDPOINTS: usize = 200;
/// Counts stop here ("10,000 or more"): each is read by index, and costs at most this many
/// index entries whatever the history.
pub(crate) const COUNT_CAP: u32 = 10_000;

/// The attached outbox, for the request's project only: 401 without a known key, 404 for any
/// other project (as if nothing were attached), before anything else is read.
pub(super) struct AttachedOutbox(Emitter);

/// The attached inbox, and the project it is shown to (see [`AttachedOutbox`]).
pub(super) struct AttachedInbox(Inbox, String);

impl axum::extract::FromRequestParts<Arc<App>> for AttachedOutbox {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, ApiError> {
        let Project(project) = Project::from_request_parts(parts, app).await?;
        app.config
            .attached
            .as_ref()
            .filter(|a| a.project == project)
            .and_then(|a| a.outbox.clone())
            .map(AttachedOutbox)
            .ok_or_else(|| {
                ApiError::not_found(
                    "no outbox is attached to this project (outworx serve --outbox-db)",
                )
            })
    }
}

impl axum::extract::FromRequestParts<Arc<App>> for AttachedInbox {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, ApiError> {
        let Project(project) = Project::from_request_parts(parts, app).await?;
        let inbox = app
            .config
            .attached
            .as_ref()
            .filter(|a| a.project == project)
            .and_then(|a| a.inbox.clone())
            .ok_or_else(|| {
                ApiError::not_found(
                    "no inbox is attached to this project (outworx serve --inbox-db)",
                )
            })?;
        Ok(AttachedInbox(inbox, project))
    }
}

/// The attached outbox's error: 404, 400 for the caller's input, 503 (logged) otherwise.
impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotFound => ApiError::not_found("not found"),
            e if e.is_client_error() => ApiError::bad_request(e.to_string()),
            e => {
                tracing::error!(error = %e, "the attached outbox failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the outbox database is unavailable; retry later",
                )
            }
        }
    }
}

/// The attached inbox's error: 400 for the caller's input, 503 (logged) otherwise.
impl From<InboxError> for ApiError {
    fn from(e: InboxError) -> Self {
        match e {
            InboxError::Invalid(why) => ApiError::bad_request(why),
            e => {
                tracing::error!(error = %e, "the attached inbox failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the inbox database is unavailable; retry later",
                )
            }
        }
    }
}

/// An answer that no cache keeps (a rotated secret).
fn no_store(body: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// `GET /api/outbound`: every endpoint with its health, and the deliveries per status.
pub(super) async fn overview(
    AttachedOutbox(emitter): AttachedOutbox,
) -> Result<Response, ApiError> {
    let mut endpoints = emitter.endpoints(Scope::All).await?;
    let total_endpoints = endpoints.len();
    endpoints.truncate(MAX_ENDPOINTS);
    let health = emitter
        .endpoint_health(Scope::All, HEALTH_ATTEMPTS, MAX_ENDPOINTS as u32, COUNT_CAP)
        .await?;
    let counts = emitter.counts_capped(Scope::All, COUNT_CAP).await?;
    let mut health: BTreeMap<String, Value> = health
        .into_iter()
        .map(|h| (h.endpoint_id.clone(), json!(h)))
        .collect();
    let endpoints: Vec<Value> = endpoints
        .into_iter()
        .map(|mut ep| {
            let h = health.remove(&ep.id).unwrap_or(Value::Null);
            // Up to 4 KiB each, and not what an overview is for.
            ep.metadata = serde_json::Map::new();
            json!({ "endpoint": ep, "health": h })
        })
        .collect();
    // Every status, each counted up to the cap.
    let counts: BTreeMap<&str, u64> = counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect();
    Ok(Json(json!({
        "endpoints": endpoints,
        "counts": counts,
        "count_cap": COUNT_CAP,
        "health_attempts": HEALTH_ATTEMPTS,
        // At most the SDK's list cap (1,000): "the first 200 of 1,000" may mean more.
        "endpoints_total": total_endpoints,
    }))
    .into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MessagesQuery {
    status: Option<String>,
    endpoint_id: Option<String>,
    limit: Option<i64>,
}

fn limit(v: Option<i64>, max: u32) -> Result<u32, ApiError> {
    match v.map(u32::try_from) {
        None => Ok(100.min(max)),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!("`limit` is 1 to {max}"))),
    }
}

/// `GET /api/outbound/messages?status=&endpoint_id=&limit=`: deliveries, newest first.
pub(super) async fn messages(
    AttachedOutbox(emitter): AttachedOutbox,
    StrictQuery(q): StrictQuery<MessagesQuery>,
) -> Result<Response, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(str::parse::<DeliveryStatus>)
        .transpose()?;
    let mut filter = DeliveryFilter::default();
    filter.status = status;
    filter.endpoint_id = q.endpoint_id;
    filter.limit = Some(limit(q.limit, MAX_ROWS)?);
    let list = emitter.deliveries(Scope::All, &filter).await?;
    Ok(Json(json!({ "deliveries": list })).into_response())
}

/// `GET /api/outbound/messages/{id}`: one message's deliveries and their attempts (each with
/// the first 4 KiB of the endpoint's answer).
pub(super) async fn message(
    AttachedOutbox(emitter): AttachedOutbox,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let deliveries = emitter
        .deliveries(Scope::All, &DeliveryFilter::default().message(&id))
        .await?;
    if deliveries.is_empty() {
        return Err(ApiError::not_found("no such message"));
    }
    let attempts = emitter
        .attempts(Scope::All, None, Some(&id), MAX_ATTEMPTS)
        .await?;
    Ok(
        Json(json!({ "message_id": id, "deliveries": deliveries, "attempts": attempts }))
            .into_response(),
    )
}

/// `POST /api/outbound/messages/{id}/replay`: its finished deliveries, queued again.
pub(super) async fn replay_message(
    AttachedOutbox(emitter): AttachedOutbox,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match emitter
        .replay(Scope::All, &DeliveryFilter::default().message(id))
        .await?
    {
        0 => Err(ApiError::not_found(
            "no finished delivery of that message to replay",
        )),
        n => Ok(Json(json!({ "replayed": n })).into_response()),
    }
}

/// `POST /api/outbound/endpoints/{id}/replay?since=&until=`: the endpoint's dead deliveries
/// that died in the window (RFC 3339; open ends by default), queued again.
pub(super) async fn replay_endpoint(
    AttachedOutbox(emitter): AttachedOutbox,
    Path(id): Path<String>,
    StrictQuery(q): StrictQuery<WindowQuery>,
) -> Result<Response, ApiError> {
    let (since, until) = window(&q.since, &q.until)?;
    if emitter.endpoint(Scope::All, &id).await?.is_none() {
        return Err(ApiError::not_found("no such endpoint"));
    }
    let mut filter = DeliveryFilter::default()
        .endpoint(id)
        .status(DeliveryStatus::Dead);
    filter.since = since;
    filter.until = until;
    let n = emitter.replay(Scope::All, &filter).await?;
    Ok(Json(json!({ "replayed": n })).into_response())
}

/// `POST /api/outbound/endpoints/{id}/disable` and `/enable`.
pub(super) async fn set_enabled(
    AttachedOutbox(emitter): AttachedOutbox,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(ApiError::not_found("not found")),
    };
    let ep = emitter.set_enabled(Scope::All, &id, enabled).await?;
    Ok(Json(json!({ "endpoint": ep })).into_response())
}

/// `POST /api/outbound/endpoints/{id}/rotate`: a new secret, in this answer only (`no-store`);
/// the old one signs beside it for the rotation grace.
pub(super) async fn rotate(
    AttachedOutbox(emitter): AttachedOutbox,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rotated = emitter.rotate_secret(Scope::All, &id).await?;
    tracing::info!(endpoint_id = %id, "endpoint secret rotated from the dashboard");
    Ok(no_store(json!(rotated)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InboxQuery {
    status: Option<String>,
    route: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/inbox?status=&route=&limit=`: the inbox's summary (with the oldest pending
/// delivery's age) and its deliveries, newest first. `status` is `pending`, `retrying`
/// (pending after a failure), `processing`, `done` or `dead`.
pub(super) async fn inbox_list(
    AttachedInbox(inbox, _): AttachedInbox,
    StrictQuery(q): StrictQuery<InboxQuery>,
) -> Result<Response, ApiError> {
    let mut filter = match q.status.as_deref() {
        None => inbox::DeliveryFilter::default(),
        Some("retrying") => inbox::DeliveryFilter::default().retrying(),
        Some(s) => inbox::DeliveryFilter::default().status(s.parse::<inbox::DeliveryStatus>()?),
    };
    filter.route = q.route;
    filter.limit = Some(limit(q.limit, MAX_ROWS)?);
    let summary = inbox.summary(COUNT_CAP).await?;
    let now = crate::db::now_ms();
    let oldest_age_ms = summary
        .oldest_pending_at
        .map(|t| now.saturating_sub(t).max(0));
    let entries = inbox.deliveries(&filter).await?;
    Ok(Json(json!({
        "summary": summary,
        "count_cap": COUNT_CAP,
        "oldest_pending_age_ms": oldest_age_ms,
        "now_ms": now,
        "entries": entries,
    }))
    .into_response())
}

/// `GET /api/inbox/{id}`: one delivery's state, and the events this project was reported for
/// it (its receipt, then each worker run: its attempts). Its stored body is not answered:
/// it may hold personal data (`outworx inbox show --body` reads it).
pub(super) async fn inbox_entry(
    State(app): State<Arc<App>>,
    AttachedInbox(inbox, project): AttachedInbox,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let entry = inbox
        .deliveries(&inbox::DeliveryFilter::default().id(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("no such delivery"))?;
    let events: Vec<Value> = app
        .db
        .events_of_inbox(&project, id)
        .await?
        .into_iter()
        .map(|r| json!({ "id": r.id, "received_at": r.received_at, "event": r.event }))
        .collect();
    Ok(Json(json!({ "entry": entry, "events": events })).into_response())
}

/// `POST /api/inbox/{id}/replay`: one finished delivery (dead, or done: run again on
/// purpose), queued again. A pending or processing one is already queued: 409.
pub(super) async fn inbox_replay_one(
    AttachedInbox(inbox, _): AttachedInbox,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let status = inbox
        .deliveries(&inbox::DeliveryFilter::default().id(id))
        .await?
        .first()
        .map(|e| e.status)
        .ok_or_else(|| ApiError::not_found("no such delivery"))?;
    if !matches!(
        status,
        inbox::DeliveryStatus::Dead | inbox::DeliveryStatus::Done
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the delivery is already queued; only a dead or done one is replayed",
        ));
    }
    // Only if it is still what was checked: a worker may have claimed it since.
    match inbox
        .replay(&inbox::DeliveryFilter::default().id(id).status(status))
        .await?
    {
        0 => Err(ApiError::new(
            StatusCode::CONFLICT,
            "the delivery changed meanwhile; look again",
        )),
        n => Ok(Json(json!({ "replayed": n })).into_response()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeadQuery {
    route: String,
    since: Option<String>,
}

/// `POST /api/inbox/replay?route=&since=`: every dead delivery of a route (that died at or
/// after `since`, RFC 3339), queued again.
pub(super) async fn inbox_replay_dead(
    AttachedInbox(inbox, _): AttachedInbox,
    StrictQuery(q): StrictQuery<DeadQuery>,
) -> Result<Response, ApiError> {
    let (since, _) = window(&q.since, &None)?;
    let mut filter = inbox::DeliveryFilter::default()
        .status(inbox::DeliveryStatus::Dead)
        .route(q.route);
    filter.since = since;
    let n = inbox.replay(&filter).await?;
    Ok(Json(json!({ "replayed": n })).into_response())
}
