//! `outworx serve`'s queries at 100k, 1M and 10M stored events, on SQLite and PostgreSQL:
//! the dashboard's summary (`/api/stats`) and chart (`/api/stats/series`) for each of its
//! windows, the event list's shapes, an ingest batch and a retention batch, timed warm, with
//! the bytes each event takes on disk (its row, its indexes and its share of the rollups).
//!
//! Run: `cargo bench -p outworx-hooks-bench --bench dashboard -- [--sizes 100000,1000000]
//! [--stores sqlite,postgres]`. Each size is stored through the ingest's own path
//! (`Db::insert_events`, 1,000 events a transaction, the rollups kept as it goes), measured,
//! and deleted before the next.
//!
//! The seed: two projects with half the events each, spread evenly over the last 30 days
//! (the default retention), three providers, 1 in 10 failed, 1 in 50 with a bad signature,
//! latencies of 1 to 2,000 ms, each event about 330 bytes of JSON.

use std::time::{Duration, Instant};

use outworx_hooks::send::sqlx;
use outworx_serve::db::{Db, EventFilter, Grid, now_ms};
use outworx_test_support::postgres::Postgres;
use sizes::ms;

mod sizes;

const DAY: i64 = 86_400_000;
const BATCH: u64 = 1_000;

/// The median and the most of `runs` runs of `f`, after one to warm up.
async fn timed<F, Fut>(runs: usize, mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed());
    }
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

/// Event `i` of `n`, spread over the 30 days before `now`.
fn event(i: u64, n: u64, now: i64) -> (i64, serde_json::Value) {
    let at = now - 30 * DAY + i64::try_from(i * (30 * DAY as u64) / n.max(1)).unwrap_or(0);
    let provider = ["stripe", "github", "shopify"][(i % 3) as usize];
    let status = if i.is_multiple_of(10) { 500 } else { 200 };
    let processing = match i % 10 {
        0 => "failed",
        1 => "silent_drop",
        _ => "completed",
    };
    let event = serde_json::json!({
        "provider": provider,
        "event_type": "payment_intent.succeeded",
        "event_id": format!("evt_{i:016}"),
        "timestamp": "2026-12-07T00:00:00Z",
        "status_code": status,
        "processing_status": processing,
        "signature_valid": i % 50 != 7,
        "duration_ms": (i * 7919) % 2_000 + 1,
        "sdk": "outworx-hooks-rust/0.1.0",
        "metadata": {"route": "/hooks/stripe", "method": "POST", "size": 1700},
    });
    (at, event)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes = sizes::sizes(&args);
    let stores = sizes::stores(&args);
    println!("dashboard: sizes {sizes:?}");
    for store in &stores {
        for &n in &sizes {
            run(store, n).await;
        }
    }
}

async fn run(store: &str, n: u64) {
    let dir = std::env::temp_dir().join(format!("outworx-dashboard-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let pg = (store == "postgres").then(Postgres::start);
    let url = match &pg {
        Some(pg) => pg.url(),
        None => dir.join("serve.db").display().to_string(),
    };
    let mut tries = 0;
    let db = loop {
        match Db::open(&url).await {
            Ok(db) => break db,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("opening {url}: {e}"),
        }
    };
    let now = now_ms();
    let seeded = Instant::now();
    let mut first_batch_done = 0;
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let (mut p, mut q) = (Vec::new(), Vec::new());
        for k in i..end {
            let e = event(k, n, now);
            if k.is_multiple_of(2) {
                p.push(e)
            } else {
                q.push(e)
            }
        }
        db.insert_events("p", &p).await.expect("insert");
        if i == 0 {
            // The first 500 events: what the retention batch below deletes.
            tokio::time::sleep(Duration::from_millis(2)).await;
            first_batch_done = now_ms();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        db.insert_events("q", &q).await.expect("insert");
        i = end;
    }
    if let Some(pg) = &pg {
        let pool = sqlx::PgPool::connect(&pg.url()).await.expect("pg");
        sqlx::query("VACUUM ANALYZE")
            .execute(&pool)
            .await
            .expect("vacuum");
        pool.close().await;
    }
    let seed_time = seeded.elapsed();
    let bytes = match &pg {
        None => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{url}"))
                .await
                .expect("sqlite");
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&pool)
                .await;
            pool.close().await;
            std::fs::metadata(&url).map(|m| m.len()).unwrap_or(0)
        }
        Some(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url()).await.expect("pg");
            let b: i64 = sqlx::query_scalar(
                "SELECT pg_total_relation_size('events') + pg_total_relation_size('event_counts') \
                 + pg_total_relation_size('event_latency')",
            )
            .fetch_one(&pool)
            .await
            .expect("size");
            pool.close().await;
            u64::try_from(b).unwrap_or(0)
        }
    };
    println!(
        "\n{store} at {n} events: stored in {:.0} s through the ingest path, {} bytes per event",
        seed_time.as_secs_f64(),
        bytes / n.max(1)
    );
    println!("| query | median ms | most ms |");
    println!("|---|---|---|");
    let row = |name: &str, (m, x): (Duration, Duration)| {
        println!("| {name} | {:.2} | {:.2} |", ms(m), ms(x));
    };

    // The summary for the dashboard's windows (their starts off every unit's edge).
    let windows = [
        ("last hour", 3_600_000),
        ("last 24 hours", DAY),
        ("last 7 days", 7 * DAY),
    ];
    let t = now_ms() - 12_345;
    for (name, span) in windows {
        let r = timed(5, || async {
            db.stats("p", Some(t - span), Some(t)).await.expect("stats");
        })
        .await;
        row(&format!("stats, {name}"), r);
    }
    row(
        "stats, all time",
        timed(5, || async {
            db.stats("p", None, None).await.expect("stats");
        })
        .await,
    );
    // The chart for the same windows and a year (the dashboard's "all time"), its buckets
    // as the API picks them: a sixtieth of the window.
    for (name, span) in windows.into_iter().chain([("a year", 365 * DAY)]) {
        let grid = Grid::new(t - span, t, (span / 60).max(1_000) / 1_000 * 1_000);
        let r = timed(5, || async {
            db.series("p", &grid).await.expect("series");
        })
        .await;
        row(&format!("series, {name} ({} buckets)", grid.len()), r);
    }
    // The event list's shapes.
    let lists: [(&str, EventFilter, Option<i64>); 4] = [
        (
            "list, newest 50",
            EventFilter {
                limit: Some(50),
                ..Default::default()
            },
            None,
        ),
        (
            "list, one provider",
            EventFilter {
                provider: Some("github".into()),
                limit: Some(50),
                ..Default::default()
            },
            None,
        ),
        (
            "list, failures of the last day",
            EventFilter {
                status: Some(500),
                limit: Some(50),
                ..Default::default()
            },
            Some(t - DAY),
        ),
        (
            "list, a page deep in the history",
            EventFilter {
                before_id: Some(i64::try_from(n / 3).unwrap_or(1)),
                limit: Some(50),
                ..Default::default()
            },
            None,
        ),
    ];
    for (name, filter, since) in &lists {
        let r = timed(5, || async {
            db.events("p", filter, *since, None).await.expect("events");
        })
        .await;
        row(name, r);
    }
    // Writes: an ingest batch of 100 events of the last seconds (as an SDK reports them), and
    // a retention batch (the first 500 events stored, deleted in one transaction with what
    // they take from the rollups: the longest the retention holds SQLite's writer).
    let mut k = 0;
    let r = timed(10, || {
        let at = now_ms();
        let batch: Vec<_> = (k..k + 100)
            .map(|j| {
                (
                    at - i64::try_from(j % 100).unwrap_or(0) * 37,
                    event(j, n, now).1,
                )
            })
            .collect();
        k += 100;
        let db = &db;
        async move {
            db.insert_events("p", &batch).await.expect("insert");
        }
    })
    .await;
    row("ingest, a batch of 100", r);
    let t0 = Instant::now();
    let pruned = db.prune_events(first_batch_done).await.expect("prune");
    row(
        &format!("retention, one batch ({pruned} events)"),
        (t0.elapsed(), t0.elapsed()),
    );

    drop(db);
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}
