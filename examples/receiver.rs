//! A webhook receiver for seven providers, as a production service would run it.
//!
//! Run: `cargo run --example receiver` with the secrets in the environment:
//! `STRIPE_WEBHOOK_SECRET`, `GITHUB_WEBHOOK_SECRET`, `SHOPIFY_WEBHOOK_SECRET`,
//! `SVIX_WEBHOOK_SECRET`, `CLERK_WEBHOOK_SECRET`, `SLACK_SIGNING_SECRET`,
//! `STANDARD_WEBHOOK_SECRET` (`PORT`, default 3000). `outworx_hooks::init` refuses to start
//! and names every route whose secret is missing. `OUTWORX_HOOKS_REDIS_URL` switches the
//! idempotency store from memory to Redis, shared by every instance.
//!
//! Every route dedupes on its provider's natural key and requires a processing mark. The
//! Stripe route marks only `payment_intent.succeeded` and `charge.succeeded` processed, so
//! any other Stripe event type shows up as a silent drop.

use axum::body::Bytes;
use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::store::RedisStore;
use outworx_hooks::{Config, Track, webhook};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    r#type: String,
}

#[webhook(provider = "stripe", secret = env("STRIPE_WEBHOOK_SECRET"), idempotency, require_processed)]
async fn stripe(track: Track, Json(event): Json<StripeEvent>) -> Json<Value> {
    if matches!(
        event.r#type.as_str(),
        "payment_intent.succeeded" | "charge.succeeded"
    ) {
        track.processed_with(json!({ "event": event.id }));
    }
    Json(json!({ "received": true }))
}

#[webhook(provider = "github", secret = env("GITHUB_WEBHOOK_SECRET"), idempotency, require_processed)]
async fn github(track: Track, body: Bytes) -> &'static str {
    track.processed_with(json!({ "bytes": body.len() }));
    "ok"
}

#[webhook(provider = "shopify", secret = env("SHOPIFY_WEBHOOK_SECRET"), idempotency, require_processed)]
async fn shopify(track: Track, Json(_order): Json<Value>) -> &'static str {
    track.processed();
    "ok"
}

#[webhook(provider = "svix", secret = env("SVIX_WEBHOOK_SECRET"), idempotency, require_processed)]
async fn svix(track: Track, Json(_msg): Json<Value>) -> &'static str {
    track.processed();
    "ok"
}

#[webhook(provider = "clerk", secret = env("CLERK_WEBHOOK_SECRET"), idempotency, require_processed)]
async fn clerk(track: Track, Json(_event): Json<Value>) -> &'static str {
    track.processed();
    "ok"
}

#[webhook(provider = "slack", secret = env("SLACK_SIGNING_SECRET"), idempotency, require_processed)]
async fn slack(track: Track, body: Bytes) -> &'static str {
    // url_verification is answered before the handler; this is an event or a command.
    track.processed_with(json!({ "bytes": body.len() }));
    ""
}

#[webhook(provider = "standard", secret = env("STANDARD_WEBHOOK_SECRET"), idempotency, require_processed)]
async fn standard(track: Track, Json(_msg): Json<Value>) -> &'static str {
    track.processed();
    "ok"
}

/// The receiver's routes (also mounted by the test suite).
pub(crate) fn app() -> Router {
    Router::new()
        .route("/webhooks/stripe", post(stripe))
        .route("/webhooks/github", post(github))
        .route("/webhooks/shopify", post(shopify))
        .route("/webhooks/svix", post(svix))
        .route("/webhooks/clerk", post(clerk))
        .route("/webhooks/slack", post(slack))
        .route("/webhooks/standard", post(standard))
}

#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut config = Config::from_env();
    let store = match std::env::var("OUTWORX_HOOKS_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => {
            config = config.store(RedisStore::connect(&url).await?);
            "redis"
        }
        _ => "memory",
    };
    let guard = match outworx_hooks::init(config) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    println!(
        "receiving on http://{}/webhooks/{{stripe,github,shopify,svix,clerk,slack,standard}} ({store} store)",
        listener.local_addr()?
    );
    axum::serve(listener, app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    guard.shutdown().await;
    Ok(())
}
