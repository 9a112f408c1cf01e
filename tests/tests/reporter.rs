//! Delivery reporting end to end: real deliveries through `#[webhook]`, reported with `init`
//! to a loopback ingest in the Outworx wire format; a black-hole ingest delays nothing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Config, Track, webhook};
use serde_json::Value;

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";

#[webhook(
    provider = "github",
    secret = "reporter-secret",
    idempotency,
    capture_body,
    metadata(team = "billing")
)]
async fn reported(track: Track) -> &'static str {
    track.failed_with("downstream timeout", serde_json::json!({ "attempt": 2 }));
    "accepted"
}

#[derive(Clone, Default)]
struct Ingest {
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
    verify_calls: Arc<Mutex<usize>>,
    black_hole: bool,
}

async fn ingest(State(i): State<Ingest>, h: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    if i.black_hole {
        std::future::pending::<()>().await;
    }
    let auth = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    i.bodies
        .lock()
        .unwrap()
        .push((auth, serde_json::from_slice(&body).unwrap_or_default()));
    StatusCode::OK
}

async fn verify(State(i): State<Ingest>) -> StatusCode {
    *i.verify_calls.lock().unwrap() += 1;
    StatusCode::OK
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn ingest_server(i: Ingest) -> String {
    let app = axum::Router::new()
        .route("/api/ingest", post(ingest))
        .route("/api/sdk/verify", post(verify))
        .with_state(i);
    format!("{}/api/ingest", serve(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_reported_in_the_wire_format_and_never_wait_on_the_ingest() {
    let receiver = serve(axum::Router::new().route("/hook", post(reported))).await;
    let client = reqwest::Client::new();

    // The configuration is checked.
    assert_eq!(
        outworx_hooks::init(Config::new().api_key("ohk_short")).unwrap_err(),
        outworx_hooks::ConfigError::InvalidApiKey
    );

    let i = Ingest::default();
    let endpoint = ingest_server(i.clone()).await;
    let guard = outworx_hooks::init(Config::new().api_key(KEY).endpoint(&endpoint)).unwrap();
    let mut s = Signer::new(Provider::Github, "reporter-secret")
        .id("d-1")
        .sign(r#"{"zen":"ok"}"#)
        .unwrap();
    s.headers
        .insert("authorization", "Bearer users-own-token".parse().unwrap());
    s.headers.insert("x-github-event", "ping".parse().unwrap());
    let (status, _) = common::send(&client, &format!("{receiver}/hook?x=1"), &s).await;
    assert_eq!(status, 200);
    guard.shutdown().await;

    let bodies = i.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let (auth, batch) = &bodies[0];
    assert_eq!(auth, &format!("Bearer {KEY}"));
    assert_eq!(*i.verify_calls.lock().unwrap(), 1);
    let e = &batch["events"][0];
    for field in [
        "provider",
        "status_code",
        "success",
        "duration_ms",
        "payload_size",
        "timestamp",
    ] {
        assert!(e.get(field).is_some(), "{field} missing: {e}");
    }
    assert_eq!(e["provider"], "github");
    assert_eq!(e["status_code"], 200);
    assert_eq!(e["event_type"], "ping");
    assert_eq!(e["payload_size"], 12);
    assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(e["signature_valid"], true);
    assert_eq!(e["processing_status"], "failed");
    assert_eq!(e["processing_failure_reason"], "downstream timeout");
    assert!(e["processing_marked_at"].is_string());
    assert_eq!(e["metadata"]["team"], "billing");
    assert_eq!(e["metadata"]["attempt"], 2);
    assert_eq!(e["request_body"], r#"{"zen":"ok"}"#);
    assert_eq!(e["response_body"], "accepted");
    assert_eq!(
        e["source_url"], "/hook?x=[REDACTED]",
        "query values are never reported"
    );
    assert_eq!(e["request_headers"]["authorization"], "[REDACTED]");
    assert!(
        e.get("error_message").is_none(),
        "absent values are omitted, not null"
    );
    let wire = batch.to_string();
    assert!(!wire.contains("users-own-token") && !wire.contains("reporter-secret"));

    // A black-hole ingest (accepts, never answers): every delivery is still answered.
    let hole = Ingest {
        black_hole: true,
        ..Ingest::default()
    };
    let endpoint = ingest_server(hole.clone()).await;
    let guard = outworx_hooks::init(
        Config::new()
            .api_key(KEY)
            .endpoint(&endpoint)
            .timeout(Duration::from_secs(30)),
    )
    .unwrap();
    for n in 0..50 {
        let s = Signer::new(Provider::Github, "reporter-secret")
            .id(format!("bh-{n}"))
            .sign("{}")
            .unwrap();
        let (status, _) = common::send(&client, &format!("{receiver}/hook"), &s).await;
        assert_eq!(status, 200);
    }
    assert!(
        hole.bodies.lock().unwrap().is_empty(),
        "the ingest has answered nothing"
    );
    assert_eq!(guard.dropped_events(), 0, "50 events fit in the queue");

    // A sink of your own, and the in-process subscription read as a Stream.
    struct Recording(Arc<Mutex<Vec<String>>>);
    impl outworx_hooks::Sink for Recording {
        fn send(&self, e: &Arc<outworx_hooks::event::DeliveryEvent>) {
            self.0.lock().unwrap().push(e.handler.to_owned());
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _guard = outworx_hooks::init(Config::new().sink(Recording(seen.clone()))).unwrap();
    let mut stream = outworx_hooks::subscribe();
    let s = Signer::new(Provider::Github, "reporter-secret")
        .id("own-sink")
        .sign("{}")
        .unwrap();
    let (status, _) = common::send(&client, &format!("{receiver}/hook?own"), &s).await;
    assert_eq!(status, 200);
    let e = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = futures_util::StreamExt::next(&mut stream)
                .await
                .expect("events");
            if e.source_url.as_deref() == Some("/hook?[REDACTED]") {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(e.handler, "reported");
    assert!(
        seen.lock().unwrap().iter().any(|h| h == "reported"),
        "the sink got the event"
    );
}
