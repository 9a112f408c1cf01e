//! `outworx serve` over real HTTP on loopback: the relay's answers and isolation, the
//! tunnel's own origin, the server's timeouts, and the API's quotas.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";
const OTHER: &str = "ohk_fedcba9876543210fedcba9876543210";

/// A directory removed when the test that made it ends, passed or failed.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server on a free port, with its database in a directory of its own (removed with the
/// returned guard).
async fn start(tweak: impl FnOnce(&mut outworx_serve::ServeConfig)) -> (SocketAddr, TempDir) {
    let dir = std::env::temp_dir().join(format!(
        "outworx-relay-{}-{}",
        std::process::id(),
        rand_tag()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = outworx_serve::ServeConfig::new(vec![KEY.into(), OTHER.into()]);
    config.hold_timeout = Duration::from_secs(5);
    config.poll_wait = Duration::from_millis(300);
    tweak(&mut config);
    let db = dir.join("r.db").display().to_string();
    tokio::spawn(async move { outworx_serve::serve(listener, &db, config).await.unwrap() });
    for _ in 0..100 {
        if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (addr, TempDir(dir))
}

fn rand_tag() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn session(http: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    http.post(format!("{base}/api/forward/sessions"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn poll(http: &reqwest::Client, base: &str, key: &str, id: &str) -> Value {
    http.get(format!("{base}/api/forward/poll?session={id}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_answers_isolates_and_closes() {
    let (addr, _dir) = start(|_| {}).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let s: Value = session(&http, &base, KEY).await.json().await.unwrap();
    let (id, ingress) = (
        s["sessionId"].as_str().unwrap().to_owned(),
        s["ingressUrl"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        http.post(format!("{base}/t/nosuchslug/x"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // The path reaches the CLI raw, and repeated headers stay repeated.
    let public = {
        let (http, url) = (http.clone(), format!("{ingress}/a%2Fb/c%20d?q=1"));
        tokio::spawn(async move {
            http.post(url)
                .header("webhook-signature", "v1,one")
                .header("webhook-signature", "v1,two")
                .body("hi")
                .send()
                .await
                .unwrap()
        })
    };
    let mut held = Value::Null;
    for _ in 0..50 {
        let p = poll(&http, &base, KEY, &id).await;
        if let Some(e) = p["events"].as_array().and_then(|a| a.first()) {
            held = e.clone();
            break;
        }
    }
    assert_eq!(
        held["path"], "/a%2Fb/c%20d",
        "still percent-encoded: {held}"
    );
    assert_eq!(held["query_string"], "q=1");
    let sigs: Vec<_> = held["request_headers_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == "webhook-signature")
        .map(|p| p[1].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sigs, ["v1,one", "v1,two"]);

    // Another project cannot answer it; an out-of-range status is refused and the caller
    // gets a 502 at once.
    let theirs = json!({"eventId": held["id"], "status": 200, "body": "from another project"});
    let r = http
        .post(format!("{base}/api/forward/responses"))
        .bearer_auth(OTHER)
        .json(&theirs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410, "another project's answer is not taken");
    let answer = json!({"eventId": held["id"], "status": 1000, "body": "x"});
    let r = http
        .post(format!("{base}/api/forward/responses"))
        .bearer_auth(KEY)
        .json(&answer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(public.await.unwrap().status(), 502);

    // Closing the session answers held callers at once, not after the hold.
    let waiting = {
        let (http, url) = (http.clone(), format!("{ingress}/slow"));
        tokio::spawn(async move { http.post(url).body("x").send().await.unwrap().status() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    http.delete(format!("{base}/api/forward/sessions/{id}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(waiting.await.unwrap(), 502);
    assert!(started.elapsed() < Duration::from_secs(2));

    // A project may hold only so many sessions.
    let mut codes = Vec::new();
    for _ in 0..11 {
        codes.push(session(&http, &base, OTHER).await.status().as_u16());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 10);
    assert_eq!(codes.last(), Some(&429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_get_an_origin_of_their_own() {
    // The dashboard on 127.0.0.1, tunnels on localhost: two origins, one server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut config = outworx_serve::ServeConfig::new(vec![KEY.into()]);
    config.tunnel_url = Some(format!("http://localhost:{port}"));
    config.hold_timeout = Duration::from_millis(300);
    let dir = std::env::temp_dir().join(format!("outworx-origin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("o.db").display().to_string();
    let _dir = TempDir(dir);
    tokio::spawn(async move { outworx_serve::serve(listener, &db, config).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (dashboard, tunnels) = (
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    );
    let http = reqwest::Client::new();
    let s: Value = session(&http, &dashboard, KEY).await.json().await.unwrap();
    let ingress = s["ingressUrl"].as_str().unwrap().to_owned();
    assert!(ingress.starts_with(&format!("{tunnels}/t/")), "{ingress}");
    let slug_path = ingress.trim_start_matches(&tunnels);
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    // On its host the tunnel is relayed (no CLI here: 504 after the hold) ...
    assert_eq!(status(format!("{ingress}/x")).await, 504);
    // ... and nothing else is served there; on the dashboard's host no tunnel is.
    assert_eq!(status(format!("{tunnels}/dashboard/")).await, 404);
    assert_eq!(status(format!("{tunnels}/healthz")).await, 404);
    assert_eq!(status(format!("{dashboard}{slug_path}/x")).await, 404);
    assert_eq!(status(format!("{dashboard}/dashboard/")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let (addr, _dir) = start(|c| c.header_timeout = Duration::from_millis(500)).await;
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Half a request line, then silence.
        s.write_all(b"POST /api/ingest HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map(|_| buf)
    })
    .await
    .unwrap();
    let waited = started.elapsed();
    assert!(
        outcome.is_ok(),
        "the server closed the connection: {outcome:?}"
    );
    assert!(waited < Duration::from_secs(5), "cut off after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_has_quotas() {
    let (addr, _dir) = start(|_| {}).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let ingest = |events: Value| {
        let http = http.clone();
        let url = format!("{base}/api/ingest");
        async move {
            let r = http
                .post(url)
                .bearer_auth(KEY)
                .json(&json!({ "events": events }))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let event = |extra: Value| {
        let mut e = json!({"provider": "stripe", "status_code": 200, "success": true,
            "duration_ms": 1, "payload_size": 2, "timestamp": "2026-11-30T10:00:00Z"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    // Fields over their caps are refused by name; the rest of the batch is kept.
    let (status, answer) = ingest(json!([
        event(json!({"provider": "p".repeat(65)})),
        event(json!({"error_message": "e".repeat(9000)})),
        event(json!({"metadata": {"big": "m".repeat(40_000)}})),
        event(json!({"request_body": "b".repeat(200_000)})),
        event(json!({"event_type": "ok"})),
    ]))
    .await;
    assert_eq!(status, 422);
    assert_eq!(answer["accepted"], 1);
    let reasons: Vec<_> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    for (i, field) in ["provider", "error_message", "metadata", "request_body"]
        .iter()
        .enumerate()
    {
        assert!(reasons[i].contains(field), "{}", reasons[i]);
    }

    // A page of events stops at its byte budget (8 MiB) and says where to go on.
    let big = event(json!({"request_body": "r".repeat(64 * 1024),
        "response_body": "s".repeat(64 * 1024)}));
    for _ in 0..8 {
        let batch: Vec<Value> = (0..10).map(|_| big.clone()).collect();
        assert_eq!(ingest(Value::Array(batch)).await.0, 200);
    }
    let page: Value = http
        .get(format!("{base}/api/events?limit=1000"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = page["events"].as_array().unwrap().len();
    assert!((40..=70).contains(&n), "{n} events of ~128 KiB in one page");
    assert!(page["next_before_id"].is_i64());

    // Idempotency: long keys and bodies are refused; a tokenless complete cannot override a
    // reservation taken with a token.
    let post = |path: &str, body: Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http
                .post(url)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or_default(),
            )
        }
    };
    let check = "/api/sdk/idempotency/check";
    let complete = "/api/sdk/idempotency/complete";
    assert_eq!(post(check, json!({"key": "k".repeat(513)})).await.0, 400);
    assert_eq!(
        post(check, json!({"key": "held", "token": "t1"})).await.1["status"],
        "new"
    );
    let (code, answer) = post(
        complete,
        json!({"key": "held", "response_status_code": 200, "response_body": "hijacked"}),
    )
    .await;
    assert_eq!((code, answer["changed"].clone()), (200, json!(false)));
    let (code, _) = post(
        complete,
        json!({"key": "held", "token": "t1", "response_status_code": 200,
            "response_body": "x".repeat(70_000)}),
    )
    .await;
    assert_eq!(code, 413);
    let (_, answer) = post(
        complete,
        json!({"key": "held", "token": "t1", "renew": true}),
    )
    .await;
    assert_eq!(answer["changed"], true);
}
