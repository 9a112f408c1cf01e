//! `OutworxApiStore` against a loopback server that implements the Outworx idempotency
//! endpoints (with reservation tokens and Bearer auth); fail open and fail closed.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::Config;
use outworx_hooks::store::OutworxApiStore;
use serde_json::{Value, json};

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";

enum Entry {
    Pending(String),
    Done(Value),
}

type Db = Arc<Mutex<HashMap<String, Entry>>>;

type Answer = (StatusCode, Json<Value>);

/// `Err` with a 401 unless the request carries the Bearer key.
fn authorized(h: &HeaderMap) -> Result<(), Answer> {
    let ok = h
        .get("authorization")
        .is_some_and(|v| v == &*format!("Bearer {KEY}"));
    if ok {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "bad key" })),
        ))
    }
}

async fn check(
    State(db): State<Db>,
    h: HeaderMap,
    Json(req): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Err(refused) = authorized(&h) {
        return refused;
    }
    let key = req["key"].as_str().unwrap_or_default().to_owned();
    assert!(
        req["ttl"].is_u64(),
        "the check carries the TTL as `ttl`, as the Python package does"
    );
    let mut db = db.lock().unwrap();
    let answer = match db.get(&key) {
        None => {
            db.insert(
                key,
                Entry::Pending(req["token"].as_str().unwrap_or_default().into()),
            );
            json!({ "status": "new" })
        }
        Some(Entry::Pending(_)) => json!({ "status": "duplicate", "cached_status_code": null }),
        Some(Entry::Done(cached)) => cached.clone(),
    };
    (StatusCode::OK, Json(answer))
}

async fn complete(
    State(db): State<Db>,
    h: HeaderMap,
    Json(req): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Err(refused) = authorized(&h) {
        return refused;
    }
    let key = req["key"].as_str().unwrap_or_default();
    let mut db = db.lock().unwrap();
    let holds = matches!(db.get(key), Some(Entry::Pending(t)) if req["token"] == **t);
    if holds {
        if req["release"] == true {
            db.remove(key);
        } else {
            let cached = json!({
                "status": "duplicate",
                "cached_status_code": req["response_status_code"],
                "cached_body": req["response_body"],
                "cached_content_type": req["content_type"],
            });
            db.insert(key.to_owned(), Entry::Done(cached));
        }
    }
    (StatusCode::OK, Json(json!({ "ok": holds })))
}

async fn fake_api() -> String {
    let db: Db = Arc::default();
    let app = Router::new()
        .route("/api/sdk/idempotency/check", post(check))
        .route("/api/sdk/idempotency/complete", post(complete))
        .with_state(db);
    common::serve(app).await
}

/// An API whose check answers a duplicate with a status no HTTP response has.
async fn bogus_api() -> String {
    let app = Router::new().route(
        "/api/sdk/idempotency/check",
        post(|| async { Json(json!({ "status": "duplicate", "cached_status_code": 70_000 })) }),
    );
    common::serve(app).await
}

/// An address that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outworx_api_store_dedupes_and_fails_open_or_closed() {
    let api = fake_api().await;
    let receiver = common::serve(common::router()).await;
    let url = format!("{receiver}/hook");
    let client = reqwest::Client::new();

    let _guard = outworx_hooks::init(Config::new().store(OutworxApiStore::new(&api, KEY))).unwrap();
    common::two_hundred_copies(std::slice::from_ref(&url), "api-200").await;
    common::failures_release_the_key(&url).await;

    // The API unreachable, slow, refusing the key or answering nonsense: the delivery is
    // handled (fail open),
    // and its event says why deduplication was skipped.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let stores = [
        OutworxApiStore::new(dead.clone(), KEY),
        OutworxApiStore::new(black_hole().await, KEY).with_timeout(Duration::from_millis(300)),
        OutworxApiStore::new(&api, "ohk_ffffffffffffffffffffffffffffffff"),
        // An answer that cannot be right is an error, not a delivery in flight (409).
        OutworxApiStore::new(bogus_api().await, KEY),
    ];
    for (i, store) in stores.into_iter().enumerate() {
        let _guard = outworx_hooks::init(Config::new().store(store)).unwrap();
        let mut events = outworx_hooks::subscribe();
        let id = format!("api-open-{i}");
        let (status, body) = common::send(&client, &url, &common::signed(&id, "work")).await;
        assert_eq!((status, body), (StatusCode::OK, format!("{id} run 1")));
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        let why = e
            .meta("idempotency_error")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(
            why.starts_with("idempotency store error: outworx api"),
            "{why}"
        );
        assert!(!why.contains(KEY), "the API key never appears in events");
    }

    // fail_closed: a 503 with Retry-After, and the handler does not run.
    let _guard = outworx_hooks::init(
        Config::new()
            .store(OutworxApiStore::new(dead, KEY))
            .fail_closed(true),
    )
    .unwrap();
    let resp = client
        .post(&url)
        .headers(common::signed("api-closed", "work").headers)
        .body("work")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(common::runs("api-closed"), 0);
}
