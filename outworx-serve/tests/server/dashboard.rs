//! The dashboard in a real headless Chromium, driven over WebDriver (`chromedriver`), against
//! a real `outworx serve` on loopback with events ingested through its API.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them when missing);
//! `CHROMIUM` and `CHROMEDRIVER` override the paths. Without them the test fails and says so.

use outworx_test_support::browser::Browser;
use outworx_test_support::net::temp_dir;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";
const OTHER: &str = "ohk_fedcba9876543210fedcba9876543210";
const EMPTY: &str = "ohk_00000000000000000000000000000001";

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
    let drawn_total = b.chart_equals_api(&base, KEY).await;
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
