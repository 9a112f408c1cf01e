//! The sending side's benchmark: `send` latency (p50/p99) on SQLite and PostgreSQL, and
//! delivery throughput (messages/s to a loopback receiver) with one worker and with two, next
//! to fastapihooks 0.1 (BackgroundTaskBackend, httpx, from PyPI) on the same machine, in the
//! same run, to the same receiver.
//!
//! Run: `cargo bench -p outworx-hooks-bench --bench send -- [--messages 5000] [--sends 2000]
//! [--no-python] [--no-postgres]`.
//!
//! PostgreSQL is a throwaway server started here (as the CLI's tests do); fastapihooks runs in
//! the virtualenv the interop tests make. The receiver answers 200 at once; it runs in this
//! process, beside our worker (fastapihooks runs in its own process). Both share the same two
//! cores with the receiver. Our worker records every attempt durably; fastapihooks keeps
//! nothing.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use outworx_hooks::send::{
    DeliveryStatus, Emitter, NewEndpoint, Outbox, Scope, TargetPolicy, WorkerOptions,
};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loopback() -> TargetPolicy {
    TargetPolicy::default().allow("127.0.0.0/8".parse().expect("a CIDR"))
}

async fn receiver() -> (Arc<AtomicUsize>, String) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let app = Router::new().route(
        "/hook",
        post(move || {
            let h = Arc::clone(&h);
            async move {
                h.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hits, url)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `n` sends, one after the other, each committing a message and one delivery.
async fn send_latency(label: &str, db: &str, n: usize) {
    let emitter = Emitter::builder(Outbox::open(db).await.expect("outbox"))
        .policy(loopback())
        .worker(None)
        .build();
    emitter
        .create_endpoint(NewEndpoint::new("http://127.0.0.1:9/hook"))
        .await
        .expect("endpoint");
    let payload =
        serde_json::json!({"id": 1, "customer": "acme", "items": [1, 2, 3], "total": 4200});
    for _ in 0..100 {
        emitter.send("order.created", &payload).await.expect("send");
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        emitter.send("order.created", &payload).await.expect("send");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "send latency  {label:10}  p50 {:>7.3} ms  p99 {:>7.3} ms  ({n} sends)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
    );
}

/// `n` messages queued, then `workers` in-process workers deliver them all.
async fn throughput(label: &str, db: &str, n: usize, workers: usize) -> f64 {
    let (hits, url) = receiver().await;
    let filler = Emitter::builder(Outbox::open(db).await.expect("outbox"))
        .policy(loopback())
        .worker(None)
        .build();
    filler
        .create_endpoint(NewEndpoint::new(&url))
        .await
        .expect("endpoint");
    for i in 0..n {
        filler
            .send("order.created", &serde_json::json!({"n": i}))
            .await
            .expect("send");
    }
    let start = Instant::now();
    let mut running = Vec::new();
    for _ in 0..workers {
        let outbox = Outbox::open(db).await.expect("outbox");
        running.push(
            Emitter::builder(outbox)
                .policy(loopback())
                .worker(Some(WorkerOptions::default().per_endpoint(64)))
                .build(),
        );
    }
    loop {
        let done = filler
            .counts(Scope::All)
            .await
            .expect("counts")
            .into_iter()
            .find(|(s, _)| *s == DeliveryStatus::Delivered)
            .map_or(0, |(_, n)| n);
        if done as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    for w in running {
        w.shutdown().await;
    }
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "throughput    {label:10}  {workers} worker(s)  {rate:>8.0} msg/s  ({n} in {:.2} s, {} requests)",
        elapsed.as_secs_f64(),
        hits.load(Ordering::Relaxed)
    );
    rate
}

/// Empties the outbox's tables (they are shared by name within one database).
async fn reset(url: &str) {
    let pool = outworx_hooks::send::sqlx::PgPool::connect(url)
        .await
        .expect("pg");
    for t in [
        "outworx_attempts",
        "outworx_deliveries",
        "outworx_messages",
        "outworx_endpoints",
    ] {
        outworx_hooks::send::sqlx::query(&format!("DELETE FROM {t}"))
            .execute(&pool)
            .await
            .expect("delete");
    }
}

const FASTAPIHOOKS: &str = r#"
import asyncio, sys, time
from fastapihooks.backends import BackgroundTaskBackend
from fastapihooks.stores import MemoryStore

async def main(n, url):
    store = MemoryStore()
    await store.add_subscription("order.created", url)
    backend = BackgroundTaskBackend(store=store, signing_secret="s3cret", max_retries=0)
    async with backend:
        start = time.perf_counter()
        await asyncio.gather(*(backend.publish("order.created", {"n": i}, None) for i in range(n)))
        print(f"{n / (time.perf_counter() - start):.0f}")

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"#;

fn python_env() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let out = Command::new("bash")
        .arg(root.join("outworx-cli/tests/python/venv.sh"))
        .arg(root.join("target/python-1.5"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().into())
}

async fn fastapihooks(n: usize) -> Option<f64> {
    let python = python_env()?;
    let (hits, url) = receiver().await;
    // The receiver runs on this runtime: wait for python off it.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("-c")
            .arg(FASTAPIHOOKS)
            .arg(n.to_string())
            .arg(&url)
            .output()
    })
    .await
    .ok()?
    .ok()?;
    let rate: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    println!(
        "throughput    fastapihooks 0.1 (memory, no durability)  {rate:>8.0} msg/s  ({n} messages, {} requests)",
        hits.load(Ordering::Relaxed)
    );
    Some(rate)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let messages = arg(&args, "--messages", 5000);
    let sends = arg(&args, "--sends", 2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("outworx-send-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sqlite = |name: &str| dir.join(name).display().to_string();

        send_latency("sqlite", &sqlite("latency.db"), sends).await;
        let pg = (!args.iter().any(|a| a == "--no-postgres"))
            .then(outworx_test_support::postgres::Postgres::start);
        if let Some(pg) = &pg {
            let url = pg.url();
            for _ in 0..100 {
                if Outbox::open(&url).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            send_latency("postgres", &url, sends).await;
        }

        let ours = throughput("sqlite", &sqlite("one.db"), messages, 1).await;
        if let Some(pg) = &pg {
            let url = pg.url();
            for workers in [1, 2] {
                reset(&url).await; // each run starts from empty tables
                throughput("postgres", &url, messages, workers).await;
            }
        }
        if !args.iter().any(|a| a == "--no-python") {
            match fastapihooks(messages.min(2000)).await {
                Some(theirs) => println!(
                    "ratio         ours (sqlite, 1 worker) / fastapihooks = {:.1}x",
                    ours / theirs
                ),
                None => {
                    println!("fastapihooks: no virtualenv (python3 with venv and PyPI are needed)")
                }
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    });
}
