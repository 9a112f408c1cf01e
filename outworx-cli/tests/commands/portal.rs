//! The subscriber portal in a real headless Chromium, inside an `<iframe>` of a page on a
//! second origin (the sender's application), against a real `outworx serve --deliver`: every
//! screen's action reaches the outbox (checked through the API and at a real receiver), the
//! token leaves the address bar, a token about to expire is renewed through the parent page,
//! another owner's objects never show, hostile markup stays text, and nothing is left after
//! signing out.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use outworx_test_support::browser::Browser;
use outworx_test_support::process::Kill;
use serde_json::{Value, json};

const KEY_A: &str = "ohk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "ohk_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// What the receiver got: (path, webhook-id).
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

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    async fn post(&self, key: &str, path: &str, body: Value) -> Value {
        let (s, v) = self
            .call(key, reqwest::Method::POST, path, Some(body))
            .await;
        assert!((200..300).contains(&s), "{path}: {s} {v}");
        v
    }
    async fn get(&self, key: &str, path: &str) -> Value {
        let (s, v) = self.call(key, reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }
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
async fn the_portal_works_in_an_iframe_of_another_origin() {
    let dir = outworx_test_support::net::temp_dir("portal");
    let parent_port = outworx_test_support::net::free_port();
    let parent_origin = format!("http://127.0.0.1:{parent_port}");
    let port = outworx_test_support::net::free_port();
    // The portal on `localhost`, its parent on `127.0.0.1`: two origins (and two sites).
    let child = Command::new(env!("CARGO_BIN_EXE_outworx"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.join("serve.db"))
        .arg("--outbox-db")
        .arg(dir.join("outbox.db"))
        .args(["--deliver", "--allow-target", "127.0.0.1/32"])
        .args(["--portal-frame-ancestor", &parent_origin])
        .args(["--public-url", &format!("http://localhost:{port}")])
        .env("OUTWORX_SERVE_API_KEYS", format!("{KEY_A},{KEY_B}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _server = Kill(child);
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    });
    for _ in 0..200 {
        if api
            .http
            .get(format!("{}/api/v1/health", api.base))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rx, got) = receiver().await;

    // The sender's side: event types, two applications, endpoints, a message.
    for name in ["order.created", "order.paid"] {
        api.post(
            KEY_A,
            "/event-type",
            json!({"name": name, "description": name}),
        )
        .await;
    }
    api.post(
        KEY_A,
        "/app",
        json!({"name": "Acme <b>Inc</b>", "uid": "acme"}),
    )
    .await;
    api.post(KEY_A, "/app", json!({"name": "Other", "uid": "other"}))
        .await;
    api.post(KEY_B, "/app", json!({"name": "B's acme", "uid": "acme"}))
        .await;
    let hostile = r#"<img src=x onerror="window.pwned=1">"#;
    let first = api
        .post(
            KEY_A,
            "/app/acme/endpoint",
            json!({"url": format!("{rx}/first"), "description": hostile}),
        )
        .await;
    api.post(
        KEY_A,
        "/app/other/endpoint",
        json!({"url": format!("{rx}/other-app")}),
    )
    .await;
    api.post(
        KEY_B,
        "/app/acme/endpoint",
        json!({"url": format!("{rx}/project-b")}),
    )
    .await;
    let msg = api
        .post(
            KEY_A,
            "/app/acme/msg",
            json!({"eventType": "order.created", "payload": {"id": 1}}),
        )
        .await;
    let msg_id = msg["id"].as_str().unwrap().to_owned();
    wait_for("the first delivery", || {
        got.lock().unwrap().iter().any(|(_, id)| *id == msg_id)
    })
    .await;

    // `outworx portal-url` prints a link; another project's key gets a 404 for this one.
    let cli = |key: &str, owner: &str| {
        Command::new(env!("CARGO_BIN_EXE_outworx"))
            .args(["portal-url", "--owner", owner, "--endpoint", &api.base])
            .env("OUTWORX_API_KEY", key)
            .output()
            .unwrap()
    };
    let link = cli(KEY_A, "acme");
    let printed = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.status.success(),
        "{}",
        String::from_utf8_lossy(&link.stderr)
    );
    assert!(
        printed
            .trim()
            .starts_with(&format!("http://localhost:{port}/portal/#token=opt_")),
        "{printed}"
    );
    let refused = cli(KEY_B, "other");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("404"),
        "{refused:?}"
    );

    // The page's first token.
    let access = api
        .post(KEY_A, "/auth/app-portal-access/acme", json!({}))
        .await;
    let url = access["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("http://localhost:{port}/portal/#token=opt_")),
        "{url}"
    );
    let first_token = access["token"].as_str().unwrap().to_owned();

    // The parent page: embeds the portal, and answers its requests for a token with one from
    // its own backend (`/token`, which asks `outworx serve` with the project's key).
    let minted = Arc::new(Mutex::new(0u32));
    let page = format!(
        r#"<!doctype html><title>Sender</title>
<iframe id="portal" src="{url}" style="width:1300px;height:850px"></iframe>
<script>
window.addEventListener('message', async (ev) => {{
  if (ev.data && ev.data.type === 'outworx-portal:token-expiring') {{
    const r = await fetch('/token', {{method: 'POST'}});
    const t = await r.json();
    document.getElementById('portal').contentWindow.postMessage({{type: 'outworx-portal:token', token: t.token}}, 'http://localhost:{port}');
  }}
}});
</script>"#
    );
    let parent = {
        let (api, minted) = (api.clone(), minted.clone());
        Router::new()
            .route("/", get(move || async move { axum::response::Html(page) }))
            .route(
                "/token",
                post(move || {
                    let (api, minted) = (api.clone(), minted.clone());
                    async move {
                        *minted.lock().unwrap() += 1;
                        axum::Json(
                            api.post(KEY_A, "/auth/app-portal-access/acme", json!({}))
                                .await,
                        )
                    }
                }),
            )
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", parent_port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, parent).await.unwrap() });

    let b = Browser::start().await;
    b.goto(&format!("{parent_origin}/")).await;
    b.enter_frame("#portal").await;
    b.wait(
        "document.querySelectorAll('#endpoints tbody tr').length === 1",
        "acme's one endpoint",
    )
    .await;
    // The token is out of the address bar.
    let href = b.js("return location.href;").await;
    assert!(!href.as_str().unwrap().contains("token"), "{href}");
    b.wait(
        "sessionStorage.getItem('outworx-portal-token') !== null",
        "a kept token",
    )
    .await;
    // The sender expires every token of the application: the page's next call is refused,
    // and it gets a new token through its parent, from the sender's backend.
    assert_eq!(*minted.lock().unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    api.post(KEY_A, "/auth/app/acme/expire-all", json!({}))
        .await;
    b.click("#endpoints tbody tr button.open").await;
    b.wait(
        &format!(
            "sessionStorage.getItem('outworx-portal-token') !== {}",
            json!(first_token)
        ),
        "a renewed token",
    )
    .await;
    assert_eq!(*minted.lock().unwrap(), 1);
    b.wait(
        "document.querySelector('#status').textContent === 'Session renewed.'",
        "the renewal said",
    )
    .await;
    // The call that was refused works with the new token; back to the list.
    b.click("#endpoints tbody tr button.open").await;
    b.wait(
        "!document.querySelector('#endpoint').hidden",
        "the endpoint, with the new token",
    )
    .await;
    b.click("#back").await;
    b.wait(
        "document.querySelectorAll('#endpoints tbody tr').length === 1 && !document.querySelector('#list').hidden",
        "the list again",
    )
    .await;
    // Hostile markup is text: the description reads as written, and nothing ran.
    assert_eq!(b.text("#endpoints tbody tr td:nth-child(2)").await, hostile);
    assert_eq!(
        b.js("return document.querySelectorAll('img').length;")
            .await,
        0
    );
    assert_eq!(b.js("return window.pwned === undefined;").await, true);
    let title = b.text("#title").await;
    assert_eq!(title, "Webhooks: Acme <b>Inc</b>");
    // Only acme's endpoint: not the other application's, not project B's.
    let listed = b
        .js("return document.querySelector('#endpoints tbody').innerText;")
        .await;
    let listed = listed.as_str().unwrap();
    assert!(
        listed.contains("/first") && !listed.contains("other-app") && !listed.contains("project-b"),
        "{listed}"
    );
    // The page's own token reaches nothing else either (as a missing application).
    let other = b
        .js_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/app/other/endpoint', {headers: {authorization: 'Bearer ' + sessionStorage.getItem('outworx-portal-token')}})
               .then(r => done(r.status));",
        )
        .await;
    assert_eq!(other, 404);

    // Add an endpoint with an event type picked.
    b.click("#add summary").await;
    b.type_into("#new-url", &format!("{rx}/second")).await;
    b.type_into("#new-description", "made in the portal").await;
    b.wait(
        "document.querySelectorAll('#new-types input').length === 2",
        "the event type picker",
    )
    .await;
    b.click("#new-types input[value='order.paid']").await;
    b.click("#create").await;
    b.wait("!document.querySelector('#endpoint').hidden && document.querySelector('#ep-title').textContent.endsWith('/second')", "the new endpoint").await;
    let eps = api.get(KEY_A, "/app/acme/endpoint").await;
    let second = eps["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("/second"))
        .expect("created through the portal")
        .clone();
    assert_eq!(second["eventTypes"], json!(["order.paid"]));
    assert_eq!(second["description"], "made in the portal");
    let second_id = second["id"].as_str().unwrap().to_owned();

    // The signing secret, revealed on request, is the endpoint's.
    b.click("#reveal").await;
    b.wait(
        "document.querySelector('#secret').textContent.startsWith('whsec_')",
        "the secret",
    )
    .await;
    let secret = api
        .get(KEY_A, &format!("/app/acme/endpoint/{second_id}/secret"))
        .await;
    assert_eq!(b.text("#secret").await, secret["key"].as_str().unwrap());
    b.click("#reveal").await;
    assert_eq!(b.text("#secret").await, "", "hidden again");

    // A test event reaches the receiver.
    b.click("#test-event").await;
    wait_for("the test event", || {
        got.lock().unwrap().iter().any(|(p, _)| p == "/second")
    })
    .await;
    b.wait(
        "document.querySelectorAll('#log tbody tr').length >= 1",
        "the test event in the log",
    )
    .await;
    // Its attempts, and a replay that delivers it again.
    b.click("#log tbody tr button.attempts").await;
    b.wait("!document.querySelector('#attempts').hidden && document.querySelectorAll('#attempts tbody tr').length >= 1", "the attempts").await;
    assert_eq!(b.text("#attempts tbody tr pre").await, "ok");
    let before = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/second")
        .count();
    b.click("#log tbody tr button.replay").await;
    wait_for("the replay", || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/second")
            .count()
            > before
    })
    .await;

    // Rotation changes the secret; disable and enable reach the outbox.
    b.type_into("#grace", "0").await;
    b.click("#rotate").await;
    b.wait(&format!("document.querySelector('#secret').textContent.startsWith('whsec_') && document.querySelector('#secret').textContent !== {}", json!(secret["key"])), "the new secret").await;
    let rotated = api
        .get(KEY_A, &format!("/app/acme/endpoint/{second_id}/secret"))
        .await;
    assert_ne!(rotated["key"], secret["key"]);
    assert_eq!(b.text("#secret").await, rotated["key"].as_str().unwrap());
    b.click("#ep-toggle").await;
    b.wait(
        "document.querySelector('#ep-toggle').textContent === 'Enable'",
        "disabled",
    )
    .await;
    assert_eq!(
        api.get(KEY_A, &format!("/app/acme/endpoint/{second_id}"))
            .await["disabled"],
        true
    );
    b.click("#ep-toggle").await;
    b.wait(
        "document.querySelector('#ep-toggle').textContent === 'Disable'",
        "enabled",
    )
    .await;
    assert_eq!(
        api.get(KEY_A, &format!("/app/acme/endpoint/{second_id}"))
            .await["disabled"],
        false
    );
    // Edit: the description.
    b.type_into("#ep-description", "renamed").await;
    b.click("#ep-save").await;
    b.wait(
        "document.querySelector('#status').textContent === 'Saved.'",
        "saved",
    )
    .await;
    assert_eq!(
        api.get(KEY_A, &format!("/app/acme/endpoint/{second_id}"))
            .await["description"],
        "renamed"
    );
    // Recover since a time answers (nothing failed).
    b.js("const d = new Date(Date.now() - 3600e3); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); document.querySelector('#recover-since').value = d.toISOString().slice(0, 16);").await;
    b.click("#recover").await;
    b.wait(
        "document.querySelector('#status').textContent.includes('queued again')",
        "recovered",
    )
    .await;

    // Signing out leaves nothing: no token kept, none in the URL, no data on the page.
    b.click("#signout").await;
    b.wait(
        "!document.querySelector('#signed-out').hidden",
        "signed out",
    )
    .await;
    assert_eq!(b.js("return sessionStorage.length;").await, 0);
    assert_eq!(
        b.js("return document.querySelectorAll('tbody tr').length;")
            .await,
        0
    );
    assert!(
        !b.js("return location.href;")
            .await
            .as_str()
            .unwrap()
            .contains("token")
    );
    assert_eq!(b.text("#secret").await, "");
    b.leave_frame().await;
    b.quit().await;
    let _ = first;
}
