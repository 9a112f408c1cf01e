//! The outbox and the inbox at 100k, 1M and 10M rows, on SQLite and PostgreSQL: every listed
//! query (`outworx_hooks::plans`, the ones the plan test checks), a send, a receipt, a claim
//! and a purge batch, timed warm, with the bytes each row takes on disk.
//!
//! Run: `cargo bench -p outworx-hooks-bench --bench scale -- [--sizes 100000,1000000]
//! [--stores sqlite,postgres] [--payload 200]`. Each size is seeded in bulk (the rows a send,
//! an attempt and a receipt write, by SQL), measured, and deleted before the next. 10M rows
//! with a 200-byte payload take about 10 GB on SQLite.
//!
//! The seed: 1,000 endpoints of 200 tenants; per row, a message, its delivery (9 in 10
//! delivered, 1 in 20 dead, 1 in 20 waiting and due) and an attempt with a 64-byte answer;
//! an inbox of 20 routes in the same proportions, each body `--payload` bytes.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use outworx_hooks::inbox::Inbox;
use outworx_hooks::security::Provider;
use outworx_hooks::send::{Emitter, NewMessage, Outbox, sqlx};
use outworx_hooks::testing::Signer;
use outworx_hooks::webhook;
use outworx_test_support::postgres::Postgres;
use sizes::{arg, ms};

mod sizes;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Rows seeded per statement (one transaction each).
const CHUNK: u64 = 500_000;

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue
)]
async fn queued(body: String) -> &'static str {
    let _ = body;
    "ok"
}

/// The seed's statements over the numbers `$a..$b` (`n(i)`), per table, in the order
/// they run; `{P}` is the payload's size.
const SEED: &[(&str, &str)] = &[
    (
        "outworx_messages",
        "INSERT INTO outworx_messages (id, owner, event_type, payload, created_at) \
         SELECT 'msg_' || i, 't' || (i % 200), 'order.created', {PAYLOAD}, i FROM n",
    ),
    (
        "outworx_deliveries",
        "INSERT INTO outworx_deliveries (message_id, endpoint_id, owner, status, attempts, \
         next_attempt_at, created_at, updated_at) SELECT 'msg_' || i, 'ep_' || (i % 1000), \
         't' || (i % 200), CASE WHEN i % 20 = 0 THEN 'dead' WHEN i % 20 = 1 THEN 'pending' \
         ELSE 'delivered' END, 1, i, i, i FROM n",
    ),
    (
        "outworx_attempts",
        "INSERT INTO outworx_attempts (delivery_id, message_id, endpoint_id, attempt, at, \
         status_code, duration_ms, response) SELECT i, 'msg_' || i, 'ep_' || (i % 1000), 1, i, \
         200, 12, {ANSWER} FROM n",
    ),
    (
        "outworx_inbox",
        "INSERT INTO outworx_inbox (route, key, method, uri, headers, body, received_at, \
         max_attempts, backoff_ms, status, attempts, next_attempt_at, updated_at) \
         SELECT 'r' || (i % 20), 'k' || i, 'POST', '/hooks', '[]', {BODY}, i, 5, 1000, \
         CASE WHEN i % 20 = 0 THEN 'dead' WHEN i % 20 = 1 THEN 'pending' ELSE 'done' END, \
         i % 2, i, i FROM n",
    ),
];

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Sqlite,
    Postgres,
}

/// The statement for rows `a..b` on `store`, with a payload of `payload` bytes.
fn seed_sql(store: Store, sql: &str, a: u64, b: u64, payload: usize) -> String {
    let (text, blob, answer) = match store {
        Store::Sqlite => (
            format!(
                "printf('{{\"pad\":\"%.*c\"}}', {}, 'x')",
                payload.saturating_sub(10)
            ),
            format!("zeroblob({payload})"),
            "printf('%.*c', 64, 'o')".to_owned(),
        ),
        Store::Postgres => (
            format!(
                "'{{\"pad\":\"' || repeat('x', {}) || '\"}}'",
                payload.saturating_sub(10)
            ),
            format!("convert_to(repeat('x', {payload}), 'UTF8')"),
            "repeat('o', 64)".to_owned(),
        ),
    };
    let body = sql
        .replace("{PAYLOAD}", &text)
        .replace("{BODY}", &blob)
        .replace("{ANSWER}", &answer);
    match store {
        Store::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT {a} UNION ALL SELECT i + 1 FROM n WHERE i < {}) {body}",
            b - 1
        ),
        Store::Postgres => body.replace(
            " FROM n",
            &format!(" FROM generate_series({a}, {}) AS n(i)", b - 1),
        ),
    }
}

const ENDPOINTS: &str = "INSERT INTO outworx_endpoints (id, owner, url, events, auth, format, secret, \
     metadata, enabled, created_at, updated_at) SELECT 'ep_' || i, 't' || (i % 200), \
     'https://receiver.example/hooks', '[]', '{}', 'standard', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', \
     '{}', 1, i, i FROM n";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes = sizes::sizes(&args);
    let stores: Vec<Store> = sizes::stores(&args)
        .iter()
        .filter_map(|s| match s.as_str() {
            "sqlite" => Some(Store::Sqlite),
            "postgres" => Some(Store::Postgres),
            _ => None,
        })
        .collect();
    let payload: usize = arg(&args, "--payload", "200").parse().unwrap_or(200);
    println!("scale: sizes {sizes:?}, payload {payload} bytes");
    for &store in &stores {
        for &n in &sizes {
            run(store, n, payload).await;
        }
    }
}

async fn run(store: Store, n: u64, payload: usize) {
    let label = match store {
        Store::Sqlite => "sqlite",
        Store::Postgres => "postgres",
    };
    let dir = std::env::temp_dir().join(format!("outworx-scale-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let pg = (store == Store::Postgres).then(Postgres::start);
    let (outbox_url, inbox_url) = match &pg {
        Some(pg) => (pg.url(), pg.url()),
        None => (
            dir.join("outbox.db").display().to_string(),
            dir.join("inbox.db").display().to_string(),
        ),
    };
    // Open (and create) both, retrying while a fresh PostgreSQL starts.
    let mut tries = 0;
    let outbox = loop {
        match Outbox::open(&outbox_url).await {
            Ok(o) => break o,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("opening the outbox: {e}"),
        }
    };
    let inbox = Inbox::open(&inbox_url).await.expect("inbox");
    let seeded = Instant::now();
    let exec = |url: String, sql: String| async move {
        if url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&url).await.expect("pg");
            sqlx::query(&sql).execute(&pool).await.expect("seed");
            pool.close().await;
        } else {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{url}"))
                .await
                .expect("sqlite");
            sqlx::query(&sql).execute(&pool).await.expect("seed");
            pool.close().await;
        }
    };
    exec(
        outbox_url.clone(),
        seed_sql(store, ENDPOINTS, 0, 1000, payload),
    )
    .await;
    for (table, sql) in SEED {
        let url = if *table == "outworx_inbox" {
            &inbox_url
        } else {
            &outbox_url
        };
        let mut a = 0;
        while a < n {
            let b = (a + CHUNK).min(n);
            exec(url.clone(), seed_sql(store, sql, a, b, payload)).await;
            a = b;
        }
    }
    if store == Store::Postgres {
        // As autovacuum leaves a table some time after a bulk load: statistics and the
        // visibility map (index-only scans).
        exec(outbox_url.clone(), "VACUUM ANALYZE".to_owned()).await;
    }
    let seed_time = seeded.elapsed();

    // Bytes on disk per row of each table (SQLite: the files after a checkpoint, shared by
    // their tables; PostgreSQL: each table with its indexes and TOAST).
    let bytes = match store {
        Store::Sqlite => {
            for f in ["outbox.db", "inbox.db"] {
                let pool =
                    sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join(f).display()))
                        .await
                        .expect("sqlite");
                let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&pool)
                    .await;
                pool.close().await;
            }
            let len = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
            vec![
                ("outbox (3 rows per message)", len("outbox.db")),
                ("inbox", len("inbox.db")),
            ]
        }
        Store::Postgres => {
            let pool = sqlx::PgPool::connect(&outbox_url).await.expect("pg");
            let mut out = Vec::new();
            for t in [
                "outworx_messages",
                "outworx_deliveries",
                "outworx_attempts",
                "outworx_inbox",
            ] {
                let b: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
                    .bind(t)
                    .fetch_one(&pool)
                    .await
                    .expect("size");
                out.push((t, u64::try_from(b).unwrap_or(0)));
            }
            pool.close().await;
            out
        }
    };
    println!(
        "\n== {label}, {n} rows (seeded in {:.0} s)",
        seed_time.as_secs_f64()
    );
    for (what, b) in &bytes {
        println!(
            "disk         {what:36} {:>8.0} bytes/row  ({:.2} GB)",
            *b as f64 / n as f64,
            *b as f64 / 1e9
        );
    }

    // Every listed read, warm: run once, then the median and the most of five.
    let timed = match store {
        Store::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{outbox_url}"))
                .await
                .expect("sqlite");
            let inbox_pool = sqlx::SqlitePool::connect(&format!("sqlite://{inbox_url}"))
                .await
                .expect("sqlite");
            let mut c = pool.acquire().await.expect("conn");
            // The listed queries read both stores' tables: the inbox's are attached.
            sqlx::query(&format!("ATTACH DATABASE '{inbox_url}' AS ib"))
                .execute(&mut *c)
                .await
                .expect("attach");
            let t = outworx_hooks::plans::sqlite_timed(&mut c, 5)
                .await
                .expect("timed");
            drop(c);
            inbox_pool.close().await;
            pool.close().await;
            t
        }
        Store::Postgres => {
            let pool = sqlx::PgPool::connect(&outbox_url).await.expect("pg");
            let mut c = pool.acquire().await.expect("conn");
            let t = outworx_hooks::plans::postgres_timed(&mut c, 5)
                .await
                .expect("timed");
            drop(c);
            pool.close().await;
            t
        }
    };
    for (name, median, most) in &timed {
        println!(
            "query        {name:58} {:>8.2} ms  (most {:.2})",
            ms(*median),
            ms(*most)
        );
    }

    // A send (one message, fanned out to its tenant's endpoints), sequentially.
    let emitter = Emitter::builder(outbox).worker(None).build();
    let mut sends = Vec::new();
    for i in 0..50 {
        let m = NewMessage::new("order.created", &serde_json::json!({"n": i}))
            .expect("message")
            .owner("t7");
        let t = Instant::now();
        emitter.send_message(m).await.expect("send");
        sends.push(t.elapsed());
    }
    println!(
        "write        {:58} {:>8.2} ms",
        "a send (5 deliveries)",
        ms(median(sends))
    );

    // A receipt: a signed delivery to a `queue` route, answered once committed.
    inbox.install();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(
        async move { axum::serve(listener, Router::new().route("/q", post(queued))).await },
    );
    let http = reqwest::Client::new();
    let mut receipts = Vec::new();
    for i in 0..50 {
        let s = Signer::new(Provider::Standard, SECRET)
            .id(format!("msg_scale_{n}_{i}"))
            .sign(format!(
                r#"{{"type":"a.b","timestamp":"2026-11-30T00:00:00Z","data":{{"n":{i}}}}}"#
            ))
            .expect("signs");
        let t = Instant::now();
        let r = http
            .post(format!("{base}/q"))
            .headers(s.headers)
            .body(s.body)
            .send()
            .await
            .expect("answered");
        assert!(r.status().is_success(), "{}", r.status());
        receipts.push(t.elapsed());
    }
    println!(
        "write        {:58} {:>8.2} ms",
        "a receipt (queue route, over HTTP)",
        ms(median(receipts))
    );

    // A claim of 64 (fair, as the worker claims), rolled back; and purge batches.
    let (claims, outbox_batches, inbox_batches) = match store {
        Store::Sqlite => outworx_hooks::plans::sqlite_writes(&outbox_url, &inbox_url, 20).await,
        Store::Postgres => outworx_hooks::plans::postgres_writes(&outbox_url, 20).await,
    }
    .expect("writes");
    println!(
        "write        {:58} {:>8.2} ms  (most {:.2})",
        "a claim of 64 (rolled back)",
        ms(median(claims.clone())),
        ms(claims.iter().max().copied().unwrap_or_default())
    );
    for (what, batches) in [
        ("an outbox purge batch (100 rows)", outbox_batches),
        ("an inbox purge batch (100 rows)", inbox_batches),
    ] {
        println!(
            "write        {what:58} {:>8.2} ms  (most {:.2})",
            ms(median(batches.clone())),
            ms(batches.iter().max().copied().unwrap_or_default())
        );
    }
    drop(emitter);
    drop(inbox);
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}
