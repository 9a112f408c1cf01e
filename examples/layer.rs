//! One app, three providers, a layer per route: the macro-free setup, configured at run time.
//!
//! Run: `cargo run --example layer` (`PORT`, default 3000; secrets from `STRIPE_WEBHOOK_SECRET`,
//! `GITHUB_WEBHOOK_SECRET` and `SHOPIFY_WEBHOOK_SECRET`, checked at start).

use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::security::Provider;
use outworx_hooks::{Config, OutworxHooksLayer, Track, TrackOptions};
use serde_json::Value;

/// Ordinary axum handlers: the layer gives them a `Track`, as `#[webhook]` does.
async fn stripe(track: Track, Json(event): Json<Value>) -> &'static str {
    if event["type"] == "payment_intent.succeeded" {
        track.processed();
    }
    "ok"
}

async fn github(track: Track, body: String) -> &'static str {
    track.processed_with(serde_json::json!({ "bytes": body.len() }));
    "ok"
}

async fn shopify(track: Track, Json(_order): Json<Value>) -> &'static str {
    track.processed();
    "ok"
}

fn layers() -> [(&'static str, OutworxHooksLayer); 3] {
    [
        (
            "stripe",
            OutworxHooksLayer::new(
                TrackOptions::new(Provider::Stripe)
                    .secret_env("STRIPE_WEBHOOK_SECRET")
                    // The key from the parsed body, by a closure: Stripe's event id.
                    .idempotency_key(|_parts, body, _headers| {
                        body?["id"].as_str().map(str::to_owned)
                    })
                    .event_type_field("type")
                    .require_processed(true),
            ),
        ),
        (
            "github",
            OutworxHooksLayer::new(
                TrackOptions::new(Provider::Github)
                    .secret_env("GITHUB_WEBHOOK_SECRET")
                    .natural_idempotency_key()
                    .event_type_header("x-github-event")
                    .metadata("team", "platform"),
            ),
        ),
        (
            "shopify",
            OutworxHooksLayer::new(
                TrackOptions::new(Provider::Shopify)
                    .secret_env("SHOPIFY_WEBHOOK_SECRET")
                    .natural_idempotency_key()
                    .require_processed(true),
            ),
        ),
    ]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let guard = outworx_hooks::init(Config::from_env())?;
    let [(_, stripe_layer), (_, github_layer), (_, shopify_layer)] = layers();
    for (name, layer) in [
        ("stripe", &stripe_layer),
        ("github", &github_layer),
        ("shopify", &shopify_layer),
    ] {
        if let Err(problem) = layer.check() {
            eprintln!("error: the {name} route cannot verify deliveries: {problem}");
            std::process::exit(2);
        }
    }
    let app = Router::new()
        .route("/webhooks/stripe", post(stripe).layer(stripe_layer))
        .route("/webhooks/github", post(github).layer(github_layer))
        .route("/webhooks/shopify", post(shopify).layer(shopify_layer));
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    println!(
        "receiving on http://{}/webhooks/{{stripe,github,shopify}}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    guard.shutdown().await;
    Ok(())
}
