//! The application both the pipeline bench and the profiling loop
//! (`examples/profile_pipeline.rs`) run: one handler in bare axum and the same handler under
//! `#[webhook]` (verification, idempotency on the memory store, `require_processed`, the
//! embedded reporter), fed signed ~1.7 KB Stripe events with unique ids.

use axum::body::Body;
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Track, webhook};

pub(crate) const SECRET: &str = "whsec_bench_secret";

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Event {
    id: String,
    r#type: String,
    data: serde_json::Value,
}

async fn bare(Json(event): Json<Event>) -> &'static str {
    std::hint::black_box(&event);
    "ok"
}

#[webhook(provider = "stripe", secret = "whsec_bench_secret", idempotency = body.id, require_processed)]
async fn hooked(track: Track, Json(event): Json<Event>) -> &'static str {
    std::hint::black_box(&event);
    track.processed();
    "ok"
}

/// `/bare` and `/hooked`.
pub(crate) fn app() -> Router {
    Router::new()
        .route("/bare", post(bare))
        .route("/hooked", post(hooked))
}

/// A Stripe-style event of about 1.7 KB with a unique id.
pub(crate) fn body(n: u64) -> String {
    let filler = "x".repeat(1400);
    serde_json::json!({
        "id": format!("evt_{n:020}"), "object": "event", "type": "payment_intent.succeeded",
        "api_version": "2024-06-20", "created": 1_700_000_000,
        "data": { "object": { "id": "pi_3Nq", "amount": 2000, "currency": "eur", "description": filler } }
    })
    .to_string()
}

/// Delivery `n`, signed now, to `path`.
pub(crate) fn request(path: &str, n: u64) -> http::Request<Body> {
    Signer::new(Provider::Stripe, SECRET)
        .request(path, body(n))
        .expect("sign")
        .map(Body::from)
}
