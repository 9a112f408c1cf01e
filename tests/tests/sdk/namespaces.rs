//! Whose delivery is whose: idempotency keys are namespaced by service, provider and route, so
//! two routes that receive the same event id (Stripe sends one event to every endpoint) both
//! run; a natural key from an unsigned header cannot be replayed under a new id; and a forged
//! delivery let through with `reject_invalid = false` never reserves or replays a key.
//!
//! (Two services sharing one Redis: `store_redis.rs`, with two processes.)

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::{Signed, Signer};
use outworx_hooks::{OutworxHooksLayer, Track, TrackOptions, webhook};

const STRIPE: &str = "whsec_namespace_tests";
const GITHUB: &str = "gh_namespace_tests";

static RUNS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

fn ran(route: &str) {
    let mut runs = RUNS.lock().unwrap();
    *runs
        .get_or_insert_with(HashMap::new)
        .entry(route.to_owned())
        .or_default() += 1;
}

fn runs(route: &str) -> usize {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|r| r.get(route).copied())
        .unwrap_or(0)
}

/// Two handlers of the same name in two modules, on the same provider and key.
mod billing {
    use super::*;
    #[webhook(provider = "stripe", secret = "whsec_namespace_tests", idempotency)]
    pub async fn hook(body: Bytes) -> String {
        ran(&format!("billing/{}", body.len()));
        "billing".into()
    }
}

mod shipping {
    use super::*;
    #[webhook(provider = "stripe", secret = "whsec_namespace_tests", idempotency)]
    pub async fn hook(body: Bytes) -> String {
        ran(&format!("shipping/{}", body.len()));
        "shipping".into()
    }
}

/// GitHub's natural key is the `X-GitHub-Delivery` header, which the signature does not cover.
#[webhook(provider = "github", secret = "gh_namespace_tests", idempotency)]
async fn github(body: Bytes) -> String {
    ran(&format!("github/{}", String::from_utf8_lossy(&body)));
    "handled".into()
}

/// Lets forged deliveries through (reported), keyed on the delivery header.
#[webhook(provider = "github", secret = "gh_namespace_tests", reject_invalid = false,
          idempotency = header("x-github-delivery"))]
async fn observe(track: Track, body: Bytes) -> String {
    let valid = track.signature_valid();
    ran(&format!(
        "observe/{valid:?}/{}",
        String::from_utf8_lossy(&body)
    ));
    format!("valid={valid:?}")
}

async fn layered(body: Bytes) -> String {
    ran(&format!("layer/{}", body.len()));
    "layer".into()
}

fn app() -> Router {
    // Two layers with every default: the same name, `layer:stripe`, on two endpoints.
    let layer = || {
        OutworxHooksLayer::new(
            TrackOptions::new(Provider::Stripe)
                .secret(STRIPE)
                .natural_idempotency_key(),
        )
    };
    Router::new()
        .route("/billing", post(billing::hook))
        .route("/shipping", post(shipping::hook))
        .route("/github", post(github))
        .route("/observe", post(observe))
        .route("/layer-a", post(layered).layer(layer()))
        .route("/layer-b", post(layered).layer(layer()))
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app()).await });
    base
}

async fn send(url: &str, s: &Signed) -> (StatusCode, String, bool) {
    let r = reqwest::Client::new()
        .post(url)
        .headers(s.headers.clone())
        .body(s.body.clone())
        .send()
        .await
        .unwrap();
    let duplicate = r.headers().contains_key("x-outworx-duplicate");
    (r.status(), r.text().await.unwrap(), duplicate)
}

#[tokio::test]
async fn equal_handler_names_in_two_modules_both_run() {
    let base = serve().await;
    // One Stripe event, sent to both endpoints: Stripe does exactly this.
    let body = r#"{"id":"evt_same_for_both","type":"charge.succeeded","n":"modules"}"#;
    let s = Signer::new(Provider::Stripe, STRIPE).sign(body).unwrap();
    let len = body.len();
    assert_eq!(
        send(&format!("{base}/billing"), &s).await,
        (StatusCode::OK, "billing".into(), false)
    );
    assert_eq!(
        send(&format!("{base}/shipping"), &s).await,
        (StatusCode::OK, "shipping".into(), false)
    );
    assert_eq!(runs(&format!("billing/{len}")), 1);
    assert_eq!(runs(&format!("shipping/{len}")), 1);
    // Each still dedupes its own retries.
    assert_eq!(
        send(&format!("{base}/shipping"), &s).await,
        (StatusCode::OK, "shipping".into(), true)
    );
    assert_eq!(runs(&format!("shipping/{len}")), 1);
}

#[tokio::test]
async fn two_default_layers_on_two_endpoints_both_run() {
    let base = serve().await;
    let body = r#"{"id":"evt_layers","type":"charge.succeeded","padding":"two layers"}"#;
    let s = Signer::new(Provider::Stripe, STRIPE).sign(body).unwrap();
    let key = format!("layer/{}", body.len());
    for path in ["/layer-a", "/layer-b"] {
        let (status, text, duplicate) = send(&format!("{base}{path}"), &s).await;
        assert_eq!(
            (status, text.as_str(), duplicate),
            (StatusCode::OK, "layer", false)
        );
    }
    assert_eq!(runs(&key), 2, "each endpoint's handler ran once");
    let (_, _, duplicate) = send(&format!("{base}/layer-a"), &s).await;
    assert!(duplicate, "a retry to one endpoint is still its duplicate");
    assert_eq!(runs(&key), 2);
}

#[tokio::test]
async fn a_replay_under_a_new_delivery_id_does_not_run_the_handler_again() {
    let base = serve().await;
    let url = format!("{base}/github");
    let body = r#"{"action":"opened","number":42}"#;
    let first = Signer::new(Provider::Github, GITHUB)
        .id("delivery-1")
        .sign(body)
        .unwrap();
    assert_eq!(send(&url, &first).await.0, StatusCode::OK);
    // The provider's own retry: the same id.
    assert!(send(&url, &first).await.2);
    // A captured delivery replayed with a fresh id: the signature still verifies (the id is
    // not signed), but the signed body is the same event.
    let mut replay = first.clone();
    replay
        .headers
        .insert("x-github-delivery", "attacker-chosen".parse().unwrap());
    let (status, text, duplicate) = send(&url, &replay).await;
    assert_eq!(
        (status, text.as_str(), duplicate),
        (StatusCode::OK, "handled", true)
    );
    assert_eq!(runs(&format!("github/{body}")), 1);
    // A new event is not confused with it.
    let other = Signer::new(Provider::Github, GITHUB)
        .id("delivery-2")
        .sign(r#"{"action":"closed","number":42}"#)
        .unwrap();
    assert!(!send(&url, &other).await.2);
}

#[tokio::test]
async fn forged_deliveries_never_reserve_or_replay_a_key() {
    let base = serve().await;
    let url = format!("{base}/observe");
    let real = Signer::new(Provider::Github, GITHUB)
        .id("evt-forged-first")
        .sign("real event")
        .unwrap();
    let mut forged = Signer::new(Provider::Github, "not-the-secret")
        .id("evt-forged-first")
        .sign("forged event")
        .unwrap();
    forged
        .headers
        .insert("x-github-delivery", "evt-forged-first".parse().unwrap());

    // The forger gets there first: the handler sees the verdict, nothing is reserved.
    let (status, text, duplicate) = send(&url, &forged).await;
    assert_eq!(
        (status, text.as_str(), duplicate),
        (StatusCode::OK, "valid=Some(false)", false)
    );
    // The real event is not pre-empted.
    let (status, text, duplicate) = send(&url, &real).await;
    assert_eq!(
        (status, text.as_str(), duplicate),
        (StatusCode::OK, "valid=Some(true)", false)
    );
    assert_eq!(runs("observe/Some(true)/real event"), 1);
    // A forger asking again does not read the real event's cached response.
    let (_, text, duplicate) = send(&url, &forged).await;
    assert_eq!((text.as_str(), duplicate), ("valid=Some(false)", false));
    assert_eq!(runs("observe/Some(false)/forged event"), 2);
    // The real retry is answered from the store.
    assert!(send(&url, &real).await.2);
    assert_eq!(runs("observe/Some(true)/real event"), 1);
}
