//! The fault suite: what each dependency's failure costs a running receiver, measured
//! against the healthy baseline in the same run.
//!
//! A receiver (this binary, re-executed, in its own process) serves `#[webhook]` deliveries
//! (Stripe signature, idempotency, `require_processed`, reporting) under load on loopback. Its
//! dependencies are real and sit behind the fault-injecting proxy (`src/fault.rs`):
//!
//! - **ingest**: an ingest stand-in that counts events (the reporter's target);
//! - **redis**: a real `redis-server` as the idempotency store;
//! - **api**: a real `outworx serve` as the idempotency store (`OutworxApiStore`);
//! - **postgres**: a real PostgreSQL as the inbox of a `queue` route.
//!
//! For each fault it reports throughput and p50/p99 relative to healthy, what the provider was
//! answered, what was lost (events dropped and counted; for the inbox, whether any 2xx went
//! to a delivery that was not committed), and how long recovery took once the fault cleared.
//!
//! Run: `cargo bench -p outworx-hooks-bench --bench faults -- [--seconds 5] [--connections 32]
//! [--only ingest,redis,api,postgres]`. The numbers are in `docs/performance.md`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Json, Router};
use outworx_hooks::inbox::Inbox;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Config, Track, webhook};
use outworx_test_support::fault::{Fault, FaultProxy};
use outworx_test_support::ingest::ingest_stand_in;
use outworx_test_support::net::free_port;
use outworx_test_support::postgres::Postgres;
use serde::Deserialize;

const SECRET: &str = "whsec_faultbench_secret";
const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";

#[derive(Deserialize)]
#[allow(dead_code)]
struct Event {
    id: String,
    r#type: String,
    data: serde_json::Value,
}

/// Handler runs in this (receiver) process: a duplicate replays the first run's number.
static RUN: AtomicU64 = AtomicU64::new(0);

#[webhook(provider = "stripe", secret = "whsec_faultbench_secret", idempotency = body.id, require_processed)]
async fn hooked(track: Track, Json(event): Json<Event>) -> Json<serde_json::Value> {
    std::hint::black_box(&event);
    track.processed();
    Json(serde_json::json!({ "run": RUN.fetch_add(1, Ordering::Relaxed) }))
}

#[webhook(provider = "stripe", secret = "whsec_faultbench_secret", idempotency = body.id, queue)]
async fn queued(track: Track, Json(event): Json<Event>) -> &'static str {
    std::hint::black_box(&event);
    track.processed();
    "ok"
}

static GUARD: OnceLock<outworx_hooks::Guard> = OnceLock::new();
static INBOX: OnceLock<Inbox> = OnceLock::new();

fn body(n: u64) -> String {
    serde_json::json!({
        "id": format!("evt_{n:024}"), "object": "event", "type": "payment_intent.succeeded",
        "data": { "object": { "id": "pi_3Nq", "amount": 2000, "description": "x".repeat(1380) } }
    })
    .to_string()
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

// ---- the receiver (a child process) ---------------------------------------------------------

/// `receiver PORT INGEST_URL STORE [INBOX_URL]`; STORE is `memory`, `redis:URL` or `api:URL`.
async fn receiver(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = args[2].parse()?;
    let mut config = Config::new()
        .api_key(KEY)
        .endpoint(args[3].clone())
        .service("faults");
    match args[4].split_once(':') {
        Some(("redis", url)) => {
            config = config.store(outworx_hooks::store::RedisStore::connect(url).await?);
        }
        Some(("api", url)) => {
            config = config.store(outworx_hooks::store::OutworxApiStore::new(url, KEY));
        }
        _ => {}
    }
    let _ = GUARD.set(outworx_hooks::init(config)?);
    let mut app = Router::new()
        .route("/webhooks/stripe", post(hooked))
        .route("/webhooks/queued", post(queued));
    let mut _worker = None;
    if let Some(url) = args.get(5) {
        let inbox = Inbox::open(url).await?;
        inbox.install();
        _worker = Some(inbox.start(app.clone()));
        let _ = INBOX.set(inbox);
    }
    app = app.route(
        "/stats",
        get(|| async {
            let dropped = GUARD.get().map_or(0, |g| g.dropped_events());
            let summary = match INBOX.get() {
                Some(i) => i.summary(1_000_000).await.ok(),
                None => None,
            };
            Json(serde_json::json!({ "dropped": dropped, "inbox": summary }))
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

// ---- the load ---------------------------------------------------------------------------------

#[derive(Default)]
struct Phase {
    /// 2xx answers per second.
    rps: f64,
    /// Over every request, answered 2xx or not (a 503 after a timeout counts).
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Answers by status (0: no answer).
    statuses: BTreeMap<u16, u64>,
    /// The deliveries answered 2xx.
    ok_ids: Vec<u64>,
}

impl Phase {
    fn answered(&self) -> String {
        self.statuses
            .iter()
            .map(|(s, n)| match s {
                0 => format!("{n} unanswered"),
                s => format!("{n}× {s}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Keeps `connections` requests in flight for `seconds`, each a fresh signed event, and
/// calls `during(elapsed)` once a second (to inject a fault mid-run). Every request has a 30 s
/// client timeout: one waiting on a dependency would show.
async fn load<F, Fut>(
    url: &str,
    connections: u64,
    seconds: u64,
    ids: &Arc<AtomicU64>,
    mut during: F,
) -> Phase
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let statuses = Arc::new(Mutex::new(BTreeMap::new()));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, ids, statuses) = (
                client.clone(),
                url.to_owned(),
                ids.clone(),
                statuses.clone(),
            );
            tokio::spawn(async move {
                let (mut latencies, mut ok_ids) = (Vec::new(), Vec::new());
                while Instant::now() < deadline {
                    let n = ids.fetch_add(1, Ordering::Relaxed);
                    let Ok(s) = Signer::new(Provider::Stripe, SECRET).sign(body(n)) else {
                        continue;
                    };
                    let started = Instant::now();
                    let status = client
                        .post(&url)
                        .headers(s.headers)
                        .body(s.body)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    latencies.push(started.elapsed());
                    if (200..300).contains(&status) {
                        ok_ids.push(n);
                    }
                    *statuses.lock().unwrap().entry(status).or_insert(0u64) += 1;
                }
                (latencies, ok_ids)
            })
        })
        .collect();
    let started = Instant::now();
    for s in 1..seconds {
        tokio::time::sleep_until((started + Duration::from_secs(s)).into()).await;
        during(s).await;
    }
    let (mut all, mut ok_ids) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, o) = t.await.unwrap_or_default();
        all.extend(l);
        ok_ids.extend(o);
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let statuses = statuses.lock().unwrap().clone();
    Phase {
        rps: ok_ids.len() as f64 / seconds as f64,
        p50: pct(0.50),
        p99: pct(0.99),
        max: all.last().copied().unwrap_or_default(),
        statuses,
        ok_ids,
    }
}

async fn stats(base: &str) -> serde_json::Value {
    let Ok(r) = reqwest::get(format!("{base}/stats")).await else {
        return serde_json::Value::Null;
    };
    r.json().await.unwrap_or_default()
}

/// Whether a delivery sent twice runs once (the store deduplicates again).
async fn deduplicates(url: &str, ids: &Arc<AtomicU64>) -> bool {
    let n = ids.fetch_add(1, Ordering::Relaxed);
    let client = reqwest::Client::new();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let Ok(s) = Signer::new(Provider::Stripe, SECRET).sign(body(n)) else {
            return false;
        };
        let r = client
            .post(url)
            .headers(s.headers)
            .body(s.body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(r) = r else { return false };
        if !r.status().is_success() {
            return false;
        }
        runs.push(r.text().await.unwrap_or_default());
    }
    runs[0] == runs[1]
}

// ---- the suite --------------------------------------------------------------------------------

struct Receiver(Child, String);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_receiver(ingest: &str, store: &str, inbox: Option<&str>) -> Receiver {
    let port = free_port();
    let exe = std::env::current_exe().expect("this binary");
    let mut cmd = Command::new(exe);
    cmd.args(["receiver", &port.to_string(), ingest, store]);
    if let Some(i) = inbox {
        cmd.arg(i);
    }
    let child = cmd
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the receiver");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if reqwest::get(format!("{base}/stats")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Receiver(child, base)
}

/// One row of the report.
struct Row {
    dependency: &'static str,
    fault: String,
    phase: Phase,
    healthy: f64,
    healthy_p99: Duration,
    lost: String,
    recovery: String,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn print_row(r: &Row) {
    let rel = if r.healthy > 0.0 {
        format!("{:+.1} %", (r.phase.rps / r.healthy - 1.0) * 100.0)
    } else {
        "-".into()
    };
    let p99x = if r.healthy_p99 > Duration::ZERO {
        format!(
            "{:.2}×",
            r.phase.p99.as_secs_f64() / r.healthy_p99.as_secs_f64()
        )
    } else {
        "-".into()
    };
    println!(
        "| {} | {} | {:.0} ({rel}) | {} | {} ({p99x}) | {} | {} | {} | {} |",
        r.dependency,
        r.fault,
        r.phase.rps,
        ms(r.phase.p50),
        ms(r.phase.p99),
        ms(r.phase.max),
        r.phase.answered(),
        r.lost,
        r.recovery
    );
}

/// How long until `ok` holds (checked every 50 ms, up to 60 s).
async fn recovery<F, Fut>(mut ok: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if ok().await {
            return format!("{:.2} s", started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    "not in 60 s".into()
}

fn faults_for(http: bool) -> Vec<(String, Fault)> {
    let mut f = vec![
        ("black hole".to_owned(), Fault::BlackHole),
        ("refused".to_owned(), Fault::Refuse),
        (
            "2 s latency".to_owned(),
            Fault::Latency(Duration::from_secs(2)),
        ),
    ];
    if http {
        f.push((
            "500 on every request".to_owned(),
            Fault::Http {
                status: 500,
                retry_after: None,
            },
        ));
        f.push((
            "429, Retry-After: 5".to_owned(),
            Fault::Http {
                status: 429,
                retry_after: Some(5),
            },
        ));
    }
    f
}

async fn suite_ingest(seconds: u64, connections: u64, rows: &mut Vec<Row>) {
    let arrived = Arc::new(AtomicU64::new(0));
    let proxy = FaultProxy::start(ingest_stand_in(arrived.clone()).await)
        .await
        .expect("proxy");
    let rx = start_receiver(
        &format!("http://{}/api/ingest", proxy.addr()),
        "memory",
        None,
    )
    .await;
    let url = format!("{}/webhooks/stripe", rx.1);
    let ids = Arc::new(AtomicU64::new(0));
    let healthy = load(&url, connections, seconds, &ids, |_| async {}).await;
    let (h, hp99) = (healthy.rps, healthy.p99);
    rows.push(Row {
        dependency: "ingest",
        fault: "healthy".into(),
        phase: healthy,
        healthy: h,
        healthy_p99: hp99,
        lost: format!("{} dropped", stats(&rx.1).await["dropped"]),
        recovery: "-".into(),
    });
    for (label, fault) in faults_for(true) {
        let dropped_before = stats(&rx.1).await["dropped"].as_u64().unwrap_or(0);
        proxy.set(fault).await;
        let phase = load(&url, connections, seconds, &ids, |_| async {}).await;
        proxy.set(Fault::Pass).await;
        let at_clear = arrived.load(Ordering::Relaxed);
        let rec = recovery(|| {
            let arrived = arrived.clone();
            async move { arrived.load(Ordering::Relaxed) > at_clear }
        })
        .await;
        // Let the queue drain before the next row.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let dropped = stats(&rx.1).await["dropped"].as_u64().unwrap_or(0) - dropped_before;
        rows.push(Row {
            dependency: "ingest",
            fault: label,
            phase,
            healthy: h,
            healthy_p99: hp99,
            lost: format!("{dropped} events dropped (counted, one log line)"),
            recovery: format!("events flow again after {rec}"),
        });
    }
}

/// A `redis-server` on `port`, no persistence.
fn redis_on(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[allow(clippy::too_many_arguments)]
async fn store_rows(
    dependency: &'static str,
    url: &str,
    proxy: &FaultProxy,
    faults: Vec<(String, Fault)>,
    seconds: u64,
    connections: u64,
    rows: &mut Vec<Row>,
) -> (f64, Duration) {
    let ids = Arc::new(AtomicU64::new(1 << 40));
    let healthy = load(url, connections, seconds, &ids, |_| async {}).await;
    let (h, hp99) = (healthy.rps, healthy.p99);
    rows.push(Row {
        dependency,
        fault: "healthy".into(),
        phase: healthy,
        healthy: h,
        healthy_p99: hp99,
        lost: "-".into(),
        recovery: "-".into(),
    });
    for (label, fault) in faults {
        proxy.set(fault).await;
        // The first window holds the opening (the calls that pay the timeout); the second is
        // the breaker open.
        let opening = load(url, connections, seconds, &ids, |_| async {}).await;
        let open = load(url, connections, seconds, &ids, |_| async {}).await;
        proxy.set(Fault::Pass).await;
        let rec = recovery(|| deduplicates(url, &ids)).await;
        rows.push(Row {
            dependency,
            fault: format!("{label}: first {seconds} s"),
            phase: opening,
            healthy: h,
            healthy_p99: hp99,
            lost: "none; deduplication off while it lasts (fail open)".into(),
            recovery: "-".into(),
        });
        rows.push(Row {
            dependency,
            fault: format!("{label}: next {seconds} s (breaker open)"),
            phase: open,
            healthy: h,
            healthy_p99: hp99,
            lost: "none; deduplication off while it lasts (fail open)".into(),
            recovery: format!("duplicates caught again after {rec}"),
        });
    }
    (h, hp99)
}

async fn suite_redis(seconds: u64, connections: u64, rows: &mut Vec<Row>) {
    let arrived = Arc::new(AtomicU64::new(0));
    let ingest = ingest_stand_in(arrived).await;
    let port = free_port();
    let mut redis = redis_on(port);
    let proxy = FaultProxy::start(([127, 0, 0, 1], port).into())
        .await
        .expect("proxy");
    let rx = start_receiver(
        &format!("http://{ingest}/api/ingest"),
        &format!("redis:redis://{}", proxy.addr()),
        None,
    )
    .await;
    let url = format!("{}/webhooks/stripe", rx.1);
    let (h, hp99) = store_rows(
        "redis",
        &url,
        &proxy,
        faults_for(false),
        seconds,
        connections,
        rows,
    )
    .await;
    // A real restart: killed, down 5 s (its keys are gone: no persistence), started again.
    let ids = Arc::new(AtomicU64::new(1 << 41));
    let mut restarted: Option<Child> = None;
    let mut down = Some(&mut redis);
    let phase = load(&url, connections, seconds.max(8), &ids, |s| {
        if s == 1
            && let Some(r) = down.take()
        {
            let _ = r.kill();
            let _ = r.wait();
        }
        if s == 6 {
            restarted = Some(redis_on(port));
        }
        async {}
    })
    .await;
    let rec = recovery(|| deduplicates(&url, &ids)).await;
    rows.push(Row {
        dependency: "redis",
        fault: "restart (killed, down 5 s)".into(),
        phase,
        healthy: h,
        healthy_p99: hp99,
        lost: "its keys (no persistence); deduplication off while down".into(),
        recovery: format!("duplicates caught again after {rec}"),
    });
    if let Some(mut r) = restarted {
        let _ = r.kill();
        let _ = r.wait();
    }
}

async fn suite_api(seconds: u64, connections: u64, rows: &mut Vec<Row>) {
    let arrived = Arc::new(AtomicU64::new(0));
    let ingest = ingest_stand_in(arrived).await;
    let dir = std::env::temp_dir().join(format!("outworx-faults-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let db = dir.join("serve.db").display().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind serve");
    let serve_addr = listener.local_addr().expect("addr");
    let config = outworx_serve::ServeConfig::new(vec![KEY.into()]);
    let serve_db = db.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = outworx_serve::serve_until(listener, &serve_db, config, async {
            let _ = stopped.await;
        })
        .await;
    });
    let proxy = FaultProxy::start(serve_addr).await.expect("proxy");
    let rx = start_receiver(
        &format!("http://{ingest}/api/ingest"),
        &format!("api:http://{}", proxy.addr()),
        None,
    )
    .await;
    let url = format!("{}/webhooks/stripe", rx.1);
    let (h, hp99) = store_rows(
        "outworx serve (API store)",
        &url,
        &proxy,
        faults_for(true),
        seconds,
        connections,
        rows,
    )
    .await;
    // A real restart: the server stops, is down 5 s, and serves the same database again.
    let ids = Arc::new(AtomicU64::new(1 << 42));
    let mut stop = Some(stop);
    let mut server = Some(server);
    let mut again: Option<tokio::task::JoinHandle<()>> = None;
    let phase = load(&url, connections, seconds.max(8), &ids, |s| {
        let mut wait = None;
        if s == 1
            && let (Some(stop), Some(server)) = (stop.take(), server.take())
        {
            let _ = stop.send(());
            server.abort();
            wait = Some(server);
        }
        if s == 6 {
            let db = db.clone();
            again = Some(tokio::spawn(async move {
                let Ok(listener) = tokio::net::TcpListener::bind(serve_addr).await else {
                    return;
                };
                let config = outworx_serve::ServeConfig::new(vec![KEY.into()]);
                let _ = outworx_serve::serve(listener, &db, config).await;
            }));
        }
        async move {
            if let Some(w) = wait {
                let _ = w.await;
            }
        }
    })
    .await;
    let rec = recovery(|| deduplicates(&url, &ids)).await;
    rows.push(Row {
        dependency: "outworx serve (API store)",
        fault: "restart (stopped, down 5 s)".into(),
        phase,
        healthy: h,
        healthy_p99: hp99,
        lost: "none (keys are in its database); deduplication off while down".into(),
        recovery: format!("duplicates caught again after {rec}"),
    });
    if let Some(a) = again {
        a.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn suite_postgres(seconds: u64, connections: u64, rows: &mut Vec<Row>) {
    let pg = Postgres::start();
    let arrived = Arc::new(AtomicU64::new(0));
    let ingest = ingest_stand_in(arrived).await;
    let proxy = FaultProxy::start(([127, 0, 0, 1], pg.port).into())
        .await
        .expect("proxy");
    let inbox_url = format!("postgres://postgres@{}/postgres", proxy.addr());
    for _ in 0..100 {
        if Inbox::open(&inbox_url).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rx = start_receiver(
        &format!("http://{ingest}/api/ingest"),
        "memory",
        Some(&inbox_url),
    )
    .await;
    let url = format!("{}/webhooks/queued", rx.1);
    // The inbox read directly, not through the proxy: what was committed.
    let direct = outworx_hooks::inbox::sqlx::PgPool::connect(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        pg.port
    ))
    .await
    .expect("postgres");
    let ids = Arc::new(AtomicU64::new(1 << 43));
    let healthy = load(&url, connections, seconds, &ids, |_| async {}).await;
    let (h, hp99) = (healthy.rps, healthy.p99);
    rows.push(Row {
        dependency: "postgres (inbox)",
        fault: "healthy".into(),
        phase: healthy,
        healthy: h,
        healthy_p99: hp99,
        lost: "-".into(),
        recovery: "-".into(),
    });
    let mut faults = faults_for(false);
    faults.push(("down 5 s (refused), then back".into(), Fault::Refuse));
    for (label, fault) in faults {
        let restart = label.starts_with("down");
        let committed = |s: &serde_json::Value| {
            let i = &s["inbox"];
            ["pending", "processing", "done", "dead"]
                .iter()
                .map(|k| i[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let before = committed(&stats(&rx.1).await);
        let phase = if restart {
            let mut f = Some(fault);
            let proxy = &proxy;
            load(&url, connections, seconds.max(8), &ids, |s| {
                let next = match s {
                    1 => f.take(),
                    6 => Some(Fault::Pass),
                    _ => None,
                };
                async move {
                    if let Some(n) = next {
                        proxy.set(n).await;
                    }
                }
            })
            .await
        } else {
            proxy.set(fault).await;
            let p = load(&url, connections, seconds, &ids, |_| async {}).await;
            proxy.set(Fault::Pass).await;
            p
        };
        let rx_base = rx.1.clone();
        let rec = recovery(|| {
            let base = rx_base.clone();
            async move {
                let s = stats(&base).await;
                s["inbox"]["pending"].as_u64() == Some(0)
                    && s["inbox"]["processing"].as_u64() == Some(0)
            }
        })
        .await;
        let after = committed(&stats(&rx.1).await);
        // Every delivery answered 2xx is in the inbox, by its own id.
        let keys: Vec<String> =
            outworx_hooks::inbox::sqlx::query_scalar("SELECT key FROM outworx_inbox")
                .fetch_all(&direct)
                .await
                .unwrap_or_default();
        let keys: std::collections::HashSet<&str> =
            keys.iter().filter_map(|k| k.rsplit(':').next()).collect();
        let missing = phase
            .ok_ids
            .iter()
            .filter(|n| !keys.contains(format!("evt_{n:024}").as_str()))
            .count();
        let ok = phase.ok_ids.len();
        let new_rows = after.saturating_sub(before);
        rows.push(Row {
            dependency: "postgres (inbox)",
            fault: label,
            phase,
            healthy: h,
            healthy_p99: hp99,
            lost: format!(
                "{ok} answered 2xx, each committed: {} ({new_rows} rows new)",
                if missing == 0 {
                    "yes".to_owned()
                } else {
                    format!("NO, {missing} MISSING")
                }
            ),
            recovery: format!("pending work done after {rec}"),
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("receiver") {
        return receiver(&args).await;
    }
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(5);
    let connections: u64 = arg("--connections")
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let only = arg("--only").unwrap_or_else(|| "ingest,redis,api,postgres".into());
    let mut rows = Vec::new();
    println!(
        "fault suite: {seconds} s per row, {connections} connections, `#[webhook]` with a Stripe \
         signature, idempotency and require_processed (queued for postgres)"
    );
    println!();
    println!(
        "| dependency | fault | 2xx/s (vs healthy) | p50 | p99 (vs healthy) | slowest | answered | lost | recovery |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for part in only.split(',') {
        let start = rows.len();
        match part.trim() {
            "ingest" => suite_ingest(seconds, connections, &mut rows).await,
            "redis" => suite_redis(seconds, connections, &mut rows).await,
            "api" => suite_api(seconds, connections, &mut rows).await,
            "postgres" => suite_postgres(seconds, connections, &mut rows).await,
            other => eprintln!("unknown part {other}"),
        }
        for r in &rows[start..] {
            print_row(r);
        }
    }
    Ok(())
}
