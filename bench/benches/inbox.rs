//! Queue-first receiving: how fast a provider is answered with `queue` against inline with a
//! 2 s handler (p50/p99), on SQLite and PostgreSQL, and how many deliveries per second one
//! and two inbox workers process.
//!
//! Run: `cargo bench -p outworx-hooks-bench --bench inbox -- [--acks 1000] [--deliveries 5000]
//! [--no-postgres]`.
//!
//! Everything runs in this process on loopback: the receiver, its inbox worker(s), and the
//! client; PostgreSQL is a throwaway server started here. Each delivery is a new signed
//! Standard Webhooks message of about 100 bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use outworx_hooks::inbox::{DeliveryStatus, Inbox, WorkerOptions};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Track, webhook};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
static HANDLER_MS: AtomicU64 = AtomicU64::new(0);
static RUNS: AtomicU64 = AtomicU64::new(0);

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    require_processed
)]
async fn inline(track: Track, body: String) -> &'static str {
    let _ = body;
    tokio::time::sleep(Duration::from_millis(HANDLER_MS.load(Ordering::Relaxed))).await;
    track.processed();
    "ok"
}

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue,
    require_processed
)]
async fn queued(track: Track, body: String) -> &'static str {
    let _ = body;
    let ms = HANDLER_MS.load(Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    RUNS.fetch_add(1, Ordering::Relaxed);
    track.processed();
    "ok"
}

fn app() -> Router {
    Router::new()
        .route("/inline", post(inline))
        .route("/queued", post(queued))
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn signed() -> outworx_hooks::testing::Signed {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    Signer::new(Provider::Standard, SECRET)
        .id(format!("msg_{n:08}"))
        .sign(format!(
            r#"{{"type":"order.created","timestamp":"2026-11-30T00:00:00Z","data":{{"n":{n}}}}}"#
        ))
        .expect("signs")
}

async fn post_one(http: &reqwest::Client, url: &str) -> Duration {
    let s = signed();
    let t = Instant::now();
    let r = http
        .post(url)
        .headers(s.headers)
        .body(s.body)
        .send()
        .await
        .expect("answered");
    assert!(r.status().is_success(), "{}", r.status());
    let _ = r.bytes().await;
    t.elapsed()
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "ack latency  {label:28}  p50 {:>9.3} ms  p99 {:>9.3} ms  ({} deliveries)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.len()
    );
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app()).await });
    base
}

async fn wait_done(inbox: &Inbox, n: u64) {
    loop {
        let counts = inbox.counts().await.expect("counts");
        if counts
            .iter()
            .any(|(s, c)| *s == DeliveryStatus::Done && *c >= n)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Acknowledgements with a 2 s handler: queued (worker running), and inline (the provider
/// waits for the handler; 50 at once).
async fn acks(label: &str, url: &str, base: &str, n: usize) {
    HANDLER_MS.store(2000, Ordering::Relaxed);
    let inbox = Inbox::open(url).await.expect("inbox");
    inbox.install();
    let worker = inbox.worker(app(), WorkerOptions::default().concurrency(64));
    let handle = worker.spawn();
    let http = reqwest::Client::new();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(post_one(&http, &format!("{base}/queued")).await);
    }
    report(&format!("queue ({label}), 2 s handler"), times);
    handle.shutdown().await;
}

async fn inline_acks(base: &str) {
    HANDLER_MS.store(2000, Ordering::Relaxed);
    let http = reqwest::Client::new();
    let url = format!("{base}/inline");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move { post_one(&http, &url).await })
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.push(t.await.expect("task"));
    }
    report("inline, 2 s handler", times);
}

/// `n` deliveries queued first, then `workers` workers process them (an empty handler).
async fn throughput(label: &str, url: &str, base: &str, n: usize, workers: usize) {
    HANDLER_MS.store(0, Ordering::Relaxed);
    let inbox = Inbox::open(url).await.expect("inbox");
    inbox.install();
    let _ = inbox.purge(Duration::ZERO).await;
    let http = reqwest::Client::new();
    for _ in 0..n {
        post_one(&http, &format!("{base}/queued")).await;
    }
    let before = RUNS.load(Ordering::Relaxed);
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            inbox
                .worker(app(), WorkerOptions::default().concurrency(32))
                .spawn()
        })
        .collect();
    wait_done(&inbox, n as u64).await;
    let elapsed = start.elapsed();
    for h in handles {
        h.shutdown().await;
    }
    println!(
        "processing   {label:10}  {workers} worker(s)  {:>8.0} deliveries/s  ({n} in {:.2} s, {} runs)",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        RUNS.load(Ordering::Relaxed) - before
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_acks = arg(&args, "--acks", 1000);
    let n = arg(&args, "--deliveries", 5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("outworx-inbox-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let base = serve().await;
        let pg = (!args.iter().any(|a| a == "--no-postgres"))
            .then(outworx_test_support::postgres::Postgres::start);
        let pg_url = pg
            .as_ref()
            .map(outworx_test_support::postgres::Postgres::url);
        if let Some(url) = &pg_url {
            for _ in 0..100 {
                if Inbox::open(url).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let sqlite = dir.join("acks.db").display().to_string();
        acks("sqlite", &sqlite, &base, n_acks).await;
        if let Some(url) = &pg_url {
            acks("postgres", url, &base, n_acks).await;
        }
        inline_acks(&base).await;
        for workers in [1, 2] {
            let file = dir.join(format!("tp{workers}.db")).display().to_string();
            throughput("sqlite", &file, &base, n, workers).await;
        }
        if let Some(url) = &pg_url {
            for workers in [1, 2] {
                // Each run starts from an empty inbox.
                let pool = outworx_hooks::inbox::sqlx::PgPool::connect(url)
                    .await
                    .expect("pg");
                outworx_hooks::inbox::sqlx::query("DELETE FROM outworx_inbox")
                    .execute(&pool)
                    .await
                    .expect("delete");
                throughput("postgres", url, &base, n, workers).await;
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    });
}
