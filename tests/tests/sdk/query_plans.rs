//! Every listed query (`outworx_hooks::plans`: the operator's, the tenant's, the dashboard's,
//! the CLI's and the purge's) reads index ranges, never a whole table, on an outbox and an
//! inbox of 100,000 rows each, on SQLite (as opened, never analyzed) and on PostgreSQL
//! (analyzed, as autovacuum leaves it, and planned with scans and sorts discouraged, so that
//! what is left of them is what no index serves). The benchmark runs the same plans at 10 million.

use outworx_hooks::inbox::Inbox;
use outworx_hooks::plans::Planned;
use outworx_hooks::send::Outbox;
use outworx_hooks_queue::sqlx;
use outworx_test_support::net::temp_dir;
use outworx_test_support::postgres::Postgres;

const ROWS: i64 = 100_000;

/// The seed, as `(SQLite, PostgreSQL)` statements over the numbers 1..=$1: 1,000 endpoints of
/// 200 tenants; a message, a delivery and an attempt per number (8 in 10 delivered, 1 dead,
/// 1 pending); an inbox of 20 routes in the same proportions.
const SEED: &[&str] = &[
    "INSERT INTO outworx_endpoints (id, owner, url, events, auth, format, secret, metadata, \
     enabled, created_at, updated_at) SELECT 'ep_' || i, 't' || (i % 200), 'https://e.test/', \
     '[]', '{}', 'standard', 's', '{}', 1, i, i FROM n WHERE i <= 1000",
    "INSERT INTO outworx_messages (id, owner, event_type, payload, created_at) \
     SELECT 'msg_' || i, 't' || (i % 200), 'order.created', '{}', i FROM n",
    "INSERT INTO outworx_deliveries (message_id, endpoint_id, owner, status, attempts, \
     next_attempt_at, created_at, updated_at) SELECT 'msg_' || i, 'ep_' || (i % 1000), \
     't' || (i % 200), CASE WHEN i % 10 = 0 THEN 'dead' WHEN i % 10 = 1 THEN 'pending' \
     ELSE 'delivered' END, 1, i, i, i FROM n",
    "INSERT INTO outworx_attempts (delivery_id, message_id, endpoint_id, attempt, at, \
     status_code, duration_ms, response) SELECT i, 'msg_' || i, 'ep_' || (i % 1000), 1, i, \
     200, 1, '' FROM n",
    "INSERT INTO outworx_inbox (route, key, method, uri, headers, body, received_at, \
     max_attempts, backoff_ms, status, attempts, next_attempt_at, updated_at) \
     SELECT 'r' || (i % 20), 'k' || i, 'POST', '/', '[]', '', i, 3, 1000, \
     CASE WHEN i % 10 = 0 THEN 'dead' WHEN i % 10 = 1 THEN 'pending' ELSE 'done' END, \
     i % 2, i, i FROM n",
];

fn assert_index_ranges_only(plans: &[Planned]) {
    assert!(plans.len() >= 38, "the list shrank: {}", plans.len());
    let mut failures = Vec::new();
    for p in plans {
        let problems = p.problems();
        if !problems.is_empty() {
            failures.push(format!(
                "{}:\n  {}\n  plan: {}",
                p.name,
                problems.join("\n  "),
                p.plan.join(" | ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} queries read more than a range:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_listed_query_reads_index_ranges_on_sqlite() {
    let dir = temp_dir("query-plans");
    let path = dir.join("both.db").display().to_string();
    drop(Outbox::open(&path).await.unwrap());
    drop(Inbox::open(&path).await.unwrap());
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    for sql in SEED {
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) {sql}"
        );
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    let mut c = pool.acquire().await.unwrap();
    let plans = outworx_hooks::plans::sqlite(&mut c).await.unwrap();
    assert_index_ranges_only(&plans);
    drop(c);
    pool.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_query_reads_index_ranges_on_postgres() {
    let pg = Postgres::start();
    let url = pg.url();
    drop(Outbox::open(&url).await.unwrap());
    drop(Inbox::open(&url).await.unwrap());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for sql in SEED {
        let sql = sql.replace(
            " FROM n",
            &format!(" FROM generate_series(1, {ROWS}) AS n(i)"),
        );
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    let mut c = pool.acquire().await.unwrap();
    // The planner takes an index wherever one serves the query: a scan or a sort left in
    // the plan means none does (`Planned::problems`).
    for off in ["SET enable_seqscan = off", "SET enable_sort = off"] {
        sqlx::query(off).execute(&mut *c).await.unwrap();
    }
    let plans = outworx_hooks::plans::postgres(&mut c).await.unwrap();
    assert_index_ranges_only(&plans);
}
