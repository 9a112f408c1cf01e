//! `RedisStore` against a real `redis-server`: store semantics, takeover and expiry with short
//! times, atomicity across separate connections, the pipeline's 200 concurrent copies, and
//! the round trips a delivery costs.

mod common;

use outworx_test_support::redis::Redis;

use std::sync::Arc;
use std::time::Duration;

use outworx_hooks::store::{CachedResponse, RedisStore, Reservation, Store};

const TTL: Duration = Duration::from_secs(60);

fn ok() -> CachedResponse {
    CachedResponse {
        status: 201,
        content_type: Some("text/plain".into()),
        body: Some("first".into()),
    }
}

fn token(r: Reservation) -> outworx_hooks::store::ReservationToken {
    match r {
        Reservation::New(t) => t,
        other => panic!("expected new, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_semantics() {
    let redis = Redis::start();
    let store = RedisStore::connect(&redis.url)
        .await
        .unwrap()
        .with_prefix("t1:");

    let t = token(store.reserve("k", TTL).await.unwrap());
    assert_eq!(
        store.reserve("k", TTL).await.unwrap(),
        Reservation::InFlight
    );
    store.complete("k", &t, ok(), TTL).await.unwrap();
    assert_eq!(
        store.reserve("k", TTL).await.unwrap(),
        Reservation::Duplicate(ok())
    );

    let t = token(store.reserve("r", TTL).await.unwrap());
    store.release("r", &t).await.unwrap();
    token(store.reserve("r", TTL).await.unwrap());

    // Stale takeover, and the old owner's late answers change nothing.
    let quick = store.clone().with_stale_after(Duration::from_millis(200));
    let old = token(quick.reserve("s", TTL).await.unwrap());
    assert_eq!(
        quick.reserve("s", TTL).await.unwrap(),
        Reservation::InFlight
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = token(quick.reserve("s", TTL).await.unwrap());
    quick.complete("s", &old, ok(), TTL).await.unwrap();
    quick.release("s", &old).await.unwrap();
    assert_eq!(
        quick.reserve("s", TTL).await.unwrap(),
        Reservation::InFlight
    );
    quick.complete("s", &new, ok(), TTL).await.unwrap();
    assert_eq!(
        quick.reserve("s", TTL).await.unwrap(),
        Reservation::Duplicate(ok())
    );

    // Completed keys expire with their TTL.
    let t = token(
        store
            .reserve("e", Duration::from_millis(200))
            .await
            .unwrap(),
    );
    store
        .complete("e", &t, ok(), Duration::from_millis(200))
        .await
        .unwrap();
    assert!(matches!(
        store.reserve("e", TTL).await.unwrap(),
        Reservation::Duplicate(_)
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    token(store.reserve("e", TTL).await.unwrap());

    // The prefix keeps stores apart.
    let other = RedisStore::connect(&redis.url)
        .await
        .unwrap()
        .with_prefix("t2:");
    token(other.reserve("k", TTL).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_across_separate_connections() {
    let redis = Redis::start();
    let a = Arc::new(RedisStore::connect(&redis.url).await.unwrap());
    let b = Arc::new(RedisStore::connect(&redis.url).await.unwrap());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.reserve("contended", TTL).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(matches!(t.await.unwrap(), Reservation::New(_)));
    }
    assert_eq!(winners, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_on_redis_and_round_trips_per_delivery() {
    let redis = Redis::start();
    let store = RedisStore::connect(&redis.url).await.unwrap();
    let _guard = outworx_hooks::init(outworx_hooks::Config::new().store(store)).unwrap();
    let base = common::serve(common::router()).await;
    let url = format!("{base}/hook");
    common::two_hundred_copies(std::slice::from_ref(&url), "redis-200").await;
    common::failures_release_the_key(&url).await;

    // Round trips: a new delivery is one reserve and one complete; a duplicate one reserve.
    let client = reqwest::Client::new();
    let fresh = common::signed("rt-new", "work");
    let before = redis.round_trips();
    common::send(&client, &url, &fresh).await;
    let new_cost = redis.round_trips() - before;
    let before = redis.round_trips();
    common::send(&client, &url, &fresh).await;
    let dup_cost = redis.round_trips() - before;
    assert_eq!(
        (new_cost, dup_cost),
        (2, 1),
        "redis commands per new / duplicate delivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_while_redis_is_down_and_reconnects_when_it_is_back() {
    let redis = Redis::start();
    let port = redis.port;
    let store = RedisStore::connect(&redis.url).await.unwrap();
    token(store.reserve("before", TTL).await.unwrap());
    drop(redis); // the server goes away
    let r = store.reserve("k", TTL).await;
    assert!(r.is_err(), "{r:?}");
    let _back = Redis::start_on(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.reserve("after", TTL).await {
            Ok(r) => {
                token(r);
                break;
            }
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no reconnection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Kills the instances even when an assertion fails first.
struct Instances(Vec<std::process::Child>);

impl Drop for Instances {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Receiver processes (the example receiver as is) on one Redis, one per entry of `services`
/// (`OUTWORX_HOOKS_SERVICE`, or the default when `None`): their Stripe URLs, and every log
/// line they print.
fn instances(
    redis_url: &str,
    services: &[Option<&str>],
) -> (Instances, Vec<String>, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};

    use outworx_hooks::security::Provider;
    use outworx_hooks::testing::TestKeys;

    let secrets = [
        (Provider::Stripe, "STRIPE_WEBHOOK_SECRET"),
        (Provider::Github, "GITHUB_WEBHOOK_SECRET"),
        (Provider::Shopify, "SHOPIFY_WEBHOOK_SECRET"),
        (Provider::Svix, "SVIX_WEBHOOK_SECRET"),
        (Provider::Clerk, "CLERK_WEBHOOK_SECRET"),
        (Provider::Slack, "SLACK_SIGNING_SECRET"),
        (Provider::Standard, "STANDARD_WEBHOOK_SECRET"),
    ];
    let logs = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut children = Instances(Vec::new());
    let mut urls = Vec::new();
    for service in services {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_receiver-instance"));
        cmd.env("PORT", "0")
            .env("OUTWORX_HOOKS_REDIS_URL", redis_url)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("OUTWORX_HOOKS_SERVICE")
            .stdout(Stdio::piped());
        if let Some(name) = service {
            cmd.env("OUTWORX_HOOKS_SERVICE", name);
        }
        for (p, var) in secrets {
            cmd.env(var, TestKeys::for_provider(p).verifying);
        }
        let mut child = cmd.spawn().expect("receiver-instance");
        let stdout = child.stdout.take().unwrap();
        children.0.push(child);
        let mut lines = std::io::BufReader::new(stdout).lines();
        // Log lines may come first (a warning that no service name is set, for one).
        let first = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("receiving on"))
            .expect("the address line");
        let port = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.rsplit(':').next())
            .expect("the address line")
            .to_owned();
        assert!(first.contains("(redis store)"), "{first}");
        urls.push(format!("http://127.0.0.1:{port}/webhooks/stripe"));
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        });
    }
    (children, urls, logs)
}

fn stripe_delivery(id: &str) -> outworx_hooks::testing::Signed {
    use outworx_hooks::security::Provider;
    use outworx_hooks::testing::{Signer, TestKeys};
    let keys = TestKeys::for_provider(Provider::Stripe);
    let body = format!(r#"{{"id":"{id}","type":"payment_intent.succeeded"}}"#);
    Signer::new(Provider::Stripe, &keys.signing)
        .sign(body)
        .unwrap()
}

/// Two receiver processes (the example receiver as is) sharing one Redis: 200 concurrent
/// copies of a delivery, spread over both, run the handler once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receiver_processes_share_one_redis() {
    let redis = Redis::start();
    let (children, urls, logs) = instances(&redis.url, &[None, None]);
    let s = stripe_delivery("evt_two_instances");
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (client, s, url) = (client.clone(), s.clone(), urls[i % 2].clone());
            tokio::spawn(async move { common::send(&client, &url, &s).await })
        })
        .collect();
    let mut bodies = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status.as_u16() {
            200 => {
                bodies.insert(body);
            }
            409 => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        bodies.len(),
        1,
        "every 2xx is the first run's response: {bodies:?}"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(children);
    let logs = logs.lock().unwrap();
    let deliveries = logs
        .iter()
        .filter(|l| l.contains("outworx_hooks::delivery"))
        .count();
    let handled = logs
        .iter()
        .filter(|l| l.contains("signature valid, completed"))
        .count();
    assert_eq!(
        deliveries, 200,
        "one log line per delivery across both instances"
    );
    assert_eq!(handled, 1, "the handler ran once between the two instances");
}

/// Two services (different `OUTWORX_HOOKS_SERVICE`) with the same route, sharing one Redis:
/// the same Stripe event sent to both runs both handlers; neither is the other's duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_sharing_one_redis_both_run() {
    let redis = Redis::start();
    let (children, urls, logs) = instances(&redis.url, &[Some("billing"), Some("shipping")]);
    let s = stripe_delivery("evt_two_services");
    let client = reqwest::Client::new();
    for url in &urls {
        let (status, _) = common::send(&client, url, &s).await;
        assert_eq!(status.as_u16(), 200);
    }
    // Each service still dedupes its own retry.
    assert_eq!(common::send(&client, &urls[1], &s).await.0.as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(children);
    let logs = logs.lock().unwrap();
    let handled = logs
        .iter()
        .filter(|l| l.contains("signature valid, completed"))
        .count();
    let duplicates = logs
        .iter()
        .filter(|l| l.contains("duplicate: the first response replayed"))
        .count();
    assert_eq!(handled, 2, "both services ran their handler: {logs:#?}");
    assert_eq!(duplicates, 1, "only the retry was a duplicate");
}
