//! Queue-first receiving in one process, over real HTTP on loopback and a real SQLite file:
//! a slow handler inline against the same handler queued, retries with backoff on a manual
//! clock, dead and replay, and the event-type filter. One test function: the inbox is the
//! process's, and its worker would run the other tests' deliveries through the wrong router.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use outworx_hooks::inbox::{DeliveryFilter, DeliveryStatus, Inbox, WorkerOptions};
use outworx_hooks::queue::{Clock, ManualClock};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Track, webhook};
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);
static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);
static BROKEN_RUNS: AtomicUsize = AtomicUsize::new(0);
static BROKEN_FIXED: AtomicBool = AtomicBool::new(false);
static SEEN_TYPES: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency
)]
async fn slow_inline(body: String) -> &'static str {
    let _ = body;
    tokio::time::sleep(Duration::from_secs(2)).await;
    "ok"
}

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue,
    require_processed
)]
async fn slow_queued(track: Track, body: String) -> &'static str {
    let _ = body;
    tokio::time::sleep(Duration::from_secs(2)).await;
    SLOW_RUNS.fetch_add(1, Ordering::SeqCst);
    track.processed();
    "ok"
}

/// Fails twice (a 500, then a `failed` mark), then succeeds.
#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue(attempts = 5, backoff = "10s"),
    require_processed
)]
async fn flaky(track: Track, body: String) -> axum::http::StatusCode {
    let _ = body;
    match FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) {
        0 => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        1 => {
            track.failed("the database is busy");
            axum::http::StatusCode::OK
        }
        _ => {
            track.processed();
            axum::http::StatusCode::OK
        }
    }
}

/// Panics until fixed.
#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue(attempts = 3, backoff = "1s")
)]
async fn broken(body: String) -> &'static str {
    let _ = body;
    BROKEN_RUNS.fetch_add(1, Ordering::SeqCst);
    assert!(BROKEN_FIXED.load(Ordering::SeqCst), "not fixed yet");
    "ok"
}

#[derive(serde::Deserialize)]
#[serde(tag = "type")]
enum Event {
    #[serde(rename = "invoice.paid")]
    InvoicePaid,
    #[serde(rename = "customer.created")]
    CustomerCreated,
    #[serde(other)]
    Other,
}

/// Only invoices and customers reach the handler.
#[webhook(provider = "standard", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", idempotency, events = ["invoice.paid", "customer.*"], require_processed)]
async fn filtered(track: Track, axum::Json(event): axum::Json<Event>) -> &'static str {
    let name = match event {
        Event::InvoicePaid => "invoice.paid",
        Event::CustomerCreated => "customer.created",
        Event::Other => "other",
    };
    SEEN_TYPES.lock().unwrap().push(name.to_owned());
    track.processed();
    "ok"
}

static LAYERED_RUNS: AtomicUsize = AtomicUsize::new(0);
static NESTED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue
)]
async fn hangs(body: String) -> &'static str {
    let _ = body;
    tokio::time::sleep(Duration::from_secs(30)).await;
    "ok"
}
static GITHUB_RUNS: AtomicUsize = AtomicUsize::new(0);

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue
)]
async fn nested_hook(body: String) -> &'static str {
    let _ = body;
    NESTED_RUNS.fetch_add(1, Ordering::SeqCst);
    "ok"
}

#[webhook(provider = "github", secret = "gh-secret", idempotency, queue)]
async fn github_hook(body: String) -> &'static str {
    let _ = body;
    GITHUB_RUNS.fetch_add(1, Ordering::SeqCst);
    "ok"
}

async fn layered(track: Track) -> &'static str {
    LAYERED_RUNS.fetch_add(1, Ordering::SeqCst);
    track.processed();
    "ok"
}

/// Marks the event processed, then its response body fails: the run is not done.
#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue,
    require_processed
)]
async fn body_breaks(track: Track, body: String) -> axum::body::Body {
    let _ = body;
    track.processed();
    let parts = vec![
        Ok(axum::body::Bytes::from("x")),
        Err(std::io::Error::other("the body broke")),
    ];
    axum::body::Body::from_stream(futures_util::stream::iter(parts))
}

fn app() -> Router {
    use outworx_hooks::{OutworxHooksLayer, TrackOptions};
    let options = TrackOptions::new(Provider::Standard)
        .secret(SECRET)
        .natural_idempotency_key()
        .require_processed(true)
        .queue(outworx_hooks::inbox::QueueOptions::default());
    Router::new()
        .nest("/nested", Router::new().route("/hook", post(nested_hook)))
        .route("/github", post(github_hook))
        .route("/hangs", post(hangs))
        .route(
            "/layered",
            post(layered).layer(OutworxHooksLayer::new(options)),
        )
        .route("/inline", post(slow_inline))
        .route("/queued", post(slow_queued))
        .route("/flaky", post(flaky))
        .route("/broken", post(broken))
        .route("/filtered", post(filtered))
        .route("/body_breaks", post(body_breaks))
}

fn signed(id: &str, kind: &str) -> outworx_hooks::testing::Signed {
    Signer::new(Provider::Standard, SECRET)
        .id(id)
        .sign(
            json!({"type": kind, "timestamp": "2026-11-30T00:00:00Z", "data": {"id": id}})
                .to_string(),
        )
        .unwrap()
}

async fn post_to(
    http: &reqwest::Client,
    url: &str,
    s: &outworx_hooks::testing::Signed,
) -> Result<(u16, Value), reqwest::Error> {
    let r = http
        .post(url)
        .headers(s.headers.clone())
        .body(s.body.clone())
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn status_of(inbox: &Inbox, id: i64) -> outworx_hooks::inbox::Delivery {
    inbox
        .deliveries(&DeliveryFilter::default().id(id))
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_first_receiving() {
    let dir = std::env::temp_dir().join(format!("outworx-inbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = ManualClock::new(outworx_hooks::security::now_unix() * 1000);
    let inbox = Inbox::open(dir.join("inbox.db").to_str().unwrap())
        .await
        .unwrap()
        .with_clock(clock.clone());
    let dead = std::sync::Arc::new(Mutex::new(Vec::new()));
    let d2 = std::sync::Arc::clone(&dead);
    inbox.on_dead(move |d| d2.lock().unwrap().push(d.clone()));
    inbox.install();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    let worker = std::sync::Arc::new(inbox.worker(app(), WorkerOptions::default()));

    // A provider that waits 1 s: inline, the 2 s handler times it out (and it will retry).
    let provider = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let inline = post_to(
        &provider,
        &format!("{base}/inline"),
        &signed("msg_inline", "a.b"),
    )
    .await;
    assert!(inline.is_err_and(|e| e.is_timeout()));

    // Queued: acknowledged in milliseconds, processed once by the worker, a repeat stored once.
    let s = signed("msg_queued", "a.b");
    let t = Instant::now();
    let (status, body) = post_to(&provider, &format!("{base}/queued"), &s)
        .await
        .unwrap();
    let ack = t.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body["queued"], true);
    assert!(ack < Duration::from_millis(900), "acknowledged in {ack:?}");
    let id = body["id"].as_i64().unwrap();
    let (status, again) = post_to(&provider, &format!("{base}/queued"), &s)
        .await
        .unwrap();
    assert_eq!((status, again["duplicate"].clone()), (200, json!(true)));
    assert_eq!(again["id"], id);
    assert_eq!(
        SLOW_RUNS.load(Ordering::SeqCst),
        0,
        "nothing ran at receipt"
    );
    assert_eq!(worker.run_once(16).await.unwrap(), 1);
    assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(status_of(&inbox, id).await.status, DeliveryStatus::Done);
    assert_eq!(worker.run_once(16).await.unwrap(), 0, "done is done");

    // A handler failing twice (a 500, then a `failed` mark), then succeeding: retried on
    // the backoff (10 s, then 20 s, ± 20 %), not a moment early.
    let (_, body) = post_to(
        &provider,
        &format!("{base}/flaky"),
        &signed("msg_flaky", "a.b"),
    )
    .await
    .unwrap();
    let id = body["id"].as_i64().unwrap();
    for (run, base_ms) in [(1, 10_000), (2, 20_000)] {
        let before = clock.now_ms();
        assert_eq!(worker.run_once(16).await.unwrap(), 1);
        let e = status_of(&inbox, id).await;
        assert_eq!(e.status, DeliveryStatus::Pending, "after run {run}");
        let wait = e.next_attempt_at - before;
        assert!(
            (base_ms * 8 / 10..=base_ms * 12 / 10).contains(&wait),
            "run {run}: waits {wait} ms"
        );
        assert!(e.last_error.is_some());
        clock.set(e.next_attempt_at - 1);
        assert_eq!(worker.run_once(16).await.unwrap(), 0);
        clock.set(e.next_attempt_at);
    }
    assert_eq!(worker.run_once(16).await.unwrap(), 1);
    assert_eq!(status_of(&inbox, id).await.status, DeliveryStatus::Done);
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), 3);

    // Failing always (a panic): dead after its 3 attempts, on_dead once; replayed once fixed.
    let (_, body) = post_to(
        &provider,
        &format!("{base}/broken"),
        &signed("msg_broken", "a.b"),
    )
    .await
    .unwrap();
    let id = body["id"].as_i64().unwrap();
    for _ in 0..3 {
        assert_eq!(worker.run_once(16).await.unwrap(), 1);
        clock.advance(Duration::from_secs(60));
    }
    let e = status_of(&inbox, id).await;
    assert_eq!(e.status, DeliveryStatus::Dead);
    assert!(
        e.last_error.as_deref().unwrap().contains("not fixed yet"),
        "{e:?}"
    );
    assert_eq!(dead.lock().unwrap().len(), 1);
    assert_eq!(worker.run_once(16).await.unwrap(), 0);
    assert!(
        inbox.replay(&DeliveryFilter::default()).await.is_err(),
        "a replay needs a target"
    );
    BROKEN_FIXED.store(true, Ordering::SeqCst);
    let n = inbox
        .replay(&DeliveryFilter::default().status(DeliveryStatus::Dead))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(worker.run_once(16).await.unwrap(), 1);
    assert_eq!(status_of(&inbox, id).await.status, DeliveryStatus::Done);
    assert_eq!(BROKEN_RUNS.load(Ordering::SeqCst), 4);

    // The filter: other types are answered 200 without the handler or the store.
    let http = reqwest::Client::new();
    for (i, kind) in [
        "invoice.paid",
        "invoice.voided",
        "customer.created",
        "charge.failed",
    ]
    .iter()
    .enumerate()
    {
        let (status, body) = post_to(
            &http,
            &format!("{base}/filtered"),
            &signed(&format!("msg_f{i}"), kind),
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        let ignored = body.get("ignored") == Some(&Value::Bool(true));
        assert_eq!(
            ignored,
            kind.starts_with("invoice.v") || kind.starts_with("charge")
        );
    }
    assert_eq!(
        *SEEN_TYPES.lock().unwrap(),
        ["invoice.paid", "customer.created"]
    );

    // The layer queues the same way.
    let (status, body) = post_to(
        &http,
        &format!("{base}/layered"),
        &signed("msg_layer", "a.b"),
    )
    .await
    .unwrap();
    assert_eq!((status, body["queued"].clone()), (200, json!(true)));
    assert_eq!(LAYERED_RUNS.load(Ordering::SeqCst), 0);
    assert_eq!(worker.run_once(16).await.unwrap(), 1);
    assert_eq!(LAYERED_RUNS.load(Ordering::SeqCst), 1);
    let layered_id = body["id"].as_i64().unwrap();
    assert_eq!(
        status_of(&inbox, layered_id).await.status,
        DeliveryStatus::Done
    );

    // A nested router: the worker dispatches the original URI, from the top.
    let mut s = signed("msg_nested", "a.b");
    s.headers
        .insert("authorization", "Bearer s3cr3t".parse().unwrap());
    let (status, body) = post_to(&http, &format!("{base}/nested/hook"), &s)
        .await
        .unwrap();
    assert_eq!((status, body["queued"].clone()), (200, json!(true)));
    assert_eq!(worker.run_once(16).await.unwrap(), 1);
    assert_eq!(NESTED_RUNS.load(Ordering::SeqCst), 1);
    let nested_id = body["id"].as_i64().unwrap();
    assert_eq!(
        status_of(&inbox, nested_id).await.status,
        DeliveryStatus::Done
    );
    // Credentials and signatures are not kept at rest.
    let pool = outworx_hooks::inbox::sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.join("inbox.db").display()
    ))
    .await
    .unwrap();
    let (stored,): (String,) =
        outworx_hooks::inbox::sqlx::query_as("SELECT headers FROM outworx_inbox WHERE id = $1")
            .bind(nested_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        !stored.contains("authorization") && !stored.contains("webhook-signature"),
        "{stored}"
    );
    assert!(stored.contains("webhook-id"), "{stored}");

    // GitHub's delivery id is not signed: the same body under a new id is the same delivery.
    let gh = |id: &str| {
        let mut s = Signer::new(Provider::Github, "gh-secret")
            .id(id)
            .sign(r#"{"ref":"refs/heads/main"}"#)
            .unwrap();
        s.headers.insert("x-github-event", "push".parse().unwrap());
        s
    };
    let (_, first) = post_to(&http, &format!("{base}/github"), &gh("d-1"))
        .await
        .unwrap();
    let (_, again) = post_to(&http, &format!("{base}/github"), &gh("d-2"))
        .await
        .unwrap();
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(
        again["duplicate"], true,
        "a replay under a new id was stored again"
    );
    assert_eq!(worker.run_once(16).await.unwrap(), 1);
    assert_eq!(GITHUB_RUNS.load(Ordering::SeqCst), 1);

    // A handler past its time is cut off and retried later.
    let (_, body) = post_to(&http, &format!("{base}/hangs"), &signed("msg_hangs", "a.b"))
        .await
        .unwrap();
    let impatient = std::sync::Arc::new(inbox.worker(
        app(),
        WorkerOptions::default().handler_timeout(Duration::from_millis(200)),
    ));
    let t = Instant::now();
    assert_eq!(impatient.run_once(16).await.unwrap(), 1);
    assert!(t.elapsed() < Duration::from_secs(5));
    let e = status_of(&inbox, body["id"].as_i64().unwrap()).await;
    assert_eq!(e.status, DeliveryStatus::Pending);
    assert!(
        e.last_error.as_deref().unwrap().contains("ran past"),
        "{e:?}"
    );

    // Marked processed, but its response body failed: retried, not done.
    let (_, body) = post_to(
        &provider,
        &format!("{base}/body_breaks"),
        &signed("msg_body_breaks", "a.b"),
    )
    .await
    .unwrap();
    assert_eq!(worker.run_once(16).await.unwrap(), 1);
    let e = status_of(&inbox, body["id"].as_i64().unwrap()).await;
    assert_eq!(e.status, DeliveryStatus::Pending, "{e:?}");
    assert!(e.last_error.as_deref().unwrap().contains("body"), "{e:?}");

    // What the CLI shows.
    let all = inbox.deliveries(&DeliveryFilter::default()).await.unwrap();
    assert_eq!(
        all.len(),
        8,
        "the inline and filtered routes stored nothing"
    );
    let (entry, body) = inbox.delivery(id).await.unwrap().unwrap();
    assert!(entry.route.contains("broken"), "{entry:?}");
    assert_eq!(body, signed("msg_broken", "a.b").body);
    clock.advance(Duration::from_secs(31 * 86_400));
    // Finished ones are purged (the pending one stays).
    assert_eq!(
        inbox.purge(Duration::from_secs(30 * 86_400)).await.unwrap(),
        6
    );
    std::fs::remove_dir_all(dir).ok();
}
