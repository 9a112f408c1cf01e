//! HTTP load benchmark on loopback, every target in a process of its own, alternated within
//! one run:
//!
//! | target | what |
//! |---|---|
//! | `bare` | a handler in bare axum |
//! | `hooked` | the same handler under `#[webhook]`: verification, `idempotency = body.id`, `require_processed`, reporting to a loopback ingest stand-in; memory store |
//! | `redis` | `hooked` on a shared `RedisStore` (a real `redis-server` on loopback) |
//! | `sqlite` | `#[webhook(.., queue)]` on a SQLite inbox, its worker in the process |
//! | `postgres` | the same on a PostgreSQL inbox (a real server on loopback) |
//! | `emit` | `#[emit]` on a SQLite outbox (no worker), and `plain`, the same handler without it |
//! | `python` | the Python package `outworx-hooks` 1.5 on FastAPI + uvicorn, from PyPI |
//!
//! Every request is a new, correctly signed ~1.7 KB Stripe event with a unique id, over
//! keep-alive connections. The client is light: raw HTTP/1.1 over a socket per connection (no
//! client library), so that the server, not the client, is the bottleneck; the client's share
//! of the CPU is printed beside each result. A queued target is given time to drain its backlog
//! after each measurement (printed), so that its worker does not run during the next target's.
//!
//! Run: `cargo bench -p outworx-hooks-bench --bench load -- [--seconds 10] [--connections 32]
//! [--rounds 3] [--targets bare,hooked,redis,sqlite,postgres,emit,python] [--no-python]
//! [--burst 20000] [--memory 1000000]` (from anywhere in the workspace). A target whose server
//! is not installed (`redis-server`, PostgreSQL, Python) is left out, saying so.
//!
//! `--burst N` then sends N deliveries to each queued target as fast as the client can, checks
//! that every one was acknowledged, and times the drain until each ran exactly once.
//! `--memory N` sends N more deliveries to `hooked` and reads its resident memory from `/proc`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Json, Router};
use outworx_hooks::inbox::Inbox;
use outworx_hooks::security::Provider;
use outworx_hooks::send::{Emitter, NewEndpoint, Outbox, TargetPolicy};
use outworx_hooks::testing::Signer;
use outworx_hooks::{Config, Track, emit, webhook};
use outworx_test_support::ingest::ingest_stand_in;
use outworx_test_support::net::free_port;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec_loadbench_secret";
const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";
const PATH: &str = "/webhooks/stripe";

#[derive(Deserialize)]
#[allow(dead_code)]
struct Event {
    id: String,
    r#type: String,
    data: serde_json::Value,
}

/// Handler runs in this process (the queued targets' worker runs them after the 200).
static RUNS: AtomicU64 = AtomicU64::new(0);

async fn bare(Json(event): Json<Event>) -> Json<serde_json::Value> {
    std::hint::black_box(&event);
    Json(serde_json::json!({ "received": true }))
}

#[webhook(provider = "stripe", secret = "whsec_loadbench_secret", idempotency = body.id, require_processed)]
async fn hooked(track: Track, Json(event): Json<Event>) -> Json<serde_json::Value> {
    std::hint::black_box(&event);
    track.processed();
    Json(serde_json::json!({ "received": true }))
}

#[webhook(provider = "stripe", secret = "whsec_loadbench_secret", idempotency = body.id, require_processed, queue)]
async fn queued(track: Track, Json(event): Json<Event>) -> Json<serde_json::Value> {
    std::hint::black_box(&event);
    RUNS.fetch_add(1, Ordering::Relaxed);
    track.processed();
    Json(serde_json::json!({ "received": true }))
}

#[emit("payment.received")]
async fn emitted(Json(event): Json<Event>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": event.id, "received": true }))
}

async fn plain(Json(event): Json<Event>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": event.id, "received": true }))
}

async fn runs() -> String {
    RUNS.load(Ordering::Relaxed).to_string()
}

fn body(n: u64) -> String {
    serde_json::json!({
        "id": format!("evt_{n:024}"), "object": "event", "type": "payment_intent.succeeded",
        "api_version": "2024-06-20", "created": 1_700_000_000,
        "data": { "object": { "id": "pi_3Nq", "amount": 2000, "currency": "eur", "description": "x".repeat(1380) } }
    })
    .to_string()
}

fn arg(name: &str, default: u64) -> u64 {
    arg_text(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_text(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The server modes of this binary: `serve-bare PORT`, `serve-hooked PORT INGEST [REDIS]`,
/// `serve-queued PORT INGEST DB`, `serve-emit PORT DB`.
async fn serve(mode: &str, port: u16, args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let ingest = args.first().cloned();
    let _guard = match (mode, &ingest) {
        ("serve-hooked" | "serve-queued", Some(endpoint)) => {
            let mut config = Config::new().api_key(KEY).endpoint(endpoint.clone());
            if let (Some(url), "serve-hooked") = (args.get(1), mode) {
                config = config.store(outworx_hooks::store::RedisStore::connect(url).await?);
            }
            // This binary has an `#[emit]` route that these modes never serve (serve-emit
            // installs its own emitter): `init` needs none here.
            Some(outworx_hooks::init(config.emit_by_extension())?)
        }
        _ => None,
    };
    let app = match mode {
        "serve-bare" => Router::new().route(PATH, post(bare)),
        "serve-hooked" => Router::new().route(PATH, post(hooked)),
        "serve-queued" => {
            let db = args.get(1).ok_or("serve-queued PORT INGEST DB")?;
            let inbox = Inbox::open(db).await?;
            inbox.install();
            let app = Router::new().route(PATH, post(queued));
            // The handle lives as long as the process.
            std::mem::forget(inbox.start(app.clone()));
            app.route("/runs", get(runs))
        }
        "serve-emit" => {
            let db = ingest.as_deref().ok_or("serve-emit PORT DB")?;
            let emitter = Emitter::builder(Outbox::open(db).await?)
                .policy(TargetPolicy::default().allow("127.0.0.0/8".parse()?))
                .worker(None)
                .build();
            emitter
                .create_endpoint(NewEndpoint::new("http://127.0.0.1:9/hooks").event("payment.*"))
                .await?;
            emitter.install();
            Router::new()
                .route(PATH, post(emitted))
                .route("/plain", post(plain))
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// An ingest that accepts connections and never answers: the reporter's worst case.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind black hole");
    let url = format!("http://{}/api/ingest", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// Resident and peak resident memory of a process, from `/proc/PID/status`.
fn memory_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "VmRSS {}, VmHWM (peak) {}",
        field("VmRSS:"),
        field("VmHWM:")
    )
}

/// CPU time a process has used (user + system), from `/proc/PID/stat`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) in parentheses: utime is the 12th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The ingest stand-in's URL.
async fn ingest_url(events: Arc<AtomicU64>) -> String {
    format!("http://{}/api/ingest", ingest_stand_in(events).await)
}

const PYTHON_APP: &str = r#"
import outworx_hooks
from fastapi import FastAPI, Request
from outworx_hooks import TrackOptions
from outworx_hooks.integrations.fastapi import OutworxHooksMiddleware
import os

outworx_hooks.init(api_key=os.environ["KEY"], endpoint=os.environ["INGEST"])
app = FastAPI()
app.add_middleware(OutworxHooksMiddleware, options=TrackOptions(
    provider="stripe", signature_secret=os.environ["SECRET"], require_processing_mark=True))

@app.post("/webhooks/stripe")
async def stripe(request: Request):
    event = await request.json()
    track = getattr(request.state, "outworx_track", None)
    if track is not None:
        track.processed()
    return {"received": True}
"#;

/// The virtualenv with the Python package 1.5, FastAPI and uvicorn (pinned in
/// `outworx-cli/tests/python/requirements.txt`), made once by the same script the interop
/// test uses.
fn python_env() -> Option<std::path::PathBuf> {
    // The workspace root: cargo runs a bench in its package's directory.
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

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(port: u16) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Default)]
struct Result_ {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    acknowledged: u64,
    /// The client's share of the CPU the client and the server used.
    client_share: f64,
    /// The server's CPU time per acknowledged request.
    server_cpu: Duration,
}

/// A keep-alive HTTP/1.1 connection that writes requests as bytes and reads just the status
/// line, the `content-length` and the body: the least a client can do per request.
struct RawConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    async fn open(port: u16) -> std::io::Result<RawConn> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request`, answers the response's status.
    async fn send(&mut self, request: &[u8]) -> std::io::Result<u16> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap_or("");
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let want = end + 4 + length;
                while self.buf.len() < want {
                    let n = self.stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return Ok(status);
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Delivery `n` as the bytes of a signed request to `path` (signed with Stripe's scheme, or
/// plain JSON for `/plain` and the emitting route).
fn request(n: u64, path: &str, signed: bool) -> Vec<u8> {
    let body = body(n);
    let mut out = format!("POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n").into_bytes();
    let (headers, body) = if signed {
        match Signer::new(Provider::Stripe, SECRET).sign(body) {
            Ok(s) => (s.headers, s.body),
            Err(_) => return Vec::new(),
        }
    } else {
        let mut h = http::HeaderMap::new();
        h.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        (h, body.into_bytes())
    };
    for (name, value) in &headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// One target: a server process, the path it answers, whether requests are signed.
struct Target {
    name: &'static str,
    port: u16,
    path: &'static str,
    signed: bool,
    pid: u32,
    /// A queued target: drained (all its runs done) after each measurement.
    queued: bool,
    acknowledged: Arc<AtomicU64>,
}

impl Target {
    fn new(
        name: &'static str,
        port: u16,
        path: &'static str,
        signed: bool,
        pid: u32,
        queued: bool,
    ) -> Target {
        Target {
            name,
            port,
            path,
            signed,
            pid,
            queued,
            acknowledged: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Keeps `connections` requests in flight for `seconds` (or until `limit` ids were sent),
/// each a fresh delivery.
async fn load(
    t: &Target,
    connections: u64,
    seconds: u64,
    ids: &Arc<AtomicU64>,
    limit: u64,
) -> Result_ {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let (client0, server0) = (cpu_ticks(std::process::id()), cpu_ticks(t.pid));
    let errors = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (ids, errors, port, path, signed) =
                (ids.clone(), errors.clone(), t.port, t.path, t.signed);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let Ok(mut conn) = RawConn::open(port).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return latencies;
                };
                while Instant::now() < deadline {
                    let n = ids.fetch_add(1, Ordering::Relaxed);
                    if n >= limit {
                        break;
                    }
                    let req = request(n, path, signed);
                    let at = Instant::now();
                    match conn.send(&req).await {
                        Ok(status) if (200..300).contains(&status) => latencies.push(at.elapsed()),
                        Ok(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            match RawConn::open(port).await {
                                Ok(c) => conn = c,
                                Err(_) => break,
                            }
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let (client, server) = (
        cpu_ticks(std::process::id()) - client0,
        cpu_ticks(t.pid).saturating_sub(server0),
    );
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    t.acknowledged
        .fetch_add(all.len() as u64, Ordering::Relaxed);
    Result_ {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
        acknowledged: all.len() as u64,
        client_share: client as f64 / (client + server).max(1) as f64,
        // /proc counts in clock ticks: 100 a second on Linux.
        server_cpu: Duration::from_micros(server * 10_000 / (all.len() as u64).max(1)),
    }
}

/// How many handler runs a queued target has made.
async fn runs_of(port: u16) -> u64 {
    let Ok(mut conn) = RawConn::open(port).await else {
        return 0;
    };
    let req = b"GET /runs HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    if conn.send(req).await.is_err() {
        return 0;
    }
    let text = String::from_utf8_lossy(&conn.buf);
    text.rsplit("\r\n\r\n")
        .next()
        .and_then(|b| b.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until a queued target has run every delivery it acknowledged; the time it took.
async fn drain(t: &Target) -> Duration {
    let started = Instant::now();
    let want = t.acknowledged.load(Ordering::Relaxed);
    while runs_of(t.port).await < want && started.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(mode) = args.get(1).filter(|m| m.starts_with("serve-")) {
        let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(3000);
        return serve(mode, port, args.get(3..).unwrap_or(&[])).await;
    }
    let seconds = arg("--seconds", 10);
    let connections = arg("--connections", 32);
    let rounds = arg("--rounds", 3);
    let burst = arg("--burst", 0);
    let memory_deliveries = arg("--memory", 0);
    let wanted = arg_text("--targets")
        .unwrap_or_else(|| "bare,hooked,redis,sqlite,postgres,emit,python".into());
    let wanted: Vec<&str> = wanted.split(',').collect();
    let with_python = wanted.contains(&"python") && !args.iter().any(|a| a == "--no-python");

    let ingested = Arc::new(AtomicU64::new(0));
    let ingest = ingest_url(ingested.clone()).await;
    let exe = std::env::current_exe()?;
    let dir = outworx_test_support::net::temp_dir("loadbench");
    let mut servers = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let mut spawn = |name: &'static str,
                     path: &'static str,
                     signed: bool,
                     queued: bool,
                     args: Vec<String>|
     -> Result<(), Box<dyn std::error::Error>> {
        let port = free_port();
        let mut all = vec![args[0].clone(), port.to_string()];
        all.extend(args[1..].iter().cloned());
        let child = Command::new(&exe).args(&all).spawn()?;
        targets.push(Target::new(name, port, path, signed, child.id(), queued));
        servers.push(Server(child));
        Ok(())
    };
    if wanted.contains(&"bare") {
        spawn("bare axum", PATH, true, false, vec!["serve-bare".into()])?;
    }
    if wanted.contains(&"hooked") {
        spawn(
            "#[webhook] memory store",
            PATH,
            true,
            false,
            vec!["serve-hooked".into(), ingest.clone()],
        )?;
    }
    let redis = (wanted.contains(&"redis") && installed("redis-server"))
        .then(outworx_test_support::redis::Redis::start);
    if let Some(r) = &redis {
        spawn(
            "#[webhook] redis store",
            PATH,
            true,
            false,
            vec!["serve-hooked".into(), ingest.clone(), r.url.clone()],
        )?;
    } else if wanted.contains(&"redis") {
        eprintln!("redis-server is not installed: leaving out the Redis store");
    }
    if wanted.contains(&"sqlite") {
        let db = dir.join("inbox.db").to_string_lossy().into_owned();
        spawn(
            "queue, SQLite inbox",
            PATH,
            true,
            true,
            vec!["serve-queued".into(), ingest.clone(), db],
        )?;
    }
    let postgres = (wanted.contains(&"postgres")
        && outworx_test_support::postgres::Postgres::installed())
    .then(outworx_test_support::postgres::Postgres::start);
    if let Some(pg) = &postgres {
        spawn(
            "queue, PostgreSQL inbox",
            PATH,
            true,
            true,
            vec!["serve-queued".into(), ingest.clone(), pg.url()],
        )?;
    } else if wanted.contains(&"postgres") {
        eprintln!("PostgreSQL is not installed: leaving out the PostgreSQL inbox");
    }
    if wanted.contains(&"emit") {
        let db = dir.join("outbox.db").to_string_lossy().into_owned();
        spawn(
            "plain (emit's handler)",
            "/plain",
            false,
            false,
            vec!["serve-emit".into(), db],
        )?;
        let port = targets
            .last()
            .map(|t| (t.port, t.pid))
            .ok_or("no emit server")?;
        targets.push(Target {
            name: "#[emit], SQLite outbox",
            port: port.0,
            path: PATH,
            signed: false,
            pid: port.1,
            queued: false,
            acknowledged: Arc::new(AtomicU64::new(0)),
        });
    }
    let hooked_pid = targets
        .iter()
        .find(|t| t.name.starts_with("#[webhook] memory"))
        .map(|t| (t.pid, t.port));
    let black = if memory_deliveries == 0 && wanted.contains(&"hooked") {
        let port = free_port();
        let child = Command::new(&exe)
            .args(["serve-hooked", &port.to_string(), &black_hole().await])
            .spawn()?;
        targets.push(Target::new(
            "#[webhook] black-hole ingest",
            port,
            PATH,
            true,
            child.id(),
            false,
        ));
        Some(Server(child))
    } else {
        None
    };
    let _python = if with_python {
        match python_env() {
            Some(python) => {
                let pdir = std::env::temp_dir().join("outworx-loadbench");
                std::fs::create_dir_all(&pdir)?;
                std::fs::write(pdir.join("app.py"), PYTHON_APP)?;
                let port = free_port();
                let child = Command::new(python)
                    .args([
                        "-m",
                        "uvicorn",
                        "app:app",
                        "--port",
                        &port.to_string(),
                        "--no-access-log",
                        "--log-level",
                        "warning",
                    ])
                    .current_dir(&pdir)
                    .env("KEY", KEY)
                    .env("INGEST", &ingest)
                    .env("SECRET", SECRET)
                    .stdout(Stdio::null())
                    .spawn()?;
                targets.push(Target::new(
                    "Python 1.5 (FastAPI)",
                    port,
                    PATH,
                    true,
                    child.id(),
                    false,
                ));
                Some(Server(child))
            }
            None => {
                eprintln!("the Python environment could not be made; leaving Python out");
                None
            }
        }
    } else {
        None
    };
    for t in &targets {
        wait_ready(t.port).await;
    }

    let ids = Arc::new(AtomicU64::new(0));
    let mut totals: Vec<Vec<Result_>> = targets.iter().map(|_| Vec::new()).collect();
    println!(
        "{seconds} s per target per round, {connections} connections, {rounds} rounds, alternating\n"
    );
    for round in 1..=rounds {
        for (i, t) in targets.iter().enumerate() {
            load(t, connections, 1, &ids, u64::MAX).await; // warm-up
            let r = load(t, connections, seconds, &ids, u64::MAX).await;
            let drained = if t.queued {
                format!("  drained in {:.2?}", drain(t).await)
            } else {
                String::new()
            };
            println!(
                "round {round} {:<30} {:>9.0} req/s  p50 {:>8.2?}  p99 {:>8.2?}  errors {}  client CPU {:>3.0} %  server CPU/req {:>6.1?}{drained}",
                t.name,
                r.rps,
                r.p50,
                r.p99,
                r.errors,
                r.client_share * 100.0,
                r.server_cpu
            );
            totals[i].push(r);
        }
    }
    println!();
    let mut means = Vec::new();
    for (t, results) in targets.iter().zip(&totals) {
        let n = results.len().max(1) as f64;
        let rps = results.iter().map(|r| r.rps).sum::<f64>() / n;
        let p50 = results.iter().map(|r| r.p50).sum::<Duration>() / results.len().max(1) as u32;
        let p99 = results.iter().map(|r| r.p99).sum::<Duration>() / results.len().max(1) as u32;
        let share = results.iter().map(|r| r.client_share).sum::<f64>() / n;
        println!(
            "mean {:<30} {rps:>9.0} req/s  p50 {p50:>8.2?}  p99 {p99:>8.2?}  client CPU {:>3.0} %",
            t.name,
            share * 100.0
        );
        means.push((t.name, rps));
    }
    let mean = |prefix: &str| {
        means
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, r)| *r)
    };
    println!();
    let ratio = |label: &str, a: Option<f64>, b: Option<f64>, target: &str| {
        if let (Some(a), Some(b)) = (a, b) {
            println!("{label:<44} {:.3} (target {target})", a / b);
        }
    };
    let bare = mean("bare");
    ratio(
        "#[webhook] memory store / bare",
        mean("#[webhook] memory"),
        bare,
        ">= 0.93",
    );
    ratio(
        "#[webhook] redis store / bare",
        mean("#[webhook] redis"),
        bare,
        "",
    );
    ratio(
        "#[webhook] redis store / memory store",
        mean("#[webhook] redis"),
        mean("#[webhook] memory"),
        ">= 0.7",
    );
    ratio(
        "queue, SQLite inbox / bare",
        mean("queue, SQLite"),
        bare,
        ">= 0.5",
    );
    ratio(
        "queue, PostgreSQL inbox / bare",
        mean("queue, PostgreSQL"),
        bare,
        ">= 0.3",
    );
    ratio(
        "#[emit] / the same handler without it",
        mean("#[emit]"),
        mean("plain"),
        ">= 0.5",
    );
    ratio(
        "#[webhook] / Python 1.5",
        mean("#[webhook] memory"),
        mean("Python"),
        ">= 40",
    );
    println!(
        "events reported to the ingest stand-in: {}",
        ingested.load(Ordering::Relaxed)
    );

    if burst > 0 {
        println!("\nburst: {burst} deliveries to each queued target, {connections} connections");
        for t in targets.iter().filter(|t| t.queued) {
            let before = runs_of(t.port).await;
            let from = ids.fetch_add(0, Ordering::Relaxed);
            let bids = Arc::new(AtomicU64::new(from));
            ids.fetch_add(burst, Ordering::Relaxed);
            let started = Instant::now();
            let r = load(t, connections, 3600, &bids, from + burst).await;
            let sent = started.elapsed();
            let drained = drain(t).await;
            // Nothing runs twice: the count stays where it is after a further wait.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let ran = runs_of(t.port).await - before;
            println!(
                "{:<30} acknowledged {}/{burst} in {sent:.2?} ({:.0} req/s, p50 {:.2?}, p99 {:.2?}, errors {}); \
                 drained {drained:.2?} after the last; handler runs {ran} ({})",
                t.name,
                r.acknowledged,
                r.rps,
                r.p50,
                r.p99,
                r.errors,
                if ran == r.acknowledged {
                    "each once"
                } else {
                    "NOT once each"
                }
            );
        }
    }

    if memory_deliveries > 0
        && let Some((pid, port)) = hooked_pid
    {
        println!("\n#[webhook] before: {}", memory_of(pid));
        let mids = Arc::new(AtomicU64::new(1 << 40));
        let t = Target::new("memory", port, PATH, true, pid, false);
        let started = Instant::now();
        let r = load(&t, connections, 3600, &mids, (1 << 40) + memory_deliveries).await;
        println!("errors during the run: {}", r.errors);
        println!(
            "#[webhook] after {memory_deliveries} more deliveries ({:.0?}): {}",
            started.elapsed(),
            memory_of(pid)
        );
    }
    drop(black);
    drop(redis);
    drop(postgres);
    Ok(())
}
