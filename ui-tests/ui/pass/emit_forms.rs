//! Forms `#[emit]` accepts: any extractors (state, parts, a body last), any response, a
//! transform and an owner with the request's headers and bytes.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::emit;
use outworx_hooks::send::EmitContext;

#[derive(Clone)]
struct AppState;

#[emit("order.created")]
async fn bare() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

#[emit("order.updated")]
async fn with_state(State(_s): State<AppState>, _h: HeaderMap, Json(v): Json<serde_json::Value>) -> Result<Json<serde_json::Value>, StatusCode> {
    Ok(Json(v))
}

fn reshape(cx: &EmitContext<'_>) -> Option<serde_json::Value> {
    let _ = (cx.headers(), cx.request_body(), cx.event_type());
    Some(cx.response().clone())
}

fn owner(cx: &EmitContext<'_>) -> String {
    cx.response()["customer"].as_str().unwrap_or_default().to_owned()
}

/// Docs stay on the handler.
#[emit("order.shipped", transform = reshape, owner = owner, include_headers, include_request)]
pub async fn full(body: String) -> String {
    body
}

fn main() {
    let _app: Router = Router::new()
        .route("/a", post(bare))
        .route("/b", post(with_state))
        .route("/c", post(full))
        .with_state(AppState);
}
