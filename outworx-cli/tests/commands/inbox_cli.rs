//! `outworx inbox list|show|replay|purge` over a real SQLite inbox that a `queue` route
//! filled over loopback HTTP.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use outworx_hooks::inbox::{Inbox, WorkerOptions};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::webhook;

static FIXED: AtomicBool = AtomicBool::new(false);

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue(attempts = 1, backoff = "1s")
)]
async fn hook(body: String) -> axum::http::StatusCode {
    let _ = body;
    if FIXED.load(Ordering::SeqCst) {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    }
}

fn outworx(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outworx"))
        .args(args)
        .env_remove("OUTWORX_HOOKS_INBOX")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_shows_replays_and_purges_the_inbox() {
    let dir = std::env::temp_dir().join(format!("outworx-inbox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("inbox.db").display().to_string();
    let inbox = Inbox::open(&db).await.unwrap();
    let app = Router::new()
        .route("/hook", post(hook))
        .layer(axum::Extension(inbox.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn({
        let app = app.clone();
        async move { axum::serve(listener, app).await.unwrap() }
    });
    let signed = Signer::new(Provider::Standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .id("msg_cli")
        .sign(r#"{"type":"order.created","timestamp":"2026-11-30T00:00:00Z","data":{"id":1}}"#)
        .unwrap();
    let r = reqwest::Client::new()
        .post(&url)
        .headers(signed.headers.clone())
        .body(signed.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let worker = inbox.worker(app, WorkerOptions::default());
    assert_eq!(worker.run_once(10).await.unwrap(), 1); // one attempt: dead

    let (code, out, _) = outworx(&["inbox", "list", "--db", &db]);
    assert_eq!(code, 0);
    assert!(
        out.contains("dead") && out.contains("order.created") && out.contains("503"),
        "{out}"
    );
    let (_, out, _) = outworx(&["inbox", "list", "--db", &db, "--status", "dead", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = list[0]["id"].as_i64().unwrap();
    let (_, out, _) = outworx(&["inbox", "show", "--db", &db, &id.to_string()]);
    assert!(
        !out.contains(r#""data":{"id":1}"#),
        "the body only on request: {out}"
    );
    let (_, out, _) = outworx(&["inbox", "show", "--db", &db, &id.to_string(), "--body"]);
    assert!(
        out.contains(r#""data":{"id":1}"#),
        "the stored body, exactly: {out}"
    );
    let (code, _, err) = outworx(&["inbox", "list", "--db", &db, "--status", "sleeping"]);
    assert_eq!(code, 2, "{err}");

    FIXED.store(true, Ordering::SeqCst);
    let (_, out, _) = outworx(&[
        "inbox",
        "replay",
        "--db",
        &db,
        "--dead",
        "--since",
        "2000-01-01T00:00:00Z",
    ]);
    assert!(out.contains("1 deliveries"), "{out}");
    assert_eq!(worker.run_once(10).await.unwrap(), 1);
    let (_, out, _) = outworx(&["inbox", "list", "--db", &db]);
    assert!(out.contains("done"), "{out}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (_, out, _) = outworx(&["inbox", "purge", "--db", &db, "--older-than", "0s"]);
    assert!(out.contains("1 finished"), "{out}");
    std::fs::remove_dir_all(dir).ok();
}
