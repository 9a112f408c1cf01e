use axum::Json;
use outworx_hooks::webhook;
use serde::Deserialize;

#[derive(Deserialize)]
struct Event {
    id: String,
}

#[webhook(provider = "stripe", secret = "whsec_x", idempotency = body.event_id)]
async fn handler(Json(event): Json<Event>) -> String {
    event.id
}

fn main() {}
