//! The dashboard in a real headless Chromium, driven over WebDriver (`chromedriver`), against
//! a real `outworx serve` on loopback with events ingested through its API.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them when missing);
//! `CHROMIUM` and `CHROMEDRIVER` override the paths. Without them the test fails and says so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";
const OTHER: &str = "ohk_fedcba9876543210fedcba9876543210";
const EMPTY: &str = "ohk_00000000000000000000000000000001";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outworx-dash-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A WebDriver session on a headless Chromium.
struct Browser {
    http: reqwest::Client,
    url: String,
    _driver: Kill,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "no Chromium at {chromium}: install Debian's chromium and chromium-driver (.ci/run does)"
        );
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {chromedriver} ({e}): install chromium-driver")
            });
        let driver = Kill(driver);
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|v| v["value"]["ready"] == true),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = temp_dir(&format!("profile-{port}"));
        // Headless, no sandbox (CI runs as root), and none of Chromium's own network traffic
        // (a closed network refuses it, slowly).
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1360,900".into(),
            // A tunnelled page must not be able to open the dashboard even where popups are
            // allowed: the test gives the attack every chance.
            "--disable-popup-blocking".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {res}"))
            .to_owned();
        Browser {
            http,
            url: format!("{base}/session/{session}"),
            _driver: driver,
            profile,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = res["value"].get("error") {
            panic!("WebDriver {path}: {err} {}", res["value"]["message"]);
        }
        res["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Runs `script`, whose last argument is the callback that returns its value.
    async fn js_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({"script": script, "args": []}))
            .await
    }

    /// Polls `script` until it is true (15 s); on timeout, fails showing the page's text.
    async fn wait(&self, script: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.js(&format!("return Boolean({script});")).await == true {
                return;
            }
            if Instant::now() > deadline {
                let body = self.js("return document.body.innerText;").await;
                panic!(
                    "the page did not show {what}; it shows:\n{}",
                    body.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the table has `n` rows and `also` (JavaScript; may be empty) holds.
    async fn wait_rows(&self, n: usize, also: &str, what: &str) {
        let also = if also.is_empty() { "true" } else { also };
        self.wait(
            &format!("document.querySelectorAll('#events tbody tr').length === {n} && ({also})"),
            what,
        )
        .await;
    }

    async fn rows(&self) -> Vec<String> {
        let v = self
            .js("return [...document.querySelectorAll('#events tbody tr')].map(r => r.innerText.replace(/\\s+/g, ' ').trim());")
            .await;
        serde_json::from_value(v).unwrap()
    }

    async fn text(&self, css: &str) -> String {
        self.js(&format!(
            "return document.querySelector({}).textContent.trim();",
            json!(css)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    async fn quit(self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn ago(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds))
        .format(&Rfc3339)
        .unwrap()
}

fn event(provider: &str, status: u16, seconds_ago: i64, extra: Value) -> Value {
    let mut e = json!({"provider": provider, "status_code": status, "success": status < 400,
        "duration_ms": 12, "payload_size": 1700, "timestamp": ago(seconds_ago)});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

async fn ingest(addr: SocketAddr, key: &str, events: Vec<Value>) {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/api/ingest"))
        .bearer_auth(key)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

const XSS_TYPE: &str = "<img src=x onerror=\"window.__pwned=1\">";
const XSS_BODY: &str = "<script>window.__pwned=2</script>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let dir = temp_dir("db");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let db = dir.join("o.db").display().to_string();
    let config = outworx_serve::ServeConfig::new(vec![KEY.into(), OTHER.into(), EMPTY.into()]);
    tokio::spawn(async move { outworx_serve::serve(listener, &db, config).await.unwrap() });
    let base = format!("http://{addr}");

    ingest(
        addr,
        KEY,
        vec![
            event(
                "stripe",
                200,
                8 * 86_400,
                json!({"event_type": "charge.refunded"}),
            ),
            event(
                "stripe",
                200,
                600,
                json!({"event_type": "payment_intent.succeeded",
                "signature_valid": true, "processing_status": "completed"}),
            ),
            event(
                "stripe",
                200,
                500,
                json!({"event_type": "invoice.paid",
                "signature_valid": true, "processing_status": "silent_drop"}),
            ),
            event(
                "stripe",
                401,
                400,
                json!({"signature_valid": false,
                "signature_failure_reason": "hmac_mismatch", "error_message": "invalid signature"}),
            ),
            event(
                "github",
                500,
                300,
                json!({"event_type": "push", "signature_valid": true,
                "processing_status": "failed", "processing_failure_reason": "db down"}),
            ),
            event(
                "stripe",
                200,
                200,
                json!({"event_type": "payment_intent.succeeded",
                "signature_valid": true, "metadata": {"duplicate": true}}),
            ),
            event(
                "shopify",
                200,
                100,
                json!({"event_type": XSS_TYPE, "signature_valid": true,
                "processing_status": "completed", "request_body": XSS_BODY,
                "request_headers": {"x-evil": "<b>bold</b>", "authorization": "[REDACTED]"}}),
            ),
        ],
    )
    .await;
    ingest(
        addr,
        OTHER,
        vec![event("secret-project", 200, 50, json!({}))],
    )
    .await;

    // The page and its policy, over plain HTTP.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = plain.get(format!("{base}/")).send().await.unwrap();
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "dashboard/");
    let page = plain
        .get(format!("{base}/dashboard/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let stats = plain.get(format!("{base}/api/stats")).send().await.unwrap();
    assert_eq!(stats.status(), 401, "the data needs the key");

    let b = Browser::start().await;
    b.goto(&format!("{base}/")).await;
    b.wait(
        "location.pathname === '/dashboard/' && !document.querySelector('#login').hidden",
        "the sign-in form",
    )
    .await;

    // Keys: a malformed one is refused in the page, an unknown one by the server.
    b.type_into("#key", "not-a-key").await;
    b.click("#login-form button[type=submit]").await;
    b.wait(
        "document.querySelector('#login-error').textContent.includes('32 lowercase hex')",
        "the key format error",
    )
    .await;
    b.type_into("#key", "ohk_00000000000000000000000000000000")
        .await;
    b.click("#login-form button[type=submit]").await;
    b.wait(
        "document.querySelector('#login-error').textContent.includes('did not accept')",
        "the rejected-key error",
    )
    .await;
    assert_eq!(b.js("return sessionStorage.length;").await, 0);

    b.type_into("#key", KEY).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_rows(6, "", "the last day's six deliveries").await;

    // The summary of the last 24 hours, and the providers to filter by (this project's only).
    for (stat, want) in [
        ("total", "6"),
        ("signature_invalid", "1"),
        ("silent_drop", "1"),
        ("failed", "1"),
        ("5xx", "1"),
    ] {
        assert_eq!(
            b.text(&format!("[data-stat=\"{stat}\"]")).await,
            want,
            "{stat}"
        );
    }
    let providers = b
        .js("return [...document.querySelectorAll('#f-provider option')].map(o => o.value);")
        .await;
    assert_eq!(providers, json!(["", "github", "shopify", "stripe"]));

    // The chart: drawn by the page from /api/stats/series, its bars equal to the API's
    // buckets for the same window, outcome by outcome.
    b.wait(
        "document.querySelectorAll('#chart g.bar').length > 0",
        "the chart",
    )
    .await;
    let drawn = b
        .js("const c = document.querySelector('#chart'); return {since: +c.dataset.since, \
             until: +c.dataset.until, bucket: +c.dataset.bucket, bars: [...c.querySelectorAll('g.bar')] \
             .map(g => ({start: +g.dataset.start, counts: Object.fromEntries([...g.querySelectorAll( \
             'rect[data-outcome]')].map(r => [r.dataset.outcome, +r.dataset.count]))}))};")
        .await;
    let rfc3339 = |ms: &Value| {
        time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(ms.as_i64().unwrap()) * 1_000_000,
        )
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
    };
    let api: Value = reqwest::Client::new()
        .get(format!("{base}/api/stats/series"))
        .query(&[
            ("since", rfc3339(&drawn["since"])),
            ("until", rfc3339(&drawn["until"])),
            (
                "bucket",
                (drawn["bucket"].as_i64().unwrap() / 1000).to_string(),
            ),
        ])
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let from_api: Vec<Value> = api["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| json!({"start": b["start_ms"], "counts": b["counts"]}))
        .collect();
    assert_eq!(
        drawn["bars"],
        json!(from_api),
        "the chart is the API's series"
    );
    let drawn_total: i64 = from_api
        .iter()
        .flat_map(|b| b["counts"].as_object().unwrap().values())
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(
        drawn_total, 6,
        "the last day's six deliveries, in the chart"
    );

    // A click on the fullest bar limits the table to its bucket; "Whole window" undoes it.
    let fullest = b
        .js(
            "const bars = [...document.querySelectorAll('#chart g.bar')]; \
             bars.sort((x, y) => +y.dataset.total - +x.dataset.total); \
             return {start: bars[0].dataset.start, total: +bars[0].dataset.total};",
        )
        .await;
    let n = usize::try_from(fullest["total"].as_i64().unwrap()).unwrap();
    b.click(&format!(
        "#chart g.bar[data-start=\"{}\"]",
        fullest["start"].as_str().unwrap()
    ))
    .await;
    b.wait_rows(
        n,
        "!document.querySelector('#range').hidden",
        "the bucket's deliveries",
    )
    .await;
    b.click("#range-clear").await;
    b.wait_rows(
        6,
        "document.querySelector('#range').hidden",
        "the whole window again",
    )
    .await;

    // Newest first, every column as the event says.
    let rows = b.rows().await;
    assert!(
        rows[0].contains("shopify") && rows[0].contains(XSS_TYPE),
        "{}",
        rows[0]
    );
    assert!(rows[1].contains("200 duplicate"), "{}", rows[1]);
    assert!(
        rows[2].contains("github push 500 valid failed 12 ms 1.7 KiB"),
        "{}",
        rows[2]
    );
    assert!(
        rows[3].contains("401 invalid: hmac_mismatch"),
        "{}",
        rows[3]
    );
    assert!(
        rows[4].contains("invoice.paid 200 valid silent drop"),
        "{}",
        rows[4]
    );

    // A payload is text: nothing it carries ran or became an element.
    assert_eq!(b.js("return typeof window.__pwned;").await, "undefined");
    assert_eq!(
        b.js("return document.querySelectorAll('#events img, #events script').length;")
            .await,
        0
    );

    // The cards filter.
    b.click("#card-silent").await;
    b.wait_rows(1, "", "only the silent drop").await;
    assert!(b.rows().await[0].contains("invoice.paid"));
    assert_eq!(
        b.js("return document.querySelector('#f-processing').value;")
            .await,
        "silent_drop"
    );
    b.click("#card-signature").await;
    b.wait_rows(
        1,
        "document.querySelector('#events tbody tr').innerText.includes('401')",
        "only the bad signature",
    )
    .await;

    // The selects and the status field.
    b.click("#clear").await;
    b.wait_rows(6, "", "all six again").await;
    b.click("#f-provider option[value=\"github\"]").await;
    b.wait_rows(
        1,
        "document.querySelector('#events tbody tr').innerText.includes('push')",
        "github's one delivery",
    )
    .await;
    b.click("#clear").await;
    b.type_into("#f-status", "abc").await;
    b.click("#refresh").await;
    b.wait(
        "document.querySelector('#board-error').textContent.includes('three-digit')",
        "the status format error",
    )
    .await;
    b.type_into("#f-status", "401").await;
    b.click("#refresh").await;
    b.wait_rows(
        1,
        "document.querySelector('#board-error').textContent === ''",
        "the 401 only",
    )
    .await;
    b.type_into("#f-status", "404").await;
    b.click("#refresh").await;
    b.wait_rows(
        0,
        "!document.querySelector('#empty').hidden",
        "the empty state",
    )
    .await;
    b.type_into("#f-status", "").await;
    b.click("#clear").await;
    b.wait_rows(
        6,
        "document.querySelector('#empty').hidden",
        "all six again",
    )
    .await;

    // The detail of the hostile event: every field as text.
    b.click("#events tbody tr:first-child").await;
    b.wait(
        "document.querySelector('#detail').open",
        "the detail dialog",
    )
    .await;
    let detail = b.text("#detail").await;
    assert!(detail.contains(XSS_BODY), "{detail}");
    assert!(
        detail.contains("<b>bold</b>") && detail.contains("[REDACTED]"),
        "{detail}"
    );
    assert_eq!(b.js("return typeof window.__pwned;").await, "undefined");
    assert_eq!(
        b.js("return document.querySelectorAll('#detail img, #detail script, #detail b').length;")
            .await,
        0
    );
    b.screenshot(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-detail.png"))
        .await;
    b.click("#d-close").await;
    b.wait(
        "!document.querySelector('#detail').open",
        "the dialog closed",
    )
    .await;

    // The failed event's detail says why.
    b.click("#events tbody tr:nth-child(3)").await;
    b.wait(
        "document.querySelector('#detail').open",
        "the detail dialog",
    )
    .await;
    let detail = b.text("#d-fields").await;
    assert!(
        detail.contains("Processing failure") && detail.contains("db down"),
        "{detail}"
    );
    b.click("#d-close").await;

    // All time includes the week-old event.
    b.click("#f-window option[value=\"\"]").await;
    b.wait_rows(
        7,
        "document.querySelector('[data-stat=total]').textContent === '7'",
        "all seven",
    )
    .await;

    // Live: a new delivery shows up without a click (the page polls every 5 s).
    ingest(
        addr,
        KEY,
        vec![event("slack", 200, 0, json!({"event_type": "app_mention"}))],
    )
    .await;
    b.wait_rows(
        8,
        "document.querySelector('#events tbody tr').innerText.includes('app_mention')",
        "the live update",
    )
    .await;
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    b.screenshot(&shot).await;

    // Paging: 50 at a time.
    let many = (0..60)
        .map(|i| event("stripe", 200, 1, json!({"event_type": format!("bulk.{i}")})))
        .collect();
    ingest(addr, KEY, many).await;
    b.click("#refresh").await;
    b.wait_rows(
        50,
        "!document.querySelector('#older').hidden",
        "the first page",
    )
    .await;
    b.click("#older").await;
    b.wait_rows(
        68,
        "document.querySelector('#older').hidden",
        "every delivery after paging",
    )
    .await;

    // The key lasts for the tab: a reload stays signed in; signing out forgets it.
    b.goto(&format!("{base}/dashboard/")).await;
    b.wait("!document.querySelector('#board').hidden && document.querySelectorAll('#events tbody tr').length > 0", "the board after a reload")
        .await;
    b.click("#signout").await;
    b.wait(
        "!document.querySelector('#login').hidden",
        "the sign-in form",
    )
    .await;
    assert_eq!(b.js("return sessionStorage.length;").await, 0);
    assert_eq!(b.rows().await.len(), 0);

    // Another project's key sees that project only.
    b.type_into("#key", OTHER).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_rows(
        1,
        "document.querySelector('#events tbody tr').innerText.includes('secret-project')",
        "the other project's one delivery",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelector('#f-window').value;")
            .await,
        "86400"
    );

    // A project with no deliveries says so.
    b.click("#signout").await;
    b.type_into("#key", EMPTY).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_rows(
        0,
        "!document.querySelector('#board').hidden && !document.querySelector('#empty').hidden && document.querySelector('[data-stat=total]').textContent === '0'",
        "the empty state",
    )
    .await;
    // ...also on a fresh page load.
    b.goto(&format!("{base}/dashboard/")).await;
    b.wait_rows(
        0,
        "document.body.dataset.loaded && !document.querySelector('#empty').hidden",
        "the empty state after a reload",
    )
    .await;

    b.quit().await;
    let _ = std::fs::remove_dir_all(dir);
    println!("screenshot: {}", shot.display());
}

/// A page served through a tunnel, on the dashboard's own origin (no `--tunnel-url`, the
/// worst case): it tries to register a service worker over the whole origin and to script a
/// `window.open('/dashboard/')`, which would let it read the keys others type there. The
/// relayed response is sandboxed, so neither happens; the page's script does not even run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnelled_page_cannot_reach_the_dashboard() {
    let dir = temp_dir("tunnel");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let db = dir.join("o.db").display().to_string();
    let mut config = outworx_serve::ServeConfig::new(vec![KEY.into()]);
    config.poll_wait = Duration::from_secs(1);
    tokio::spawn(async move { outworx_serve::serve(listener, &db, config).await.unwrap() });
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let session: Value = http
        .post(format!("{base}/api/forward/sessions"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ingress = session["ingressUrl"].as_str().unwrap().to_owned();
    let slug_path = ingress.trim_start_matches(&base).to_owned();
    let page = format!(
        r#"<!doctype html><html><head><title>tunnel</title></head><body><script>
document.title = 'scripted';
navigator.serviceWorker.register('{slug_path}/sw.js', {{scope: '/'}})
  .then(function () {{ document.title = 'sw-registered'; }}, function () {{}});
var w = window.open('/dashboard/');
setTimeout(function () {{
  try {{ w.document.title = 'owned'; document.title += ' popup-scripted'; }} catch (e) {{}}
}}, 300);
</script></body></html>"#
    );

    // The tunnel's CLI, played over the real API: it answers the page and the worker script,
    // both with headers that ask for the most.
    let cli = {
        let (http, base) = (http.clone(), base.clone());
        let id = session["sessionId"].as_str().unwrap().to_owned();
        tokio::spawn(async move {
            loop {
                let Ok(r) = http
                    .get(format!("{base}/api/forward/poll?session={id}"))
                    .bearer_auth(KEY)
                    .send()
                    .await
                else {
                    continue;
                };
                let polled: Value = r.json().await.unwrap_or_default();
                for e in polled["events"].as_array().cloned().unwrap_or_default() {
                    let (ct, body) = if e["path"] == "/sw.js" {
                        (
                            "text/javascript",
                            "self.addEventListener('fetch', function () {});".to_owned(),
                        )
                    } else {
                        ("text/html", page.clone())
                    };
                    let answer = json!({"eventId": e["id"], "status": 200, "body": body,
                        "headers": {"content-type": ct, "service-worker-allowed": "/",
                            "set-cookie": "session=stolen; Path=/",
                            "access-control-allow-origin": "*"}});
                    let _ = http
                        .post(format!("{base}/api/forward/responses"))
                        .bearer_auth(KEY)
                        .json(&answer)
                        .send()
                        .await;
                }
            }
        })
    };

    // What the relay answers, as headers.
    let r = http.get(format!("{ingress}/page")).send().await.unwrap();
    let h = r.headers();
    assert_eq!(h["content-security-policy"], "sandbox");
    assert_eq!(h["x-content-type-options"], "nosniff");
    for gone in [
        "service-worker-allowed",
        "set-cookie",
        "access-control-allow-origin",
    ] {
        assert!(!h.contains_key(gone), "{gone} was relayed");
    }
    let dash = http.get(format!("{base}/dashboard/")).send().await.unwrap();
    assert_eq!(dash.headers()["cross-origin-opener-policy"], "same-origin");

    // In the browser.
    let browser = Browser::start().await;
    browser.goto(&format!("{ingress}/page")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let title = browser.js("return document.title;").await;
    assert_eq!(title, "tunnel", "the tunnelled page's script ran");
    let windows = browser
        .cmd(reqwest::Method::GET, "/window/handles", None)
        .await;
    assert_eq!(windows.as_array().unwrap().len(), 1, "a window was opened");
    browser.goto(&format!("{base}/dashboard/")).await;
    let workers = browser
        .js_async(
            "const done = arguments[arguments.length - 1]; \
             navigator.serviceWorker.getRegistrations().then(r => done(r.length), () => done(-1));",
        )
        .await;
    assert_eq!(
        workers, 0,
        "a service worker was registered on the dashboard's origin"
    );
    browser.quit().await;
    cli.abort();
    let _ = std::fs::remove_dir_all(dir);
}
