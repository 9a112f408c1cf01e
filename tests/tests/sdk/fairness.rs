//! Fair delivery between tenants, on a real SQLite outbox and real HTTP: one tenant with
//! 100,000 messages queued, 50 endpoints that never answer (tarpits) and continuous test
//! calls does not slow another tenant's deliveries beyond max(2x their unloaded p99, their
//! unloaded p99 + 50 ms); its test calls are refused 429 with `Retry-After` past its quota.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use outworx_hooks::send::{
    Emitter, NewEndpoint, NewMessage, Outbox, Scope, SendError, TargetPolicy, management_router,
    sqlx,
};
use outworx_test_support::net::temp_dir;
use serde_json::json;

#[derive(Clone, Default)]
struct Receiver {
    /// When each calm delivery arrived, by message id.
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
    /// Tarpit requests open now, and the most at once.
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

async fn calm(State(r): State<Receiver>, headers: HeaderMap) -> &'static str {
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        r.arrived
            .lock()
            .unwrap()
            .insert(id.to_owned(), Instant::now());
    }
    "ok"
}

async fn tarpit(State(r): State<Receiver>) -> &'static str {
    let now = r.open.fetch_add(1, Ordering::SeqCst) + 1;
    r.most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    r.open.fetch_sub(1, Ordering::SeqCst);
    "late"
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Sends `n` messages of the calm tenant, one every 20 ms, and answers each one's time from
/// the send to its arrival, sorted.
async fn calm_latencies(emitter: &Emitter, rx: &Receiver, n: usize) -> Vec<Duration> {
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let m = NewMessage::new("order.created", &json!({ "n": i }))
            .unwrap()
            .owner("calm");
        let id = emitter.send_message(m).await.unwrap().message_id;
        sent.push((id, started));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = {
            let arrived = rx.arrived.lock().unwrap();
            sent.iter().all(|(id, _)| arrived.contains_key(id))
        };
        if all || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let arrived = rx.arrived.lock().unwrap();
    let mut out: Vec<Duration> = sent
        .iter()
        .map(|(id, at)| {
            arrived
                .get(id)
                .map_or(Duration::from_secs(30), |t| t.duration_since(*at))
        })
        .collect();
    out.sort();
    out
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_backlog_tarpits_and_test_calls_do_not_delay_another() {
    let dir = temp_dir("fairness");
    let path = dir.join("outbox.db").display().to_string();
    let rx = Receiver::default();
    let base = serve(
        Router::new()
            .route("/calm", post(calm))
            .route("/tarpit/{n}", post(tarpit))
            .with_state(rx.clone()),
    )
    .await;
    let emitter = Emitter::builder(Outbox::open(&path).await.unwrap())
        .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
        .build();
    emitter
        .create_endpoint(NewEndpoint::new(format!("{base}/calm")).owner("calm"))
        .await
        .unwrap();
    let unloaded = calm_latencies(&emitter, &rx, 100).await;

    // The noisy tenant: 50 tarpits, and 100,000 messages to them, queued in bulk (the rows
    // a send writes).
    let mut tarpits = Vec::new();
    for n in 0..50 {
        let ep = emitter
            .create_endpoint(NewEndpoint::new(format!("{base}/tarpit/{n}")).owner("hog"))
            .await
            .unwrap();
        tarpits.push(ep.endpoint.id);
    }
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999) \
         INSERT INTO outworx_messages (id, owner, event_type, payload, created_at) \
         SELECT 'msg_hog' || i, 'hog', 'order.created', '{}', 0 FROM n",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999), \
         e(id, k) AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 FROM outworx_endpoints \
         WHERE owner = 'hog') \
         INSERT INTO outworx_deliveries (message_id, endpoint_id, owner, status, attempts, \
         next_attempt_at, created_at, updated_at) \
         SELECT 'msg_hog' || n.i, e.id, 'hog', 'pending', 0, 0, 0, 0 FROM n JOIN e ON e.k = n.i % 50",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    // Its test calls, continuously: past its quota (10 a minute), refused with a time to
    // retry; over HTTP, a 429 with `Retry-After`.
    let calls = {
        let emitter = emitter.clone();
        let ep = tarpits[0].clone();
        tokio::spawn(async move {
            let (mut ok, mut limited) = (0, 0);
            for _ in 0..200 {
                match emitter.send_test(Scope::Owner("hog"), &ep).await {
                    Ok(_) => ok += 1,
                    Err(SendError::RateLimited { retry_after, .. }) => {
                        assert!(retry_after > Duration::ZERO);
                        limited += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, limited)
        })
    };
    // The worker is busy with the tarpits before the calm tenant sends again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.open.load(Ordering::SeqCst) < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rx.open.load(Ordering::SeqCst) >= 40,
        "the tarpits were not loaded"
    );
    let manage = serve(management_router(emitter.clone(), |_| {
        Some("hog".to_owned())
    }))
    .await;
    // The same owner's quota, over HTTP: spent within its first 10 calls (with the task's).
    let http = reqwest::Client::new();
    let mut answer = None;
    for _ in 0..11 {
        let r = http
            .post(format!("{manage}/endpoints/{}/test", tarpits[1]))
            .send()
            .await
            .unwrap();
        if r.status() != 202 {
            answer = Some(r);
            break;
        }
    }
    let answer = answer.expect("11 test calls in a row were accepted");
    assert_eq!(answer.status(), 429);
    let retry: u64 = answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");

    let loaded = calm_latencies(&emitter, &rx, 100).await;
    let (ok, limited) = calls.await.unwrap();
    assert!(
        ok <= 11 && limited >= 180,
        "test calls: {ok} sent, {limited} refused"
    );

    let (before, after) = (p99(&unloaded), p99(&loaded));
    let bound = (before * 2).max(before + Duration::from_millis(50));
    assert!(
        after <= bound,
        "the calm tenant's p99 went from {before:?} to {after:?} (bound {bound:?}) beside the noisy one"
    );
    // The noisy tenant held at most its share of the worker's 64 places, never all of them.
    let most = rx.most.load(Ordering::SeqCst);
    assert!(most <= 48, "{most} tarpit attempts at once");
    std::fs::remove_dir_all(dir).ok();
}
