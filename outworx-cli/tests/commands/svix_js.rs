//! Svix's JavaScript side against a real `outworx serve --deliver`: the official client (npm
//! `svix`) in Node.js, and `svix-react` in headless Chromium on a second origin, both pinned
//! in `js/package-lock.json` and installed by `js/setup.sh` (npm, once, under the target
//! directory). Neither knows this project.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use outworx_test_support::browser::Browser;
use outworx_test_support::process::Kill;
use serde_json::{Value, json};

const KEY: &str = "ohk_cccccccccccccccccccccccccccccccc";

/// The npm packages installed and the svix-react page built: their directory.
fn js_dir() -> PathBuf {
    let outworx = Path::new(env!("CARGO_BIN_EXE_outworx"));
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let dir = outworx
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in target/<profile>")
        .join("js-svix");
    let made = Command::new("bash")
        .arg(here.join("setup.sh"))
        .arg(&dir)
        .output()
        .expect("bash runs");
    assert!(
        made.status.success(),
        "could not install the npm packages (node, npm and the npm registry are needed):\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&made.stdout).trim())
}

/// Each delivery's (path, webhook-id).
type Got = Arc<Mutex<Vec<(String, String)>>>;

async fn receiver() -> (String, Got) {
    let got: Got = Arc::default();
    let seen = got.clone();
    let app = Router::new().route(
        "/{*path}",
        post(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let seen = seen.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push((uri.path().to_owned(), id));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

async fn start_serve(dir: &Path) -> (Kill, u16) {
    let port = outworx_test_support::net::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_outworx"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.join("serve.db"))
        .arg("--outbox-db")
        .arg(dir.join("outbox.db"))
        .args(["--deliver", "--allow-target", "127.0.0.1/32"])
        .env("OUTWORX_SERVE_API_KEYS", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Kill(child);
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{port}/api/v1/health"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (server, port)
}

async fn api_post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{base}/api/v1{path}"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svix_js_client_and_svix_react_use_outworx_serve() {
    let js = tokio::task::spawn_blocking(js_dir).await.unwrap();
    let dir = outworx_test_support::net::temp_dir("svix-js");
    let (_server, port) = start_serve(&dir).await;
    let base = format!("http://127.0.0.1:{port}");
    let (rx, got) = receiver().await;

    // The official client, in Node.js.
    let run = {
        let (js, base, rx) = (js.clone(), base.clone(), rx.clone());
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .current_dir(&js)
                .args(["client.mjs", &base, KEY, &rx])
                .output()
                .expect("node runs")
        })
        .await
        .unwrap()
    };
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && out.contains("svix-js: all checks passed"),
        "client.mjs failed ({}):\n{out}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    // svix-react, in Chromium, on another origin than the API (CORS as Svix answers it).
    let http = reqwest::Client::new();
    api_post(
        &http,
        &base,
        "/app",
        json!({"name": "React", "uid": "react"}),
    )
    .await;
    api_post(
        &http,
        &base,
        "/app/react/endpoint",
        json!({"url": format!("{rx}/react")}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = api_post(
            &http,
            &base,
            "/app/react/msg",
            json!({"eventType": "page.viewed", "payload": {"i": i}}),
        )
        .await;
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    wait_for("three deliveries", || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/react")
            .count()
            >= 3
    })
    .await;
    let access = api_post(&http, &base, "/auth/app-portal-access/react", json!({})).await;
    let token = access["token"].as_str().unwrap();
    let app_id = api_post(
        &http,
        &base,
        "/app?get_if_exists=true",
        json!({"name": "React", "uid": "react"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The built page, served from a second origin.
    let dist = js.join("dist");
    let page_dir = dist.clone();
    let site = Router::new()
        .route(
            "/",
            get(move || {
                let index = std::fs::read_to_string(page_dir.join("index.html")).unwrap();
                async move { axum::response::Html(index) }
            }),
        )
        .route(
            "/assets/{file}",
            get(
                move |axum::extract::Path(file): axum::extract::Path<String>| {
                    let dist = dist.clone();
                    async move {
                        let ok = file
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                            && !file.starts_with('.');
                        let body = ok
                            .then(|| std::fs::read(dist.join("assets").join(&file)).ok())
                            .flatten()
                            .unwrap_or_default();
                        let kind = if file.ends_with(".css") {
                            "text/css"
                        } else {
                            "text/javascript"
                        };
                        ([(axum::http::header::CONTENT_TYPE, kind)], body)
                    }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, site).await.unwrap() });

    let b = Browser::start().await;
    b.goto(&format!(
        "{site_url}/#token={token}&app={app_id}&server=http://localhost:{port}"
    ))
    .await;
    b.wait(
        "document.querySelectorAll('#endpoints li').length === 1",
        "the application's endpoint (useEndpoints)",
    )
    .await;
    // useNewEndpoint creates one.
    b.type_into("#url", &format!("{rx}/from-react")).await;
    b.click("#create").await;
    b.wait(
        "document.querySelector('#create-status').textContent.startsWith('created')",
        "the new endpoint (useNewEndpoint)",
    )
    .await;
    b.wait(
        "document.querySelectorAll('#endpoints li').length === 2",
        "two endpoints listed",
    )
    .await;
    let eps: Value = http
        .get(format!("{base}/api/v1/app/react/endpoint"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        eps["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["url"].as_str().unwrap().ends_with("/from-react")),
        "{eps}"
    );
    // useMessages pages through the messages, two at a time, newest first.
    b.wait(
        "document.querySelectorAll('#messages > li').length === 2",
        "the first page of messages (useMessages)",
    )
    .await;
    let first_page = b
        .js("return [...document.querySelectorAll('#messages > li')].map(l => l.dataset.id);")
        .await;
    assert_eq!(first_page, json!([ids[2], ids[1]]));
    b.wait("!document.querySelector('#next').disabled", "a next page")
        .await;
    b.click("#next").await;
    b.wait(
        &format!(
            "document.querySelectorAll('#messages > li').length === 1 && document.querySelector('#messages > li').dataset.id === {}",
            json!(ids[0])
        ),
        "the second page",
    )
    .await;
    b.click("#prev").await;
    b.wait(
        "document.querySelectorAll('#messages > li').length === 2",
        "the first page again",
    )
    .await;
    // useMessageAttempts lists each message's attempt; useAttemptFunctions resends it.
    b.wait(
        "document.querySelectorAll('#messages .attempts li').length === 2",
        "the attempts (useMessageAttempts)",
    )
    .await;
    let before = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, id)| *id == ids[2])
        .count();
    b.click("#messages > li .resend").await;
    wait_for("the resend (useAttemptFunctions)", || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(_, id)| *id == ids[2])
            .count()
            > before
    })
    .await;
    b.quit().await;
}
