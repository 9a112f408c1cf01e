//! A router an application mounts so its customers manage their own endpoints: every route
//! asks the application's `owner` closure who is calling, and sees only that owner's rows.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;

use super::SendError;
use super::emitter::Emitter;
use super::model::{DeliveryStatus, EndpointUpdate, NewEndpoint};
use super::store::{DeliveryFilter, Scope};

/// Maps a request to the owner (tenant) it acts for; `None` answers 401.
pub type OwnerFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

#[derive(Clone)]
struct Manage {
    emitter: Emitter,
    owner: OwnerFn,
}

/// The caller's owner, read by the application's closure.
struct Owner(String);

impl axum::extract::FromRequestParts<Manage> for Owner {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &Manage) -> Result<Self, Response> {
        match (state.owner)(parts) {
            // An empty owner is the default tenant (`emitter.send`, the CLI): never a caller's.
            Some(o) if !o.is_empty() && o.len() <= super::limits::MAX_TEXT_LEN => Ok(Owner(o)),
            _ => Err(problem(StatusCode::UNAUTHORIZED, "not authenticated")),
        }
    }
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": message.into()}))).into_response()
}

struct ApiError(SendError);

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            SendError::NotFound => problem(StatusCode::NOT_FOUND, "not found"),
            SendError::Forbidden(why) => problem(StatusCode::FORBIDDEN, why),
            e @ SendError::Conflict => problem(StatusCode::CONFLICT, e.to_string()),
            e @ SendError::RateLimited { retry_after, .. } => {
                let mut r = problem(StatusCode::TOO_MANY_REQUESTS, e.to_string());
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(retry_after.as_secs().max(1)),
                );
                r
            }
            e if e.is_client_error() => problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            e => {
                tracing::error!(error = %e, "endpoint management failed");
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the outbox is unavailable; try again",
                )
            }
        }
    }
}

type Answer = Result<Response, ApiError>;

/// The endpoint management API, to `nest` under a path of the application's choosing:
///
/// | route | what |
/// |---|---|
/// | `GET /endpoints` | the caller's endpoints |
/// | `POST /endpoints` | create (`{url, events, auth, format, metadata, secret?}`): answers the secret once |
/// | `GET`, `PATCH`, `DELETE /endpoints/{id}` | read, change, delete |
/// | `POST /endpoints/{id}/rotate` | a new secret (answered once); the old one signs beside it for the grace |
/// | `POST /endpoints/{id}/test` | send a `webhook.test` message to it |
/// | `GET /endpoints/{id}/attempts?limit=` | its attempts, newest first |
/// | `POST /endpoints/{id}/replay?since=&until=` | replay its dead deliveries in a window (ms since 1970) |
/// | `GET /messages?status=&endpoint_id=&limit=` | deliveries, newest first |
/// | `POST /messages/{id}/replay` | replay one message's finished deliveries |
///
/// `owner` maps a request to the tenant it acts for (from a session, a token...); `None`
/// (or an empty owner, which is the application's own default tenant) answers 401. A caller never sees, changes or learns of another owner's endpoints: they
/// answer 404. Bodies are limited to 64 KiB.
///
/// ```
/// use axum::Router;
/// use outworx_hooks::send::{Emitter, management_router};
///
/// fn app(emitter: Emitter) -> Router {
///     let manage = management_router(emitter, |parts| {
///         // Your authentication: here, a header set by your gateway.
///         let id = parts.headers.get("x-customer-id")?.to_str().ok()?;
///         (!id.is_empty()).then(|| id.to_owned())
///     });
///     Router::new().nest("/webhooks", manage)
/// }
/// ```
pub fn management_router(
    emitter: Emitter,
    owner: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
) -> Router {
    let state = Manage {
        emitter,
        owner: Arc::new(owner),
    };
    Router::new()
        .route("/endpoints", get(list).post(create))
        .route("/endpoints/{id}", get(read).patch(update).delete(delete))
        .route("/endpoints/{id}/rotate", post(rotate))
        .route("/endpoints/{id}/test", post(test))
        .route("/endpoints/{id}/attempts", get(attempts))
        .route("/endpoints/{id}/replay", post(replay_endpoint))
        .route("/messages", get(messages))
        .route("/messages/{id}/replay", post(replay_message))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

async fn list(State(m): State<Manage>, Owner(o): Owner) -> Answer {
    Ok(Json(m.emitter.endpoints(Scope::Owner(&o)).await?).into_response())
}

async fn create(
    State(m): State<Manage>,
    Owner(o): Owner,
    body: Result<Json<NewEndpoint>, axum::extract::rejection::JsonRejection>,
) -> Answer {
    let Json(mut new) = body.map_err(|e| SendError::invalid("body", e.body_text()))?;
    new.owner = o;
    let created = m.emitter.create_endpoint(new).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn read(State(m): State<Manage>, Owner(o): Owner, Path(id): Path<String>) -> Answer {
    let ep = m
        .emitter
        .endpoint(Scope::Owner(&o), &id)
        .await?
        .ok_or(SendError::NotFound)?;
    Ok(Json(ep).into_response())
}

async fn update(
    State(m): State<Manage>,
    Owner(o): Owner,
    Path(id): Path<String>,
    body: Result<Json<EndpointUpdate>, axum::extract::rejection::JsonRejection>,
) -> Answer {
    let Json(update) = body.map_err(|e| SendError::invalid("body", e.body_text()))?;
    let ep = m
        .emitter
        .update_endpoint(Scope::Owner(&o), &id, update)
        .await?;
    Ok(Json(ep).into_response())
}

async fn delete(State(m): State<Manage>, Owner(o): Owner, Path(id): Path<String>) -> Answer {
    if m.emitter.delete_endpoint(Scope::Owner(&o), &id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(SendError::NotFound.into())
    }
}

async fn rotate(State(m): State<Manage>, Owner(o): Owner, Path(id): Path<String>) -> Answer {
    let rotated = m.emitter.rotate_secret(Scope::Owner(&o), &id).await?;
    Ok(Json(rotated).into_response())
}

async fn test(State(m): State<Manage>, Owner(o): Owner, Path(id): Path<String>) -> Answer {
    let sent = m.emitter.send_test(Scope::Owner(&o), &id).await?;
    Ok((StatusCode::ACCEPTED, Json(sent)).into_response())
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn attempts(
    State(m): State<Manage>,
    Owner(o): Owner,
    Path(id): Path<String>,
    Query(q): Query<Limit>,
) -> Answer {
    let scope = Scope::Owner(&o);
    m.emitter
        .endpoint(scope, &id)
        .await?
        .ok_or(SendError::NotFound)?;
    let list = m
        .emitter
        .attempts(scope, Some(&id), None, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
struct Window {
    since: Option<i64>,
    until: Option<i64>,
}

async fn replay_endpoint(
    State(m): State<Manage>,
    Owner(o): Owner,
    Path(id): Path<String>,
    Query(w): Query<Window>,
) -> Answer {
    let scope = Scope::Owner(&o);
    m.emitter
        .endpoint(scope, &id)
        .await?
        .ok_or(SendError::NotFound)?;
    let filter = DeliveryFilter {
        status: Some(DeliveryStatus::Dead),
        endpoint_id: Some(id),
        since: w.since,
        until: w.until,
        ..DeliveryFilter::default()
    };
    let n = m.emitter.replay(scope, &filter).await?;
    Ok(Json(serde_json::json!({"replayed": n})).into_response())
}

#[derive(Deserialize)]
struct MessagesQuery {
    status: Option<String>,
    endpoint_id: Option<String>,
    limit: Option<u32>,
}

async fn messages(
    State(m): State<Manage>,
    Owner(o): Owner,
    Query(q): Query<MessagesQuery>,
) -> Answer {
    let status = q.status.as_deref().map(str::parse).transpose()?;
    let filter = DeliveryFilter {
        status,
        endpoint_id: q.endpoint_id,
        limit: q.limit,
        ..DeliveryFilter::default()
    };
    Ok(Json(m.emitter.deliveries(Scope::Owner(&o), &filter).await?).into_response())
}

async fn replay_message(
    State(m): State<Manage>,
    Owner(o): Owner,
    Path(id): Path<String>,
) -> Answer {
    let filter = DeliveryFilter {
        message_id: Some(id),
        ..DeliveryFilter::default()
    };
    let n = m.emitter.replay(Scope::Owner(&o), &filter).await?;
    if n == 0 {
        return Err(SendError::NotFound.into());
    }
    Ok(Json(serde_json::json!({"replayed": n})).into_response())
}
