//! The outworx-hooks demo: a receiver on embedded defaults (no API key, memory store), a
//! scripted set of signed deliveries, and what happened to each; then the sending side: an
//! `#[emit]` route, two endpoints, a failed attempt retried, a dead message replayed; then
//! queue-first receiving: a slow handler's delivery acknowledged at once, processed after.
//!
//! Run: `cargo run --example demo` (`PORT` to choose the port, default 3000 or a free one;
//! `OUTWORX_DEMO_EXIT=1` to exit after the table instead of serving on).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::event::{DeliveryEvent, Direction, ProcessingStatus};
use outworx_hooks::inbox::Inbox;
use outworx_hooks::queue::RetrySchedule;
use outworx_hooks::security::{Provider, now_unix};
use outworx_hooks::send::{
    DeliveryFilter, DeliveryStatus, Emitter, NewEndpoint, Outbox, Scope, TargetPolicy,
    WorkerOptions,
};
use outworx_hooks::testing::{Signed, Signer};
use outworx_hooks::{Track, emit, webhook};
use serde::Deserialize;
use serde_json::{Value, json};

const STRIPE_SECRET: &str = "whsec_demo_0123456789abcdef";
const GITHUB_SECRET: &str = "demo-github-secret";

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    r#type: String,
}

#[webhook(
    provider = "stripe",
    secret = "whsec_demo_0123456789abcdef",
    idempotency,
    require_processed
)]
async fn stripe(track: Track, Json(event): Json<StripeEvent>) -> Json<Value> {
    if matches!(
        event.r#type.as_str(),
        "payment_intent.succeeded" | "charge.succeeded"
    ) {
        track.processed_with(json!({ "event": event.id }));
    }
    Json(json!({ "received": true }))
}

#[webhook(
    provider = "github",
    secret = "demo-github-secret",
    idempotency,
    require_processed
)]
async fn github(track: Track, body: Bytes) -> &'static str {
    track.processed_with(json!({ "bytes": body.len() }));
    "ok"
}

// ---- queue-first receiving ----

/// A slow handler (a second and a half): with `queue`, the provider does not wait for it.
#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue,
    require_processed
)]
async fn slow_standard(track: Track, Json(_event): Json<Value>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    track.processed();
    "ok"
}

// ---- the sending side ----

/// The secret the orders endpoint was given when it was created.
static ORDERS_SECRET: OnceLock<String> = OnceLock::new();
static ORDERS_SEEN: AtomicUsize = AtomicUsize::new(0);
static BROKEN_FIXED: AtomicBool = AtomicBool::new(false);

fn orders_secret() -> String {
    ORDERS_SECRET.get().cloned().unwrap_or_default()
}

/// A customer's receiver, built with this SDK: it verifies our Standard Webhooks signature,
/// and (to show a retry) answers its first delivery 503.
#[webhook(provider = "standard", secret = orders_secret, idempotency, require_processed)]
async fn customer_orders(track: Track, Json(_event): Json<Value>) -> StatusCode {
    if ORDERS_SEEN.fetch_add(1, Ordering::SeqCst) == 0 {
        track.failed("busy, try again");
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    track.processed();
    StatusCode::OK
}

/// Another customer's receiver: broken (500) until it is fixed.
async fn customer_broken() -> StatusCode {
    if BROKEN_FIXED.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
}

/// Our own API: creating an order emits `order.created`, committed before the answer.
#[emit("order.created")]
async fn create_order(Json(o): Json<NewOrder>) -> Json<Value> {
    Json(json!({ "id": "ord_1001", "item": o.item, "status": "created" }))
}

fn stripe_body(id: &str, kind: &str) -> String {
    json!({
        "id": id, "object": "event", "type": kind, "api_version": "2024-06-20",
        "data": { "object": { "id": "pi_3Nq", "amount": 2000, "currency": "eur" } }
    })
    .to_string()
}

fn signed_stripe(id: &str, kind: &str) -> Signed {
    Signer::new(Provider::Stripe, STRIPE_SECRET)
        .sign(stripe_body(id, kind))
        .expect("demo secret is valid")
}

async fn bind() -> std::io::Result<tokio::net::TcpListener> {
    let wanted = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    match tokio::net::TcpListener::bind(format!("127.0.0.1:{wanted}")).await {
        Ok(l) => Ok(l),
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await,
    }
}

fn describe(e: &DeliveryEvent) -> (String, String, String) {
    let signature = match (e.signature_valid, e.signature_failure_reason) {
        (Some(true), _) => "valid".to_owned(),
        (Some(false), Some(r)) => format!("invalid: {r}"),
        (Some(false), None) => "invalid".to_owned(),
        (None, _) => "-".to_owned(),
    };
    let processing = match e.processing_status {
        Some(ProcessingStatus::Completed) => "completed",
        Some(ProcessingStatus::Failed) => "failed",
        Some(ProcessingStatus::SilentDrop) => "SILENT DROP",
        Some(ProcessingStatus::Queued) => "queued",
        Some(ProcessingStatus::Ignored) => "ignored",
        _ => "-",
    }
    .to_owned();
    let note = if e.meta("duplicate").is_some() {
        "duplicate: first response replayed, handler not run".to_owned()
    } else {
        e.error_message.clone().unwrap_or_default()
    };
    (signature, processing, note)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = bind().await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/webhooks/stripe", post(stripe))
        .route("/webhooks/github", post(github))
        .route("/orders", post(create_order))
        .route("/customers/orders", post(customer_orders))
        .route("/customers/broken", post(customer_broken))
        .route("/webhooks/queued", post(slow_standard))
        // Prometheus metrics of every delivery, received and sent.
        .merge(outworx_hooks::metrics::router());
    // The inbox (in memory for the demo: not durable) and its worker, which runs queued
    // deliveries through this same router.
    let inbox = Inbox::memory().await?;
    inbox.install();
    let inbox_worker = inbox.start(app.clone());
    let mut events = outworx_hooks::subscribe();
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!(
        "outworx-hooks demo: receiver on {base} (embedded defaults: no API key, memory store)\n"
    );

    let valid = signed_stripe("evt_demo_1", "payment_intent.succeeded");
    let mut tampered = signed_stripe("evt_demo_2", "payment_intent.succeeded");
    tampered.body = stripe_body("evt_demo_2", "payment_intent.succeeded")
        .replace("2000", "1")
        .into_bytes();
    let stale = Signer::new(Provider::Stripe, STRIPE_SECRET)
        .at(now_unix() - 3600)
        .sign(stripe_body("evt_demo_3", "charge.succeeded"))?;
    let wrong_secret = Signer::new(Provider::Stripe, "whsec_someone_else")
        .sign(stripe_body("evt_demo_4", "charge.succeeded"))?;
    let unmarked = signed_stripe("evt_demo_5", "customer.created");
    let mut github = Signer::new(Provider::Github, GITHUB_SECRET)
        .id("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .sign(r#"{"ref":"refs/heads/main","commits":[{"id":"a1b2c3"}]}"#)?;
    github.headers.insert("x-github-event", "push".parse()?);

    let script: Vec<(&str, &str, &Signed)> = vec![
        ("valid Stripe payment", "/webhooks/stripe", &valid),
        ("the same delivery again", "/webhooks/stripe", &valid),
        ("tampered body", "/webhooks/stripe", &tampered),
        ("signed an hour ago", "/webhooks/stripe", &stale),
        ("wrong secret", "/webhooks/stripe", &wrong_secret),
        ("2xx but never marked", "/webhooks/stripe", &unmarked),
        ("GitHub push", "/webhooks/github", &github),
    ];

    println!(
        "{:<3} {:<24} {:<8} {:<5} {:<26} {:<12} note",
        "#", "delivery", "provider", "HTTP", "signature", "processing"
    );
    println!("{}", "-".repeat(118));
    let client = reqwest::Client::new();
    for (i, (case, path, signed)) in script.iter().enumerate() {
        let resp = client
            .post(format!("{base}{path}"))
            .headers(signed.headers.clone())
            .body(signed.body.clone())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await?
            .ok_or("the event stream ended")?;
        let (signature, processing, note) = describe(&event);
        println!(
            "{:<3} {case:<24} {:<8} {status:<5} {signature:<26} {processing:<12} {note}",
            i + 1,
            event.provider
        );
    }

    sending(&base, &mut events).await?;
    queued(&base, &mut events).await?;
    inbox_worker.shutdown().await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    let received = metrics
        .lines()
        .filter(|l| l.starts_with("webhooks_received_total"))
        .count();
    println!(
        "\nMetrics: {received} webhooks_received_total series so far; scrape them with\n  curl -s {base}/metrics"
    );

    if std::env::var("OUTWORX_DEMO_EXIT").is_ok_and(|v| v == "1") {
        return Ok(());
    }

    let fresh = signed_stripe("evt_demo_curl", "charge.succeeded");
    let header = fresh.headers["stripe-signature"].to_str()?;
    println!(
        "\nStill serving. Send another delivery within 5 minutes (the signature's replay window):"
    );
    println!(
        "  curl -s {base}/webhooks/stripe -H 'content-type: application/json' -H 'stripe-signature: {header}' -d '{}'",
        String::from_utf8_lossy(&fresh.body)
    );
    println!("Metrics (Prometheus): curl -s {base}/metrics");
    println!("Every delivery prints a line here. Ctrl+C stops.\n");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            e = events.recv() => {
                let Some(e) = e else { return Ok(()) };
                let (signature, processing, note) = describe(&e);
                println!("{} {} {} signature={signature} processing={processing} {note}",
                    e.timestamp, e.provider, e.status_code);
            }
        }
    }
}

/// The sending side: an outbox in memory, two endpoints, one `POST /orders`, and every
/// attempt as it happens.
async fn sending(
    base: &str,
    events: &mut outworx_hooks::Subscription,
) -> Result<(), Box<dyn std::error::Error>> {
    // Loopback targets are refused by default (SSRF); the demo allows its own. The retry
    // schedule is shortened from Svix's (5 s, 5 min, 30 min, ...) so the demo ends quickly.
    let emitter = Emitter::builder(Outbox::memory().await?)
        .policy(TargetPolicy::default().allow("127.0.0.0/8".parse()?))
        .schedule(RetrySchedule::new([
            Duration::from_millis(300),
            Duration::from_millis(600),
        ]))
        .worker(Some(
            WorkerOptions::default().poll(Duration::from_millis(50)),
        ))
        .build();
    emitter.install();
    let orders = emitter
        .create_endpoint(NewEndpoint::new(format!("{base}/customers/orders")).event("order.*"))
        .await?;
    ORDERS_SECRET.set(orders.secret.clone()).ok();
    let broken = emitter
        .create_endpoint(NewEndpoint::new(format!("{base}/customers/broken")))
        .await?;
    println!(
        "\nSending: POST /orders carries #[emit(\"order.created\")]; two endpoints subscribe \
         (an outbox in memory here; SQLite or PostgreSQL in production)"
    );
    println!(
        "  {}  {}/customers/orders  (order.*)",
        orders.endpoint.id, base
    );
    println!("  {}  {}/customers/broken  (*)\n", broken.endpoint.id, base);

    let r = reqwest::Client::new()
        .post(format!("{base}/orders"))
        .json(&json!({ "item": "espresso machine" }))
        .send()
        .await?;
    println!(
        "POST /orders -> {} (the message was committed before this answer)\n",
        r.status()
    );
    println!(
        "{:<3} {:<10} {:<8} {:<5} {:<10} note",
        "#", "endpoint", "attempt", "HTTP", "delivery"
    );
    println!("{}", "-".repeat(72));
    let name = |id: &str| {
        if id == orders.endpoint.id {
            "orders"
        } else {
            "broken"
        }
    };
    let mut row = 0;
    // Three attempts to `broken` (the last one dead), two to `orders` (503, then 200).
    row = print_attempts(events, 5, row, &name).await?;

    BROKEN_FIXED.store(true, Ordering::SeqCst);
    // The attempt is reported as it ends; its row is committed a moment later.
    let dead = DeliveryFilter::default().status(DeliveryStatus::Dead);
    let mut n = 0;
    for _ in 0..250 {
        n = emitter.replay(Scope::All, &dead).await?;
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("   ... the broken receiver is fixed; {n} dead delivery replayed");
    print_attempts(events, 1, row, &name).await?;
    emitter.shutdown().await;
    Ok(())
}

/// Prints the next `n` outbound attempts as they are reported.
async fn print_attempts(
    events: &mut outworx_hooks::Subscription,
    n: usize,
    mut row: usize,
    name: &impl Fn(&str) -> &'static str,
) -> Result<usize, Box<dyn std::error::Error>> {
    let mut seen = 0;
    while seen < n {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await?
            .ok_or("the event stream ended")?;
        if e.direction != Some(Direction::Outbound) {
            continue; // the customer's receiver reports its side too
        }
        seen += 1;
        row += 1;
        let meta = |k: &str| {
            e.meta(k)
                .map(|v| v.to_string().trim_matches('"').to_owned())
        };
        let endpoint = name(&meta("endpoint_id").unwrap_or_default());
        let status = meta("delivery_status").unwrap_or_default();
        let note = match status.as_str() {
            "pending" => "failed: retry scheduled".to_owned(),
            "dead" => "dead: every attempt failed (replay it later)".to_owned(),
            _ => String::new(),
        };
        println!(
            "{row:<3} {endpoint:<10} {:<8} {:<5} {status:<10} {note}",
            meta("attempt").unwrap_or_default(),
            e.status_code
        );
    }
    Ok(row)
}

/// Queue-first receiving: the slow handler's delivery is answered at once and processed by
/// the inbox's worker after.
async fn queued(
    base: &str,
    events: &mut outworx_hooks::Subscription,
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "\nQueue-first receiving: /webhooks/queued has `queue` and a handler that takes 1.5 s"
    );
    let signed = Signer::new(Provider::Standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .id("msg_demo_queued")
        .sign(r#"{"type":"order.paid","timestamp":"2026-11-30T00:00:00Z","data":{"id":7}}"#)?;
    let started = std::time::Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{base}/webhooks/queued"))
        .headers(signed.headers.clone())
        .body(signed.body.clone())
        .send()
        .await?;
    let acked = started.elapsed();
    println!(
        "  answered {} in {} ms: {}",
        r.status().as_u16(),
        acked.as_millis(),
        r.text().await?
    );
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await?
            .ok_or("the event stream ended")?;
        if e.meta("inbox_attempt").is_some() {
            let (_, processing, _) = describe(&e);
            println!(
                "  processed by the inbox's worker {} ms after the answer: {processing}",
                started.elapsed().saturating_sub(acked).as_millis()
            );
            return Ok(());
        }
    }
}
