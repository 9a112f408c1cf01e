//! `require_processed` accepts a Track that is marked, or handed on to be marked elsewhere.

use axum::{Router, routing::post};
use outworx_hooks::{Track, webhook};

async fn process_later(track: Track) {
    track.processed();
}

#[webhook(provider = "github", secret = "s", require_processed)]
async fn passes_it_on(track: Track) -> &'static str {
    process_later(track).await;
    "ok"
}

#[webhook(provider = "github", secret = "s", require_processed)]
async fn spawns(track: Track) -> &'static str {
    tokio::spawn(async move { track.failed("queued work failed") });
    "ok"
}

#[webhook(provider = "github", secret = "s", require_processed)]
async fn in_a_macro(track: Track) -> &'static str {
    let (_a, _b) = tokio::join!(async { track.processed_with(serde_json::json!({ "n": 1 })) }, async {});
    "ok"
}

#[webhook(provider = "github", secret = "s", require_processed)]
async fn clones(track: Track) -> &'static str {
    let copy = track.clone();
    copy.processed();
    "ok"
}

#[webhook(provider = "github", secret = "s", require_processed)]
async fn borrowed_alias(track: Track) -> &'static str {
    let t: &Track = &track;
    t.failed("an alias that is marked counts");
    "ok"
}

#[webhook(provider = "github", secret = "s", require_processed)]
async fn alias_handed_on(track: Track) -> &'static str {
    let t = track;
    process_later(t).await;
    "ok"
}

fn main() {
    let _app: Router = Router::new()
        .route("/a", post(passes_it_on))
        .route("/b", post(spawns))
        .route("/c", post(in_a_macro))
        .route("/d", post(clones))
        .route("/e", post(borrowed_alias))
        .route("/f", post(alias_handed_on));
}
