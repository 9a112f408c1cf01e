//! `OutworxHooksLayer` end to end: the attribute's delivery scenarios through the layer, on a
//! route, on a whole router, and around a plain tower service; real HTTP on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::event::{DeliveryEvent, ProcessingStatus};
use outworx_hooks::security::{FailureReason, Provider};
use outworx_hooks::testing::{Signed, Signer};
use outworx_hooks::{OutworxHooksLayer, Track, TrackOptions};
use serde_json::{Value, json};

const SECRET: &str = "whsec_layer_tests";

static RUNS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

fn ran(id: &str) {
    *RUNS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(id.to_owned())
        .or_default() += 1;
}

fn runs(id: &str) -> usize {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|r| r.get(id).copied())
        .unwrap_or(0)
}

/// A plain axum handler: under the layer it takes `Track` exactly as under the attribute.
async fn stripe(track: Track, Json(event): Json<Value>) -> (StatusCode, Json<Value>) {
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    ran(&id);
    match event["type"].as_str().unwrap_or_default() {
        "charge.succeeded" => {
            track.processed();
            (StatusCode::OK, Json(json!({ "received": id })))
        }
        "charge.failed" => {
            track.failed("card declined");
            (StatusCode::OK, Json(json!({ "received": id })))
        }
        "handler.panics" => panic!("boom under the layer"),
        "server.error" => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({}))),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(400)).await;
            track.processed();
            (StatusCode::OK, Json(json!({ "slow": true })))
        }
        _ => (StatusCode::OK, Json(json!({ "ignored": id }))),
    }
}

#[derive(Clone)]
struct AppState(&'static str);

async fn with_state(State(s): State<AppState>, track: Track, body: String) -> String {
    track.processed();
    format!("{}:{}", s.0, body.len())
}

async fn echo(body: String) -> String {
    body
}

fn stripe_options() -> TrackOptions {
    TrackOptions::new(Provider::Stripe)
        .secret(SECRET)
        .idempotency_key(|_parts, body, _headers| body?["id"].as_str().map(str::to_owned))
        .event_type_field("type")
        .require_processing_mark(true)
        .capture_body(true)
        .metadata("team", "billing")
}

fn app() -> Router {
    let stripe_layer = OutworxHooksLayer::new(stripe_options());
    let github_layer = OutworxHooksLayer::new(
        TrackOptions::new(Provider::Github)
            .secret_env("OUTWORX_LAYER_TEST_UNSET_VARIABLE")
            .natural_idempotency_key(),
    );
    let small = OutworxHooksLayer::new(
        TrackOptions::new(Provider::Github)
            .secret("gh")
            .max_body(64),
    );
    let observe = OutworxHooksLayer::new(
        TrackOptions::new(Provider::Github)
            .secret("gh")
            .reject_invalid_signatures(false),
    );
    let custom = OutworxHooksLayer::new(TrackOptions::custom(|_body, headers| {
        match headers.get("x-token").map(|v| v.as_bytes()) {
            Some(b"letmein") => Ok(true),
            Some(b"explode") => panic!("verifier exploded"),
            Some(_) => Err("unknown token".into()),
            None => Ok(false),
        }
    }));
    let custom_async = OutworxHooksLayer::new(
        TrackOptions::custom(|_, _| Ok(false)).verifier_async(|body, _headers| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(body.starts_with(b"ok"))
        }),
    );
    let slack = OutworxHooksLayer::new(TrackOptions::new(Provider::Slack).secret("slack_signing"));
    let stated = OutworxHooksLayer::new(
        TrackOptions::new(Provider::Github)
            .secret("gh")
            .natural_idempotency_key()
            .require_processed(true),
    );
    Router::new()
        .route("/stripe", post(stripe).layer(stripe_layer))
        .route("/unset", post(echo).layer(github_layer))
        .route("/small", post(echo).layer(small))
        .route("/observe", post(echo).layer(observe))
        .route("/custom", post(echo).layer(custom))
        .route("/custom-async", post(echo).layer(custom_async))
        .route("/slack", post(echo).layer(slack))
        .route("/state", post(with_state).layer(stated))
        .route(
            "/no-layer",
            post(|track: Track| async move {
                drop(track);
                "x"
            }),
        )
        .with_state(AppState("app-state"))
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// The test case of a request: its `case` query value (the whole path without one). Reports
/// redact query values, so requests carry it in an `x-test-case` header too.
fn case_of(url: &str) -> &str {
    url.split_once("case=")
        .map_or(url, |(_, c)| c.split('&').next().unwrap_or(c))
}

async fn post_signed(url: &str, s: &Signed) -> Reply {
    let r = reqwest::Client::new()
        .post(url)
        .headers(s.headers.clone())
        .header("x-test-case", case_of(url))
        .body(s.body.clone())
        .send()
        .await
        .unwrap();
    Reply {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

fn stripe_delivery(id: &str, kind: &str) -> Signed {
    Signer::new(Provider::Stripe, SECRET)
        .sign(json!({ "id": id, "type": kind }).to_string())
        .unwrap()
}

async fn next_event(sub: &mut outworx_hooks::Subscription, url: &str) -> Arc<DeliveryEvent> {
    let path = url.split('?').next().unwrap_or(url);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = sub.recv().await.unwrap();
            let same_path = e.source_url.as_deref().and_then(|u| u.split('?').next());
            let case = e
                .request_headers
                .as_ref()
                .and_then(|h| h.get("x-test-case"))
                .map(String::as_str);
            // Requests sent without a case header are matched by path alone.
            if same_path == Some(path) && case.is_none_or(|c| c == case_of(url)) {
                return e;
            }
        }
    })
    .await
    .expect("an event in time")
}

#[tokio::test]
async fn valid_duplicate_and_reported_through_the_layer() {
    let base = serve(app()).await;
    let mut sub = outworx_hooks::subscribe();
    let url = format!("{base}/stripe?case=valid");
    let first = post_signed(&url, &stripe_delivery("evt_l1", "charge.succeeded")).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (StatusCode::OK, r#"{"received":"evt_l1"}"#)
    );
    let e = next_event(&mut sub, "/stripe?case=valid").await;
    assert_eq!(e.handler, "layer:stripe");
    assert_eq!(e.event_type.as_deref(), Some("charge.succeeded"));
    assert_eq!(e.processing_status, Some(ProcessingStatus::Completed));
    assert_eq!(e.meta("team"), Some(&json!("billing")));
    assert!(e.request_body.as_deref().unwrap().contains("evt_l1"));

    let again = post_signed(&url, &stripe_delivery("evt_l1", "charge.succeeded")).await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["x-outworx-duplicate"], "true");
    assert_eq!(runs("evt_l1"), 1);
    let e = next_event(&mut sub, "/stripe?case=valid").await;
    assert_eq!(e.meta("duplicate"), Some(&json!(true)));
}

#[tokio::test]
async fn in_flight_copies_get_409() {
    let base = serve(app()).await;
    let url = format!("{base}/stripe?case=inflight");
    let slow = stripe_delivery("evt_l_inflight", "slow");
    let (a, b) = tokio::join!(post_signed(&url, &slow), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post_signed(&url, &slow).await
    });
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::CONFLICT));
    assert!(b.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn bad_signatures_marks_and_failures() {
    let base = serve(app()).await;
    let mut sub = outworx_hooks::subscribe();
    let url = format!("{base}/stripe?case=bad");

    let mut tampered = stripe_delivery("evt_l_t", "charge.succeeded");
    tampered.body = br#"{"id":"evt_l_t","type":"charge.refunded"}"#.to_vec();
    assert_eq!(
        post_signed(&url, &tampered).await.status,
        StatusCode::UNAUTHORIZED
    );
    let e = next_event(&mut sub, "/stripe?case=bad").await;
    assert_eq!(
        e.signature_failure_reason,
        Some(FailureReason::HmacMismatch)
    );

    let stale = Signer::new(Provider::Stripe, SECRET)
        .at(outworx_hooks::security::now_unix() - 3600)
        .sign(r#"{"id":"evt_l_s","type":"x"}"#)
        .unwrap();
    assert_eq!(
        post_signed(&url, &stale).await.status,
        StatusCode::UNAUTHORIZED
    );
    let e = next_event(&mut sub, "/stripe?case=bad").await;
    assert_eq!(
        e.signature_failure_reason,
        Some(FailureReason::TimestampDrift)
    );

    post_signed(&url, &stripe_delivery("evt_l_f", "charge.failed")).await;
    let e = next_event(&mut sub, "/stripe?case=bad").await;
    assert_eq!(e.processing_status, Some(ProcessingStatus::Failed));
    assert_eq!(
        e.processing_failure_reason.as_deref(),
        Some("card declined")
    );

    post_signed(&url, &stripe_delivery("evt_l_d", "customer.created")).await;
    let e = next_event(&mut sub, "/stripe?case=bad").await;
    assert_eq!(e.processing_status, Some(ProcessingStatus::SilentDrop));

    let boom = stripe_delivery("evt_l_p", "handler.panics");
    assert_eq!(
        post_signed(&url, &boom).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let e = next_event(&mut sub, "/stripe?case=bad").await;
    assert_eq!(
        e.error_message.as_deref(),
        Some("handler panicked: boom under the layer")
    );
    post_signed(&url, &boom).await;
    assert_eq!(runs("evt_l_p"), 2, "released after the panic");

    let busy = stripe_delivery("evt_l_503", "server.error");
    post_signed(&url, &busy).await;
    post_signed(&url, &busy).await;
    assert_eq!(runs("evt_l_503"), 2, "released after the 503");
}

#[tokio::test]
async fn configuration_limits_and_observe_mode() {
    let base = serve(app()).await;
    let gh = |body: &str| {
        Signer::new(Provider::Github, "gh")
            .sign(body.to_owned())
            .unwrap()
    };

    let r = post_signed(&format!("{base}/unset"), &gh("{}")).await;
    assert_eq!(
        r.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a missing secret is a 500, not a 401"
    );
    assert!(
        !r.body.contains("OUTWORX_LAYER_TEST_UNSET_VARIABLE"),
        "{}",
        r.body
    );
    let layer = OutworxHooksLayer::new(
        TrackOptions::new(Provider::Github).secret_env("OUTWORX_LAYER_TEST_UNSET_VARIABLE"),
    );
    assert!(layer.check().unwrap_err().contains("is not set"));
    assert!(
        OutworxHooksLayer::new(TrackOptions::new(Provider::Github).secret("ok"))
            .check()
            .is_ok()
    );

    assert_eq!(
        post_signed(&format!("{base}/small"), &gh(&"x".repeat(100)))
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let wrong = Signer::new(Provider::Github, "not-gh")
        .sign("seen anyway")
        .unwrap();
    let r = post_signed(&format!("{base}/observe"), &wrong).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "seen anyway"));
}

#[tokio::test]
async fn custom_verifiers_sync_async_failing_and_panicking() {
    let base = serve(app()).await;
    let client = reqwest::Client::new();
    let send = |path: &'static str, token: Option<&'static str>, body: &'static str| {
        let mut req = client.post(format!("{base}{path}")).body(body);
        if let Some(t) = token {
            req = req.header("x-token", t);
        }
        req.send()
    };
    assert_eq!(
        send("/custom", Some("letmein"), "hi")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send("/custom", None, "hi").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for token in ["nope", "explode"] {
        let mut sub = outworx_hooks::subscribe();
        let r = send("/custom", Some(token), "hi").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let e = next_event(&mut sub, "/custom").await;
        assert_eq!(
            e.signature_failure_reason,
            Some(FailureReason::VerifierThrew),
            "{token}"
        );
    }
    assert_eq!(
        send("/custom-async", None, "ok body")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send("/custom-async", None, "bad body")
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn state_extractors_handshakes_and_track_outside() {
    let base = serve(app()).await;
    let s = Signer::new(Provider::Github, "gh")
        .id("state-1")
        .sign("twelve bytes")
        .unwrap();
    let r = post_signed(&format!("{base}/state"), &s).await;
    assert_eq!(r.body, "app-state:12");
    let slack = Signer::new(Provider::Slack, "slack_signing")
        .sign(r#"{"type":"url_verification","challenge":"c123"}"#)
        .unwrap();
    assert_eq!(
        post_signed(&format!("{base}/slack"), &slack).await.body,
        r#"{"challenge":"c123"}"#
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/no-layer"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn on_a_whole_router_and_around_a_plain_tower_service() {
    use tower::ServiceExt as _;

    // A whole router behind one layer.
    let router = Router::new()
        .route("/a", post(echo))
        .route("/b", post(echo))
        .layer(OutworxHooksLayer::new(
            TrackOptions::new(Provider::Github).secret("gh"),
        ));
    let base = serve(router).await;
    for path in ["/a", "/b"] {
        let ok = Signer::new(Provider::Github, "gh")
            .sign("router-wide")
            .unwrap();
        assert_eq!(
            post_signed(&format!("{base}{path}"), &ok).await.body,
            "router-wide"
        );
        let bad = Signer::new(Provider::Github, "other").sign("x").unwrap();
        assert_eq!(
            post_signed(&format!("{base}{path}"), &bad).await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    // Any tower service taking http::Request.
    let svc = tower::ServiceBuilder::new()
        .layer(OutworxHooksLayer::new(
            TrackOptions::new(Provider::Github).secret("gh"),
        ))
        .service(tower::service_fn(
            |req: axum::extract::Request| async move {
                let track = req.extensions().get::<Track>().cloned();
                Ok::<_, Infallible>(http::Response::new(format!("tracked={}", track.is_some())))
            },
        ));
    let req = Signer::new(Provider::Github, "gh")
        .request("/anything", "payload")
        .unwrap()
        .map(axum::body::Body::from);
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"tracked=true");
}
