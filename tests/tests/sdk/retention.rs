//! Retention: finished messages leave the outbox (with their deliveries and attempts) and
//! finished deliveries leave the inbox once past their period, a batch at a time, while what
//! still waits stays whatever its age; expunge forgets one message's content now; and under
//! a steady load longer than the retention, the outbox's file stops growing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use outworx_hooks::queue::{ManualClock, Retention};
use outworx_hooks::send::{
    DeliveryFilter, DeliveryStatus, Emitter, NewEndpoint, NewMessage, Outbox, Scope, TargetPolicy,
    WorkerOptions, sqlx,
};
use outworx_test_support::net::temp_dir;
use serde_json::json;

const DAY: i64 = 86_400_000;

fn loopback() -> TargetPolicy {
    TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap())
}

/// A receiver answering `code` with a 10 KB body, counting requests.
async fn receiver(code: u16) -> (Arc<Mutex<usize>>, String) {
    let seen = Arc::new(Mutex::new(0));
    async fn hook(State((seen, code)): State<(Arc<Mutex<usize>>, u16)>) -> (StatusCode, String) {
        *seen.lock().unwrap() += 1;
        (StatusCode::from_u16(code).unwrap(), "x".repeat(10_000))
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state((Arc::clone(&seen), code));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, format!("http://{addr}/hook"))
}

async fn statuses(emitter: &Emitter, owner: &str) -> Vec<DeliveryStatus> {
    emitter
        .deliveries(Scope::Owner(owner), &DeliveryFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.status)
        .collect()
}

async fn attempts(emitter: &Emitter, owner: &str) -> usize {
    let Some(endpoint) = emitter.endpoints(Scope::Owner(owner)).await.unwrap().pop() else {
        return 0;
    };
    // Every attempt of the endpoint, whatever remains of its delivery: an attempt left
    // behind by the purge counts.
    emitter
        .attempts(Scope::All, Some(&endpoint.id), None, 100)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn finished_messages_leave_the_outbox_after_their_retention_and_waiting_ones_stay() {
    let t0 = 1_700_000_000_000;
    let clock = ManualClock::new(t0);
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .clock(clock.clone())
        .worker(None)
        .build();
    let (_, ok) = receiver(200).await;
    let (_, failing) = receiver(500).await;
    // "done": delivered. "waiting": answered 500, its retry pending. "dead": its endpoint
    // was deleted before the attempt. "nobody": no endpoint.
    for (owner, url) in [("done", &ok), ("waiting", &failing), ("dead", &ok)] {
        emitter
            .create_endpoint(NewEndpoint::new(url.as_str()).owner(owner))
            .await
            .unwrap();
    }
    for owner in ["done", "waiting", "dead", "nobody"] {
        for n in 0..3 {
            let m = NewMessage::new("order.created", &json!({ "n": n })).unwrap();
            emitter.send_message(m.owner(owner)).await.unwrap();
        }
    }
    let gone = emitter.endpoints(Scope::Owner("dead")).await.unwrap();
    emitter
        .delete_endpoint(Scope::All, &gone[0].id)
        .await
        .unwrap();
    let worker = emitter.worker(WorkerOptions::default().retention(None));
    assert_eq!(worker.run_once(100).await.unwrap(), 9);
    assert_eq!(
        statuses(&emitter, "done").await,
        [DeliveryStatus::Delivered; 3]
    );
    assert_eq!(
        statuses(&emitter, "waiting").await,
        [DeliveryStatus::Pending; 3]
    );
    assert_eq!(statuses(&emitter, "dead").await, [DeliveryStatus::Dead; 3]);
    assert_eq!(attempts(&emitter, "done").await, 3);

    // One message per transaction: the walk goes on from where the last batch stopped.
    let by_one = Retention::default().batch(1);
    clock.set(t0 + 29 * DAY);
    assert_eq!(emitter.purge(&by_one).await.unwrap(), 0, "not 30 days yet");

    clock.set(t0 + 31 * DAY);
    assert_eq!(
        emitter.purge(&by_one).await.unwrap(),
        6,
        "the delivered ones and the ones sent to nobody"
    );
    assert!(statuses(&emitter, "done").await.is_empty());
    assert_eq!(
        attempts(&emitter, "done").await,
        0,
        "their attempts went with them"
    );
    assert_eq!(statuses(&emitter, "waiting").await.len(), 3);
    assert_eq!(
        statuses(&emitter, "dead").await.len(),
        3,
        "dead ones are kept 90 days"
    );
    assert_eq!(attempts(&emitter, "waiting").await, 3);

    // A dead delivery replayed before the purge waits again: it and its message stay.
    let replayed = emitter
        .deliveries(Scope::Owner("dead"), &DeliveryFilter::default().limit(1))
        .await
        .unwrap();
    emitter
        .replay(
            Scope::All,
            &DeliveryFilter::default().message(replayed[0].message_id.clone()),
        )
        .await
        .unwrap();
    clock.set(t0 + 91 * DAY);
    assert_eq!(emitter.purge(&by_one).await.unwrap(), 2);
    assert_eq!(statuses(&emitter, "dead").await, [DeliveryStatus::Pending]);
    assert_eq!(
        statuses(&emitter, "waiting").await,
        [DeliveryStatus::Pending; 3],
        "a delivery still waiting is kept whatever its age"
    );
    // Kept forever: nothing goes.
    clock.set(t0 + 10_000 * DAY);
    assert_eq!(emitter.purge(&Retention::forever()).await.unwrap(), 0);
}

#[tokio::test]
async fn expunge_forgets_the_content_and_keeps_the_history() {
    let dir = temp_dir("expunge");
    let path = dir.join("outbox.db").display().to_string();
    let emitter = Emitter::builder(Outbox::open(&path).await.unwrap())
        .policy(loopback())
        .worker(None)
        .build();
    let (seen, failing) = receiver(500).await;
    emitter
        .create_endpoint(NewEndpoint::new(failing.as_str()).owner("acme"))
        .await
        .unwrap();
    let secret = json!({"ssn": "078-05-1120"});
    let m = NewMessage::new("person.updated", &secret)
        .unwrap()
        .owner("acme");
    let sent = emitter.send_message(m).await.unwrap();
    let worker = emitter.worker(WorkerOptions::default().retention(None));
    assert_eq!(worker.run_once(10).await.unwrap(), 1);
    let before = emitter
        .attempts(Scope::All, None, Some(&sent.message_id), 10)
        .await
        .unwrap();
    assert_eq!(before[0].response.len(), 4096);

    assert!(
        !emitter
            .expunge(Scope::Owner("other"), &sent.message_id)
            .await
            .unwrap(),
        "another tenant's message is not found"
    );
    assert!(
        emitter
            .expunge(Scope::Owner("acme"), &sent.message_id)
            .await
            .unwrap()
    );

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    let (payload, expunged): (String, Option<i64>) =
        sqlx::query_as("SELECT payload, expunged_at FROM outworx_messages WHERE id = ?")
            .bind(&sent.message_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(payload, "{}");
    assert!(expunged.is_some());
    let after = emitter
        .attempts(Scope::All, None, Some(&sent.message_id), 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "the attempt's record stays");
    assert_eq!(
        (after[0].response.as_str(), after[0].status_code),
        ("", Some(500))
    );
    let d = emitter
        .deliveries(
            Scope::All,
            &DeliveryFilter::default().message(sent.message_id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Dead, "nothing is left to send");
    assert_eq!(d[0].last_error.as_deref(), Some("its content was expunged"));

    // It cannot be sent again, by a replay or by a worker.
    let replayed = emitter
        .replay(
            Scope::All,
            &DeliveryFilter::default().message(sent.message_id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(replayed, 0);
    assert_eq!(worker.run_once(10).await.unwrap(), 0);
    assert_eq!(*seen.lock().unwrap(), 1);
    pool.close().await;
    std::fs::remove_dir_all(dir).ok();
}

/// Bytes on disk of a SQLite database: the file and its write-ahead log.
fn on_disk(path: &std::path::Path) -> u64 {
    let len = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    len(path.to_path_buf()) + len(path.with_extension("db-wal"))
}

/// A steady load for longer than a short retention: once the first messages are past it,
/// the worker deletes as many as come in, and the file stops growing (SQLite reuses the
/// pages it freed). Without the purge it grows with every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_steady_load_the_outbox_stops_growing() {
    let dir = temp_dir("retention-flat");
    let path = dir.join("outbox.db");
    let keep = Retention::older_than(Duration::from_millis(500)).every(Duration::from_millis(100));
    let emitter = Emitter::builder(Outbox::open(&path.display().to_string()).await.unwrap())
        .policy(loopback())
        .worker(Some(WorkerOptions::default().retention(keep)))
        .build();
    let (seen, ok) = receiver(200).await;
    emitter
        .create_endpoint(NewEndpoint::new(ok.as_str()))
        .await
        .unwrap();
    let body = json!({ "pad": "p".repeat(2_000) });
    let mut sizes = Vec::new();
    // 20 messages every 50 ms for 4 s (well within what the worker delivers): 1,600
    // messages, about 10 MB with their answers.
    for tick in 0..80 {
        for _ in 0..20 {
            emitter.send("tick", &body).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if tick % 20 == 19 {
            sizes.push(on_disk(&path));
        }
    }
    emitter.shutdown().await;
    let delivered = *seen.lock().unwrap();
    assert!(
        delivered >= 1_400,
        "the worker kept up: {delivered} of 1,600 delivered"
    );
    // After the first second, the file holds about one retention's worth of rows: the
    // last three seconds add (almost) nothing.
    let (first, last) = (sizes[0], sizes[3]);
    assert!(
        last <= first + first / 4,
        "the outbox grew from {first} to {last} bytes under a steady load: {sizes:?}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A message expunged while its attempt is in flight: that attempt ends as it ends (a 500
/// here, so a retry is scheduled), and the retry sends nothing: the worker finds the content
/// gone and ends the delivery dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_flight_at_the_expunge_is_not_retried() {
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .clock(clock.clone())
        .worker(None)
        .build();
    // A receiver that answers 500 once the test lets it.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let seen = Arc::new(Mutex::new(0usize));
    async fn held(
        State((gate, seen)): State<(Arc<tokio::sync::Semaphore>, Arc<Mutex<usize>>)>,
    ) -> StatusCode {
        *seen.lock().unwrap() += 1;
        let _ = gate.acquire().await;
        StatusCode::INTERNAL_SERVER_ERROR
    }
    let app = Router::new()
        .route("/hook", post(held))
        .with_state((Arc::clone(&gate), Arc::clone(&seen)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    emitter
        .create_endpoint(NewEndpoint::new(format!("http://{addr}/hook")))
        .await
        .unwrap();
    let sent = emitter
        .send("person.updated", &json!({"name": "Ada"}))
        .await
        .unwrap();
    let worker = emitter.worker(WorkerOptions::default().retention(None));
    let attempt = tokio::spawn(async move { worker.run_once(10).await.unwrap() });
    while *seen.lock().unwrap() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(emitter.expunge(Scope::All, &sent.message_id).await.unwrap());
    gate.add_permits(1);
    assert_eq!(attempt.await.unwrap(), 1);
    let d = emitter
        .deliveries(Scope::All, &DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(
        d[0].status,
        DeliveryStatus::Pending,
        "the in-flight attempt's 500 schedules a retry"
    );
    clock.set(d[0].next_attempt_at);
    let worker = emitter.worker(WorkerOptions::default().retention(None));
    assert_eq!(worker.run_once(10).await.unwrap(), 1);
    let d = emitter
        .deliveries(Scope::All, &DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Dead);
    assert_eq!(d[0].last_error.as_deref(), Some("its content was expunged"));
    assert_eq!(*seen.lock().unwrap(), 1, "the retry sent nothing");
}
