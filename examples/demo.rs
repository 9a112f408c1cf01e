//! The outworx-hooks demo: a receiver on embedded defaults (no API key, memory store), a
//! scripted set of signed deliveries, and what happened to each.
//!
//! Run: `cargo run --example demo` (`PORT` to choose the port, default 3000 or a free one;
//! `OUTWORX_DEMO_EXIT=1` to exit after the table instead of serving on).

use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::event::{DeliveryEvent, ProcessingStatus};
use outworx_hooks::security::{Provider, now_unix};
use outworx_hooks::testing::{Signed, Signer};
use outworx_hooks::{Track, webhook};
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
        None => "-",
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
        .route("/webhooks/github", post(github));
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
