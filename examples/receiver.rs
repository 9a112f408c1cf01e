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
use outworx_hooks::inbox::Inbox;
use outworx_hooks::store::RedisStore;
use outworx_hooks::{Config, Track, webhook};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    r#type: String,
}

/// Each route twice: `inline` (the handler runs in the request) and `queued` (with `queue`:
/// committed to the inbox, answered at once, run by the worker). `app` picks one.
macro_rules! route {
    ($name:ident, [$($args:tt)*], $($handler:tt)*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            pub(crate) mod inline {
                #[allow(unused_imports)]
                use super::*;
                #[webhook($($args)*)]
                $($handler)*
            }
            pub(crate) mod queued {
                #[allow(unused_imports)]
                use super::*;
                #[webhook($($args)*, queue)]
                $($handler)*
            }
        }
    };
}

route!(
    stripe,
    [
        provider = "stripe",
        secret = env("STRIPE_WEBHOOK_SECRET"),
        idempotency,
        require_processed
    ],
    pub(crate) async fn handle(track: Track, Json(event): Json<StripeEvent>) -> Json<Value> {
        if matches!(
            event.r#type.as_str(),
            "payment_intent.succeeded" | "charge.succeeded"
        ) {
            track.processed_with(json!({ "event": event.id }));
        }
        Json(json!({ "received": true }))
    }
);

route!(
    github,
    [
        provider = "github",
        secret = env("GITHUB_WEBHOOK_SECRET"),
        idempotency,
        require_processed
    ],
    pub(crate) async fn handle(track: Track, body: Bytes) -> &'static str {
        track.processed_with(json!({ "bytes": body.len() }));
        "ok"
    }
);

route!(
    shopify,
    [
        provider = "shopify",
        secret = env("SHOPIFY_WEBHOOK_SECRET"),
        idempotency,
        require_processed
    ],
    pub(crate) async fn handle(track: Track, Json(_order): Json<Value>) -> &'static str {
        track.processed();
        "ok"
    }
);

route!(
    svix,
    [
        provider = "svix",
        secret = env("SVIX_WEBHOOK_SECRET"),
        idempotency,
        require_processed
    ],
    pub(crate) async fn handle(track: Track, Json(_msg): Json<Value>) -> &'static str {
        track.processed();
        "ok"
    }
);

route!(
    clerk,
    [
        provider = "clerk",
        secret = env("CLERK_WEBHOOK_SECRET"),
        idempotency,
        require_processed
    ],
    pub(crate) async fn handle(track: Track, Json(_event): Json<Value>) -> &'static str {
        track.processed();
        "ok"
    }
);

route!(
    slack,
    [
        provider = "slack",
        secret = env("SLACK_SIGNING_SECRET"),
        idempotency,
        require_processed
    ],
    pub(crate) async fn handle(track: Track, body: Bytes) -> &'static str {
        // url_verification is answered before the handler; this is an event or a command.
        track.processed_with(json!({ "bytes": body.len() }));
        ""
    }
);

route!(
    standard,
    [
        provider = "standard",
        secret = env("STANDARD_WEBHOOK_SECRET"),
        idempotency,
        require_processed
    ],
    pub(crate) async fn handle(track: Track, Json(_msg): Json<Value>) -> &'static str {
        track.processed();
        "ok"
    }
);

/// The receiver's routes, handled inline (also mounted by the test suite).
pub(crate) fn app() -> Router {
    routes(false)
}

/// The routes, inline or queued.
pub(crate) fn routes(queued: bool) -> Router {
    macro_rules! pick {
        ($name:ident) => {
            if queued {
                post($name::queued::handle)
            } else {
                post($name::inline::handle)
            }
        };
    }
    Router::new()
        .route("/webhooks/stripe", pick!(stripe))
        .route("/webhooks/github", pick!(github))
        .route("/webhooks/shopify", pick!(shopify))
        .route("/webhooks/svix", pick!(svix))
        .route("/webhooks/clerk", pick!(clerk))
        .route("/webhooks/slack", pick!(slack))
        .route("/webhooks/standard", pick!(standard))
}

/// Logs to stderr; with the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are
/// exported over OTLP/HTTP too (flushed when the returned guard drops).
#[cfg(feature = "otel")]
fn logs() -> Result<Option<outworx_hooks::otel::Otel>, Box<dyn std::error::Error>> {
    use tracing_subscriber::prelude::*;
    let filter =
        || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let otel = outworx_hooks::otel::Otel::from_env_if_configured()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(filter()))
        .with(otel.as_ref().map(|o| o.layer().with_filter(filter())))
        .init();
    Ok(otel)
}

/// Logs to stderr (build with `--features otel` to export spans too).
#[cfg(not(feature = "otel"))]
#[allow(clippy::unnecessary_wraps)]
fn logs() -> Result<Option<()>, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    Ok(None)
}

#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _otel = logs()?;
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
    // Queue-first when an inbox is given: the worker runs the same routes.
    let (app, worker, mode) = match std::env::var("OUTWORX_HOOKS_INBOX") {
        Ok(url) if !url.trim().is_empty() => {
            let inbox = Inbox::open(&url).await?;
            inbox.install();
            let app = routes(true);
            let worker = inbox.start(app.clone());
            (
                app,
                Some(worker),
                format!("queued in a {} inbox", inbox.backend()),
            )
        }
        _ => (app(), None, "inline".to_owned()),
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    println!(
        "receiving on http://{}/webhooks/{{stripe,github,shopify,svix,clerk,slack,standard}} ({store} store), {mode}",
        listener.local_addr()?
    );
    // Prometheus metrics beside the routes (the worker dispatches through `app` alone).
    let app = app.merge(outworx_hooks::metrics::router());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Some(worker) = worker {
        worker.shutdown().await;
    }
    guard.shutdown().await;
    Ok(())
}
