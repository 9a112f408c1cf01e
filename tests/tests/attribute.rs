//! `#[webhook]` end to end: real routers served on loopback, real HTTP requests, and the
//! events each delivery produces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::event::{DeliveryEvent, ProcessingStatus};
use outworx_hooks::security::{FailureReason, Provider, SignedRequest};
use outworx_hooks::testing::{Signed, Signer, TestKeys};
use outworx_hooks::{Track, webhook};
use serde::Deserialize;
use serde_json::{Value, json};

const STRIPE_SECRET: &str = "whsec_attribute_tests";

/// How many times each (handler, id) ran.
static RUNS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

fn ran(handler: &str, id: &str) {
    let mut runs = RUNS.lock().unwrap();
    *runs
        .get_or_insert_with(HashMap::new)
        .entry(format!("{handler}/{id}"))
        .or_default() += 1;
}

fn runs(handler: &str, id: &str) -> usize {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|r| r.get(&format!("{handler}/{id}")).copied())
        .unwrap_or(0)
}

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    r#type: String,
}

#[webhook(provider = "stripe", secret = "whsec_attribute_tests", idempotency = body.id, require_processed)]
async fn stripe_hook(track: Track, Json(event): Json<StripeEvent>) -> (StatusCode, Json<Value>) {
    ran("stripe", &event.id);
    match event.r#type.as_str() {
        "charge.succeeded" => {
            track.processed_with(json!({ "charge": "ch_1" }));
            (StatusCode::OK, Json(json!({ "received": event.id })))
        }
        "charge.failed" => {
            track.failed("card declined");
            (StatusCode::OK, Json(json!({ "received": event.id })))
        }
        "handler.panics" => panic!("boom in the handler"),
        "server.error" => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "retry": true })),
        ),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(400)).await;
            track.processed();
            (StatusCode::OK, Json(json!({ "slow": true })))
        }
        _ => (StatusCode::OK, Json(json!({ "ignored": event.id }))),
    }
}

#[derive(Clone)]
struct AppState {
    name: &'static str,
}

#[webhook(provider = "github", secret = "gh_secret", idempotency, event_type = header("x-github-event"))]
async fn github_hook(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    track: Track,
    body: String,
) -> String {
    track.processed();
    let id = headers["x-github-delivery"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    ran("github", &id);
    format!(
        "{}|{tenant}|{}|{}",
        state.name,
        query.get("x").map_or("", String::as_str),
        body
    )
}

#[webhook(provider = "stripe", secret = env("OUTWORX_TEST_SECRET_THAT_IS_NEVER_SET"))]
async fn unset_secret_hook() -> &'static str {
    "unreachable"
}

#[webhook(provider = "github", secret = "gh_secret", max_body = 64)]
async fn small_hook(body: Bytes) -> String {
    body.len().to_string()
}

#[webhook(provider = "github", secret = "gh_secret", reject_invalid = false)]
async fn observe_hook(body: Bytes) -> String {
    format!("saw {} bytes", body.len())
}

#[webhook(
    provider = "github",
    secret = "gh_secret",
    capture_body,
    metadata(team = "billing", tier = "gold"),
    redact = ["X-Internal-Token"]
)]
async fn capture_hook(track: Track) -> Json<Value> {
    track.processed();
    Json(json!({ "ok": true }))
}

#[derive(Deserialize)]
struct MaybeId {
    id: Option<String>,
}

#[webhook(provider = "stripe", secret = "whsec_attribute_tests", idempotency = body.id)]
async fn optional_key_hook(Json(event): Json<MaybeId>) -> &'static str {
    ran("optional", event.id.as_deref().unwrap_or("none"));
    "ok"
}

/// A key path on the provider's envelope: the handler takes no typed body.
#[webhook(provider = "stripe", secret = "whsec_attribute_tests", idempotency = body.id)]
async fn envelope_hook(body: Bytes) -> String {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    ran("envelope", v["id"].as_str().unwrap_or(""));
    "ok".into()
}

/// The provider's natural key (Stripe: body id) on a handler without a typed body.
#[webhook(provider = "stripe", secret = "whsec_attribute_tests", idempotency)]
async fn natural_key_hook(body: Bytes) -> &'static str {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    ran("natural", v["id"].as_str().unwrap_or(""));
    "ok"
}

/// `body["key"]` on `serde_json::Value`, and an `Extension` beside it.
#[webhook(provider = "stripe", secret = "whsec_attribute_tests", idempotency = body["id"], event_type = body["kind"])]
async fn value_key_hook(
    axum::Extension(tag): axum::Extension<&'static str>,
    Json(v): Json<Value>,
) -> String {
    ran("value", v["id"].as_str().unwrap_or(""));
    tag.to_owned()
}

fn token_verifier(d: &SignedRequest<'_>) -> bool {
    d.headers.get("x-token").is_some_and(|v| v == "letmein")
}

fn panicking_verifier(_: &SignedRequest<'_>) -> Result<bool, String> {
    panic!("verifier exploded")
}

#[webhook(verifier = token_verifier)]
async fn custom_hook() -> &'static str {
    "custom ok"
}

#[webhook(verifier = panicking_verifier)]
async fn custom_panics_hook() -> &'static str {
    "never"
}

#[webhook(provider = "slack", secret = "slack_signing")]
async fn slack_hook() -> &'static str {
    "event"
}

#[webhook(provider = "zoom", secret = "zoom_token")]
async fn zoom_hook() -> &'static str {
    "event"
}

#[webhook(provider = "twitch", secret = "twitch_secret_123")]
async fn twitch_hook() -> &'static str {
    "event"
}

fn discord_key() -> String {
    TestKeys::for_provider(Provider::Discord).verifying
}

#[webhook(provider = "discord", secret = discord_key)]
async fn discord_hook() -> &'static str {
    "interaction"
}

#[webhook(provider = "twilio", secret = "twilio_auth_token", idempotency)]
async fn twilio_hook(body: String) -> String {
    body
}

async fn plain_track(track: Track) -> &'static str {
    track.processed();
    "unreachable"
}

fn app() -> Router {
    Router::new()
        .route("/stripe", post(stripe_hook))
        .route("/gh/{tenant}", post(github_hook))
        .route("/unset", post(unset_secret_hook))
        .route("/small", post(small_hook))
        .route("/observe", post(observe_hook))
        .route("/capture", post(capture_hook))
        .route("/optional", post(optional_key_hook))
        .route("/envelope", post(envelope_hook))
        .route("/natural", post(natural_key_hook))
        .route("/custom", post(custom_hook))
        .route("/custom-panics", post(custom_panics_hook))
        .route("/slack", post(slack_hook))
        .route("/zoom", post(zoom_hook))
        .route("/twitch", post(twitch_hook))
        .route("/discord", post(discord_hook))
        .route("/plain", post(plain_track))
        .route("/value", post(value_key_hook))
        .route("/twilio", post(twilio_hook))
        .layer(axum::Extension("tagged"))
        .with_state(AppState { name: "app-state" })
}

/// Serves `app()` on a free loopback port.
async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    format!("http://{addr}")
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// The test case a request belongs to: its `case` query value (the whole path without one).
/// Reports redact query values, so requests carry it in an `x-test-case` header too.
fn case_of(path: &str) -> &str {
    path.split_once("case=")
        .map_or(path, |(_, c)| c.split('&').next().unwrap_or(c))
}

async fn post_signed(base: &str, path: &str, signed: &Signed) -> Reply {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .headers(signed.headers.clone())
        .header("x-test-case", case_of(path))
        .body(signed.body.clone())
        .send()
        .await
        .unwrap();
    Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

fn stripe(id: &str, kind: &str) -> Signed {
    let body = json!({ "id": id, "type": kind, "object": "event" }).to_string();
    Signer::new(Provider::Stripe, STRIPE_SECRET)
        .sign(body)
        .unwrap()
}

/// The next event for the request `url` (a path with a `case` unique to the test, so events
/// of tests running at the same time are skipped).
async fn next_event(sub: &mut outworx_hooks::Subscription, url: &str) -> Arc<DeliveryEvent> {
    let path = url.split('?').next().unwrap_or(url);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = sub.recv().await.expect("events");
            let case = e
                .request_headers
                .as_ref()
                .and_then(|h| h.get("x-test-case"))
                .map(String::as_str);
            let same_path = e.source_url.as_deref().and_then(|u| u.split('?').next());
            if same_path == Some(path) && case == Some(case_of(url)) {
                return e;
            }
        }
    })
    .await
    .expect("an event in time")
}

#[tokio::test]
async fn valid_delivery_runs_the_handler_and_reports_it() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let r = post_signed(
        &base,
        "/stripe?case=valid_delivery_runs_the_handler_and_reports_it",
        &stripe("evt_valid", "charge.succeeded"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, r#"{"received":"evt_valid"}"#);
    assert_eq!(runs("stripe", "evt_valid"), 1);
    let e = next_event(
        &mut sub,
        "/stripe?case=valid_delivery_runs_the_handler_and_reports_it",
    )
    .await;
    assert_eq!(e.provider, "stripe");
    assert_eq!((e.status_code, e.success), (200, true));
    assert_eq!(e.signature_valid, Some(true));
    assert_eq!(e.event_type.as_deref(), Some("charge.succeeded"));
    assert_eq!(e.processing_status, Some(ProcessingStatus::Completed));
    assert!(e.processing_marked_at.is_some());
    assert_eq!(e.meta("charge"), Some(&json!("ch_1")));
    // Query values and signature headers are never reported.
    assert_eq!(e.source_url.as_deref(), Some("/stripe?case=[REDACTED]"));
    assert!(e.payload_size > 0);
    let headers = e.request_headers.as_ref().unwrap();
    assert_eq!(headers["stripe-signature"], "[REDACTED]");
}

#[tokio::test]
async fn duplicates_replay_the_first_response_without_running_the_handler() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let delivery = stripe("evt_dup", "charge.succeeded");
    let first = post_signed(
        &base,
        "/stripe?case=duplicates_replay_the_first_response_without_running_the_handler",
        &delivery,
    )
    .await;
    let _ = next_event(
        &mut sub,
        "/stripe?case=duplicates_replay_the_first_response_without_running_the_handler",
    )
    .await;
    // A retry, signed again later as the provider would.
    let again = post_signed(
        &base,
        "/stripe?case=duplicates_replay_the_first_response_without_running_the_handler",
        &stripe("evt_dup", "charge.succeeded"),
    )
    .await;
    assert_eq!(again.status, first.status);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["content-type"], first.headers["content-type"]);
    assert_eq!(again.headers["x-outworx-duplicate"], "true");
    assert_eq!(runs("stripe", "evt_dup"), 1);
    let e = next_event(
        &mut sub,
        "/stripe?case=duplicates_replay_the_first_response_without_running_the_handler",
    )
    .await;
    assert_eq!(e.meta("duplicate"), Some(&json!(true)));
}

#[tokio::test]
async fn concurrent_copies_in_flight_get_409_with_retry_after() {
    let base = serve().await;
    let slow = stripe("evt_inflight", "slow");
    let (a, b) = tokio::join!(
        post_signed(
            &base,
            "/stripe?case=concurrent_copies_in_flight_get_409_with_retry_after",
            &slow
        ),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            post_signed(
                &base,
                "/stripe?case=concurrent_copies_in_flight_get_409_with_retry_after",
                &slow,
            )
            .await
        }
    );
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(b.status, StatusCode::CONFLICT);
    assert!(b.headers.contains_key("retry-after"));
    assert_eq!(runs("stripe", "evt_inflight"), 1);
}

#[tokio::test]
async fn bad_signatures_get_401_and_never_reach_the_handler() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let mut tampered = stripe("evt_tampered", "charge.succeeded");
    tampered.body = json!({ "id": "evt_tampered", "type": "charge.refunded" })
        .to_string()
        .into_bytes();
    let r = post_signed(
        &base,
        "/stripe?case=bad_signatures_get_401_and_never_reach_the_handler",
        &tampered,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let e = next_event(
        &mut sub,
        "/stripe?case=bad_signatures_get_401_and_never_reach_the_handler",
    )
    .await;
    assert_eq!(e.signature_valid, Some(false));
    assert_eq!(
        e.signature_failure_reason,
        Some(FailureReason::HmacMismatch)
    );

    let body = json!({ "id": "evt_stale", "type": "charge.succeeded" }).to_string();
    let stale = Signer::new(Provider::Stripe, STRIPE_SECRET)
        .at(outworx_hooks::security::now_unix() - 3600)
        .sign(body)
        .unwrap();
    assert_eq!(
        post_signed(
            &base,
            "/stripe?case=bad_signatures_get_401_and_never_reach_the_handler",
            &stale
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let e = next_event(
        &mut sub,
        "/stripe?case=bad_signatures_get_401_and_never_reach_the_handler",
    )
    .await;
    assert_eq!(
        e.signature_failure_reason,
        Some(FailureReason::TimestampDrift)
    );

    let wrong = Signer::new(Provider::Stripe, "whsec_wrong")
        .sign("{}")
        .unwrap();
    assert_eq!(
        post_signed(
            &base,
            "/stripe?case=bad_signatures_get_401_and_never_reach_the_handler",
            &wrong
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        runs("stripe", "evt_tampered") + runs("stripe", "evt_stale"),
        0
    );
}

#[tokio::test]
async fn processing_marks_failed_and_silent_drop() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    post_signed(
        &base,
        "/stripe?case=processing_marks_failed_and_silent_drop",
        &stripe("evt_failed", "charge.failed"),
    )
    .await;
    let e = next_event(
        &mut sub,
        "/stripe?case=processing_marks_failed_and_silent_drop",
    )
    .await;
    assert_eq!(e.processing_status, Some(ProcessingStatus::Failed));
    assert_eq!(
        e.processing_failure_reason.as_deref(),
        Some("card declined")
    );

    let r = post_signed(
        &base,
        "/stripe?case=processing_marks_failed_and_silent_drop",
        &stripe("evt_drop", "customer.created"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = next_event(
        &mut sub,
        "/stripe?case=processing_marks_failed_and_silent_drop",
    )
    .await;
    assert_eq!(e.processing_status, Some(ProcessingStatus::SilentDrop));
}

#[tokio::test]
async fn panics_and_5xx_release_the_key_so_the_retry_runs_again() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let boom = stripe("evt_panic", "handler.panics");
    let r = post_signed(
        &base,
        "/stripe?case=panics_and_5xx_release_the_key_so_the_retry_runs_again",
        &boom,
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let e = next_event(
        &mut sub,
        "/stripe?case=panics_and_5xx_release_the_key_so_the_retry_runs_again",
    )
    .await;
    assert_eq!(
        e.error_message.as_deref(),
        Some("handler panicked: boom in the handler")
    );
    post_signed(
        &base,
        "/stripe?case=panics_and_5xx_release_the_key_so_the_retry_runs_again",
        &boom,
    )
    .await;
    assert_eq!(
        runs("stripe", "evt_panic"),
        2,
        "the key was released after the panic"
    );

    let busy = stripe("evt_503", "server.error");
    assert_eq!(
        post_signed(
            &base,
            "/stripe?case=panics_and_5xx_release_the_key_so_the_retry_runs_again",
            &busy
        )
        .await
        .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    post_signed(
        &base,
        "/stripe?case=panics_and_5xx_release_the_key_so_the_retry_runs_again",
        &busy,
    )
    .await;
    assert_eq!(
        runs("stripe", "evt_503"),
        2,
        "the key was released after the 503"
    );
}

#[tokio::test]
async fn state_path_query_headers_and_string_body_extractors_work() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let body = r#"{"action":"opened","number":7}"#;
    let signed = Signer::new(Provider::Github, "gh_secret")
        .id("gh-delivery-1")
        .sign(body)
        .unwrap();
    let mut signed2 = signed.clone();
    signed2
        .headers
        .insert("x-github-event", "pull_request".parse().unwrap());
    let r = post_signed(
        &base,
        "/gh/acme?x=42&case=state_path_query_headers_and_string_body_extractors_work",
        &signed2,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, format!("app-state|acme|42|{body}"));
    let e = next_event(
        &mut sub,
        "/gh/acme?x=42&case=state_path_query_headers_and_string_body_extractors_work",
    )
    .await;
    assert_eq!(e.event_type.as_deref(), Some("pull_request"));
    // GitHub's natural key is the X-GitHub-Delivery header.
    let r = post_signed(
        &base,
        "/gh/acme?x=42&case=state_path_query_headers_and_string_body_extractors_work",
        &signed2,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(runs("github", "gh-delivery-1"), 1);
}

#[tokio::test]
async fn missing_secret_at_request_time_is_a_500_never_a_401() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let r = post_signed(
        &base,
        "/unset?case=missing_secret_at_request_time_is_a_500_never_a_401",
        &stripe("evt_unset", "x"),
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    // The sender learns nothing of the configuration; the event and the log say what it is.
    assert!(!r.body.contains("OUTWORX_TEST_SECRET"), "{}", r.body);
    assert!(r.body.contains("misconfigured"), "{}", r.body);
    let e = next_event(
        &mut sub,
        "/unset?case=missing_secret_at_request_time_is_a_500_never_a_401",
    )
    .await;
    let why = e.error_message.as_deref().unwrap();
    assert!(
        why.contains("OUTWORX_TEST_SECRET_THAT_IS_NEVER_SET is not set"),
        "{why}"
    );
    assert_eq!(e.signature_valid, None);
}

#[test]
fn init_names_every_route_whose_secret_is_unset() {
    let err = outworx_hooks::init(outworx_hooks::Config::new()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("handler `unset_secret_hook`"), "{text}");
    assert!(text.contains("tests/tests/attribute.rs:"), "{text}");
    assert!(
        text.contains("OUTWORX_TEST_SECRET_THAT_IS_NEVER_SET"),
        "{text}"
    );
    // Routes whose secrets are fine are not listed.
    assert!(!text.contains("stripe_hook"), "{text}");
}

#[tokio::test]
async fn bodies_over_max_body_get_413() {
    let base = serve().await;
    let big = Signer::new(Provider::Github, "gh_secret")
        .sign(vec![b'x'; 100])
        .unwrap();
    assert_eq!(
        post_signed(&base, "/small?case=bodies_over_max_body_get_413", &big)
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let small = Signer::new(Provider::Github, "gh_secret")
        .sign(vec![b'x'; 10])
        .unwrap();
    let r = post_signed(&base, "/small?case=bodies_over_max_body_get_413", &small).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "10"));
}

#[tokio::test]
async fn reject_invalid_false_lets_the_handler_run_and_reports_the_verdict() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let wrong = Signer::new(Provider::Github, "not-the-secret")
        .sign("hello")
        .unwrap();
    let r = post_signed(
        &base,
        "/observe?case=reject_invalid_false_lets_the_handler_run_and_reports_the_verdict",
        &wrong,
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "saw 5 bytes"));
    let e = next_event(
        &mut sub,
        "/observe?case=reject_invalid_false_lets_the_handler_run_and_reports_the_verdict",
    )
    .await;
    assert_eq!(e.signature_valid, Some(false));
    assert_eq!(
        e.signature_failure_reason,
        Some(FailureReason::HmacMismatch)
    );
}

#[tokio::test]
async fn capture_body_and_metadata_reach_the_event() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let mut signed = Signer::new(Provider::Github, "gh_secret")
        .sign(r#"{"a":1}"#)
        .unwrap();
    signed
        .headers
        .insert("authorization", "Bearer hunter2".parse().unwrap());
    signed
        .headers
        .insert("x-internal-token", "route-level-secret".parse().unwrap());
    post_signed(
        &base,
        "/capture?case=capture_body_and_metadata_reach_the_event",
        &signed,
    )
    .await;
    let e = next_event(
        &mut sub,
        "/capture?case=capture_body_and_metadata_reach_the_event",
    )
    .await;
    assert_eq!(e.request_body.as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(e.response_body.as_deref(), Some(r#"{"ok":true}"#));
    assert_eq!(e.meta("team"), Some(&json!("billing")));
    assert_eq!(e.meta("tier"), Some(&json!("gold")));
    assert_eq!(
        e.request_headers.as_ref().unwrap()["authorization"],
        "[REDACTED]"
    );
    assert_eq!(
        e.request_headers.as_ref().unwrap()["x-internal-token"],
        "[REDACTED]",
        "the route's own redact list"
    );
    let wire = serde_json::to_string(&*e).unwrap();
    assert!(!wire.contains("hunter2") && !wire.contains("gh_secret"));
    assert!(!wire.contains("route-level-secret"));
}

#[tokio::test]
async fn missing_optional_keys_skip_deduplication() {
    let base = serve().await;
    let body = r#"{"type":"charge.succeeded"}"#;
    for _ in 0..2 {
        let s = Signer::new(Provider::Stripe, STRIPE_SECRET)
            .sign(body)
            .unwrap();
        assert_eq!(
            post_signed(
                &base,
                "/optional?case=missing_optional_keys_skip_deduplication",
                &s
            )
            .await
            .status,
            StatusCode::OK
        );
    }
    assert_eq!(runs("optional", "none"), 2);
}

#[tokio::test]
async fn envelope_and_natural_keys_dedupe_handlers_without_a_typed_body() {
    let base = serve().await;
    for path in ["/envelope", "/natural"] {
        for _ in 0..2 {
            let r = post_signed(&base, path, &stripe(&format!("evt{}", &path[1..]), "x")).await;
            assert_eq!(r.status, StatusCode::OK);
        }
    }
    assert_eq!(runs("envelope", "evtenvelope"), 1);
    assert_eq!(runs("natural", "evtnatural"), 1);
}

#[tokio::test]
async fn a_body_the_handler_type_cannot_read_is_a_500() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let s = Signer::new(Provider::Stripe, STRIPE_SECRET)
        .sign(r#"{"no_id":true}"#)
        .unwrap();
    let r = post_signed(
        &base,
        "/stripe?case=a_body_the_handler_type_cannot_read_is_a_500",
        &s,
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let e = next_event(
        &mut sub,
        "/stripe?case=a_body_the_handler_type_cannot_read_is_a_500",
    )
    .await;
    assert!(
        e.error_message
            .as_deref()
            .unwrap()
            .contains("missing field `id`")
    );
    assert_eq!(e.signature_valid, Some(true));
}

#[tokio::test]
async fn custom_verifiers_decide_and_their_panics_are_verifier_threw() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let client = reqwest::Client::new();
    let ok = client
        .post(format!("{base}/custom"))
        .header("x-token", "letmein")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let no = client.post(format!("{base}/custom")).send().await.unwrap();
    assert_eq!(no.status(), StatusCode::UNAUTHORIZED);
    let boom = client
        .post(format!("{base}/custom-panics"))
        .header("x-test-case", "/custom-panics")
        .send()
        .await
        .unwrap();
    assert_eq!(boom.status(), StatusCode::UNAUTHORIZED);
    let e = next_event(&mut sub, "/custom-panics").await;
    assert_eq!(
        e.signature_failure_reason,
        Some(FailureReason::VerifierThrew)
    );
    assert_eq!(e.provider, "custom");
}

#[tokio::test]
async fn provider_handshakes_are_answered_after_the_signature_check() {
    let base = serve().await;

    let slack = Signer::new(Provider::Slack, "slack_signing")
        .sign(r#"{"token":"t","challenge":"ch4ll3nge","type":"url_verification"}"#)
        .unwrap();
    let r = post_signed(
        &base,
        "/slack?case=provider_handshakes_are_answered_after_the_signature_check",
        &slack,
    )
    .await;
    assert_eq!(r.body, r#"{"challenge":"ch4ll3nge"}"#);
    let forged = Signer::new(Provider::Slack, "other")
        .sign(r#"{"challenge":"x","type":"url_verification"}"#)
        .unwrap();
    assert_eq!(
        post_signed(
            &base,
            "/slack?case=provider_handshakes_are_answered_after_the_signature_check",
            &forged
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );

    let zoom = Signer::new(Provider::Zoom, "zoom_token")
        .sign(r#"{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}"#)
        .unwrap();
    let r: Value = serde_json::from_str(
        &post_signed(
            &base,
            "/zoom?case=provider_handshakes_are_answered_after_the_signature_check",
            &zoom,
        )
        .await
        .body,
    )
    .unwrap();
    assert_eq!(r["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    let expected = hex_hmac("zoom_token", "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(r["encryptedToken"], expected);

    let mut twitch = Signer::new(Provider::Twitch, "twitch_secret_123")
        .sign(r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{}}"#)
        .unwrap();
    twitch.headers.insert(
        "twitch-eventsub-message-type",
        "webhook_callback_verification".parse().unwrap(),
    );
    let r = post_signed(
        &base,
        "/twitch?case=provider_handshakes_are_answered_after_the_signature_check",
        &twitch,
    )
    .await;
    assert_eq!(r.body, "pogchamp-kappa-360noscope-vohiyo");

    let keys = TestKeys::for_provider(Provider::Discord);
    let ping = Signer::new(Provider::Discord, &keys.signing)
        .sign(r#"{"type":1,"id":"1"}"#)
        .unwrap();
    assert_eq!(
        post_signed(
            &base,
            "/discord?case=provider_handshakes_are_answered_after_the_signature_check",
            &ping
        )
        .await
        .body,
        r#"{"type":1}"#
    );
    let cmd = Signer::new(Provider::Discord, &keys.signing)
        .sign(r#"{"type":2,"id":"2"}"#)
        .unwrap();
    assert_eq!(
        post_signed(
            &base,
            "/discord?case=provider_handshakes_are_answered_after_the_signature_check",
            &cmd
        )
        .await
        .body,
        "interaction"
    );
}

fn hex_hmac(key: &str, msg: &str) -> String {
    // An independent HMAC: the Signer of a provider that signs the body alone (GitHub).
    let s = Signer::new(Provider::Github, key).sign(msg).unwrap();
    s.headers["x-hub-signature-256"].to_str().unwrap()["sha256=".len()..].to_owned()
}

#[tokio::test]
async fn track_outside_the_attribute_is_a_clear_500() {
    let base = serve().await;
    let r = reqwest::Client::new()
        .post(format!("{base}/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.text().await.unwrap().contains("#[webhook]"));
}

#[tokio::test]
async fn in_process_oneshot_works_too() {
    use tower::ServiceExt as _;
    let req = Signer::new(Provider::Stripe, STRIPE_SECRET)
        .request(
            "/stripe",
            json!({"id": "evt_oneshot", "type": "charge.succeeded"}).to_string(),
        )
        .unwrap()
        .map(axum::body::Body::from);
    let resp = app().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(runs("stripe", "evt_oneshot"), 1);
}

#[tokio::test]
async fn index_keys_on_json_values_and_extensions() {
    let base = serve().await;
    let mut sub = outworx_hooks::subscribe();
    let body = r#"{"id":"evt_value","kind":"order.paid"}"#;
    for _ in 0..2 {
        let s = Signer::new(Provider::Stripe, STRIPE_SECRET)
            .sign(body)
            .unwrap();
        let r = post_signed(&base, "/value?case=index_keys", &s).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "tagged"));
    }
    assert_eq!(runs("value", "evt_value"), 1);
    let e = next_event(&mut sub, "/value?case=index_keys").await;
    assert_eq!(e.event_type.as_deref(), Some("order.paid"));
}

/// Twilio signs the full public URL; the pipeline rebuilds it from the Host header (https by
/// default) or the X-Forwarded-* headers of a proxy in front.
#[tokio::test]
async fn url_signing_providers_verify_against_the_public_url() {
    let base = serve().await;
    let host = base.trim_start_matches("http://");
    let form = "From=%2B15551234567&Body=hello&MessageSid=SM1";
    let signed = Signer::new(Provider::Twilio, "twilio_auth_token")
        .url(format!("https://{host}/twilio?case=url"))
        .sign(form)
        .unwrap();
    let r = post_signed(&base, "/twilio?case=url", &signed).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, form));

    // X-Forwarded-* from a peer that is not a trusted proxy are ignored: a sender cannot
    // choose the URL that is verified (`tests/proxies.rs` covers trusted proxies).
    let mut sub = outworx_hooks::subscribe();
    let mut proxied = Signer::new(Provider::Twilio, "twilio_auth_token")
        .url("https://hooks.example.com/twilio?case=proxied")
        .sign(form)
        .unwrap();
    proxied
        .headers
        .insert("x-forwarded-host", "hooks.example.com".parse().unwrap());
    proxied
        .headers
        .insert("x-forwarded-proto", "https".parse().unwrap());
    assert_eq!(
        post_signed(&base, "/twilio?case=proxied", &proxied)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let e = next_event(&mut sub, "/twilio?case=proxied").await;
    let hint = e.signature_hint.as_deref().unwrap_or_default();
    assert!(hint.contains("Config::trusted_proxies"), "{hint}");

    // Signed for another URL: rejected.
    let other = Signer::new(Provider::Twilio, "twilio_auth_token")
        .url("https://evil.example.com/twilio?case=other")
        .sign(form)
        .unwrap();
    assert_eq!(
        post_signed(&base, "/twilio?case=other", &other)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
