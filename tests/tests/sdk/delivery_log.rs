//! The default sink's line per delivery, as a formatter prints it: one readable sentence,
//! under the application's own request span (its request id), never under the delivery's
//! `webhook.receive` span, whose fields would print the same facts twice.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::{Router, routing::post};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Track, webhook};
use tower::ServiceExt as _;
use tracing::Instrument as _;

const SECRET: &str = "whsec_delivery_log_secret";

#[webhook(
    provider = "stripe",
    secret = "whsec_delivery_log_secret",
    require_processed
)]
async fn logged(track: Track) -> &'static str {
    track.processed();
    "ok"
}

/// What the formatter wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_delivery_line_is_under_the_request_span_and_says_each_fact_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Scoped to this thread (a current-thread runtime): the sinks run on it.
    let _default = tracing::subscriber::set_default(subscriber);

    let body = r#"{"id":"evt_log_1","type":"invoice.paid"}"#;
    let signed = Signer::new(Provider::Stripe, SECRET).sign(body).unwrap();
    let request = signed.into_request("/hooks").unwrap().map(Body::from);
    let app = Router::new().route("/hooks", post(logged));
    let response = app
        .oneshot(request)
        .instrument(tracing::info_span!("request", id = "req-7"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("outworx_hooks::delivery"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(
        line.contains("request{id=\"req-7\"}: outworx_hooks::delivery: stripe 200 in"),
        "{line}"
    );
    assert!(line.contains("signature valid, completed"), "{line}");
    assert!(!line.contains("webhook.receive"), "{line}");
    assert!(!line.contains("Some("), "{line}");
    assert_eq!(line.matches("provider=").count(), 1, "{line}");
}
