//! `queue` and `events` as they are written.

use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::{Track, webhook};

#[derive(serde::Deserialize)]
#[serde(tag = "type")]
enum Event {
    #[serde(rename = "invoice.paid")]
    InvoicePaid,
    #[serde(other)]
    Other,
}

#[webhook(provider = "stripe", secret = "whsec_x", idempotency, queue)]
async fn queued(track: Track, body: String) -> &'static str {
    let _ = body;
    track.processed();
    "ok"
}

#[webhook(provider = "stripe", secret = "whsec_x", idempotency = body["id"], queue(attempts = 5, backoff = "30s"), events = ["invoice.*", "customer.created"], require_processed)]
async fn dispatch(track: Track, Json(event): Json<serde_json::Value>) -> &'static str {
    let _ = event;
    track.processed();
    "ok"
}

#[webhook(provider = "stripe", secret = "whsec_x", events = ["*"])]
async fn typed(Json(event): Json<Event>) -> &'static str {
    match event {
        Event::InvoicePaid | Event::Other => "ok",
    }
}

fn main() {
    let _app: Router = Router::new()
        .route("/a", post(queued))
        .route("/b", post(dispatch))
        .route("/c", post(typed));
}
