//! An ingest stand-in for receivers that report: it accepts event batches as the Outworx
//! ingest does and counts the events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::post;

/// Accepts event batches like the Outworx ingest, and counts the events into `events`.
pub async fn ingest_stand_in(events: Arc<AtomicU64>) -> std::net::SocketAddr {
    let count = move |body: axum::body::Bytes| {
        let events = events.clone();
        async move {
            // A real ingest runs elsewhere; this one only counts (every event opens with
            // its provider), so it takes as little of the shared CPU as it can.
            let n = body.windows(12).filter(|w| w == b"{\"provider\":").count() as u64;
            events.fetch_add(n, Ordering::Relaxed);
            "{}"
        }
    };
    let app = Router::new()
        .route("/api/ingest", post(count))
        .route("/api/sdk/verify", post(|| async { "{}" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind ingest");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
