//! A loop of deliveries for a profiler: `N` signed ~1.7 KB Stripe events (unique ids) through
//! `#[webhook]` (or bare axum with `bare`), in process, with nothing else in the binary.
//!
//! ```sh
//! cargo build --release -p outworx-hooks --example profile_pipeline
//! valgrind --tool=callgrind target/release/examples/profile_pipeline 20000 hooked
//! valgrind --tool=callgrind target/release/examples/profile_pipeline 20000 bare
//! ```

use axum::body::Body;
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Track, webhook};
use tower::ServiceExt as _;

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

fn body(n: u64) -> String {
    let filler = "x".repeat(1400);
    serde_json::json!({
        "id": format!("evt_{n:020}"), "object": "event", "type": "payment_intent.succeeded",
        "api_version": "2024-06-20", "created": 1_700_000_000,
        "data": { "object": { "id": "pi_3Nq", "amount": 2000, "currency": "eur", "description": filler } }
    })
    .to_string()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let path = if args.next().as_deref() == Some("bare") {
        "/bare"
    } else {
        "/hooked"
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = Router::new()
        .route("/bare", post(bare))
        .route("/hooked", post(hooked));
    // Signed up front, so the profile holds the pipeline, not the signer.
    let requests: Vec<_> = (0..n)
        .map(|i| {
            Signer::new(Provider::Stripe, "whsec_bench_secret")
                .request(path, body(i))
                .expect("sign")
                .map(Body::from)
        })
        .collect();
    rt.block_on(async {
        for req in requests {
            let r = app.clone().oneshot(req).await.expect("infallible");
            assert_eq!(r.status(), 200);
        }
    });
}
