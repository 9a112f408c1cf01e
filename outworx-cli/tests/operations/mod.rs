//! The dashboard's sending and inbox views in a real headless Chromium, against a real
//! `outworx serve` process (this crate's binary) with an application's outbox and inbox
//! attached (`--outbox-db`, `--inbox-db`).
//!
//! The application runs in this test process, as an application would: the SDK's `Emitter`
//! and its worker send to real loopback receivers; a `queue` route behind the SDK's layer
//! commits to the inbox, whose worker runs the handler; the SDK's reporter reports every
//! delivery to the server. The browser only sees the server. Each backend runs in its own test
//! binary (`operations_sqlite`, `operations_postgres`): the reporter is one per process.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use outworx_hooks::inbox::{self, Inbox, QueueOptions};
use outworx_hooks::send::{
    DeliveryFilter, DeliveryStatus, Emitter, NewEndpoint, NewMessage, Outbox, Scope, TargetPolicy,
    WorkerOptions,
};
use outworx_hooks::testing::Signer;
use outworx_hooks::{OutworxHooksLayer, Provider, TrackOptions};
use outworx_test_support::browser::Browser;
use outworx_test_support::process::Kill;
use serde_json::{Value, json};

pub(crate) const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";
const OTHER: &str = "ohk_fedcba9876543210fedcba9876543210";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// What the failing endpoint answers, and its tenant's name: markup that must stay text.
/// When the README's screenshots are refreshed (`OUTWORX_DOCS_SCREENSHOTS`), plain words
/// instead: a reader should see a tenant, not a test fixture.
fn xss_response() -> &'static str {
    docs_or(
        "upstream error",
        "<script>window.__pwned=1</script><b>bold</b>",
    )
}
fn xss_owner() -> &'static str {
    docs_or("acme", "<img src=x onerror=\"window.__pwned=2\">")
}
/// The failing deliveries' event type, as the provider sent it.
fn xss_type() -> &'static str {
    docs_or("invoice.failed", "boom.<svg/onload=window.__pwned=3>")
}
fn docs_or(docs: &'static str, hostile: &'static str) -> &'static str {
    if std::env::var_os("OUTWORX_DOCS_SCREENSHOTS").is_some() {
        docs
    } else {
        hostile
    }
}

/// What the loopback receivers got: message id → how many times, per path.
#[derive(Default)]
struct Received {
    counts: Mutex<HashMap<(String, String), u32>>,
    /// The last request to `/ok`: its headers and body, to verify its signature.
    last_ok: Mutex<Option<(HeaderMap, Vec<u8>)>>,
}

impl Received {
    fn count(&self, path: &str, id: &str) -> u32 {
        let counts = self.counts.lock().unwrap();
        counts
            .get(&(path.to_owned(), id.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

async fn receivers(got: Arc<Received>) -> String {
    let record = |path: &'static str, got: Arc<Received>| {
        move |headers: HeaderMap, body: axum::body::Bytes| {
            let got = got.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                *got.counts
                    .lock()
                    .unwrap()
                    .entry((path.to_owned(), id))
                    .or_default() += 1;
                if path == "ok" {
                    *got.last_ok.lock().unwrap() = Some((headers, body.to_vec()));
                    (StatusCode::OK, "thanks".to_owned())
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, xss_response().to_owned())
                }
            }
        }
    };
    let app = Router::new()
        .route("/ok", post(record("ok", got.clone())))
        .route("/bad", post(record("bad", got)));
    serve_app(app).await
}

async fn serve_app(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Whether queued `boom` deliveries fail (until the fix is "deployed").
static BOOM_FAILS: AtomicBool = AtomicBool::new(true);
static RUNS: AtomicU32 = AtomicU32::new(0);

async fn queued(body: String) -> (StatusCode, &'static str) {
    RUNS.fetch_add(1, Ordering::SeqCst);
    if body.contains("boom") && BOOM_FAILS.load(Ordering::SeqCst) {
        (StatusCode::INTERNAL_SERVER_ERROR, "the database is down")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn always_fails() -> (StatusCode, &'static str) {
    (StatusCode::SERVICE_UNAVAILABLE, "try later")
}

/// The application's queue-first routes: `/hooks` (2 attempts, 50 ms apart) and `/later`
/// (its retry an hour away: it stays pending, the oldest).
fn app_routes() -> Router {
    let options = |backoff: Duration| {
        TrackOptions::new(Provider::Standard)
            .secret(SECRET)
            .natural_idempotency_key()
            .queue(QueueOptions {
                attempts: 2,
                backoff,
            })
    };
    Router::new()
        .route(
            "/hooks",
            post(queued).layer(OutworxHooksLayer::new(options(Duration::from_millis(50)))),
        )
        .route(
            "/later",
            post(always_fails).layer(OutworxHooksLayer::new(options(Duration::from_secs(3600)))),
        )
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `outworx serve` with the app's database attached; answers its base URL.
fn start_serve(serve_db: &str, app_db: &str) -> (Kill, String) {
    let mut child = Kill(
        Command::new(env!("CARGO_BIN_EXE_outworx"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db", serve_db])
            .args(["--outbox-db", app_db, "--inbox-db", app_db])
            .args(["--attach-project", &outworx_serve::project_id(KEY)])
            .env("OUTWORX_SERVE_API_KEYS", format!("{KEY},{OTHER}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("outworx serve printed where it listens");
        if let Some(rest) = line.strip_prefix("outworx serve listening on ") {
            let base = rest.split_whitespace().next().unwrap().to_owned();
            return (child, base);
        }
    }
}

async fn api(key: &str, method: reqwest::Method, url: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn ago(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Where screenshots go: `docs/` when `OUTWORX_DOCS_SCREENSHOTS` is set (to refresh the
/// README's), the test's scratch directory otherwise.
fn screenshot_path(name: &str) -> PathBuf {
    if std::env::var_os("OUTWORX_DOCS_SCREENSHOTS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(name)
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
    }
}

/// The whole scenario, with the server's events in `serve_db` and the application's outbox
/// and inbox in `app_db` (SQLite paths or PostgreSQL URLs).
pub(crate) async fn scenario(serve_db: &str, app_db: &str, tag: &str) {
    // --- the application: its databases, receivers, emitter and queue-first routes ---------
    let outbox = Outbox::open(app_db).await.unwrap();
    let inbox = Inbox::open(app_db).await.unwrap();
    let (_serve, base) = start_serve(serve_db, app_db);
    let _reporter = outworx_hooks::init(
        outworx_hooks::Config::new()
            .api_key(KEY)
            .endpoint(format!("{base}/api/ingest")),
    )
    .unwrap();

    let got = Arc::new(Received::default());
    let receiver = receivers(got.clone()).await;
    let emitter = Emitter::builder(outbox)
        .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
        .schedule(outworx_hooks::queue::RetrySchedule::new([Duration::from_millis(50)]).jitter(0.0))
        .worker(Some(
            WorkerOptions::default().poll(Duration::from_millis(50)),
        ))
        .build();
    let ok = emitter
        .create_endpoint(NewEndpoint::new(format!("{receiver}/ok")).owner(xss_owner()))
        .await
        .unwrap();
    let bad = emitter
        .create_endpoint(
            NewEndpoint::new(format!(
                "{receiver}/bad{}",
                docs_or("", "?tag=%3Cb%3Ex%3C/b%3E")
            ))
            .owner(xss_owner()),
        )
        .await
        .unwrap();
    let first_secret = ok.secret.clone();
    let sent = emitter
        .send_message(NewMessage::json("order.paid", r#"{"order":1}"#).owner(xss_owner()))
        .await
        .unwrap();
    let msg = sent.message_id.clone();
    let dead_of = |endpoint: String| {
        let emitter = emitter.clone();
        async move {
            emitter
                .deliveries(
                    Scope::All,
                    &DeliveryFilter::default()
                        .endpoint(endpoint)
                        .status(DeliveryStatus::Dead),
                )
                .await
                .unwrap()
                .len()
        }
    };
    until("the message delivered and dead", || {
        let (got, dead) = (got.clone(), dead_of(bad.endpoint.id.clone()));
        let msg = msg.clone();
        async move { got.count("ok", &msg) == 1 && dead.await == 1 }
    })
    .await;

    inbox.install();
    let app = app_routes();
    let _worker = inbox
        .worker(
            app.clone(),
            inbox::WorkerOptions::default().poll(Duration::from_millis(50)),
        )
        .spawn();
    let app_url = serve_app(app).await;
    let http = reqwest::Client::new();
    let deliver = |path: &'static str, id: &'static str, kind: &'static str| {
        let (http, app_url) = (http.clone(), app_url.clone());
        async move {
            let s = Signer::new(Provider::Standard, SECRET)
                .id(id)
                .sign(json!({"type": kind, "data": {"id": id}}).to_string())
                .unwrap();
            let r = http
                .post(format!("{app_url}{path}"))
                .headers(s.headers.clone())
                .body(s.body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{id} committed to the inbox");
        }
    };
    deliver("/hooks", "msg_fine", "order.shipped").await;
    deliver("/hooks", "msg_boom_1", xss_type()).await;
    deliver("/hooks", "msg_boom_2", xss_type()).await;
    deliver("/later", "msg_later", "order.delayed").await;
    until("the inbox settled: 1 done, 2 dead, 1 retrying", || {
        let inbox = inbox.clone();
        async move {
            let s = inbox.summary(10_000).await.unwrap();
            s.done == 1 && s.dead == 2 && s.retrying == 1
        }
    })
    .await;
    let dead: Vec<_> = inbox
        .deliveries(&inbox::DeliveryFilter::default().status(inbox::DeliveryStatus::Dead))
        .await
        .unwrap();
    let route = dead[0].route.clone();
    let (boom_2, boom_1) = (dead[0].id, dead[1].id);
    // Deliveries spread over the day, for the chart.
    let spread: Vec<Value> = [2 * 3600, 5 * 3600, 5 * 3600 + 60, 20 * 3600]
        .into_iter()
        .map(|s| {
            json!({"provider": "stripe", "status_code": 200, "success": true, "duration_ms": 7,
                "payload_size": 10, "timestamp": ago(s), "processing_status": "completed"})
        })
        .collect();
    let r = http
        .post(format!("{base}/api/ingest"))
        .bearer_auth(KEY)
        .json(&json!({ "events": spread }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The reporter's events of the queued runs have reached the server.
    until("the inbox runs reported", || {
        let base = base.clone();
        async move {
            let (_, body) = api(
                KEY,
                reqwest::Method::GET,
                format!("{base}/api/inbox/{boom_1}"),
            )
            .await;
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            v["events"].as_array().is_some_and(|e| e.len() >= 3)
        }
    })
    .await;

    // --- the browser: signed in, the attached views appear ----------------------------------
    let b = Browser::start().await;
    b.goto(&format!("{base}/dashboard/")).await;
    b.wait(
        "!document.querySelector('#login').hidden",
        "the sign-in form",
    )
    .await;
    b.type_into("#key", KEY).await;
    b.click("#login-form button[type=submit]").await;
    b.wait(
        "!document.querySelector('#tab-sending').hidden && !document.querySelector('#tab-inbox').hidden",
        "the sending and inbox tabs",
    )
    .await;

    // The chart's bars are the API's series, on this backend.
    let total = b.chart_equals_api(&base, KEY).await;
    assert!(total >= 8, "the day's deliveries in the chart: {total}");

    // A received delivery of a queue route links to its inbox row and its attempts.
    let (_, events) = api(
        KEY,
        reqwest::Method::GET,
        format!("{base}/api/events?limit=1000"),
    )
    .await;
    let events: Value = serde_json::from_str(&events).unwrap();
    let row_id = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["metadata"]["inbox_id"] == json!(boom_1))
        .map(|e| e["id"].clone())
        .expect("a reported run of the dead delivery");
    b.wait(
        &format!("document.querySelector('#events tbody tr[data-id=\"{row_id}\"]')"),
        "the queued delivery's row",
    )
    .await;
    b.click(&format!("#events tbody tr[data-id=\"{row_id}\"]"))
        .await;
    b.wait("document.querySelector('#d-inbox')", "the inbox link")
        .await;
    b.click("#d-inbox").await;
    b.wait(
        &format!(
            "document.querySelector('#d-title').textContent.startsWith('Inbox delivery #{boom_1}') \
             && document.querySelectorAll('#d-sections li').length >= 3"
        ),
        "the inbox delivery with its reported attempts",
    )
    .await;
    b.click("#d-close").await;

    // --- sending -----------------------------------------------------------------------------
    b.click("#tab-sending").await;
    b.wait(
        "document.querySelectorAll('#endpoints tbody tr').length === 2 \
         && document.querySelectorAll('#messages tbody tr').length === 2",
        "two endpoints and the message's two deliveries",
    )
    .await;
    let row_of = |id: &str| format!("#endpoints tbody tr[data-id=\"{id}\"]");
    let ok_row = row_of(&ok.endpoint.id);
    let bad_row = row_of(&bad.endpoint.id);
    let text = |css: String| {
        let b = &b;
        async move {
            b.js(&format!(
                "return document.querySelector({}).innerText.replace(/\\s+/g, ' ');",
                json!(css)
            ))
            .await
            .as_str()
            .unwrap()
            .to_owned()
        }
    };
    let ok_text = text(ok_row.clone()).await;
    assert!(
        ok_text.contains("enabled") && ok_text.contains("100%") && ok_text.contains(xss_owner()),
        "{ok_text}"
    );
    let bad_text = text(bad_row.clone()).await;
    assert!(
        bad_text.contains("0%")
            && bad_text.contains("500")
            && bad_text.contains(docs_or("/bad", "%3Cb%3Ex")),
        "{bad_text}"
    );
    assert_eq!(
        b.text(&format!("{bad_row} td:nth-child(7)")).await,
        "1",
        "one dead"
    );
    assert_eq!(b.text("[data-out=\"dead\"]").await, "1");

    // A message's attempts, with the endpoint's answer as text.
    b.click("#messages tbody tr[data-message]").await;
    b.wait(
        "document.querySelector('#detail').open && document.querySelector('#d-replay')",
        "the message's detail",
    )
    .await;
    let detail = b.text("#d-sections").await;
    assert!(
        detail.contains(xss_response()) && detail.contains("#2") && detail.contains("#1"),
        "{detail}"
    );
    // Replay from the browser: the real receiver gets it again.
    b.click("#d-replay").await;
    b.wait(
        "document.querySelector('#d-note').textContent.includes('queued again')",
        "the replay's answer",
    )
    .await;
    until("the receiver got the message again", || {
        let (got, msg) = (got.clone(), msg.clone());
        async move { got.count("ok", &msg) == 2 }
    })
    .await;
    b.click("#d-close").await;
    until("the failing delivery dead again", || {
        let dead = dead_of(bad.endpoint.id.clone());
        async move { dead.await == 1 }
    })
    .await;

    // An endpoint's failures of a window, replayed from its row.
    let before = got.count("bad", &msg);
    b.click("#ep-window option[value=\"\"]").await;
    b.click(&format!("{bad_row} button:first-child")).await;
    b.wait(
        "document.querySelector('#out-note').textContent === '1 queued again'",
        "the endpoint's replay",
    )
    .await;
    until("the failing endpoint tried again", || {
        let (got, msg) = (got.clone(), msg.clone());
        async move { got.count("bad", &msg) > before }
    })
    .await;

    // Disable and enable.
    let button = |label: &str| {
        format!(
            "[...document.querySelectorAll('{ok_row} button')].find(b => b.textContent === '{label}')"
        )
    };
    b.js(&format!("{}.click(); return 1;", button("Disable")))
        .await;
    b.wait(
        &format!(
            "document.querySelector({}).innerText.includes('disabled')",
            json!(ok_row)
        ),
        "the endpoint disabled",
    )
    .await;
    assert!(
        !emitter
            .endpoint(Scope::All, &ok.endpoint.id)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    b.js(&format!("{}.click(); return 1;", button("Enable")))
        .await;
    b.wait(
        &format!(
            "document.querySelector({}).innerText.includes('enabled')",
            json!(ok_row)
        ),
        "the endpoint enabled",
    )
    .await;

    // Rotate (a second click confirms): the new secret is shown once, then gone from the page
    // and every answer.
    b.js(&format!("{}.click(); return 1;", button("Rotate secret")))
        .await;
    b.js(&format!(
        "{}.click(); return 1;",
        button("Click again to confirm")
    ))
    .await;
    b.wait(
        "document.querySelector('#secret').open && document.querySelector('#s-value').textContent.startsWith('whsec_')",
        "the new secret",
    )
    .await;
    let secret = b.text("#s-value").await;
    assert_ne!(secret, first_secret);
    b.click("#s-done").await;
    b.wait(
        "!document.querySelector('#secret').open && document.querySelector('#s-value').textContent === ''",
        "the secret dialog closed and emptied",
    )
    .await;
    let page = b.js("return document.documentElement.outerHTML;").await;
    assert!(!page.as_str().unwrap().contains(&secret));
    // The new secret signs: the next message verifies with it.
    let next = emitter
        .send_message(NewMessage::json("order.refunded", r#"{"order":2}"#).owner(xss_owner()))
        .await
        .unwrap();
    until("the message after the rotation", || {
        let (got, id) = (got.clone(), next.message_id.clone());
        async move { got.count("ok", &id) == 1 }
    })
    .await;
    let (headers, body) = got.last_ok.lock().unwrap().clone().unwrap();
    let verdict = outworx_hooks::security::verify(
        "standard",
        &headers,
        &body,
        &[secret.as_str()],
        Duration::from_secs(300),
    );
    assert!(verdict.valid, "{verdict:?}");
    b.screenshot(&screenshot_path(&format!("dashboard-sending{tag}.png")))
        .await;

    // --- the inbox ----------------------------------------------------------------------------
    b.click("#tab-inbox").await;
    b.wait(
        "document.querySelectorAll('#inbox tbody tr').length === 4",
        "the four queued deliveries",
    )
    .await;
    let oldest = b.text("#inbox-oldest").await;
    assert!(
        oldest.ends_with('s') && oldest.chars().next().unwrap().is_ascii_digit(),
        "the oldest pending delivery's age: {oldest}"
    );
    for (card, want) in [
        ("retrying", "1"),
        ("dead", "2"),
        ("done", "1"),
        ("pending", "1"),
    ] {
        assert_eq!(
            b.text(&format!("[data-in=\"{card}\"]")).await,
            want,
            "{card}"
        );
    }
    // The retries: the one whose next attempt is an hour away.
    b.click("[data-in-status=\"retrying\"]").await;
    b.wait(
        "document.querySelectorAll('#inbox tbody tr').length === 1 \
         && document.querySelector('#inbox tbody tr').innerText.includes('retrying')",
        "the retrying one",
    )
    .await;
    b.click("[data-in-status=\"dead\"]").await;
    b.wait(
        "document.querySelectorAll('#inbox tbody tr').length === 2",
        "the dead ones",
    )
    .await;
    let rows = b
        .js("return [...document.querySelectorAll('#inbox tbody tr')].map(r => r.innerText);")
        .await;
    assert!(
        rows.to_string().contains(xss_type()) || rows.to_string().contains("boom.\\u003csvg"),
        "the hostile event type, as text: {rows}"
    );
    b.screenshot(&screenshot_path(&format!("dashboard-inbox{tag}.png")))
        .await;

    // The fix is deployed: replay one from its detail, the route's others from the form.
    BOOM_FAILS.store(false, Ordering::SeqCst);
    b.click(&format!("#inbox tbody tr[data-id=\"{boom_1}\"]"))
        .await;
    b.wait(
        "document.querySelector('#detail').open && document.querySelector('#d-replay')",
        "the delivery's detail",
    )
    .await;
    b.click("#d-replay").await;
    b.wait(
        "document.querySelector('#d-note').textContent === '1 queued again'",
        "the replay's answer",
    )
    .await;
    let done = |id: i64| {
        let inbox = inbox.clone();
        async move {
            inbox
                .deliveries(&inbox::DeliveryFilter::default().id(id))
                .await
                .unwrap()[0]
                .status
                == inbox::DeliveryStatus::Done
        }
    };
    until("the replayed delivery done", || done(boom_1)).await;
    b.click("#d-close").await;
    b.type_into("#in-route", &route).await;
    b.click("#in-since option[value=\"\"]").await;
    b.click("#in-replay-dead").await;
    b.wait(
        "document.querySelector('#inbox-note').textContent === '1 queued again'",
        "the route's replay",
    )
    .await;
    until("the route's dead delivery done", || done(boom_2)).await;

    // Nothing ran or became markup, in any view.
    assert_eq!(b.js("return typeof window.__pwned;").await, "undefined");
    assert_eq!(
        b.js(
            "return document.querySelectorAll(['#events', '#view-sending', '#view-inbox', '#detail'] \
              .map(v => `${v} img, ${v} script, ${v} b, ${v} svg`).join()).length;"
        )
        .await,
        0
    );

    // The secret is in no answer, to this key or another.
    let messages = [msg.clone(), next.message_id.clone()];
    let mut urls = vec![
        format!("{base}/api/outbound"),
        format!("{base}/api/outbound/messages?limit=500"),
        format!("{base}/api/events?limit=1000"),
        format!("{base}/api/inbox?limit=500"),
        format!("{base}/api/inbox/{boom_1}"),
    ];
    urls.extend(
        messages
            .iter()
            .map(|m| format!("{base}/api/outbound/messages/{m}")),
    );
    for url in &urls {
        let (status, body) = api(KEY, reqwest::Method::GET, url.clone()).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(
            !body.contains(&secret) && !body.contains(&first_secret),
            "{url} answered a secret"
        );
        // Another project's key: 404, and not a word of these rows.
        let (status, body) = api(OTHER, reqwest::Method::GET, url.clone()).await;
        if url.contains("/api/events") {
            assert_eq!(status, 200);
            assert!(!body.contains("inbox_id"), "{body}");
        } else {
            assert_eq!(status, 404, "{url} for another key: {body}");
            for leak in [msg.as_str(), &ok.endpoint.id, &route, "127.0.0.1"] {
                assert!(!body.contains(leak), "{url} leaked {leak}: {body}");
            }
        }
    }
    for path in [
        format!("outbound/messages/{msg}/replay"),
        format!("outbound/endpoints/{}/rotate", ok.endpoint.id),
        format!("outbound/endpoints/{}/disable", ok.endpoint.id),
        format!("inbox/{boom_1}/replay"),
        format!("inbox/replay?route={route}"),
    ] {
        let (status, body) = api(OTHER, reqwest::Method::POST, format!("{base}/api/{path}")).await;
        assert_eq!(status, 404, "{path} for another key: {body}");
    }
    assert!(
        emitter
            .endpoint(Scope::All, &ok.endpoint.id)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    // The other key's rotate changed nothing: the browser's secret still signs.
    let after = emitter
        .send_message(NewMessage::json("order.closed", r#"{"order":3}"#).owner(xss_owner()))
        .await
        .unwrap();
    until("the message after the other key's attempts", || {
        let (got, id) = (got.clone(), after.message_id.clone());
        async move { got.count("ok", &id) == 1 }
    })
    .await;
    let (headers, body) = got.last_ok.lock().unwrap().clone().unwrap();
    let verdict = outworx_hooks::security::verify(
        "standard",
        &headers,
        &body,
        &[secret.as_str()],
        Duration::from_secs(300),
    );
    assert!(verdict.valid, "{verdict:?}");
    // An event another project reports with this inbox's id is not this delivery's.
    let runs = |key: &'static str| {
        let base = base.clone();
        async move {
            let (_, body) = api(
                key,
                reqwest::Method::GET,
                format!("{base}/api/inbox/{boom_1}"),
            )
            .await;
            serde_json::from_str::<Value>(&body).unwrap()["events"]
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    let before = runs(KEY).await;
    let forged = json!({"provider": "standard", "status_code": 200, "success": true,
        "duration_ms": 1, "payload_size": 1, "timestamp": ago(0),
        "metadata": {"inbox_id": boom_1}});
    let r = http
        .post(format!("{base}/api/ingest"))
        .bearer_auth(OTHER)
        .json(&json!({ "events": [forged] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(runs(KEY).await, before);
    // A queued delivery is not replayed (that would reset its attempts): 409.
    let later = inbox
        .deliveries(&inbox::DeliveryFilter::default().status(inbox::DeliveryStatus::Pending))
        .await
        .unwrap()[0]
        .id;
    let (status, body) = api(
        KEY,
        reqwest::Method::POST,
        format!("{base}/api/inbox/{later}/replay"),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // Signing out with the secret dialog open leaves nothing of the project in the page.
    b.click("#tab-sending").await;
    b.wait(
        "document.querySelectorAll('#endpoints tbody tr').length === 2",
        "the endpoints again",
    )
    .await;
    b.js(&format!("{}.click(); return 1;", button("Rotate secret")))
        .await;
    b.js(&format!(
        "{}.click(); return 1;",
        button("Click again to confirm")
    ))
    .await;
    b.wait(
        "document.querySelector('#secret').open && document.querySelector('#s-value').textContent.startsWith('whsec_')",
        "another new secret",
    )
    .await;
    let last_secret = b.text("#s-value").await;
    b.js("document.querySelector('#signout').click(); return 1;")
        .await;
    b.wait(
        "!document.querySelector('#login').hidden && !document.querySelector('#secret').open",
        "the sign-in form",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = b.js("return document.documentElement.outerHTML;").await;
    let page = page.as_str().unwrap();
    for gone in [last_secret.as_str(), &ok.endpoint.url, &msg, "queued again"] {
        assert!(!page.contains(gone), "{gone} is still in the page");
    }
    assert_eq!(
        b.text("#login-error").await,
        "",
        "a deliberate sign-out says nothing"
    );

    // In the browser, another key sees no sending or inbox view.
    b.type_into("#key", OTHER).await;
    b.click("#login-form button[type=submit]").await;
    b.wait(
        "!document.querySelector('#board').hidden && document.body.dataset.loaded",
        "the other project's board",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.js("return [document.querySelector('#tabs').hidden, document.querySelector('#tab-sending').hidden, document.querySelector('#tab-inbox').hidden];").await,
        json!([true, true, true])
    );
    b.quit().await;
    emitter.shutdown().await;
}
