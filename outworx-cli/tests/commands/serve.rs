//! `outworx serve` end to end, on SQLite and on a real PostgreSQL server started here:
//! our SDK reporting to it, idempotency through its API, the query API, bad input, and a full
//! tunnel round trip through the real `outworx forward` binary to a local axum app.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, post};
use futures_util::StreamExt as _;
use outworx_hooks::security::Provider;
use outworx_hooks::store::{CachedResponse, OutworxApiStore, Reservation, Store};
use outworx_hooks::testing::Signer;
use outworx_hooks::{OutworxSink, OutworxSinkOptions, Sink as _, Track, webhook};
use serde_json::{Value, json};

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";

use outworx_test_support::postgres::Postgres;
use outworx_test_support::process::Kill;

async fn start_serve(db: &str) -> SocketAddr {
    start_serve_with(db, |_| {}).await
}

async fn start_serve_with(
    db: &str,
    tweak: impl FnOnce(&mut outworx_serve::ServeConfig),
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = outworx_serve::ServeConfig::new(vec![KEY.into()]);
    config.hold_timeout = Duration::from_secs(5);
    config.poll_wait = Duration::from_secs(2);
    tweak(&mut config);
    let db = db.to_owned();
    tokio::spawn(async move {
        outworx_serve::serve(listener, &db, config).await.unwrap();
    });
    for _ in 0..100 {
        if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    addr
}

#[webhook(provider = "stripe", secret = "whsec_serve_test", idempotency = body["id"], require_processed)]
async fn stripe(track: Track, axum::Json(event): axum::Json<Value>) -> &'static str {
    if event["type"] == "charge.succeeded" {
        track.processed();
    }
    "ok"
}

/// `GET url` with the API key, as JSON.
async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Runs the real `outworx forward` to `target` through the server at `base`: the process, the
/// public URL it printed, and the rest of its output line by line.
async fn forward(
    target: &str,
    base: &str,
) -> (Kill, String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut cli = Kill(
        Command::new(env!("CARGO_BIN_EXE_outworx"))
            .args(["forward", target, "--endpoint", base])
            .env("OUTWORX_API_KEY", KEY)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = cli.0.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Reading goes on to the end, so the CLI never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let Some(u) = line.split("Public URL:").nth(1) {
            return (cli, u.trim().to_owned(), rx);
        }
    }
}

/// A series' counts per outcome, summed over its buckets.
fn outcomes_of(series: &Value) -> std::collections::BTreeMap<String, i64> {
    let mut outcomes = std::collections::BTreeMap::new();
    for b in series["buckets"].as_array().unwrap() {
        for (k, v) in b["counts"].as_object().unwrap() {
            *outcomes.entry(k.clone()).or_default() += v.as_i64().unwrap();
        }
    }
    outcomes
}

async fn scenario(db: &str) {
    let addr = start_serve(db).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    // Auth.
    let r = http
        .post(format!("{base}/api/sdk/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/api/sdk/verify"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Our SDK reports to it: real deliveries through #[webhook], their events to the sink.
    let sink =
        OutworxSink::spawn(OutworxSinkOptions::new(format!("{base}/api/ingest"), KEY)).unwrap();
    let mut events = outworx_hooks::subscribe();
    let app = Router::new().route("/stripe", post(stripe));
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = local.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(local, app).await });
    let tag = format!("{}", outworx_serve::db::now_ms());
    for (i, kind) in ["charge.succeeded", "customer.created", "charge.succeeded"]
        .iter()
        .enumerate()
    {
        let body = json!({"id": format!("evt_{tag}_{i}"), "type": kind}).to_string();
        let s = Signer::new(Provider::Stripe, "whsec_serve_test")
            .sign(body)
            .unwrap();
        let r = http
            .post(format!("http://{app_addr}/stripe"))
            .headers(s.headers)
            .body(s.body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap();
        sink.send(&e);
    }
    sink.flush().await;
    assert_eq!(sink.sent(), 3);
    let q = get_json(
        &http,
        format!("{base}/api/events?provider=stripe&processing_status=completed"),
    )
    .await;
    assert_eq!(q["events"].as_array().unwrap().len(), 2, "{q}");
    let q = get_json(
        &http,
        format!("{base}/api/events?processing_status=silent_drop&limit=10"),
    )
    .await;
    assert_eq!(q["events"][0]["event"]["event_type"], "customer.created");
    let r = http
        .get(format!("{base}/api/events?bogus=1"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let q = get_json(
        &http,
        format!("{base}/api/events?since=2999-01-01T00:00:00Z"),
    )
    .await;
    assert!(q["events"].as_array().unwrap().is_empty());

    // Bad input: a reason, and the valid events of a batch are kept.
    let r = http
        .post(format!("{base}/api/ingest"))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let good = json!({"provider": "github", "status_code": 500, "success": false, "duration_ms": 1,
        "payload_size": 2, "timestamp": "2026-11-23T10:00:00Z"});
    let r = http
        .post(format!("{base}/api/ingest"))
        .bearer_auth(KEY)
        .json(&json!({"events": [good, {"provider": "github", "surprise": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], 1);
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("surprise")
    );
    let q = get_json(
        &http,
        format!("{base}/api/events?provider=github&status=500"),
    )
    .await;
    assert_eq!(q["events"].as_array().unwrap().len(), 1);

    // The dashboard's summary: one grouped count, on either backend.
    let s = get_json(&http, format!("{base}/api/stats")).await;
    assert_eq!(
        s,
        json!({"total": 4, "by_provider": {"github": 1, "stripe": 3},
            "by_status_class": {"2xx": 3, "5xx": 1},
            "by_processing_status": {"completed": 2, "silent_drop": 1},
            "signature_invalid": 0})
    );
    let s = get_json(
        &http,
        format!("{base}/api/stats?since=2999-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(s["total"], 0);
    let r = http
        .get(format!("{base}/api/stats?bogus=1"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The charts' series, computed in SQL on either backend: its buckets add up to the
    // summary, outcome by outcome.
    let series = get_json(&http, format!("{base}/api/stats/series?bucket=3600")).await;
    let buckets = series["buckets"].as_array().unwrap();
    assert!(
        (24..=25).contains(&buckets.len()),
        "the last 24 hours by the hour, from an hour's edge"
    );
    assert_eq!(series["since_ms"].as_i64().unwrap() % 3_600_000, 0);
    let outcomes = outcomes_of(&series);
    // The three deliveries of the last minutes; the raw event of 2026-11-23 is outside.
    assert_eq!(outcomes.values().sum::<i64>(), 3, "{series}");
    assert_eq!(outcomes.get("silent_drop"), Some(&1), "{series}");
    assert_eq!(outcomes.get("completed"), Some(&2), "{series}");
    assert!(buckets.iter().any(|b| b["p95_ms"].is_i64()), "{series}");
    // A window holding all four: the same total as the summary's, and the raw 500 a failure.
    let series = get_json(
        &http,
        format!("{base}/api/stats/series?since=2026-11-01T00:00:00Z&until=2027-11-01T00:00:00Z&bucket=86400"),
    )
    .await;
    let outcomes = outcomes_of(&series);
    assert_eq!(outcomes.values().sum::<i64>(), 4, "{series}");
    assert_eq!(outcomes.get("failed"), Some(&1), "{series}");
    // The raw event's day alone: its outcome and its latency, exactly, on either backend.
    let day = get_json(
        &http,
        format!("{base}/api/stats/series?since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z&bucket=86400"),
    )
    .await;
    assert_eq!(
        day["buckets"],
        json!([{"start_ms": 1_795_392_000_000i64, "counts": {"failed": 1}, "p50_ms": 1, "p95_ms": 1}])
    );
    // Buckets of whole minutes, ten minutes, hours or days: just under an hour is answered by
    // the hour,
    // the window widened to whole hours.
    let hourly = get_json(
        &http,
        format!("{base}/api/stats/series?since=2026-11-23T00:10:00Z&until=2026-11-23T05:00:00Z&bucket=3599"),
    )
    .await;
    assert_eq!(hourly["bucket_ms"], 3_600_000, "{hourly}");
    assert_eq!(hourly["since_ms"], 1_795_392_000_000i64, "{hourly}");
    assert_eq!(hourly["buckets"].as_array().unwrap().len(), 5, "{hourly}");
    for bad in [
        "bucket=0",
        "bucket=1&since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z",
        "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z&bucket=31536000",
        // 864 buckets of 50 minutes: 4,320 ten-minute units to read, past the 2,000 a series
        // may.
        "since=2026-01-01T00:00:00Z&until=2026-01-31T00:00:00Z&bucket=3000",
        "bucket=x",
        "bogus=1",
    ] {
        let r = http
            .get(format!("{base}/api/stats/series?{bad}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = http
        .get(format!("{base}/api/stats/series"))
        .bearer_auth("ow_live_not_a_key_of_this_server_000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "scoped to the project's key");

    let big: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    let r = http
        .post(format!("{base}/api/ingest"))
        .bearer_auth(KEY)
        .json(&json!({"events": big}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Idempotency through the API, with our store.
    let store = OutworxApiStore::new(format!("{base}/api/ingest"), KEY);
    let ttl = Duration::from_secs(60);
    let key = format!("stripe:h:{tag}");
    let Reservation::New(token) = store.reserve(&key, ttl).await.unwrap() else {
        panic!("not new")
    };
    assert_eq!(
        store.reserve(&key, ttl).await.unwrap(),
        Reservation::InFlight
    );
    let first = CachedResponse {
        status: 201,
        content_type: Some("application/json".into()),
        body: Some(bytes::Bytes::from_static(b"{\"ok\":1}")),
    };
    store
        .complete(&key, &token, first.clone(), ttl)
        .await
        .unwrap();
    assert_eq!(
        store.reserve(&key, ttl).await.unwrap(),
        Reservation::Duplicate(first)
    );
    let other = format!("{key}-released");
    let Reservation::New(t2) = store.reserve(&other, ttl).await.unwrap() else {
        panic!()
    };
    store.release(&other, &t2).await.unwrap();
    assert!(matches!(
        store.reserve(&other, ttl).await.unwrap(),
        Reservation::New(_)
    ));

    // The tunnel: public request → outworx forward → local app → back.
    let local_app = Router::new().route(
        "/{*path}",
        any(|uri: axum::http::Uri, body: axum::body::Bytes| async move {
            (
                axum::http::StatusCode::CREATED,
                [("x-local", "yes")],
                [uri.to_string().as_bytes(), b"|", &body[..]].concat(),
            )
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local_port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, local_app).await });
    let (cli, ingress, mut rx) = forward(&local_port.to_string(), &base).await;
    let body: Vec<u8> = vec![b'a', 0xff, 0xfe, b'z']; // not UTF-8: must arrive byte for byte
    let r = http
        .post(format!("{ingress}/hooks/stripe?x=1"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-local"], "yes");
    let got = r.bytes().await.unwrap();
    assert_eq!(
        &got[..],
        &[b"/hooks/stripe?x=1|".as_slice(), &body].concat()[..]
    );
    let log = loop {
        let line = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if line.contains("POST /hooks/stripe") {
            break line;
        }
    };
    assert!(
        log.contains("  201  "),
        "one line per request with its status: {log}"
    );
    // Concurrent requests all come back.
    let all = futures_util::future::join_all((0..8).map(|i| {
        let http = http.clone();
        let url = format!("{ingress}/n/{i}");
        async move {
            http.post(url)
                .body("x")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    }))
    .await;
    for (i, text) in all.iter().enumerate() {
        assert_eq!(text, &format!("/n/{i}|x"));
    }
    // Unknown tunnel.
    let r = http.post(format!("{base}/t/nope/x")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    drop(cli);

    // An unreachable local server is a 502 for the public caller.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_cli, ingress, _log) = forward(&format!("localhost:{closed}"), &base).await;
    let r = http
        .post(format!("{ingress}/x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);

    // Repeated request headers reach the local server repeated, not merged: a Standard
    // Webhooks receiver reads a list of signatures.
    let echo = Router::new().route(
        "/{*path}",
        any(|headers: axum::http::HeaderMap| async move {
            headers
                .get_all("webhook-signature")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join("|")
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, echo).await });
    let (_cli, ingress, _log) = forward(&echo_port.to_string(), &base).await;
    let r = http
        .post(format!("{ingress}/h"))
        .header("webhook-signature", "v1,first")
        .header("webhook-signature", "v1,second")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "v1,first|v1,second");

    // Retention: the sweeper's delete (by age, in batches) on this backend.
    let db = outworx_serve::Db::open(db).await.unwrap();
    assert_eq!(db.prune_events(0).await.unwrap(), 0);
    assert!(
        db.prune_events(outworx_serve::db::now_ms() + 1)
            .await
            .unwrap()
            >= 4
    );
    let r = get_json(&http, format!("{base}/api/stats")).await;
    assert_eq!(r["total"], 0);

    // Its own metrics, for Prometheus: ingest and idempotency counted, no project data.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"outworx_serve_ingest_events_total{result="accepted"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("outworx_serve_idempotency_checks_total"),
        "{metrics}"
    );
    assert!(!metrics.contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("outworx-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    scenario(dir.join("outworx.db").to_str().unwrap()).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres() {
    let pg = Postgres::start();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    for _ in 0..100 {
        if outworx_serve::Db::open(&url).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scenario(&url).await;
}

/// When its session is gone (the server restarted, or the session expired), `outworx
/// forward` says so and exits, instead of polling a dead URL forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_exits_when_its_session_is_gone() {
    let dir = std::env::temp_dir().join(format!("outworx-gone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("g.db").display().to_string();
    let addr = start_serve_with(&db, |c| {
        c.session_ttl = Duration::from_secs(1);
        c.poll_wait = Duration::from_millis(200);
    })
    .await;
    let child = Command::new(env!("CARGO_BIN_EXE_outworx"))
        .args(["forward", "1", "--endpoint", &format!("http://{addr}")])
        .env("OUTWORX_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("the CLI exits")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("session is gone"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A script that has what it waits for may close the pipe: `outworx serve` with its standard
/// output closed before it prints anything (every line it prints fails with EPIPE) still
/// serves. (It printed with `println!`, which panics on EPIPE: a test that read the first
/// line and dropped the pipe stopped it when the second line came after the drop.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_serving_when_its_output_pipe_is_closed() {
    let dir = outworx_test_support::net::temp_dir("serve-epipe");
    let port = outworx_test_support::net::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outworx"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.join("serve.db"))
        .env("OUTWORX_SERVE_API_KEYS", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before the first line
    let server = Kill(child);
    let http = reqwest::Client::new();
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/dashboard/"))
            .send()
            .await
        {
            answered = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered, Some(200), "the server stopped");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = http
        .get(format!("http://127.0.0.1:{port}/dashboard/"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(again.ok(), Some(200), "the server stopped after printing");
    drop(server);
}

/// The dashboard's counts are kept in the ingest's own transaction: `outworx serve` SIGKILLed
/// twice while four clients post batches leaves counts that equal the events it kept, counted
/// one by one through the query API after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counts_survive_a_kill_mid_ingest() {
    let dir = outworx_test_support::net::temp_dir("serve-kill-counts");
    let db = dir.join("serve.db");
    let start = |port: u16| {
        Kill(
            Command::new(env!("CARGO_BIN_EXE_outworx"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
                .arg(&db)
                .env("OUTWORX_SERVE_API_KEYS", KEY)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let http = reqwest::Client::new();
    let up = |port: u16| {
        let http = http.clone();
        async move {
            for _ in 0..200 {
                if http
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .send()
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("outworx serve did not start");
        }
    };
    let mut posted = 0u64;
    for round in 0..2u64 {
        let port = outworx_test_support::net::free_port();
        let server = start(port);
        up(port).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..4u64)
            .map(|c| {
                let (http, stop) = (http.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut sent = 0u64;
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let events: Vec<Value> = (0..50)
                            .map(|k| {
                                let n = (round * 4 + c) * 1_000_000 + i * 50 + k;
                                let provider = ["stripe", "github", "shopify"][(n % 3) as usize];
                                json!({
                                    "provider": provider,
                                    "status_code": if n.is_multiple_of(7) { 500 } else { 200 },
                                    "success": !n.is_multiple_of(7),
                                    "duration_ms": n % 3_000,
                                    "payload_size": 2,
                                    // Spread over 5 hours, on and off every unit's edge.
                                    "timestamp": time::OffsetDateTime::from_unix_timestamp(
                                        1_795_392_000 + (n * 7_919 % 18_000) as i64,
                                    )
                                    .unwrap()
                                    .format(&time::format_description::well_known::Rfc3339)
                                    .unwrap(),
                                })
                            })
                            .collect();
                        i += 1;
                        let r = http
                            .post(format!("http://127.0.0.1:{port}/api/ingest"))
                            .bearer_auth(KEY)
                            .json(&json!({ "events": events }))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => sent += 50,
                            Ok(r) => panic!("ingest answered {}", r.status()),
                            Err(_) => break, // the server is gone
                        }
                    }
                    sent
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        drop(server); // SIGKILL, with batches in flight
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            posted += c.await.unwrap();
        }
    }
    assert!(
        posted > 1_000,
        "too few batches were acknowledged: {posted}"
    );

    // After a restart: the summary equals the events counted one by one.
    let port = outworx_test_support::net::free_port();
    let _server = start(port);
    up(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let (mut total, mut by_provider, mut failed) = (0i64, std::collections::BTreeMap::new(), 0i64);
    // The window below: 2026-11-23T00:00:30Z to 04:59:30Z.
    let (from, to) = (1_795_392_030i64, 1_795_392_000i64 + 5 * 3_600 - 30);
    let mut in_window = 0i64;
    let mut before = String::new();
    loop {
        let page = get_json(&http, format!("{base}/api/events?limit=1000{before}")).await;
        let events = page["events"].as_array().unwrap();
        for e in events {
            total += 1;
            *by_provider
                .entry(e["event"]["provider"].as_str().unwrap().to_owned())
                .or_insert(0i64) += 1;
            failed += i64::from(e["event"]["status_code"] == 500);
            let at = time::OffsetDateTime::parse(
                e["event"]["timestamp"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
            .unix_timestamp();
            in_window += i64::from((from..to).contains(&at));
        }
        if events.len() < 1000 {
            break;
        }
        before = format!("&before_id={}", page["next_before_id"]);
    }
    // Every acknowledged batch is kept (a batch in flight at the kill may be too).
    assert!(
        total >= i64::try_from(posted).unwrap(),
        "{total} < {posted}"
    );
    let stats = get_json(&http, format!("{base}/api/stats")).await;
    assert_eq!(stats["total"], total, "{stats}");
    assert_eq!(stats["by_status_class"]["5xx"], failed, "{stats}");
    assert_eq!(stats["by_provider"], json!(by_provider), "{stats}");
    // A window off the minutes' edges, and the chart over the whole day: the same events.
    let window = get_json(
        &http,
        format!("{base}/api/stats?since=2026-11-23T00:00:30Z&until=2026-11-23T04:59:30Z"),
    )
    .await;
    let series = get_json(
        &http,
        format!("{base}/api/stats/series?since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z&bucket=3600"),
    )
    .await;
    assert_eq!(
        outcomes_of(&series).values().sum::<i64>(),
        total,
        "{series}"
    );
    assert_eq!(window["total"], in_window, "{window}");
    assert!(in_window > 0 && in_window < total);
    std::fs::remove_dir_all(dir).ok();
}
