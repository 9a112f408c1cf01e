//! A queue-first receiver process for the crash and multi-process tests: one `queue` route
//! whose handler is slow and records its side effect in a table keyed by the delivery, so a
//! run repeated after a crash does not count twice; every run is counted too.
//!
//! Environment: `PORT`, `INBOX` (a SQLite path or a PostgreSQL URL), `EFFECTS` (the same
//! kinds), `HANDLER_MS` (default 20), and `REDIS` (a shared idempotency store, for instances
//! that each have their own inbox) with `STALE_MS` (its stale time, default 30 s).

use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use outworx_hooks::inbox::sqlx;
use outworx_hooks::inbox::{Inbox, WorkerOptions};
use outworx_hooks::{Track, webhook};

static EFFECTS: tokio::sync::OnceCell<Effects> = tokio::sync::OnceCell::const_new();

enum Effects {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Effects {
    async fn open(url: &str) -> Result<Effects, sqlx::Error> {
        let create =
            "CREATE TABLE IF NOT EXISTS effects (id TEXT PRIMARY KEY, runs BIGINT NOT NULL)";
        if url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(url).await?;
            sqlx::query(create).execute(&pool).await?;
            Ok(Effects::Postgres(pool))
        } else {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{url}?mode=rwc")).await?;
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            sqlx::query(create).execute(&pool).await?;
            Ok(Effects::Sqlite(pool))
        }
    }

    /// The side effect, keyed by the delivery: a second run only counts itself.
    async fn record(&self, id: &str) -> Result<(), sqlx::Error> {
        let sql = "INSERT INTO effects (id, runs) VALUES ($1, 1) \
                   ON CONFLICT (id) DO UPDATE SET runs = effects.runs + 1";
        match self {
            Effects::Sqlite(p) => sqlx::query(sql).bind(id).execute(p).await.map(drop),
            Effects::Postgres(p) => sqlx::query(sql).bind(id).execute(p).await.map(drop),
        }
    }
}

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue(attempts = 20, backoff = "1s"),
    require_processed
)]
async fn hook(track: Track, headers: HeaderMap, body: String) -> axum::http::StatusCode {
    let _ = body;
    let ms = std::env::var("HANDLER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(effects) = EFFECTS.get() else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    };
    match effects.record(&id).await {
        Ok(()) => {
            track.processed();
            axum::http::StatusCode::OK
        }
        Err(e) => {
            track.failed(e.to_string());
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let effects = Effects::open(&var("EFFECTS")?).await?;
    let _ = EFFECTS.set(effects);
    let _guard = match std::env::var("REDIS") {
        Ok(url) => {
            let stale = std::env::var("STALE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(Duration::from_secs(30), Duration::from_millis);
            let store = outworx_hooks::store::RedisStore::connect(&url)
                .await?
                .with_stale_after(stale);
            Some(outworx_hooks::init(
                outworx_hooks::Config::new()
                    .store(store)
                    .service("queued-instance"),
            )?)
        }
        Err(_) => None,
    };
    let inbox = Inbox::open(&var("INBOX")?).await?;
    inbox.install();
    let app = Router::new().route("/hook", post(hook));
    let options = WorkerOptions::default()
        .concurrency(8)
        .handler_timeout(Duration::from_secs(2))
        .lease_margin(Duration::from_secs(1))
        .poll(Duration::from_millis(50));
    let worker = inbox.worker(app.clone(), options).spawn();
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{}", var("PORT")?)).await?;
    println!("ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    worker.shutdown().await;
    Ok(())
}
