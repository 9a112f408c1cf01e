//! The request headers of an event are built for a reader only: with sinks that say they do
//! not read them and no subscriber, the event carries none; a subscriber (or a sink that
//! reads them) brings them back, redacted as always. The runtime is the process's: one test.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use outworx_hooks::event::DeliveryEvent;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Config, Sink, webhook};
use tower::ServiceExt as _;

#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<Arc<DeliveryEvent>>>>);

impl Sink for Keep {
    fn send(&self, e: &Arc<DeliveryEvent>) {
        self.0.lock().unwrap().push(Arc::clone(e));
    }
    fn wants_request_headers(&self) -> bool {
        false
    }
}

#[webhook(provider = "github", secret = "gh-secret", idempotency)]
async fn hook(body: String) -> &'static str {
    let _ = body;
    "ok"
}

async fn deliver(app: &Router, id: &str) {
    let req = Signer::new(Provider::Github, "gh-secret")
        .id(id)
        .request("/hook", r#"{"action":"opened"}"#)
        .unwrap()
        .map(Body::from);
    let r = app.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn request_headers_are_built_only_when_someone_reads_them() {
    let kept = Keep::default();
    let _guard = outworx_hooks::init(Config::default().sink(kept.clone())).unwrap();
    let app = Router::new().route("/hook", post(hook));

    deliver(&app, "d-1").await;
    let first = kept.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(first.request_headers, None, "no reader: no map built");

    let mut events = outworx_hooks::subscribe();
    deliver(&app, "d-2").await;
    let second = kept.0.lock().unwrap().last().cloned().unwrap();
    let headers = second
        .request_headers
        .clone()
        .expect("a subscriber reads them");
    assert_eq!(headers["x-hub-signature-256"], "[REDACTED]");
    assert!(headers.contains_key("content-type"));
    let seen = events.recv().await.unwrap();
    assert_eq!(seen.request_headers.as_ref(), Some(&headers));

    // The subscriber gone, nobody reads them again.
    drop(events);
    deliver(&app, "d-3").await;
    let third = kept.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(third.request_headers, None);
}
