//! Every value form of the attribute.

use axum::extract::State;
use axum::{Json, Router, routing::post};
use outworx_hooks::security::SignedRequest;
use outworx_hooks::{Track, webhook};
use serde_json::Value;

fn secret_from_vault() -> Option<String> {
    Some("whsec_from_fn".into())
}

fn check(d: &SignedRequest<'_>) -> Result<bool, String> {
    Ok(d.headers.contains_key("x-signature"))
}

#[derive(Clone)]
struct AppState;

/// Docs stay on the handler.
#[webhook(
    provider = "stripe",
    secret = [env("STRIPE_WEBHOOK_SECRET"), env("STRIPE_WEBHOOK_SECRET_OLD"), "whsec_literal", secret_from_vault],
    idempotency = body["id"],
    event_type = body["type"],
    ttl = "24h",
    tolerance = 600,
    reject_invalid = true,
    capture_body,
    capture_headers = false,
    metadata(team = "billing", tier = "gold"),
    max_body = "2MiB",
    crate = "outworx_hooks",
)]
pub async fn stripe(State(_s): State<AppState>, track: Track, Json(v): Json<Value>) -> Json<Value> {
    track.processed();
    Json(v)
}

#[webhook(verifier = check, capture_body = false, max_body = 4096)]
async fn custom(body: String) -> String {
    body
}

#[webhook(provider = "github", secret = "s", idempotency = header("X-GitHub-Delivery"), event_type = header("x-github-event"), ttl = 604800)]
async fn github() {}

#[webhook(provider = "github", secret = "s", allow_ips = ["192.30.252.0/22", "2606:50c0::/32", "203.0.113.7"], redact = ["X-Hook-Secret", "x-internal-token"])]
async fn listed() {}

#[webhook(provider = "github", secret = "s", allow_ips = env("GITHUB_HOOK_IPS"))]
async fn from_env() {}

fn main() {
    let _app: Router = Router::new()
        .route("/stripe", post(stripe))
        .route("/custom", post(custom))
        .route("/github", post(github))
        .route("/listed", post(listed))
        .route("/from-env", post(from_env))
        .with_state(AppState);
}
