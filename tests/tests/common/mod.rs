//! Shared by the store tests: a counting handler, and a driver that sends many concurrent
//! copies of one delivery (the `redis-server` they run is `outworx_test_support::redis`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::webhook;

static RUNS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

pub(crate) fn runs(id: &str) -> usize {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|r| r.get(id).copied())
        .unwrap_or(0)
}

/// Counts its runs per delivery id, takes a while (so copies overlap), and answers by body:
/// `fail` is a 503, `panic` panics, anything else is 200 with the run number.
#[webhook(provider = "github", secret = "store-tests-secret", idempotency = header("x-github-delivery"))]
pub async fn counted(headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let id = headers["x-github-delivery"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let n = {
        let mut runs = RUNS.lock().unwrap();
        let n = runs
            .get_or_insert_with(HashMap::new)
            .entry(id.clone())
            .or_default();
        *n += 1;
        *n
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    match &body[..] {
        b"fail" => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{id} failed on run {n}"),
        ),
        b"panic" => panic!("counted handler panics for {id}"),
        _ => (StatusCode::OK, format!("{id} run {n}")),
    }
}

pub(crate) fn router() -> axum::Router {
    axum::Router::new().route("/hook", axum::routing::post(counted))
}

pub(crate) async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

pub(crate) fn signed(id: &str, body: &str) -> outworx_hooks::testing::Signed {
    Signer::new(Provider::Github, "store-tests-secret")
        .id(id)
        .sign(body)
        .unwrap()
}

pub(crate) async fn send(
    client: &reqwest::Client,
    url: &str,
    s: &outworx_hooks::testing::Signed,
) -> (StatusCode, String) {
    let r = client
        .post(url)
        .headers(s.headers.clone())
        .body(s.body.clone())
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// 200 concurrent copies of one delivery, spread over `urls`: the handler runs once, every
/// 2xx answer is the first run's body, the others are 409, and a later copy replays it.
pub(crate) async fn two_hundred_copies(urls: &[String], id: &str) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let s = signed(id, "work");
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (client, s, url) = (client.clone(), s.clone(), urls[i % urls.len()].clone());
            tokio::spawn(async move { send(&client, &url, &s).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::OK => {
                ok += 1;
                assert_eq!(body, format!("{id} run 1"));
            }
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(ok >= 1);
    assert_eq!(runs(id), 1, "the handler ran more than once");
    let later = send(&client, &urls[0], &s).await;
    assert_eq!(
        later,
        (StatusCode::OK, format!("{id} run 1")),
        "a later copy replays"
    );
    assert_eq!(runs(id), 1);
}

/// A 503 and a panic release the key: the next copy runs the handler again.
pub(crate) async fn failures_release_the_key(url: &str) {
    let client = reqwest::Client::new();
    for (id, body, status) in [
        ("rel-503", "fail", StatusCode::SERVICE_UNAVAILABLE),
        ("rel-panic", "panic", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let s = signed(id, body);
        assert_eq!(send(&client, url, &s).await.0, status);
        assert_eq!(send(&client, url, &s).await.0, status);
        assert_eq!(runs(id), 2, "{id}: the key was released");
    }
}
