//! HTTP load benchmark on loopback: (a) a handler in bare axum, (b) the same handler under
//! `#[webhook]` (verification, idempotency, `require_processed`, reporting to a loopback ingest
//! stand-in), (c) the Python package `outworx-hooks` 1.5 on FastAPI + uvicorn with its middleware
//! (signature verification and reporting), installed into a virtualenv from PyPI.
//!
//! Every request is a new, correctly signed ~1.7 KB Stripe-style event with a unique id, over
//! keep-alive connections; the targets alternate within one run.
//!
//! Run: `cargo bench -p outworx-hooks-bench --bench load -- [--seconds 10] [--connections 32]
//! [--rounds 3] [--no-python] [--memory 1000000]` (from anywhere in the workspace).
//!
//! Besides (a), (b) and (c) it measures (b) reporting to a black-hole ingest (accepts the
//! connection, never answers) for the effect on p99, and with `--memory N` sends N more
//! deliveries to (b) and reads its resident memory from `/proc`.
//!
//! Each server runs in its own process (this binary, re-executed), so the load generator does
//! not share a runtime with the server it measures; on a 2-core machine they still share the
//! CPU, the same way for every target.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Config, Track, webhook};
use outworx_test_support::ingest::ingest_stand_in;
use outworx_test_support::net::free_port;
use serde::Deserialize;

const SECRET: &str = "whsec_loadbench_secret";
const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";

#[derive(Deserialize)]
#[allow(dead_code)]
struct Event {
    id: String,
    r#type: String,
    data: serde_json::Value,
}

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

fn body(n: u64) -> String {
    serde_json::json!({
        "id": format!("evt_{n:024}"), "object": "event", "type": "payment_intent.succeeded",
        "api_version": "2024-06-20", "created": 1_700_000_000,
        "data": { "object": { "id": "pi_3Nq", "amount": 2000, "currency": "eur", "description": "x".repeat(1380) } }
    })
    .to_string()
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server modes of this binary: `serve-bare PORT`, `serve-hooked PORT INGEST_URL`.
async fn serve(
    mode: &str,
    port: u16,
    ingest: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let _guard = match ingest {
        Some(endpoint) => Some(outworx_hooks::init(
            Config::new().api_key(KEY).endpoint(endpoint),
        )?),
        None => None,
    };
    let app = match mode {
        "serve-bare" => Router::new().route("/webhooks/stripe", post(bare)),
        _ => Router::new().route("/webhooks/stripe", post(hooked)),
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
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Result_ {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// Keeps `connections` requests in flight for `seconds`, each a fresh signed event.
async fn load(url: &str, connections: u64, seconds: u64, ids: &Arc<AtomicU64>) -> Result_ {
    load_until(url, connections, seconds, ids, u64::MAX).await
}

/// As [`load`], stopping early once the id counter reaches `limit`.
async fn load_until(
    url: &str,
    connections: u64,
    seconds: u64,
    ids: &Arc<AtomicU64>,
    limit: u64,
) -> Result_ {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections as usize)
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, ids, errors) =
                (client.clone(), url.to_owned(), ids.clone(), errors.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let n = ids.fetch_add(1, Ordering::Relaxed);
                    if n >= limit {
                        break;
                    }
                    let Ok(s) = Signer::new(Provider::Stripe, SECRET).sign(body(n)) else {
                        continue;
                    };
                    let started = Instant::now();
                    let ok = client
                        .post(&url)
                        .headers(s.headers)
                        .body(s.body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        latencies.push(started.elapsed());
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Result_ {
        rps: all.len() as f64 / seconds as f64,
        p50: pct(0.50),
        p99: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(mode) = args.get(1).filter(|m| m.starts_with("serve-")) {
        let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(3000);
        return serve(mode, port, args.get(3).cloned()).await;
    }
    let seconds = arg("--seconds", 10);
    let connections = arg("--connections", 32);
    let rounds = arg("--rounds", 3);
    let with_python = !args.iter().any(|a| a == "--no-python");
    let memory_deliveries = arg("--memory", 0);

    let ingested = Arc::new(AtomicU64::new(0));
    let ingest = ingest_url(ingested.clone()).await;
    let exe = std::env::current_exe()?;
    let (pa, pb, pc, pd) = (free_port(), free_port(), free_port(), free_port());
    let _a = Server(
        Command::new(&exe)
            .args(["serve-bare", &pa.to_string()])
            .spawn()?,
    );
    let _b = Server(
        Command::new(&exe)
            .args(["serve-hooked", &pb.to_string(), &ingest])
            .spawn()?,
    );
    let _d = Server(
        Command::new(&exe)
            .args(["serve-hooked", &pd.to_string(), &black_hole().await])
            .spawn()?,
    );
    let mut targets = vec![("a: bare axum", pa), ("b: #[webhook]", pb)];
    let _c = if with_python {
        match python_env() {
            Some(python) => {
                let dir = std::env::temp_dir().join("outworx-loadbench");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("app.py"), PYTHON_APP)?;
                let child = Command::new(python)
                    .args([
                        "-m",
                        "uvicorn",
                        "app:app",
                        "--port",
                        &pc.to_string(),
                        "--no-access-log",
                        "--log-level",
                        "warning",
                    ])
                    .current_dir(&dir)
                    .env("KEY", KEY)
                    .env("INGEST", &ingest)
                    .env("SECRET", SECRET)
                    .stdout(Stdio::null())
                    .spawn()?;
                targets.push(("c: Python 1.5 (FastAPI)", pc));
                Some(Server(child))
            }
            None => {
                eprintln!("the Python environment could not be made; measuring a and b only");
                None
            }
        }
    } else {
        None
    };
    targets.push(("b: black-hole ingest", pd));
    for (_, port) in &targets {
        wait_ready(*port).await;
    }

    let ids = Arc::new(AtomicU64::new(0));
    let mut totals: Vec<Vec<Result_>> = targets.iter().map(|_| Vec::new()).collect();
    println!(
        "{seconds} s per target per round, {connections} connections, {rounds} rounds, alternating\n"
    );
    for round in 1..=rounds {
        for (i, (name, port)) in targets.iter().enumerate() {
            let url = format!("http://127.0.0.1:{port}/webhooks/stripe");
            load(&url, connections, 1, &ids).await; // warm-up
            let r = load(&url, connections, seconds, &ids).await;
            println!(
                "round {round} {name:<26} {:>9.0} req/s  p50 {:>8.2?}  p99 {:>8.2?}  errors {}",
                r.rps, r.p50, r.p99, r.errors
            );
            totals[i].push(r);
        }
    }
    println!();
    let mut means = Vec::new();
    for ((name, _), results) in targets.iter().zip(&totals) {
        let n = results.len().max(1) as f64;
        let rps = results.iter().map(|r| r.rps).sum::<f64>() / n;
        let p50 = results.iter().map(|r| r.p50).sum::<Duration>() / results.len().max(1) as u32;
        let p99 = results.iter().map(|r| r.p99).sum::<Duration>() / results.len().max(1) as u32;
        println!("mean {name:<26} {rps:>9.0} req/s  p50 {p50:>8.2?}  p99 {p99:>8.2?}");
        means.push(rps);
    }
    if means.len() >= 2 {
        println!("\nb/a = {:.3} (target >= 0.93)", means[1] / means[0]);
    }
    if with_python && means.len() >= 4 {
        println!("b/c = {:.1} (target >= 40)", means[1] / means[2]);
    }
    println!(
        "events reported to the ingest stand-in: {}",
        ingested.load(Ordering::Relaxed)
    );
    if memory_deliveries > 0 {
        let pid = _b.0.id();
        println!("\nb before: {}", memory_of(pid));
        let ids = Arc::new(AtomicU64::new(1 << 40));
        let url = format!("http://127.0.0.1:{pb}/webhooks/stripe");
        let started = Instant::now();
        let limit = (1 << 40) + memory_deliveries;
        let r = load_until(&url, connections, 3600, &ids, limit).await;
        println!("errors during the run: {}", r.errors);
        println!(
            "b after {memory_deliveries} more deliveries ({:.0?}): {}",
            started.elapsed(),
            memory_of(pid)
        );
    }
    Ok(())
}
