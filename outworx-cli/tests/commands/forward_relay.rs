//! `outworx forward` against a relay that wants more than it should: a fake Outworx relay
//! (the real forward API, served here) hands the real CLI requests whose paths try to reach
//! another host or port of the developer's machine, or a path outside the target's prefix.
//! None of them may reach anything but the target under its prefix; the relay gets a 502.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{any, get, post};
use serde_json::{Value, json};

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Default)]
struct Relay {
    /// Paths still to hand out.
    to_send: Arc<Mutex<Vec<String>>>,
    /// The CLI's reports, by event id.
    answers: Arc<Mutex<Vec<Value>>>,
}

/// Serves a router on loopback, returning its port.
async fn serve(app: Router) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cannot_steer_forward_off_its_target() {
    // Where the relay must not reach: another service on this machine.
    let hits = Arc::new(Mutex::new(Vec::<String>::new()));
    let elsewhere = {
        let hits = hits.clone();
        serve(Router::new().route(
            "/{*p}",
            any(move |uri: axum::http::Uri| {
                let hits = hits.clone();
                async move {
                    hits.lock().unwrap().push(uri.to_string());
                    "internal secret"
                }
            }),
        ))
        .await
    };
    // The target: only /app/... is the developer's to expose.
    let target_hits = Arc::new(Mutex::new(Vec::<String>::new()));
    let target = {
        let hits = target_hits.clone();
        serve(Router::new().route(
            "/{*p}",
            any(move |uri: axum::http::Uri| {
                let hits = hits.clone();
                async move {
                    hits.lock().unwrap().push(uri.path().to_owned());
                    "target"
                }
            }),
        ))
        .await
    };

    let relay = Relay::default();
    let api = Router::new()
        .route(
            "/api/forward/sessions",
            post(|| async {
                axum::Json(
                    json!({"sessionId": "s1", "ingressUrl": "http://relay.invalid/t/x",
                    "expiresAt": "2999-01-01T00:00:00Z"}),
                )
            }),
        )
        .route(
            "/api/forward/poll",
            get(|State(r): State<Relay>| async move {
                let events: Vec<Value> = r
                    .to_send
                    .lock()
                    .unwrap()
                    .drain(..)
                    .enumerate()
                    .map(|(i, path)| {
                        json!({"id": format!("e{i}"), "method": "GET", "path": path,
                            "request_headers": {}, "request_body": ""})
                    })
                    .collect();
                if events.is_empty() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                axum::Json(json!({ "events": events }))
            }),
        )
        .route(
            "/api/forward/responses",
            post(
                |State(r): State<Relay>, axum::Json(v): axum::Json<Value>| async move {
                    r.answers.lock().unwrap().push(v);
                    axum::Json(json!({"ok": true}))
                },
            ),
        )
        .route(
            "/api/forward/sessions/{id}",
            axum::routing::delete(|| async { axum::Json(json!({"ok": true})) }),
        )
        .with_state(relay.clone());
    let relay_port = serve(api).await;

    // With a bare target (the host must hold) and with a path prefix (the prefix must hold).
    for (target_arg, reached) in [
        (format!("127.0.0.1:{target}"), "/ok"),
        (format!("http://127.0.0.1:{target}/app"), "/app/ok"),
    ] {
        target_hits.lock().unwrap().clear();
        relay.answers.lock().unwrap().clear();
        *relay.to_send.lock().unwrap() = vec![
            format!("@127.0.0.1:{elsewhere}/steal"),
            format!(":{elsewhere}/steal"),
            ".localhost/steal".into(),
            "/../admin".into(),
            "/%2e%2e/admin".into(),
            "/ok".into(),
        ];
        let cli = Kill(
            Command::new(env!("CARGO_BIN_EXE_outworx"))
                .args([
                    "forward",
                    &target_arg,
                    "--endpoint",
                    &format!("http://127.0.0.1:{relay_port}"),
                ])
                .env("OUTWORX_API_KEY", KEY)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        for _ in 0..100 {
            if relay.answers.lock().unwrap().len() == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(cli);
        let answers = relay.answers.lock().unwrap().clone();
        assert_eq!(answers.len(), 6, "every request was answered: {answers:?}");
        assert!(
            hits.lock().unwrap().is_empty(),
            "{target_arg}: the relay reached another service: {:?}",
            hits.lock().unwrap()
        );
        for a in &answers {
            assert!(
                !a["body"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("internal secret"),
                "{a}"
            );
        }
        // Only the well-formed path reached the target, under its prefix.
        assert_eq!(*target_hits.lock().unwrap(), [reached], "{target_arg}");
        let refused = answers.iter().filter(|a| a["status"] == 502).count();
        assert_eq!(refused, 5, "{answers:?}");
    }
}
