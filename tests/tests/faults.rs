//! Faults, at a small scale (the fault suite, `cargo bench -p outworx-hooks-bench --bench
//! faults`, measures them): real dependencies behind the fault-injecting proxy
//! (`test-support`'s `fault`), real HTTP on loopback, short timeouts, no long sleeps.
//!
//! - A black-holed ingest: 2,000 deliveries are all answered, and once it is back the drop
//!   counter is exactly what was reported minus what arrived.
//! - A black-holed Redis store: deliveries fail open at the store timeout, the breaker opens
//!   after three failures and later deliveries skip the store; the store comes back, a probe
//!   closes the breaker by itself, and duplicates are caught again.
//!
//! One process, one `init`: the ingest and the store faults run one after the other.

mod common;

use outworx_test_support::redis::Redis;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures_util::StreamExt as _;
use outworx_hooks::security::Provider;
use outworx_hooks::store::{BreakerOptions, RedisStore};
use outworx_hooks::testing::Signer;
use outworx_hooks::{Config, webhook};
use outworx_test_support::fault::{Fault, FaultProxy};

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";
const SECRET: &str = "faults-test-secret";

static RUNS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

fn runs(id: &str) -> usize {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|r| r.get(id).copied())
        .unwrap_or(0)
}

#[webhook(provider = "github", secret = "faults-test-secret", idempotency = header("x-github-delivery"))]
async fn hook(headers: HeaderMap) -> StatusCode {
    let id = headers["x-github-delivery"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    *RUNS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(id)
        .or_default() += 1;
    StatusCode::OK
}

/// An ingest that stores nothing and keeps the delivery ids of the events it accepts: a
/// batch sent again (its answer was late) is counted once.
async fn ingest(arrived: &'static Mutex<Option<HashSet<String>>>) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route(
            "/api/ingest",
            post(move |body: axum::body::Bytes| async move {
                let batch: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let mut seen = arrived.lock().unwrap();
                let seen = seen.get_or_insert_with(HashSet::new);
                for e in batch["events"].as_array().into_iter().flatten() {
                    // A delivery's id, and whether it was the replayed duplicate.
                    let id = e["request_headers"]["x-github-delivery"].as_str();
                    let dup = e["metadata"]["duplicate"] == true;
                    seen.insert(format!("{}#{dup}", id.unwrap_or("?")));
                }
                "{}"
            }),
        )
        .route("/api/sdk/verify", post(|| async { "{}" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn deliver(client: &reqwest::Client, url: &str, id: &str) -> StatusCode {
    let s = Signer::new(Provider::Github, SECRET)
        .id(id)
        .sign("{}")
        .unwrap();
    let r = client
        .post(url)
        .headers(s.headers)
        .body(s.body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{id} was not answered: {e}"));
    r.status()
}

/// The proxy itself: each fault is what a client sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_plays_each_fault() {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "up" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let url = format!("http://{}/", proxy.addr());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "up"
    );
    proxy.set(Fault::BlackHole).await;
    assert!(client.get(&url).send().await.unwrap_err().is_timeout());
    proxy.set(Fault::Refuse).await;
    // A pooled connection is reset; a new one is refused. Both at once, neither a timeout.
    for _ in 0..2 {
        let e = client.get(&url).send().await.unwrap_err();
        assert!(!e.is_timeout(), "{e:?}");
    }
    let e = client.get(&url).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    proxy
        .set(Fault::Http {
            status: 429,
            retry_after: Some(7),
        })
        .await;
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["retry-after"].to_str().unwrap()
        ),
        (429, "7")
    );
    proxy.set(Fault::Latency(Duration::from_millis(300))).await;
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "up"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    proxy.set(Fault::Pass).await;
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_store_faults_cost_no_answer_and_lose_nothing_uncounted() {
    static ARRIVED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let arrived = || {
        ARRIVED
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |s| s.len() as u64)
    };
    let ingest_proxy = FaultProxy::start(ingest(&ARRIVED).await).await.unwrap();
    let redis = Redis::start();
    let redis_proxy = FaultProxy::start(([127, 0, 0, 1], redis.port).into())
        .await
        .unwrap();
    let store = RedisStore::connect(&format!("redis://{}", redis_proxy.addr()))
        .await
        .unwrap()
        .with_prefix("faults-test:");
    let guard = outworx_hooks::init(
        Config::new()
            .api_key(KEY)
            .endpoint(format!("http://{}/api/ingest", ingest_proxy.addr()))
            .timeout(Duration::from_secs(1))
            .queue_capacity(500)
            .service("faults-test")
            .store(store)
            .store_breaker(
                BreakerOptions::default()
                    .timeout(Duration::from_millis(300))
                    .failures(3)
                    .cooldown(Duration::from_secs(1))
                    .max_cooldown(Duration::from_secs(2)),
            ),
    )
    .unwrap();
    let base = common::serve(axum::Router::new().route("/hook", post(hook))).await;
    let url = format!("{base}/hook");
    // A request that waited on a dependency would hit this; none may.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(32)
        .build()
        .unwrap();
    let mut reported = 0u64;

    // --- the ingest is a black hole: every delivery is answered all the same ----------------
    ingest_proxy.set(Fault::BlackHole).await;
    let next = AtomicU64::new(0);
    let answered: Vec<StatusCode> = futures_util::stream::iter(0..2000)
        .map(|_| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let (client, url) = (&client, &url);
            async move { deliver(client, url, &format!("bh-{n}")).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    reported += 2000;
    assert!(answered.iter().all(|s| *s == StatusCode::OK));
    assert_eq!(arrived(), 0, "nothing got through the black hole");
    assert!(guard.dropped_events() > 0, "a 500-event queue overflowed");
    ingest_proxy.set(Fault::Pass).await;

    // --- the store: healthy, a duplicate is caught ----------------------------------------
    let mut events = outworx_hooks::subscribe();
    for _ in 0..2 {
        assert_eq!(deliver(&client, &url, "dup-1").await, StatusCode::OK);
    }
    reported += 2;
    assert_eq!(runs("dup-1"), 1);

    // --- the store is a black hole: fail open at its timeout, then skipped -----------------
    redis_proxy.set(Fault::BlackHole).await;
    for i in 0..10 {
        assert_eq!(
            deliver(&client, &url, &format!("sbh-{i}")).await,
            StatusCode::OK
        );
    }
    reported += 10;
    let mut errors = Vec::new();
    while errors.len() < 10 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event")
            .unwrap();
        if let Some(why) = e.meta("idempotency_error").and_then(|v| v.as_str()) {
            errors.push(why.to_owned());
        }
    }
    assert!(
        errors[..3]
            .iter()
            .all(|e| e.contains("timed out after 300 ms")),
        "{errors:?}"
    );
    // Open: later deliveries skip the store at once; on a slow machine one of them may be
    // the probe after the 1 s cooldown, which pays the timeout again.
    let skipped = errors[3..]
        .iter()
        .filter(|e| e.contains("circuit breaker is open"))
        .count();
    let probes = errors[3..]
        .iter()
        .filter(|e| e.contains("timed out"))
        .count();
    assert!(
        skipped >= 6 && skipped + probes == 7 && probes <= 1,
        "later deliveries skip the store at once: {errors:?}"
    );

    // --- the store is back: a probe closes the breaker by itself ----------------------------
    redis_proxy.set(Fault::Pass).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    loop {
        i += 1;
        assert_eq!(
            deliver(&client, &url, &format!("back-{i}")).await,
            StatusCode::OK
        );
        reported += 1;
        let e = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let e = events.next().await.unwrap();
                if e.source_url.as_deref() == Some("/hook") {
                    return e;
                }
            }
        })
        .await
        .unwrap();
        if e.meta("idempotency_error").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the breaker never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..2 {
        assert_eq!(deliver(&client, &url, "dup-2").await, StatusCode::OK);
    }
    reported += 2;
    assert_eq!(runs("dup-2"), 1, "duplicates are caught again");

    // --- every event arrived or was counted as dropped -------------------------------------
    guard.flush().await;
    let (arrived, dropped) = (arrived(), guard.dropped_events());
    println!("{reported} reported, {arrived} arrived, {dropped} dropped");
    assert_eq!(
        dropped,
        reported.saturating_sub(arrived),
        "{reported} reported, {arrived} arrived, {dropped} dropped"
    );
    guard.shutdown().await;
}
