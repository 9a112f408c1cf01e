//! The sending side end to end, over real HTTP on loopback and real SQLite files: `#[emit]`
//! to our own `#[webhook(provider = "standard")]` receiver, the retry schedule on a manual
//! clock, 410, dead and replay, rotation, SSRF refusals, the transactional outbox, the
//! management router's tenant isolation, and bad input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Extension, Json, Router};
use outworx_hooks::queue::{ManualClock, RetrySchedule};
use outworx_hooks::send::{
    DeliveryFilter, DeliveryStatus, EmitContext, EmitLayer, Emitter, Format, NewEndpoint,
    NewMessage, Outbox, Scope, SendError, TargetPolicy, WorkerOptions, management_router, sqlx,
};
use outworx_hooks::{Track, emit, webhook};
use serde_json::{Value, json};

fn loopback() -> TargetPolicy {
    TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap())
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A scripted answer: a status, and a `Retry-After` value.
type Step = (u16, Option<&'static str>);

/// A receiver that records each request and answers from a script (then 200).
#[derive(Clone, Default)]
struct Scripted {
    script: Arc<Mutex<Vec<Step>>>,
    seen: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Scripted {
    async fn start(script: Vec<Step>) -> (Scripted, String) {
        let s = Scripted {
            script: Arc::new(Mutex::new(script.into_iter().rev().collect())),
            ..Scripted::default()
        };
        async fn hook(
            State(s): State<Scripted>,
            headers: HeaderMap,
            body: String,
        ) -> axum::response::Response {
            s.seen.lock().unwrap().push((headers, body));
            let next = s.script.lock().unwrap().pop();
            let (code, retry_after) = next.unwrap_or((200, None));
            let mut r = axum::response::IntoResponse::into_response((
                StatusCode::from_u16(code).unwrap(),
                "x".repeat(10_000),
            ));
            if let Some(v) = retry_after {
                r.headers_mut().insert("retry-after", v.parse().unwrap());
            }
            r
        }
        let url = serve(
            Router::new()
                .route("/hook", post(hook))
                .with_state(s.clone()),
        )
        .await;
        (s, format!("{url}/hook"))
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn manual(clock: &ManualClock) -> Emitter {
    Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .clock(clock.clone())
        .worker(None)
        .build()
}

fn step(emitter: &Emitter) -> outworx_hooks::send::Worker {
    emitter.worker(WorkerOptions::default())
}

async fn only_delivery(emitter: &Emitter) -> outworx_hooks::send::Delivery {
    let all = emitter
        .deliveries(Scope::All, &DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

// ---- #[emit] → #[webhook(provider = "standard")], exactly once in effect ----

static RECEIVER_SECRET: OnceLock<String> = OnceLock::new();
static PROCESSED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn receiver_secret() -> String {
    RECEIVER_SECRET.get().cloned().unwrap_or_default()
}

#[webhook(provider = "standard", secret = receiver_secret, idempotency, require_processed)]
async fn receive(track: Track, headers: HeaderMap, Json(event): Json<Value>) -> &'static str {
    assert_eq!(event["type"], "order.created");
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    PROCESSED.lock().unwrap().push(id);
    track.processed();
    "ok"
}

#[derive(serde::Deserialize)]
struct NewOrder {
    customer: String,
    fail: bool,
}

#[emit("order.created")]
async fn create_order(Json(o): Json<NewOrder>) -> Result<Json<Value>, StatusCode> {
    if o.fail {
        return Err(StatusCode::UNPROCESSABLE_ENTITY);
    }
    Ok(Json(json!({"id": 7, "customer": o.customer})))
}

fn reshape(cx: &EmitContext<'_>) -> Option<Value> {
    let raw = std::str::from_utf8(cx.request_body()?).ok()?.to_owned();
    let agent = cx.headers()?.get("user-agent")?.to_str().ok()?.to_owned();
    Some(json!({"order": cx.response(), "raw": raw, "agent": agent}))
}

fn tenant(cx: &EmitContext<'_>) -> Option<String> {
    cx.response()["customer"].as_str().map(str::to_owned)
}

#[emit("order.shipped", transform = reshape, owner = tenant, include_headers, include_request)]
async fn ship_order(Json(o): Json<NewOrder>) -> Json<Value> {
    Json(json!({"id": 8, "customer": o.customer}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_round_trip_to_our_own_receiver_is_once_in_effect() {
    let receiver = serve(Router::new().route("/in", post(receive))).await;
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .worker(Some(
            WorkerOptions::default().poll(Duration::from_millis(20)),
        ))
        .build();
    let created = emitter
        .create_endpoint(NewEndpoint::new(format!("{receiver}/in")).event("order.*"))
        .await
        .unwrap();
    RECEIVER_SECRET.set(created.secret.clone()).unwrap();

    let app = Router::new()
        .route("/orders", post(create_order))
        .layer(Extension(emitter.clone()));
    let api = serve(app).await;
    let http = reqwest::Client::new();

    // A failed request emits nothing.
    let r = http
        .post(format!("{api}/orders"))
        .json(&json!({"customer": "acme", "fail": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // An accepted one has its message committed before the answer.
    let r = http
        .post(format!("{api}/orders"))
        .json(&json!({"customer": "acme", "fail": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], 7);
    let messages = emitter
        .deliveries(Scope::All, &DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "one message, for the 2xx only");
    let message_id = messages[0].message_id.clone();

    wait_for(|| PROCESSED.lock().unwrap().len() == 1).await;
    wait_for_status(&emitter, DeliveryStatus::Delivered).await;

    // A replay reaches the receiver again, and its idempotency answers it without a second
    // run of the handler: once in effect.
    let filter = DeliveryFilter::default().message(&message_id);
    assert_eq!(emitter.replay(Scope::All, &filter).await.unwrap(), 1);
    wait_for_status(&emitter, DeliveryStatus::Delivered).await;
    let attempts = emitter
        .attempts(Scope::All, None, Some(&message_id), 10)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a.status_code == Some(200)));
    assert_eq!(*PROCESSED.lock().unwrap(), [message_id]);
    emitter.shutdown().await;
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting");
}

async fn wait_for_status(emitter: &Emitter, status: DeliveryStatus) {
    for _ in 0..500 {
        let all = emitter
            .deliveries(Scope::All, &DeliveryFilter::default())
            .await
            .unwrap();
        if all.iter().all(|d| d.status == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deliveries never reached {status:?}");
}

#[tokio::test]
async fn transform_owner_headers_and_request_reach_the_message() {
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = manual(&clock).await;
    let (rx, url) = Scripted::start(vec![]).await;
    emitter
        .create_endpoint(
            NewEndpoint::new(&url)
                .owner("acme")
                .format(Format::Fastapihooks),
        )
        .await
        .unwrap();
    // Another tenant's endpoint hears nothing of acme's events.
    let (other, other_url) = Scripted::start(vec![]).await;
    emitter
        .create_endpoint(NewEndpoint::new(&other_url).owner("globex"))
        .await
        .unwrap();
    let app = Router::new()
        .route("/ship", post(ship_order))
        .layer(Extension(emitter.clone()));
    let api = serve(app).await;
    let body = r#"{"customer": "acme", "fail": false}"#;
    let r = reqwest::Client::new()
        .post(format!("{api}/ship"))
        .header("content-type", "application/json")
        .header("user-agent", "tests/1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(step(&emitter).run_once(64).await.unwrap(), 1);
    let seen = rx.seen.lock().unwrap().clone();
    let payload: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(payload["raw"], body, "the exact request bytes");
    assert_eq!(payload["agent"], "tests/1");
    assert_eq!(payload["order"]["id"], 8);
    assert_eq!(seen[0].0["x-fastapihooks-event"], "order.shipped");
    assert_eq!(other.count(), 0);
}

#[tokio::test]
async fn an_emit_without_an_emitter_refuses_before_the_handler_runs() {
    static RAN: Mutex<bool> = Mutex::new(false);
    #[emit("thing.done")]
    async fn handler() -> Json<Value> {
        *RAN.lock().unwrap() = true;
        Json(json!({}))
    }
    let api = serve(Router::new().route("/x", post(handler))).await;
    let r = reqwest::Client::new()
        .post(format!("{api}/x"))
        .send()
        .await
        .unwrap();
    // No Extension and nothing installed in this test binary.
    if Emitter::installed().is_none() {
        assert_eq!(r.status(), 500);
        assert!(!*RAN.lock().unwrap());
    }
}

/// An application with an `#[emit]` route and no emitter does not start: `init` says which
/// handler, where, and how to give it one, in words (`main`'s `?` prints the error's text, not
/// a struct); with the emitter installed it starts, and prints the hint that no `tracing`
/// subscriber is installed.
#[test]
fn init_refuses_an_emit_route_without_an_emitter() {
    let run = |with: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_unemitted"));
        if let Some(var) = with {
            cmd.env(var, "1");
        }
        let out = cmd.output().expect("run unemitted");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stdout, stderr) = run(None);
    assert!(!status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("started"), "{stdout}");
    assert!(
        stderr.starts_with(
            "Error: 1 #[emit] route(s) may have no emitter: call `emitter.install()` before init"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("handler `create_order` (tests/bin/unemitted.rs:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("NoEmitter("),
        "the text, not the Debug of a struct: {stderr}"
    );

    for with in ["INSTALL", "EXTENSION"] {
        let (status, stdout, stderr) = run(Some(with));
        assert!(status.success(), "{with}: {stdout}{stderr}");
        assert_eq!(stdout.trim(), "started");
    }
    let (_, _, stderr) = run(Some("INSTALL"));
    assert_eq!(
        stderr.matches("no tracing subscriber is installed").count(),
        1,
        "one hint: {stderr}"
    );
}

#[tokio::test]
async fn a_failed_commit_answers_500_and_a_non_json_answer_too() {
    let dir = tempdir("commit");
    let path = dir.join("o.db");
    let emitter = Emitter::builder(Outbox::open(path.to_str().unwrap()).await.unwrap())
        .worker(None)
        .build();
    async fn ok() -> Json<Value> {
        Json(json!({"ok": true}))
    }
    async fn text() -> &'static str {
        "not json"
    }
    let app = Router::new()
        .route(
            "/ok",
            post(ok).layer(EmitLayer::new("a.b").emitter(emitter.clone())),
        )
        .route(
            "/text",
            post(text).layer(EmitLayer::new("a.b").emitter(emitter.clone())),
        );
    let api = serve(app).await;
    let http = reqwest::Client::new();
    let r = http.post(format!("{api}/text")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        http.post(format!("{api}/ok"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Break the outbox under the emitter: the next commit fails, and so does the request.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE outworx_messages")
        .execute(&pool)
        .await
        .unwrap();
    let r = http.post(format!("{api}/ok")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "the webhook message could not be committed");
    std::fs::remove_dir_all(dir).ok();
}

/// An outbox that hangs (here: another connection holds SQLite's write lock, which the
/// outbox would wait 10 s for) costs an emitting request the commit timeout, then 500: never
/// more. Once the lock goes, the next request commits.
#[tokio::test]
async fn a_hung_outbox_answers_500_at_the_commit_timeout() {
    let dir = tempdir("hung");
    let path = dir.join("o.db");
    let emitter = Emitter::builder(Outbox::open(path.to_str().unwrap()).await.unwrap())
        .worker(None)
        .commit_timeout(Some(Duration::from_millis(300)))
        .build();
    // The same outbox with the default timeout, for the request after the lock.
    let patient = Emitter::builder(Outbox::open(path.to_str().unwrap()).await.unwrap())
        .worker(None)
        .build();
    async fn ok() -> Json<Value> {
        Json(json!({"ok": true}))
    }
    let app = Router::new()
        .route(
            "/ok",
            post(ok).layer(EmitLayer::new("a.b").emitter(emitter.clone())),
        )
        .route(
            "/patient",
            post(ok).layer(EmitLayer::new("a.b").emitter(patient.clone())),
        );
    let api = serve(app).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut lock = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = http.post(format!("{api}/ok")).send().await.unwrap();
    assert_eq!(
        r.status(),
        500,
        "answered, not held until the client gives up"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the 500 is the timeout's, not an error at once"
    );
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    // Once the lock is gone, a request commits its message.
    const COUNT: &str = "SELECT COUNT(*) FROM outworx_messages";
    let before: i64 = sqlx::query_scalar(COUNT)
        .fetch_one(&mut lock)
        .await
        .unwrap();
    let r = http.post(format!("{api}/patient")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after: i64 = sqlx::query_scalar(COUNT)
        .fetch_one(&mut lock)
        .await
        .unwrap();
    assert_eq!(after, before + 1);
    std::fs::remove_dir_all(dir).ok();
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outworx-send-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- the schedule, on a manual clock ----

#[tokio::test]
async fn failures_follow_the_schedule_then_dead_then_replay() {
    let clock = ManualClock::new(1_700_000_000_000);
    let dead = Arc::new(Mutex::new(Vec::new()));
    let d2 = Arc::clone(&dead);
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .clock(clock.clone())
        .worker(None)
        .on_dead(move |d| d2.lock().unwrap().push(d.clone()))
        .build();
    // 500, 429 with Retry-After: 3600 (longer than the 5 min step), then 500s.
    let script = vec![
        (500, None),
        (429, Some("3600")),
        (500, None),
        (500, None),
        (500, None),
        (500, None),
        (500, None),
        (500, None),
    ];
    let (rx, url) = Scripted::start(script).await;
    emitter
        .create_endpoint(NewEndpoint::new(&url))
        .await
        .unwrap();
    emitter
        .send("order.created", &json!({"n": 1}))
        .await
        .unwrap();
    let worker = step(&emitter);

    let schedule = RetrySchedule::default();
    let mut expected_steps = schedule.delays().to_vec();
    expected_steps[1] = Duration::from_secs(3600); // Retry-After wins over 5 min
    for (i, base) in expected_steps.iter().enumerate() {
        let before = clock_now(&clock);
        assert_eq!(worker.run_once(64).await.unwrap(), 1, "attempt {}", i + 1);
        let d = only_delivery(&emitter).await;
        assert_eq!(d.status, DeliveryStatus::Pending, "after attempt {}", i + 1);
        assert_eq!(d.attempts, u32::try_from(i + 1).unwrap());
        let wait = d.next_attempt_at - before;
        let (lo, hi) = if i == 1 {
            (3_600_000, 3_600_000 * 12 / 10) // Retry-After is a floor; jitter may add
        } else {
            let ms = i64::try_from(base.as_millis()).unwrap();
            (ms * 8 / 10, ms * 12 / 10)
        };
        assert!(
            (lo..=hi).contains(&wait),
            "attempt {}: waits {wait} ms, not in {lo}..={hi}",
            i + 1
        );
        // Not due a millisecond early.
        clock.set(d.next_attempt_at - 1);
        assert_eq!(worker.run_once(64).await.unwrap(), 0);
        clock.set(d.next_attempt_at);
    }
    // The eighth attempt fails: dead, and the hook runs once.
    assert_eq!(worker.run_once(64).await.unwrap(), 1);
    let d = only_delivery(&emitter).await;
    assert_eq!(d.status, DeliveryStatus::Dead);
    assert_eq!(d.attempts, 8);
    assert_eq!(rx.count(), 8);
    assert_eq!(dead.lock().unwrap().len(), 1);
    assert_eq!(dead.lock().unwrap()[0].last_status, Some(500));
    let attempts = emitter.attempts(Scope::All, None, None, 100).await.unwrap();
    assert_eq!(attempts.len(), 8);
    assert!(
        attempts.iter().all(|a| a.response.len() == 4096),
        "4 KiB kept of 10 KB"
    );

    // Replay: a new round, delivered now (the script is spent: 200).
    let n = emitter
        .replay(
            Scope::All,
            &DeliveryFilter::default().status(DeliveryStatus::Dead),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(worker.run_once(64).await.unwrap(), 1);
    assert_eq!(
        only_delivery(&emitter).await.status,
        DeliveryStatus::Delivered
    );
    assert_eq!(rx.count(), 9);
}

fn clock_now(c: &ManualClock) -> i64 {
    use outworx_hooks::queue::Clock;
    c.now_ms()
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_long_failure_does_too() {
    let clock = ManualClock::new(1_700_000_000_000);
    let disabled = Arc::new(Mutex::new(Vec::new()));
    let d2 = Arc::clone(&disabled);
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .clock(clock.clone())
        .worker(None)
        .schedule(RetrySchedule::new([Duration::from_secs(3600); 200]))
        .on_disabled(move |e| d2.lock().unwrap().push(e.clone()))
        .build();
    let (_gone, gone_url) = Scripted::start(vec![(410, None)]).await;
    let gone = emitter
        .create_endpoint(NewEndpoint::new(&gone_url))
        .await
        .unwrap();
    emitter.send("a.b", &json!({})).await.unwrap();
    step(&emitter).run_once(64).await.unwrap();
    let ep = emitter
        .endpoint(Scope::All, &gone.endpoint.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!ep.enabled);
    assert!(ep.disabled_reason.unwrap().contains("410"));
    assert_eq!(only_delivery(&emitter).await.status, DeliveryStatus::Dead);
    // An unrelated edit does not undo the worker's disabling.
    let update: outworx_hooks::send::EndpointUpdate =
        serde_json::from_value(json!({"metadata": {"team": "billing"}})).unwrap();
    let ep = emitter
        .update_endpoint(Scope::All, &gone.endpoint.id, update)
        .await
        .unwrap();
    assert!(!ep.enabled, "a metadata change re-enabled a 410 endpoint");
    assert_eq!(ep.metadata["team"], "billing");
    // A replay needs a target: an empty filter would resend everything ever delivered.
    assert!(
        emitter
            .replay(Scope::All, &DeliveryFilter::default())
            .await
            .is_err()
    );
    // A disabled endpoint gets no new deliveries.
    emitter
        .delete_endpoint(Scope::All, &gone.endpoint.id)
        .await
        .unwrap();

    // An endpoint failing for 5 days straight is disabled, with an event.
    let (_down, down_url) = Scripted::start(vec![(503, None); 1000]).await;
    let down = emitter
        .create_endpoint(NewEndpoint::new(&down_url))
        .await
        .unwrap();
    emitter.send("a.c", &json!({})).await.unwrap();
    let worker = step(&emitter);
    for _ in 0..200 {
        if worker.run_once(64).await.unwrap() == 0 {
            clock.advance(Duration::from_secs(4 * 3600));
            continue;
        }
        let ep = emitter
            .endpoint(Scope::All, &down.endpoint.id)
            .await
            .unwrap()
            .unwrap();
        if !ep.enabled {
            let since = ep.failing_since.unwrap();
            assert!(clock_now(&clock) - since >= 5 * 24 * 3_600_000);
            assert_eq!(disabled.lock().unwrap().len(), 2);
            return;
        }
    }
    panic!("the failing endpoint was never disabled");
}

// ---- security ----

#[tokio::test]
async fn ssrf_targets_are_refused_by_address_not_by_name() {
    let strict = Emitter::builder(Outbox::memory().await.unwrap())
        .worker(None)
        .build();
    for url in [
        "https://127.0.0.1/h",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/h",
        "https://[::1]/h",
        "http://example.com/h",
    ] {
        let e = strict
            .create_endpoint(NewEndpoint::new(url))
            .await
            .unwrap_err();
        assert!(e.is_client_error(), "{url}: {e}");
    }
    // A name is accepted when stored, and refused when it resolves to loopback.
    let (rx, url) = Scripted::start(vec![]).await;
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    strict
        .create_endpoint(NewEndpoint::new(format!("https://localhost:{port}/hook")))
        .await
        .unwrap();
    // And a name that does not resolve at all: its tenant reads the same error as for the
    // loopback one, so which internal names exist cannot be probed through the attempts.
    strict
        .create_endpoint(NewEndpoint::new("https://no-such-host.invalid/hook"))
        .await
        .unwrap();
    strict.send("a.b", &json!({})).await.unwrap();
    step(&strict).run_once(64).await.unwrap();
    let attempts = strict.attempts(Scope::All, None, None, 10).await.unwrap();
    assert_eq!(attempts.len(), 2);
    let error_of = |host: &str| {
        let a = attempts
            .iter()
            .find(|a| a.error.as_deref().is_some_and(|e| e.contains(host)))
            .unwrap_or_else(|| panic!("no attempt to {host}: {attempts:?}"));
        a.error.as_deref().unwrap().replace(host, "HOST")
    };
    let loopback_error = error_of("localhost");
    assert_eq!(loopback_error, error_of("no-such-host.invalid"));
    assert!(
        loopback_error.contains("did not resolve to an address this sender delivers to")
            && !loopback_error.contains("loopback"),
        "{loopback_error}"
    );
    assert_eq!(rx.count(), 0, "nothing reached the loopback receiver");
    // The allow-list opens exactly its nets.
    let open = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .worker(None)
        .build();
    open.create_endpoint(NewEndpoint::new(&url)).await.unwrap();
    assert!(
        open.create_endpoint(NewEndpoint::new("http://10.0.0.1/h"))
            .await
            .is_err()
    );
    open.send("a.b", &json!({})).await.unwrap();
    step(&open).run_once(64).await.unwrap();
    assert_eq!(rx.count(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (rx, target) = Scripted::start(vec![]).await;
    let target2 = target.clone();
    let redirector = serve(Router::new().route(
        "/r",
        post(move || {
            let t = target2.clone();
            async move { axum::response::Redirect::temporary(&t) }
        }),
    ))
    .await;
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = manual(&clock).await;
    emitter
        .create_endpoint(NewEndpoint::new(format!("{redirector}/r")))
        .await
        .unwrap();
    emitter.send("a.b", &json!({})).await.unwrap();
    step(&emitter).run_once(64).await.unwrap();
    assert_eq!(rx.count(), 0);
    let d = only_delivery(&emitter).await;
    assert_eq!(d.last_status, Some(307));
    assert_eq!(d.status, DeliveryStatus::Pending);
}

#[tokio::test]
async fn a_receiver_with_only_the_old_secret_accepts_during_the_grace() {
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .clock(clock.clone())
        .rotation_grace(Duration::from_secs(3600))
        .worker(None)
        .build();
    let (rx, url) = Scripted::start(vec![]).await;
    let created = emitter
        .create_endpoint(NewEndpoint::new(&url))
        .await
        .unwrap();
    let old = created.secret.clone();
    let rotated = emitter
        .rotate_secret(Scope::All, &created.endpoint.id)
        .await
        .unwrap();
    assert_ne!(rotated.secret, old);
    let verify = |i: usize, secret: &str| {
        let (headers, body) = rx.seen.lock().unwrap()[i].clone();
        let now = headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse::<i64>()
            .unwrap();
        outworx_hooks::security::verify_at(
            "standard",
            &headers,
            body.as_bytes(),
            &[secret],
            std::time::Duration::from_secs(300),
            now,
        )
        .valid
    };
    emitter.send("a.b", &json!({"n": 1})).await.unwrap();
    step(&emitter).run_once(64).await.unwrap();
    assert!(
        verify(0, &old),
        "the old secret still verifies during the grace"
    );
    assert!(verify(0, &rotated.secret));
    clock.advance(Duration::from_secs(3601));
    emitter.send("a.b", &json!({"n": 2})).await.unwrap();
    step(&emitter).run_once(64).await.unwrap();
    assert!(
        !verify(1, &old),
        "after the grace, only the new secret signs"
    );
    assert!(verify(1, &rotated.secret));
}

#[tokio::test]
async fn ed25519_endpoints_sign_v1a_and_answer_the_public_key() {
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = manual(&clock).await;
    let (rx, url) = Scripted::start(vec![]).await;
    let key = "whsk_".to_owned() + &"A".repeat(43) + "=";
    let created = emitter
        .create_endpoint(NewEndpoint::new(&url).secret(key.clone()))
        .await
        .unwrap();
    assert!(
        created.secret.starts_with("whpk_"),
        "the receiver gets the public key"
    );
    assert_eq!(
        created.endpoint.public_key.as_deref(),
        Some(created.secret.as_str())
    );
    emitter.send("a.b", &json!({})).await.unwrap();
    step(&emitter).run_once(64).await.unwrap();
    let (headers, body) = rx.seen.lock().unwrap()[0].clone();
    assert!(
        headers["webhook-signature"]
            .to_str()
            .unwrap()
            .starts_with("v1a,")
    );
    let now = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let r = outworx_hooks::security::verify_at(
        "standard",
        &headers,
        body.as_bytes(),
        &[created.secret.as_str()],
        std::time::Duration::from_secs(300),
        now,
    );
    assert!(r.valid, "{r:?}");
    // The private key never leaves: not in Debug, not in the listing.
    let listed = serde_json::to_string(&emitter.endpoints(Scope::All).await.unwrap()).unwrap();
    assert!(!listed.contains(&key[5..]));
    assert!(!format!("{created:?} {emitter:?}").contains(&key[5..]));
    // An HMAC secret is not in Debug either.
    let hmac = emitter
        .create_endpoint(NewEndpoint::new(&url))
        .await
        .unwrap();
    assert!(!format!("{hmac:?}").contains(&hmac.secret));
}

// ---- the transactional outbox ----

#[tokio::test]
async fn send_in_commits_or_rolls_back_with_the_callers_transaction() {
    let dir = tempdir("tx");
    let url = format!("sqlite://{}?mode=rwc", dir.join("app.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    let emitter = Emitter::builder(Outbox::sqlite(pool.clone()).await.unwrap())
        .policy(loopback())
        .worker(None)
        .build();
    let (rx, hook) = Scripted::start(vec![]).await;
    emitter
        .create_endpoint(NewEndpoint::new(&hook))
        .await
        .unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id, status) VALUES (1, 'new')")
        .execute(&mut *tx)
        .await
        .unwrap();
    emitter
        .send_in(&mut tx, "order.created", &json!({"id": 1}))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id, status) VALUES (2, 'new')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let sent = emitter
        .send_in(&mut tx, "order.created", &json!({"id": 2}))
        .await
        .unwrap();
    assert_eq!(sent.deliveries, 1);
    tx.commit().await.unwrap();

    step(&emitter).run_once(64).await.unwrap();
    let seen = rx.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "only the committed message");
    let body: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(body["data"]["id"], 2);
    pool.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_idempotency_key_makes_a_repeated_send_one_message() {
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = manual(&clock).await;
    let (rx, url) = Scripted::start(vec![]).await;
    emitter
        .create_endpoint(NewEndpoint::new(&url))
        .await
        .unwrap();
    let m = || {
        NewMessage::new("order.created", &json!({"id": 1}))
            .unwrap()
            .idempotency_key("k-1")
    };
    let first = emitter.send_message(m()).await.unwrap();
    let again = emitter.send_message(m()).await.unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.message_id, again.message_id);
    // The same key for another owner is another message.
    let other = emitter.send_message(m().owner("globex")).await.unwrap();
    assert!(!other.duplicate);
    step(&emitter).run_once(64).await.unwrap();
    assert_eq!(rx.count(), 1);
}

// ---- bad input ----

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_loses_nothing() {
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .clock(clock.clone())
        .max_payload(1024)
        .worker(None)
        .build();
    let (_rx, url) = Scripted::start(vec![]).await;
    emitter
        .create_endpoint(NewEndpoint::new(&url))
        .await
        .unwrap();
    let big = json!({"x": "y".repeat(2000)});
    assert!(matches!(
        emitter.send("a.b", &big).await,
        Err(SendError::TooLarge { limit: 1024, .. })
    ));
    for bad in ["", "a b", "<script>", &"x".repeat(200)] {
        let e = emitter.send(bad, &json!({})).await.unwrap_err();
        assert!(e.to_string().contains("event_type"), "{e}");
    }
    let e = emitter
        .send_message(NewMessage::json("a.b", "{not json"))
        .await
        .unwrap_err();
    assert!(e.is_client_error());
    for (ep, field) in [
        (NewEndpoint::new(&url).event("or*der"), "events"),
        (NewEndpoint::new(&url).secret("short"), "secret"),
        (
            NewEndpoint::new(&url).secret("whsec_not base64!!"),
            "secret",
        ),
        (
            NewEndpoint::new(&url).auth(outworx_hooks::send::Auth::Header {
                name: "Content-Type".into(),
                value: "x".into(),
            }),
            "auth",
        ),
        (NewEndpoint::new("https://u:p@example.com/"), "url"),
    ] {
        let e = emitter.create_endpoint(ep).await.unwrap_err();
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    assert!(
        "header:Content-Type:x"
            .parse::<outworx_hooks::send::Auth>()
            .is_err()
    );
    assert!(
        "bearer:a\r\nb"
            .parse::<outworx_hooks::send::Auth>()
            .is_err()
    );
    // Nothing of the above was stored; a good send still works.
    assert!(
        emitter
            .deliveries(Scope::All, &DeliveryFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(emitter.send("a.b", &json!({})).await.unwrap().deliveries, 1);
}

#[tokio::test]
async fn the_management_router_keeps_tenants_apart() {
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = manual(&clock).await;
    let (rx, hook) = Scripted::start(vec![]).await;
    let app = Router::new().nest(
        "/manage",
        management_router(emitter.clone(), |parts| {
            parts
                .headers
                .get("x-customer")?
                .to_str()
                .ok()
                .map(str::to_owned)
        }),
    );
    let base = serve(app).await;
    let http = reqwest::Client::new();
    let as_ = |who: &'static str| {
        let http = http.clone();
        let base = base.clone();
        move |m: reqwest::Method, path: &str| {
            http.request(m, format!("{base}/manage{path}"))
                .header("x-customer", who)
        }
    };
    let acme = as_("acme");
    let globex = as_("globex");

    // No owner: 401. Bad JSON: 422, nothing stored.
    assert_eq!(
        http.get(format!("{base}/manage/endpoints"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = acme(reqwest::Method::POST, "/endpoints")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = acme(reqwest::Method::POST, "/endpoints")
        .json(&json!({"url": hook, "owner": "globex", "evil": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "unknown fields are refused");

    let r = acme(reqwest::Method::POST, "/endpoints")
        .json(&json!({"url": hook, "events": ["order.*"], "auth": {"type": "bearer", "token": "t0p"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["endpoint"]["owner"], "acme");

    // The secret and the token are never answered again.
    let listed = acme(reqwest::Method::GET, "/endpoints")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains(&id) && !listed.contains(&secret) && !listed.contains("t0p"));
    assert!(listed.contains("\"auth\":\"bearer\""));

    // Another tenant sees nothing and can change nothing.
    let theirs = globex(reqwest::Method::GET, "/endpoints")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    for (m, path) in [
        (reqwest::Method::GET, format!("/endpoints/{id}")),
        (reqwest::Method::PATCH, format!("/endpoints/{id}")),
        (reqwest::Method::DELETE, format!("/endpoints/{id}")),
        (reqwest::Method::POST, format!("/endpoints/{id}/rotate")),
        (reqwest::Method::POST, format!("/endpoints/{id}/test")),
        (reqwest::Method::GET, format!("/endpoints/{id}/attempts")),
        (reqwest::Method::POST, format!("/endpoints/{id}/replay")),
    ] {
        let r = globex(m.clone(), &path)
            .json(&json!({"enabled": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{m} {path}");
    }

    // Test message, attempts, disable, rotate, delete.
    let r = acme(reqwest::Method::POST, &format!("/endpoints/{id}/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    step(&emitter).run_once(64).await.unwrap();
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.seen.lock().unwrap()[0].0["authorization"], "Bearer t0p");
    let attempts: Value = acme(reqwest::Method::GET, &format!("/endpoints/{id}/attempts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(attempts[0]["status_code"], 200);
    let messages: Value = globex(reqwest::Method::GET, "/messages")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(messages, json!([]));
    let r = acme(reqwest::Method::PATCH, &format!("/endpoints/{id}"))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["enabled"], false);
    // The owner lifts its own disable; an operator's disable only an operator lifts.
    let enable = |who: &dyn Fn(reqwest::Method, &str) -> reqwest::RequestBuilder| {
        who(reqwest::Method::PATCH, &format!("/endpoints/{id}"))
            .json(&json!({"enabled": true}))
            .send()
    };
    let r = enable(&acme).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["enabled"], true);
    emitter.set_enabled(Scope::All, &id, false).await.unwrap();
    let r = enable(&acme).await.unwrap();
    assert_eq!(r.status(), 403);
    let why = r.json::<Value>().await.unwrap();
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("an operator disabled"),
        "{why}"
    );
    // Disabling it again first does not make it the owner's own disable.
    let r = acme(reqwest::Method::PATCH, &format!("/endpoints/{id}"))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(enable(&acme).await.unwrap().status(), 403);
    let still = emitter.endpoint(Scope::All, &id).await.unwrap().unwrap();
    assert!(!still.enabled);
    assert_eq!(
        still.disabled_reason.as_deref(),
        Some("disabled by an operator")
    );
    // Its other fields the owner may still change; the operator enables it.
    let r = acme(reqwest::Method::PATCH, &format!("/endpoints/{id}"))
        .json(&json!({"events": ["order.*", "invoice.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        emitter
            .set_enabled(Scope::All, &id, true)
            .await
            .unwrap()
            .enabled
    );
    let r = acme(reqwest::Method::POST, &format!("/endpoints/{id}/rotate"))
        .send()
        .await
        .unwrap();
    let rotated: Value = r.json().await.unwrap();
    assert_ne!(rotated["secret"], secret.as_str());
    let r = acme(reqwest::Method::DELETE, &format!("/endpoints/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let _: HashMap<String, Value> = HashMap::new();
}

#[tokio::test]
async fn every_attempt_is_reported_as_an_outbound_event_without_its_url() {
    let mut events = outworx_hooks::subscribe();
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = manual(&clock).await;
    let (_rx, url) = Scripted::start(vec![(500, None)]).await;
    emitter
        .create_endpoint(NewEndpoint::new(format!("{url}?token=s3cr3t")))
        .await
        .unwrap();
    let sent = emitter.send("order.created", &json!({})).await.unwrap();
    step(&emitter).run_once(64).await.unwrap();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if e.meta("message_id") != Some(&Value::from(sent.message_id.clone())) {
            continue;
        }
        assert_eq!(e.direction, Some(outworx_hooks::event::Direction::Outbound));
        assert_eq!(e.provider, "standard");
        assert_eq!(e.status_code, 500);
        assert!(!e.success);
        assert_eq!(e.meta("delivery_status"), Some(&Value::from("pending")));
        let text = serde_json::to_string(&*e).unwrap();
        assert!(
            !text.contains("s3cr3t") && !text.contains("/hook"),
            "{text}"
        );
        assert!(text.contains(r#""direction":"outbound""#));
        break;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoints_backlog_does_not_hold_up_the_others() {
    let (slow, slow_url) = Scripted::start(vec![]).await;
    // The slow receiver: 100 ms per request.
    let slow_app = Router::new().route(
        "/hook",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            "ok"
        }),
    );
    let slow_url2 = serve(slow_app).await + "/hook";
    let _ = (slow, slow_url);
    let (fast, fast_url) = Scripted::start(vec![]).await;
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(loopback())
        .worker(None)
        .build();
    let backlog = emitter
        .create_endpoint(NewEndpoint::new(&slow_url2).event("bulk.*"))
        .await
        .unwrap();
    emitter
        .create_endpoint(NewEndpoint::new(&fast_url).event("urgent.*"))
        .await
        .unwrap();
    for i in 0..60 {
        emitter.send("bulk.item", &json!({"i": i})).await.unwrap();
    }
    emitter.send("urgent.alert", &json!({})).await.unwrap();
    let running = Emitter::builder(emitter.outbox().clone())
        .policy(loopback())
        .worker(Some(
            WorkerOptions::default()
                .concurrency(8)
                .per_endpoint(2)
                .poll(Duration::from_millis(20)),
        ))
        .build();
    // 60 at 2 × 100 ms at a time is 3 s of backlog; the urgent one is not behind it.
    wait_for(|| fast.count() == 1).await;
    let backlog_done = emitter
        .deliveries(
            Scope::All,
            &DeliveryFilter::default()
                .endpoint(&backlog.endpoint.id)
                .status(DeliveryStatus::Delivered),
        )
        .await
        .unwrap()
        .len();
    assert!(
        backlog_done < 30,
        "the urgent message waited for {backlog_done} of the backlog"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn an_owner_has_at_most_its_cap_of_endpoints() {
    let clock = ManualClock::new(1_700_000_000_000);
    let emitter = manual(&clock).await;
    let cap = outworx_hooks::send::limits::MAX_ENDPOINTS_PER_OWNER;
    for i in 0..cap {
        emitter
            .create_endpoint(NewEndpoint::new(format!("http://127.0.0.1:9/{i}")).owner("acme"))
            .await
            .unwrap();
    }
    let e = emitter
        .create_endpoint(NewEndpoint::new("http://127.0.0.1:9/x").owner("acme"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at most 100"), "{e}");
    // Another owner is not affected.
    emitter
        .create_endpoint(NewEndpoint::new("http://127.0.0.1:9/y").owner("globex"))
        .await
        .unwrap();
}

/// Concurrent sends share commits, and each is answered for itself: 20 idempotency keys sent
/// three times each, all at once, and 20 more without a key, make 40 messages with one
/// delivery each; the copies of a key answer its first message's id, exactly one as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_share_commits_and_each_is_answered_for_itself() {
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
        .worker(None)
        .build();
    emitter
        .create_endpoint(NewEndpoint::new("http://127.0.0.1:9/in").event("order.*"))
        .await
        .unwrap();
    let sends: Vec<_> = (0..80)
        .map(|n| {
            let emitter = emitter.clone();
            tokio::spawn(async move {
                let mut m = NewMessage::new("order.created", &json!({"n": n})).unwrap();
                let key = (n < 60).then(|| format!("key-{}", n % 20));
                if let Some(k) = &key {
                    m = m.idempotency_key(k.clone());
                }
                (key, emitter.send_message(m).await.unwrap())
            })
        })
        .collect();
    let mut by_key: HashMap<String, Vec<outworx_hooks::send::Sent>> = HashMap::new();
    let mut unkeyed = 0;
    for s in sends {
        match s.await.unwrap() {
            (Some(k), sent) => by_key.entry(k).or_default().push(sent),
            (None, sent) => {
                assert!(!sent.duplicate && sent.deliveries == 1, "{sent:?}");
                unkeyed += 1;
            }
        }
    }
    assert_eq!((by_key.len(), unkeyed), (20, 20));
    for (key, sent) in &by_key {
        assert!(
            sent.iter().all(|s| s.message_id == sent[0].message_id),
            "{key}: {sent:?}"
        );
        let new: Vec<_> = sent.iter().filter(|s| !s.duplicate).collect();
        assert_eq!(new.len(), 1, "{key}: {sent:?}");
        assert_eq!(new[0].deliveries, 1);
    }
    let pending = emitter
        .deliveries(Scope::All, &DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(pending.len(), 40);
}

/// 300 concurrent creates for one owner make exactly the cap (100), on SQLite and on
/// PostgreSQL, and every endpoint created receives the owner's next message (the cap was a
/// count, then a separate insert: all 300 succeeded, and those past the 100th never received).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_make_at_most_the_cap_and_each_receives() {
    let dir = tempdir("cap");
    let pg = outworx_test_support::postgres::Postgres::start();
    for url in [dir.join("outbox.db").to_str().unwrap().to_owned(), pg.url()] {
        let emitter = Emitter::builder(Outbox::open(&url).await.unwrap())
            .policy(loopback())
            .worker(None)
            .build();
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let emitter = emitter.clone();
                tokio::spawn(async move {
                    emitter
                        .create_endpoint(
                            NewEndpoint::new(format!("https://example.com/hooks/{i}"))
                                .owner("acme"),
                        )
                        .await
                })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => created += 1,
                Err(e) => assert!(e.to_string().contains("at most 100 endpoints"), "{e}"),
            }
        }
        let url_kind = url.split(':').next().unwrap_or_default().to_owned();
        assert_eq!(created, 100, "{url_kind}");
        let stored = emitter.endpoints(Scope::Owner("acme")).await.unwrap();
        assert_eq!(stored.len(), 100, "{url_kind}");
        let sent = emitter
            .send_message(NewMessage::new("a.b", &json!({})).unwrap().owner("acme"))
            .await
            .unwrap();
        assert_eq!(
            sent.deliveries, 100,
            "{url_kind}: every endpoint created receives"
        );
    }
}
