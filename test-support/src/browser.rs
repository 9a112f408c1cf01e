//! A real headless Chromium driven over WebDriver (`chromedriver`), for the dashboard's
//! browser tests (`outworx-serve`'s and the CLI's `operations_*`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them when missing);
//! `CHROMIUM` and `CHROMEDRIVER` override the paths. Without them a test fails and says so.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::net::{free_port, temp_dir};
use crate::process::Kill;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session on a headless Chromium.
pub struct Browser {
    http: reqwest::Client,
    url: String,
    _driver: Kill,
    profile: PathBuf,
}

impl Browser {
    pub async fn start() -> Browser {
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

    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    /// Switches into the `<iframe>` matching `css` (its document is then the one every
    /// command reads).
    pub async fn enter_frame(&self, css: &str) {
        let id = self.find(css).await;
        self.post("/frame", json!({"id": {ELEMENT: id}})).await;
    }

    /// Switches back to the top-level page.
    pub async fn leave_frame(&self) {
        self.post("/frame", json!({"id": null})).await;
    }

    pub async fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Runs `script`, whose last argument is the callback that returns its value.
    pub async fn js_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({"script": script, "args": []}))
            .await
    }

    /// Polls `script` until it is true (15 s); on timeout, fails showing the page's text.
    pub async fn wait(&self, script: &str, what: &str) {
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
    pub async fn wait_rows(&self, n: usize, also: &str, what: &str) {
        let also = if also.is_empty() { "true" } else { also };
        self.wait(
            &format!("document.querySelectorAll('#events tbody tr').length === {n} && ({also})"),
            what,
        )
        .await;
    }

    pub async fn rows(&self) -> Vec<String> {
        let v = self
            .js("return [...document.querySelectorAll('#events tbody tr')].map(r => r.innerText.replace(/\\s+/g, ' ').trim());")
            .await;
        serde_json::from_value(v).unwrap()
    }

    pub async fn text(&self, css: &str) -> String {
        self.js(&format!(
            "return document.querySelector({}).textContent.trim();",
            json!(css)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub async fn quit(self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Waits for the dashboard's chart, then checks that its bars are the API's series for
    /// the window the page drew, bucket by bucket and outcome by outcome. Returns the total.
    pub async fn chart_equals_api(&self, base: &str, key: &str) -> i64 {
        let b = self;
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
            .bearer_auth(key)
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
        drawn_total
    }
}
