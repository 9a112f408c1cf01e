//! Queue-first receiving in one process, over real HTTP on loopback and a real SQLite file:
//! a slow handler inline against the same handler queued, retries with backoff on a manual
//! clock, dead and replay, the event-type filter, the layer, nested routers, unsigned
//! delivery ids, timeouts and broken bodies. Each test has its own inbox, handed to its
//! routes as an `Extension` (nothing is installed process-wide), its own clock and worker.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use outworx_hooks::inbox::{DeliveryFilter, DeliveryStatus, Inbox, Worker, WorkerOptions};
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

static OBSERVED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `reject_invalid = false` (observe mode) on a `queue` route.
#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue,
    reject_invalid = false
)]
async fn observed(body: String) -> &'static str {
    let _ = body;
    OBSERVED_RUNS.fetch_add(1, Ordering::SeqCst);
    "ok"
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

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue
)]
async fn kept(body: String) -> &'static str {
    let _ = body;
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

fn app(inbox: &Inbox) -> Router {
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
        .route("/observed", post(observed))
        .route("/kept", post(kept))
        .layer(axum::Extension(inbox.clone()))
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

/// One test's inbox (a SQLite file of its own, on a manual clock), the app serving it on
/// loopback, and a worker over the same app.
struct Setup {
    inbox: Inbox,
    clock: ManualClock,
    base: String,
    worker: Worker,
    dir: std::path::PathBuf,
}

impl Setup {
    async fn new(tag: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("outworx-inbox-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let clock = ManualClock::new(outworx_hooks::security::now_unix() * 1000);
        let inbox = Inbox::open(dir.join("inbox.db").to_str().unwrap())
            .await
            .unwrap()
            .with_clock(clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = app(&inbox);
        tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        let worker = inbox.worker(app(&inbox), WorkerOptions::default());
        Setup {
            inbox,
            clock,
            base,
            worker,
            dir,
        }
    }

    async fn post(&self, path: &str, s: &outworx_hooks::testing::Signed) -> (u16, Value) {
        post_to(&reqwest::Client::new(), &format!("{}{path}", self.base), s)
            .await
            .unwrap()
    }

    async fn run(&self) -> usize {
        self.worker.run_once(16).await.unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_route_answers_at_once_and_runs_the_handler_once_in_the_worker() {
    let t = Setup::new("queued").await;
    // A provider that waits 1 s: inline, the 2 s handler times it out (and it will retry).
    let provider = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let inline = post_to(
        &provider,
        &format!("{}/inline", t.base),
        &signed("msg_inline", "a.b"),
    )
    .await;
    assert!(inline.is_err_and(|e| e.is_timeout()));

    // Queued: acknowledged in milliseconds, processed once by the worker, a repeat stored once.
    let s = signed("msg_queued", "a.b");
    let started = Instant::now();
    let (status, body) = post_to(&provider, &format!("{}/queued", t.base), &s)
        .await
        .unwrap();
    let ack = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body["queued"], true);
    assert!(ack < Duration::from_millis(900), "acknowledged in {ack:?}");
    let id = body["id"].as_i64().unwrap();
    let (status, again) = t.post("/queued", &s).await;
    assert_eq!((status, again["duplicate"].clone()), (200, json!(true)));
    assert_eq!(again["id"], id);
    assert_eq!(
        SLOW_RUNS.load(Ordering::SeqCst),
        0,
        "nothing ran at receipt"
    );
    assert_eq!(t.run().await, 1);
    assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(status_of(&t.inbox, id).await.status, DeliveryStatus::Done);
    assert_eq!(t.run().await, 0, "done is done");
    let all = t
        .inbox
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "the inline route stored nothing");
}

/// A `queue` route stores only deliveries that verified, even with `reject_invalid = false`:
/// forgeries are answered 401 and the inbox stays empty (they filled it before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_route_stores_no_forgery_even_when_observing() {
    let t = Setup::new("forged").await;
    let forged = Signer::new(Provider::Standard, "whsec_bm90IHRoZSByaWdodCBzZWNyZXQ=")
        .id("msg_forged")
        .sign(r#"{"type":"a.b","data":{}}"#)
        .unwrap();
    for _ in 0..3 {
        let (status, _) = t.post("/observed", &forged).await;
        assert_eq!(status, 401);
    }
    let (status, _) = t.post("/observed", &signed("msg_real", "a.b")).await;
    assert_eq!(status, 200);
    let stored = t
        .inbox
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "only the verified one: {stored:?}");
    assert!(stored[0].key.contains("msg_real"), "{stored:?}");
    assert_eq!(t.run().await, 1);
    assert_eq!(OBSERVED_RUNS.load(Ordering::SeqCst), 1);
}

/// A listed delivery (the CLI, `outworx serve`'s `/api/inbox`) shows its URL's query values
/// redacted, as delivery events do: a provider may authenticate with a token there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_delivery_redacts_its_query() {
    let t = Setup::new("query").await;
    let (status, body) = t
        .post("/queued?token=s3cret&flag", &signed("msg_query", "a.b"))
        .await;
    assert_eq!(status, 200);
    let listed = status_of(&t.inbox, body["id"].as_i64().unwrap()).await;
    assert_eq!(listed.uri, "/queued?token=[REDACTED]&[REDACTED]");
    assert!(!format!("{listed:?}").contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_on_the_backoff_not_a_moment_early() {
    let t = Setup::new("flaky").await;
    // A handler failing twice (a 500, then a `failed` mark), then succeeding: retried on
    // the backoff (10 s, then 20 s, ± 20 %), not a moment early.
    let (_, body) = t.post("/flaky", &signed("msg_flaky", "a.b")).await;
    let id = body["id"].as_i64().unwrap();
    for (run, base_ms) in [(1, 10_000), (2, 20_000)] {
        let before = t.clock.now_ms();
        assert_eq!(t.run().await, 1);
        let e = status_of(&t.inbox, id).await;
        assert_eq!(e.status, DeliveryStatus::Pending, "after run {run}");
        let wait = e.next_attempt_at - before;
        assert!(
            (base_ms * 8 / 10..=base_ms * 12 / 10).contains(&wait),
            "run {run}: waits {wait} ms"
        );
        assert!(e.last_error.is_some());
        t.clock.set(e.next_attempt_at - 1);
        assert_eq!(t.run().await, 0);
        t.clock.set(e.next_attempt_at);
    }
    assert_eq!(t.run().await, 1);
    assert_eq!(status_of(&t.inbox, id).await.status, DeliveryStatus::Done);
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_always_fails_is_dead_and_replays_once_fixed() {
    let t = Setup::new("broken").await;
    let dead = std::sync::Arc::new(Mutex::new(Vec::new()));
    let d2 = std::sync::Arc::clone(&dead);
    t.inbox.on_dead(move |d| d2.lock().unwrap().push(d.clone()));
    // Failing always (a panic): dead after its 3 attempts, on_dead once; replayed once fixed.
    let (_, body) = t.post("/broken", &signed("msg_broken", "a.b")).await;
    let id = body["id"].as_i64().unwrap();
    for _ in 0..3 {
        assert_eq!(t.run().await, 1);
        t.clock.advance(Duration::from_secs(60));
    }
    let e = status_of(&t.inbox, id).await;
    assert_eq!(e.status, DeliveryStatus::Dead);
    assert!(
        e.last_error.as_deref().unwrap().contains("not fixed yet"),
        "{e:?}"
    );
    assert_eq!(dead.lock().unwrap().len(), 1);
    assert_eq!(t.run().await, 0);
    assert!(
        t.inbox.replay(&DeliveryFilter::default()).await.is_err(),
        "a replay needs a target"
    );
    BROKEN_FIXED.store(true, Ordering::SeqCst);
    let n = t
        .inbox
        .replay(&DeliveryFilter::default().status(DeliveryStatus::Dead))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(t.run().await, 1);
    assert_eq!(status_of(&t.inbox, id).await.status, DeliveryStatus::Done);
    assert_eq!(BROKEN_RUNS.load(Ordering::SeqCst), 4);

    // What the CLI shows: the delivery with its body as received, then purged once old.
    let (entry, stored) = t.inbox.delivery(id).await.unwrap().unwrap();
    assert!(entry.route.contains("broken"), "{entry:?}");
    assert_eq!(stored, signed("msg_broken", "a.b").body);
    t.clock.advance(Duration::from_secs(31 * 86_400));
    assert_eq!(
        t.inbox
            .purge(Duration::from_secs(30 * 86_400))
            .await
            .unwrap(),
        1
    );
    assert!(t.inbox.delivery(id).await.unwrap().is_none());
}

/// A spawned worker purges by itself: the deliveries done more than 30 days ago go, one
/// done since stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_worker_deletes_what_finished_before_its_retention() {
    use outworx_hooks::queue::Retention;
    let t = Setup::new("retention").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, body) = t
            .post("/kept", &signed(&format!("msg_kept{n}"), "a.b"))
            .await;
        assert_eq!(status, 200);
        ids.push(body["id"].as_i64().unwrap());
        if n < 2 {
            assert_eq!(t.run().await, 1);
        }
    }
    t.clock.advance(Duration::from_secs(31 * 86_400));
    let keep = Retention::default()
        .every(Duration::from_millis(20))
        .batch(1);
    let handle = t
        .inbox
        .worker(app(&t.inbox), WorkerOptions::default().retention(keep))
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.inbox.delivery(ids[1]).await.unwrap().is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown().await;
    assert!(t.inbox.delivery(ids[0]).await.unwrap().is_none());
    assert!(t.inbox.delivery(ids[1]).await.unwrap().is_none());
    // The third waited 31 days, then ran: done now, kept.
    let (third, _) = t.inbox.delivery(ids[2]).await.unwrap().unwrap();
    assert_eq!(third.status, DeliveryStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_event_types_are_answered_without_the_handler_or_the_inbox() {
    let t = Setup::new("filtered").await;
    for (i, kind) in [
        "invoice.paid",
        "invoice.voided",
        "customer.created",
        "charge.failed",
    ]
    .iter()
    .enumerate()
    {
        let (status, body) = t
            .post("/filtered", &signed(&format!("msg_f{i}"), kind))
            .await;
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
    let all = t
        .inbox
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert!(all.is_empty(), "the filtered route is not queued: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_queues_the_same_way() {
    let t = Setup::new("layered").await;
    let (status, body) = t.post("/layered", &signed("msg_layer", "a.b")).await;
    assert_eq!((status, body["queued"].clone()), (200, json!(true)));
    assert_eq!(LAYERED_RUNS.load(Ordering::SeqCst), 0);
    assert_eq!(t.run().await, 1);
    assert_eq!(LAYERED_RUNS.load(Ordering::SeqCst), 1);
    let id = body["id"].as_i64().unwrap();
    assert_eq!(status_of(&t.inbox, id).await.status, DeliveryStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_route_is_dispatched_from_the_top_and_keeps_no_credentials() {
    let t = Setup::new("nested").await;
    let mut s = signed("msg_nested", "a.b");
    s.headers
        .insert("authorization", "Bearer s3cr3t".parse().unwrap());
    let (status, body) = t.post("/nested/hook", &s).await;
    assert_eq!((status, body["queued"].clone()), (200, json!(true)));
    assert_eq!(t.run().await, 1);
    assert_eq!(NESTED_RUNS.load(Ordering::SeqCst), 1);
    let id = body["id"].as_i64().unwrap();
    assert_eq!(status_of(&t.inbox, id).await.status, DeliveryStatus::Done);
    // Credentials and signatures are not kept at rest.
    let pool = outworx_hooks::inbox::sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        t.dir.join("inbox.db").display()
    ))
    .await
    .unwrap();
    let (stored,): (String,) =
        outworx_hooks::inbox::sqlx::query_as("SELECT headers FROM outworx_inbox WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        !stored.contains("authorization") && !stored.contains("webhook-signature"),
        "{stored}"
    );
    assert!(stored.contains("webhook-id"), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_delivery_id_does_not_make_a_replay_new() {
    let t = Setup::new("github").await;
    // GitHub's delivery id is not signed: the same body under a new id is the same delivery.
    let gh = |id: &str| {
        let mut s = Signer::new(Provider::Github, "gh-secret")
            .id(id)
            .sign(r#"{"ref":"refs/heads/main"}"#)
            .unwrap();
        s.headers.insert("x-github-event", "push".parse().unwrap());
        s
    };
    let (_, first) = t.post("/github", &gh("d-1")).await;
    let (_, again) = t.post("/github", &gh("d-2")).await;
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(
        again["duplicate"], true,
        "a replay under a new id was stored again"
    );
    assert_eq!(t.run().await, 1);
    assert_eq!(GITHUB_RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_time_is_cut_off_and_retried() {
    let t = Setup::new("hangs").await;
    let (_, body) = t.post("/hangs", &signed("msg_hangs", "a.b")).await;
    let impatient = t.inbox.worker(
        app(&t.inbox),
        WorkerOptions::default().handler_timeout(Duration::from_millis(200)),
    );
    let started = Instant::now();
    assert_eq!(impatient.run_once(16).await.unwrap(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    let e = status_of(&t.inbox, body["id"].as_i64().unwrap()).await;
    assert_eq!(e.status, DeliveryStatus::Pending);
    assert!(
        e.last_error.as_deref().unwrap().contains("ran past"),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_response_body_breaks_is_retried_not_done() {
    let t = Setup::new("body").await;
    // Marked processed, but its response body failed: retried, not done.
    let (_, body) = t
        .post("/body_breaks", &signed("msg_body_breaks", "a.b"))
        .await;
    assert_eq!(t.run().await, 1);
    let e = status_of(&t.inbox, body["id"].as_i64().unwrap()).await;
    assert_eq!(e.status, DeliveryStatus::Pending, "{e:?}");
    assert!(e.last_error.as_deref().unwrap().contains("body"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_inbox_a_queue_route_answers_503_so_the_provider_retries() {
    // No `Extension(inbox)` and none installed in this process: nothing can commit it.
    let app = Router::new().route("/queued", post(slow_queued));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, _) = post_to(
        &reqwest::Client::new(),
        &format!("{base}/queued"),
        &signed("msg_no_inbox", "a.b"),
    )
    .await
    .unwrap();
    assert_eq!(status, 503);
    assert!(Inbox::installed().is_none());
}

/// Concurrent deliveries share commits, and each is answered for itself: 40 distinct
/// deliveries sent three times each, all at once, make 40 rows; every copy is answered 200 with
/// its delivery's row, and exactly one copy of each is not a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_commits_and_each_is_answered_for_itself() {
    let s = Setup::new("group").await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(120)
        .build()
        .unwrap();
    let url = format!("{}/flaky", s.base);
    let sends: Vec<_> = (0..120)
        .map(|n| {
            let (http, url) = (http.clone(), url.clone());
            let id = format!("msg_group_{:02}", n % 40);
            tokio::spawn(async move {
                let (status, body) = post_to(&http, &url, &signed(&id, "order.created"))
                    .await
                    .unwrap();
                (id, status, body)
            })
        })
        .collect();
    let mut rows: std::collections::HashMap<String, Vec<(i64, bool)>> = Default::default();
    for send in sends {
        let (id, status, body) = send.await.unwrap();
        assert_eq!(status, 200, "{id}: {body}");
        rows.entry(id).or_default().push((
            body["id"].as_i64().unwrap(),
            body["duplicate"].as_bool().unwrap(),
        ));
    }
    assert_eq!(rows.len(), 40);
    for (id, answers) in &rows {
        assert!(
            answers.iter().all(|(row, _)| *row == answers[0].0),
            "{id}: copies answered with different rows: {answers:?}"
        );
        assert_eq!(
            answers.iter().filter(|(_, dup)| !dup).count(),
            1,
            "{id}: {answers:?}"
        );
    }
    let stored = s
        .inbox
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(stored.len(), 40);
}
