//! A real Prometheus server scrapes a real receiver: after a scripted set of deliveries (a
//! valid one, two invalid ones with different reasons, a duplicate, a silent drop), PromQL
//! through Prometheus's HTTP API returns the exact counts. `.ci/run` installs Debian's
//! `prometheus` package; the test starts it on a free port with a generated config.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::security::{Provider, now_unix};
use outworx_hooks::testing::Signer;
use outworx_hooks::{Track, webhook};
use serde_json::{Value, json};

const SECRET: &str = "whsec_metrics_test_secret";

#[derive(serde::Deserialize)]
struct Event {
    r#type: String,
}

#[webhook(
    provider = "stripe",
    secret = "whsec_metrics_test_secret",
    idempotency,
    require_processed
)]
async fn stripe_hook(track: Track, Json(event): Json<Event>) -> &'static str {
    if event.r#type == "charge.succeeded" {
        track.processed();
    }
    "ok"
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn body(id: &str, kind: &str) -> String {
    json!({"id": id, "object": "event", "type": kind, "data": {"object": {}}}).to_string()
}

async fn query(http: &reqwest::Client, prom: &str, q: &str) -> Option<f64> {
    let r: Value = http
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    r["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_exact_counts() {
    let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Prometheus is not installed (.ci/run installs Debian's `prometheus` package)");

    let app = Router::new()
        .route("/stripe", post(stripe_hook))
        .merge(outworx_hooks::metrics::router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("outworx-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: receiver\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Kill(
        Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{port}");

    let http = reqwest::Client::new();
    let send = |signed: outworx_hooks::testing::Signed| {
        let http = http.clone();
        async move {
            http.post(format!("http://{target}/stripe"))
                .headers(signed.headers)
                .body(signed.body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let signer = Signer::new(Provider::Stripe, SECRET);
    let valid = signer.sign(body("evt_1", "charge.succeeded")).unwrap();
    assert_eq!(send(valid.clone()).await, 200);
    assert_eq!(send(valid).await, 200, "the duplicate");
    let wrong = Signer::new(Provider::Stripe, "whsec_someone_else")
        .sign(body("evt_2", "charge.succeeded"))
        .unwrap();
    assert_eq!(send(wrong).await, 401);
    let stale = Signer::new(Provider::Stripe, SECRET)
        .at(now_unix() - 3600)
        .sign(body("evt_3", "charge.succeeded"))
        .unwrap();
    assert_eq!(send(stale).await, 401);
    let unmarked = signer.sign(body("evt_4", "customer.created")).unwrap();
    assert_eq!(send(unmarked).await, 200);

    // Wait for a scrape that has all five.
    let total = r#"sum(webhooks_received_total{route="stripe_hook"})"#;
    let mut seen = None;
    for _ in 0..300 {
        seen = query(&http, &prom, total).await;
        if seen == Some(5.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, Some(5.0), "Prometheus never saw the five deliveries");
    for (q, want) in [
        (r#"sum(webhooks_received_total{status="200"})"#, 3.0),
        (r#"sum(webhooks_received_total{status="401"})"#, 2.0),
        (
            r#"webhook_signature_failures_total{reason="hmac_mismatch"}"#,
            1.0,
        ),
        (
            r#"webhook_signature_failures_total{reason="timestamp_drift"}"#,
            1.0,
        ),
        (r#"sum(webhook_errors_total{error_type="signature"})"#, 2.0),
        ("webhook_duplicates_total", 1.0),
        ("webhook_silent_drops_total", 1.0),
        // An unverified body is not read for its type.
        (
            r#"sum(webhooks_received_total{event_type="charge.succeeded"})"#,
            2.0,
        ),
        (
            r#"sum(webhooks_received_total{event_type="unverified"})"#,
            2.0,
        ),
        (
            r#"webhook_processing_seconds_count{route="stripe_hook"}"#,
            5.0,
        ),
    ] {
        assert_eq!(query(&http, &prom, q).await, Some(want), "{q}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Every metric the Grafana dashboard queries is one the SDK records (named in the table of
/// `outworx-hooks/docs/metrics.md`).
#[test]
fn the_dashboard_queries_only_metrics_we_record() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let dashboard = std::fs::read_to_string(root.join("docs/grafana/outworx-hooks.json")).unwrap();
    let table = std::fs::read_to_string(root.join("outworx-hooks/docs/metrics.md")).unwrap();
    let source = std::fs::read_to_string(root.join("outworx-hooks/src/metrics.rs")).unwrap();
    let mut names = Vec::new();
    let bytes = dashboard.as_bytes();
    let mut i = 0;
    while let Some(at) = dashboard[i..].find("webhook") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.push(dashboard[start..end].to_owned());
        i = end.max(start + 1);
    }
    names.retain(|n| n.starts_with("webhook_") || n.starts_with("webhooks_"));
    assert!(names.len() >= 10, "{names:?}");
    for n in names {
        let base = n
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        assert!(
            table.contains(&format!("`{base}`")),
            "{base} is not in outworx-hooks/docs/metrics.md"
        );
        assert!(
            source.contains(&format!("\"{base}\"")),
            "{base} is not recorded"
        );
    }
}

/// The sending side's metrics: an attempt by host and status class, and a delivery that
/// became dead (its only attempt failed), rendered by the same recorder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_attempts_and_dead_deliveries_are_counted() {
    use outworx_hooks::send::{Emitter, NewEndpoint, Outbox, TargetPolicy, WorkerOptions};
    let handle = outworx_hooks::metrics::prometheus_handle().expect("the recorder");
    let failing = Router::new().route(
        "/down",
        post(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/down", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, failing).await.unwrap() });
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
        .schedule(outworx_hooks::queue::RetrySchedule::new([]))
        .worker(None)
        .build();
    emitter
        .create_endpoint(NewEndpoint::new(&url))
        .await
        .unwrap();
    emitter.send("order.created", &json!({})).await.unwrap();
    let worker = emitter.worker(WorkerOptions::default());
    assert_eq!(worker.run_once(64).await.unwrap(), 1);
    let text = handle.render();
    assert!(
        text.contains(
            r#"webhook_outbound_attempts_total{endpoint_host="127.0.0.1",status_class="5xx"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("webhook_outbound_dead_total 1"), "{text}");
}
