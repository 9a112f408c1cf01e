//! A worker's claim reads an index range, never the whole queue: checked on the real inbox and
//! outbox tables, each holding a backlog, with the plan SQLite and PostgreSQL make for the
//! claim itself. (A claim that read every due row to keep 64 of them made draining a growing
//! backlog slower the larger it grew.) And the durability asked of PostgreSQL is the
//! `synchronous_commit` its connections run with.

use outworx_hooks::inbox::Inbox;
use outworx_hooks::send::Outbox;
use outworx_hooks_queue::{Claim, QueueTable, sqlx};
use outworx_test_support::net::temp_dir;
use outworx_test_support::postgres::Postgres;

const INBOX: QueueTable = QueueTable {
    name: "outworx_inbox",
    leased: "processing",
    done: "done",
};
const OUTBOX: QueueTable = QueueTable {
    name: "outworx_deliveries",
    leased: "sending",
    done: "delivered",
};
const BACKLOG: i64 = 20_000;

fn claim(busy: &[String]) -> Claim<'_> {
    Claim::new("plan", 64, 1_000, std::time::Duration::from_secs(60)).excluding("endpoint_id", busy)
}

/// The owners a fair claim shares between.
const OWNERS: &[&str] = &["o1", "o2", "o3"];

fn owners() -> Vec<String> {
    OWNERS.iter().map(|o| (*o).to_owned()).collect()
}

/// The claims to check: none left out; and on the outbox, whose worker leaves out the
/// endpoints at their cap, some left out.
fn busy_lists(table: QueueTable, busy: &[String]) -> Vec<&[String]> {
    match table.name {
        "outworx_deliveries" => vec![&[], busy],
        _ => vec![&[]],
    }
}

/// No line of the plan reads the table from end to end, or sorts what it read.
fn assert_ranges_only(table: &str, plan: &[String]) {
    let text = plan.join("\n");
    assert!(
        plan.iter().all(|l| {
            let l = l.trim_start_matches([' ', '-', '>']);
            !l.starts_with(&format!("SCAN {table}"))
                && !l.starts_with(&format!("Seq Scan on {table}"))
                && !l.contains("TEMP B-TREE")
        }),
        "the claim scans {table}:\n{text}"
    );
    assert!(
        text.contains(&format!("{table}_due")),
        "the claim does not read {table}_due:\n{text}"
    );
}

async fn backlog_sqlite(pool: &sqlx::SqlitePool, table: &str) {
    let sql = match table {
        "outworx_inbox" => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO outworx_inbox (route, key, method, uri, headers, body, received_at, \
             max_attempts, backoff_ms, status, attempts, next_attempt_at, updated_at) \
             SELECT 'r', 'k' || i, 'POST', '/', '[]', x'00', 0, 3, 1000, \
             CASE WHEN i % 10 = 0 THEN 'done' ELSE 'pending' END, 0, i, 0 FROM n"
        }
        _ => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO outworx_deliveries (message_id, endpoint_id, owner, status, attempts, \
             next_attempt_at, created_at, updated_at) \
             SELECT 'm' || i, 'ep_' || (i % 50), 'o' || (i % 7), \
             CASE WHEN i % 10 = 0 THEN 'delivered' ELSE 'pending' END, 0, i, 0, 0 FROM n"
        }
    };
    sqlx::query(sql).bind(BACKLOG).execute(pool).await.unwrap();
}

#[tokio::test]
async fn a_claim_reads_an_index_range_on_sqlite() {
    let dir = temp_dir("claim-plans");
    let busy = ["ep_1".to_owned(), "ep_2".to_owned()];
    for (table, file) in [(INBOX, "inbox.db"), (OUTBOX, "outbox.db")] {
        let path = dir.join(file).display().to_string();
        match table.name {
            "outworx_inbox" => drop(Inbox::open(&path).await.unwrap()),
            _ => drop(Outbox::open(&path).await.unwrap()),
        }
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        backlog_sqlite(&pool, table.name).await;
        let mut c = pool.acquire().await.unwrap();
        for busy in busy_lists(table, &busy) {
            let plan = outworx_hooks_queue::sql::sqlite::claim_plan(&mut c, table, claim(busy))
                .await
                .unwrap();
            assert_ranges_only(table.name, &plan);
        }
        if table.name == "outworx_deliveries" {
            use outworx_hooks_queue::sql::sqlite as q;
            let owners = owners();
            let fair = claim(&busy).fair("owner", &owners);
            let plan = q::claim_plan(&mut c, table, fair).await.unwrap();
            assert_reads_fair_index("the fair claim", &plan);
            let mut groups = q::groups_query(q::EXPLAIN, table, "owner", Some("o1"), 32, 1_000);
            let plan = q::explain(&mut c, &mut groups).await.unwrap();
            assert_reads_fair_index("finding the owners", &plan);
            let found = q::groups_pending(&mut c, table, "owner", Some("o1"), 32, 1_000)
                .await
                .unwrap();
            assert_eq!(
                found,
                ["o2", "o3", "o4", "o5", "o6"],
                "the owners with deliveries waiting, after o1"
            );
        }
    }
}

/// `what` reads ranges of the `(status, owner, next_attempt_at)` index (a fair claim: each
/// owner's due range; finding the owners: one seek each), and never scans or sorts.
fn assert_reads_fair_index(what: &str, plan: &[String]) {
    let text = plan.join("\n");
    assert!(
        plan.iter().all(|l| {
            let l = l.trim_start_matches([' ', '-', '>']);
            !l.starts_with("SCAN outworx_deliveries")
                && !l.starts_with("Seq Scan")
                && !l.contains("TEMP B-TREE")
        }),
        "{what} scans:\n{text}"
    );
    assert!(
        text.contains("outworx_deliveries_fair"),
        "{what} does not read the owners' index:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_reads_an_index_range_and_durability_applies_on_postgres() {
    let pg = Postgres::start();
    let url = pg.url();
    drop(Inbox::open(&url).await.unwrap());
    drop(Outbox::open(&url).await.unwrap());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO outworx_inbox (route, key, method, uri, headers, body, received_at, \
         max_attempts, backoff_ms, status, attempts, next_attempt_at, updated_at) \
         SELECT 'r', 'k' || i, 'POST', '/', '[]', '\\x00', 0, 3, 1000, \
         CASE WHEN i % 10 = 0 THEN 'done' ELSE 'pending' END, 0, i, 0 \
         FROM generate_series(1, $1) AS i",
    )
    .bind(BACKLOG)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO outworx_deliveries (message_id, endpoint_id, owner, status, attempts, \
         next_attempt_at, created_at, updated_at) \
         SELECT 'm' || i, 'ep_' || (i % 50), 'o' || (i % 7), \
         CASE WHEN i % 10 = 0 THEN 'delivered' ELSE 'pending' END, 0, i, 0, 0 \
         FROM generate_series(1, $1) AS i",
    )
    .bind(BACKLOG)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    let busy = ["ep_1".to_owned(), "ep_2".to_owned()];
    let mut c = pool.acquire().await.unwrap();

    // The durability asked for is the setting each connection of the pool runs with.
    use outworx_hooks_queue::{Durability, Pool};
    for (durability, expected) in [(Durability::Process, "off"), (Durability::Disk, "on")] {
        let Pool::Postgres(p) = Pool::open_with(&url, Some(durability)).await.unwrap() else {
            unreachable!("a postgres:// URL")
        };
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut conn = p.acquire().await.unwrap();
            let applied: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(applied, expected, "{durability:?}");
            held.push(conn);
        }
    }

    for table in [INBOX, OUTBOX] {
        for busy in busy_lists(table, &busy) {
            let plan = outworx_hooks_queue::sql::postgres::claim_plan(&mut c, table, claim(busy))
                .await
                .unwrap();
            assert_ranges_only(table.name, &plan);
        }
    }
    use outworx_hooks_queue::sql::postgres as q;
    let owners = owners();
    let plan = q::claim_plan(&mut c, OUTBOX, claim(&busy).fair("owner", &owners))
        .await
        .unwrap();
    assert_reads_fair_index("the fair claim", &plan);
    let mut groups = q::groups_query(q::EXPLAIN, OUTBOX, "owner", Some("o1"), 32, 1_000);
    assert_reads_fair_index(
        "finding the owners",
        &q::explain(&mut c, &mut groups).await.unwrap(),
    );
    let found = q::groups_pending(&mut c, OUTBOX, "owner", Some("o1"), 32, 1_000)
        .await
        .unwrap();
    assert_eq!(found, ["o2", "o3", "o4", "o5", "o6"]);
}
