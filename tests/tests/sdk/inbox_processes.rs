//! The inbox with real processes: a queue-first receiver (`bin/queued.rs`) SIGKILLed mid-run
//! and restarted loses nothing and repeats nothing in effect; two of them on one PostgreSQL
//! inbox process each delivery once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outworx_hooks::inbox::sqlx;
use outworx_hooks::inbox::{DeliveryStatus, Inbox};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_test_support::postgres::Postgres;
use outworx_test_support::process::Kill;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn instance(inbox: &str, effects: &str, handler_ms: u64) -> (Kill, String) {
    instance_with(inbox, effects, handler_ms, &[]).await
}

async fn instance_with(
    inbox: &str,
    effects: &str,
    handler_ms: u64,
    env: &[(&str, &str)],
) -> (Kill, String) {
    let port = free_port();
    let child = Kill(
        Command::new(env!("CARGO_BIN_EXE_queued-instance"))
            .env("PORT", port.to_string())
            .env("INBOX", inbox)
            .env("EFFECTS", effects)
            .env("HANDLER_MS", handler_ms.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/hook");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the queued receiver did not start");
}

async fn deliver(http: &reqwest::Client, url: &str, i: usize) {
    let (status, _) = post(http, url, i).await;
    assert_eq!(status, 200, "delivery {i} was not acknowledged");
}

/// Delivery `i` (the same signed request every time: a provider's retry), answered.
async fn post(http: &reqwest::Client, url: &str, i: usize) -> (u16, String) {
    let signed = Signer::new(Provider::Standard, SECRET)
        .id(format!("msg_{i:05}"))
        .sign(format!(
            r#"{{"type":"order.created","timestamp":"2026-11-30T00:00:00Z","data":{{"n":{i}}}}}"#
        ))
        .unwrap();
    let r = http
        .post(url)
        .headers(signed.headers)
        .body(signed.body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// (distinct deliveries with an effect, total handler runs).
async fn effects(url: &str) -> (i64, i64) {
    let sql = "SELECT COUNT(*), CAST(COALESCE(SUM(runs), 0) AS BIGINT) FROM effects";
    let row: Result<(i64, i64), sqlx::Error> = if url.starts_with("postgres") {
        match sqlx::PgPool::connect(url).await {
            Ok(p) => sqlx::query_as(sql).fetch_one(&p).await,
            Err(e) => Err(e),
        }
    } else {
        match sqlx::SqlitePool::connect(&format!("sqlite://{url}")).await {
            Ok(p) => sqlx::query_as(sql).fetch_one(&p).await,
            Err(e) => Err(e),
        }
    };
    row.unwrap_or((0, 0))
}

async fn wait_for_effects(url: &str, at_least: i64, limit: Duration) -> (i64, i64) {
    let start = Instant::now();
    loop {
        let e = effects(url).await;
        if e.0 >= at_least || start.elapsed() > limit {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn all_done(inbox: &str, n: u64) -> bool {
    let inbox = Inbox::open(inbox).await.unwrap();
    for _ in 0..200 {
        let counts = inbox.counts().await.unwrap();
        if counts == [(DeliveryStatus::Done, n)] {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// 500 deliveries acknowledged; the receiver is SIGKILLed mid-run and started again: every
/// delivery is processed, none twice in effect, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_mid_run_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("outworx-inbox-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inbox = dir.join("inbox.db").display().to_string();
    let fx = dir.join("effects.db").display().to_string();
    let (first, url) = instance(&inbox, &fx, 20).await;
    let http = reqwest::Client::new();
    for i in 0..500 {
        deliver(&http, &url, i).await;
    }
    let (at_kill, _) = wait_for_effects(&fx, 100, Duration::from_secs(60)).await;
    drop(first); // SIGKILL, with handlers in flight and their leases held
    assert!(
        (100..500).contains(&at_kill),
        "{at_kill} processed before the kill"
    );

    let (_second, _) = instance(&inbox, &fx, 20).await;
    let (distinct, runs) = wait_for_effects(&fx, 500, Duration::from_secs(90)).await;
    assert_eq!(distinct, 500, "a delivery was lost");
    assert!(
        all_done(&inbox, 500).await,
        "the inbox did not finish every delivery"
    );
    // A run the kill cut short may run again (at least once); its effect is keyed, so it
    // counts once in effect. At most the 8 in flight repeat.
    let (_, runs_after) = effects(&fx).await;
    assert!(runs_after - 500 <= 8, "{} repeated runs", runs_after - 500);
    let _ = runs;
    std::fs::remove_dir_all(dir).ok();
}

/// A burst of concurrent deliveries (they share group commits), and the receiver SIGKILLed
/// in the middle of it: after a restart, every delivery that was answered 2xx is in the
/// inbox, checked one by one by its id, and processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_a_burst_loses_no_acknowledged_delivery() {
    let dir = std::env::temp_dir().join(format!("outworx-inbox-burst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inbox = dir.join("inbox.db").display().to_string();
    let fx = dir.join("effects.db").display().to_string();
    let (first, url) = instance(&inbox, &fx, 0).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..32)
        .map(|_| {
            let (http, url, acked, next) = (http.clone(), url.clone(), acked.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= 20_000 {
                        return;
                    }
                    let signed = Signer::new(Provider::Standard, SECRET)
                        .id(format!("msg_{i:05}"))
                        .sign(format!(r#"{{"type":"order.created","data":{{"n":{i}}}}}"#))
                        .unwrap();
                    let sent = http
                        .post(&url)
                        .headers(signed.headers)
                        .body(signed.body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().push(i),
                        Ok(_) => {}
                        // The receiver is gone: this sender is done.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Kill it mid-burst, while requests are in flight and batches are committing.
    let start = Instant::now();
    while acked.lock().unwrap().len() < 2_000 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(first);
    for s in senders {
        let _ = s.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 2_000,
        "only {} acknowledged before the kill",
        acked.len()
    );

    // Every acknowledged delivery is in the inbox, by its id, before anything runs again.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{inbox}"))
        .await
        .unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM outworx_inbox")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    let ids: std::collections::HashSet<&str> =
        keys.iter().filter_map(|k| k.rsplit(':').next()).collect();
    let missing: Vec<usize> = acked
        .iter()
        .copied()
        .filter(|i| !ids.contains(format!("msg_{i:05}").as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged deliveries are not in the inbox (first: msg_{:05})",
        missing.len(),
        acked.len(),
        missing.first().copied().unwrap_or_default()
    );

    // And after the restart, each is processed (the ones the kill cut short, once their
    // leases run out).
    let (_second, _) = instance(&inbox, &fx, 0).await;
    let fx_pool = sqlx::SqlitePool::connect(&format!("sqlite://{fx}"))
        .await
        .unwrap();
    let start = Instant::now();
    let unprocessed = loop {
        let done: std::collections::HashSet<String> = sqlx::query_scalar("SELECT id FROM effects")
            .fetch_all(&fx_pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let left = acked
            .iter()
            .filter(|i| !done.contains(&format!("msg_{i:05}")))
            .count();
        if left == 0 || start.elapsed() > Duration::from_secs(120) {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(unprocessed, 0, "acknowledged deliveries never processed");
    std::fs::remove_dir_all(dir).ok();
}

/// Two receiver processes on one PostgreSQL inbox: 1,000 deliveries, each processed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_on_one_postgres_inbox_process_each_delivery_once() {
    let pg = Postgres::start();
    let db = pg.url();
    let mut up = false;
    for _ in 0..100 {
        if Inbox::open(&db).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "PostgreSQL did not start");
    let (_a, url_a) = instance(&db, &db, 5).await;
    let (_b, url_b) = instance(&db, &db, 5).await;
    let http = reqwest::Client::new();
    for i in 0..1000 {
        let url = if i % 2 == 0 { &url_a } else { &url_b };
        deliver(&http, url, i).await;
    }
    // The same deliveries again, to the other instance: acknowledged, never stored twice.
    for i in 0..50 {
        let url = if i % 2 == 0 { &url_b } else { &url_a };
        deliver(&http, url, i).await;
    }
    let (distinct, runs) = wait_for_effects(&db, 1000, Duration::from_secs(120)).await;
    if distinct != 1000 {
        let inbox = Inbox::open(&db).await.unwrap();
        let some = inbox
            .deliveries(&outworx_hooks::inbox::DeliveryFilter::default().limit(3))
            .await
            .unwrap();
        panic!(
            "{distinct} of 1000 processed; {:?}; {some:?}",
            inbox.counts().await
        );
    }
    assert!(all_done(&db, 1000).await);
    assert_eq!(
        effects(&db).await.1,
        1000,
        "a delivery ran twice ({runs} runs)"
    );
}

/// `OUTWORX_HOOKS_INBOX` turns `queue` on for the example receiver's routes: a delivery is
/// answered queued at once and processed by its worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_receiver_queues_with_outworx_hooks_inbox() {
    use outworx_hooks::testing::TestKeys;
    use std::io::BufRead as _;
    let dir = std::env::temp_dir().join(format!("outworx-receiver-inbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inbox = dir.join("inbox.db").display().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_receiver-instance"));
    cmd.env("PORT", "0")
        .env("OUTWORX_HOOKS_INBOX", &inbox)
        .env_remove("OUTWORX_HOOKS_REDIS_URL")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (p, var) in [
        (Provider::Stripe, "STRIPE_WEBHOOK_SECRET"),
        (Provider::Github, "GITHUB_WEBHOOK_SECRET"),
        (Provider::Shopify, "SHOPIFY_WEBHOOK_SECRET"),
        (Provider::Svix, "SVIX_WEBHOOK_SECRET"),
        (Provider::Clerk, "CLERK_WEBHOOK_SECRET"),
        (Provider::Slack, "SLACK_SIGNING_SECRET"),
        (Provider::Standard, "STANDARD_WEBHOOK_SECRET"),
    ] {
        cmd.env(var, TestKeys::for_provider(p).verifying);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let first = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("receiving on"))
        .expect("the address line");
    assert!(first.contains("queued in a sqlite inbox"), "{first}");
    let port = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.rsplit(':').next())
        .unwrap()
        .to_owned();
    let signed = Signer::new(
        Provider::Standard,
        TestKeys::for_provider(Provider::Standard).signing,
    )
    .id("msg_receiver")
    .sign(r#"{"type":"order.created","timestamp":"2026-11-30T00:00:00Z","data":{}}"#)
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/standard"))
        .headers(signed.headers)
        .body(signed.body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["queued"], true);
    assert!(all_done(&inbox, 1).await, "the worker did not process it");
    std::fs::remove_dir_all(dir).ok();
}

async fn inbox_rows(path: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM outworx_inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// Two instances behind a load balancer, each with its own SQLite inbox, sharing a Redis
/// store: a provider's retry that reaches the other instance is answered as a duplicate and
/// runs nowhere again. One instance is SIGKILLed between reserving a delivery's key and
/// committing it (its inbox held locked by the test): the retry is answered 409 while the
/// reservation is in flight, taken over once it is stale, and the delivery runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_their_own_inboxes_share_a_store_and_run_a_retry_once() {
    let redis = outworx_test_support::redis::Redis::start();
    let dir = std::env::temp_dir().join(format!("outworx-inbox-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    let fx = path("effects.db");
    let env = [("REDIS", redis.url.as_str()), ("STALE_MS", "1500")];
    let (a, url_a) = instance_with(&path("a.db"), &fx, 5, &env).await;
    let (_b, url_b) = instance_with(&path("b.db"), &fx, 5, &env).await;
    let http = reqwest::Client::new();

    // A delivery to one instance, its retry to the other: queued once, run once.
    assert_eq!(post(&http, &url_a, 1).await.0, 200);
    let (status, body) = post(&http, &url_b, 1).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""duplicate":true"#), "{body}");
    assert_eq!(
        wait_for_effects(&fx, 1, Duration::from_secs(30)).await,
        (1, 1)
    );
    assert_eq!(
        (
            inbox_rows(&path("a.db")).await,
            inbox_rows(&path("b.db")).await
        ),
        (1, 0)
    );

    // Instance A reserves delivery 2 and waits for its inbox, which the test holds locked.
    let lock = sqlx::SqlitePool::connect(&format!("sqlite://{}", path("a.db")))
        .await
        .unwrap();
    let held = lock.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let pending = tokio::spawn({
        let (http, url) = (http.clone(), url_a.clone());
        async move { post(&http, &url, 2).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pending.is_finished(),
        "the receipt did not wait for the inbox"
    );
    drop(a); // SIGKILL between the reservation and the commit
    let _ = pending.await; // the connection was cut
    held.rollback().await.unwrap();
    lock.close().await;

    // The reservation is in flight: the retry is refused for now, with a time to retry.
    let (status, _) = post(&http, &url_b, 2).await;
    assert_eq!(
        status, 409,
        "a retry while the dead instance's reservation is in flight"
    );
    // Once it is stale, a retry takes it over, and the delivery runs once.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    assert_eq!(post(&http, &url_b, 2).await.0, 200);
    assert_eq!(
        wait_for_effects(&fx, 2, Duration::from_secs(30)).await,
        (2, 2)
    );
    // A restarted A answers the next retry from the store, and queues nothing.
    let (_a2, url_a2) = instance_with(&path("a.db"), &fx, 5, &env).await;
    let (status, body) = post(&http, &url_a2, 2).await;
    assert_eq!(
        (status, body.contains(r#""duplicate":true"#)),
        (200, true),
        "{body}"
    );
    assert_eq!(
        inbox_rows(&path("a.db")).await,
        1,
        "the killed receipt never committed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(effects(&fx).await, (2, 2), "nothing ran twice");
    std::fs::remove_dir_all(dir).ok();
}
