//! One `tracing` span per delivery, with OpenTelemetry's HTTP fields and the webhook's own,
//! and child spans for the store, the handler and the report; one per outbound attempt. A
//! layer captures every closed span (the subscriber is the process's: one test here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::{Json, Router};
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Track, webhook};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Default)]
struct Captured {
    name: String,
    parent: Option<String>,
    fields: HashMap<String, String>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut c = Captured {
            name: attrs.metadata().name().to_owned(),
            parent: span.parent().map(|p| p.name().to_owned()),
            ..Captured::default()
        };
        attrs.record(&mut Fields(&mut c.fields));
        span.extensions_mut().insert(c);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        if let Some(c) = span.extensions_mut().get_mut::<Captured>() {
            values.record(&mut Fields(&mut c.fields));
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        if let Some(c) = span.extensions().get::<Captured>() {
            self.0.lock().unwrap().push(c.clone());
        }
    }
}

#[derive(serde::Deserialize)]
struct Event {
    r#type: String,
}

#[webhook(
    provider = "stripe",
    secret = "whsec_spans",
    idempotency,
    require_processed
)]
async fn traced(track: Track, Json(event): Json<Event>) -> &'static str {
    if event.r#type == "charge.succeeded" {
        track.processed();
    }
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_one_span_with_its_children() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/stripe", post(traced));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let signed = Signer::new(Provider::Stripe, "whsec_spans")
        .sign(r#"{"id":"evt_secret_customer_42","type":"charge.succeeded"}"#)
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/stripe?x=1"))
        .headers(signed.headers)
        .body(signed.body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut receive = None;
    for _ in 0..100 {
        receive = capture
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.name == "webhook.receive")
            .cloned();
        if receive.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let receive = receive.expect("the delivery's span closed");
    let f = &receive.fields;
    assert_eq!(f["http.request.method"], "POST");
    assert_eq!(f["url.path"], "/stripe", "the path, never the query");
    assert_eq!(f["webhook.provider"], "stripe");
    assert_eq!(f["webhook.route"], "traced");
    assert_eq!(f["webhook.event_type"], "charge.succeeded");
    assert_eq!(f["webhook.signature.valid"], "true");
    assert_eq!(f["http.response.status_code"], "200");
    assert_eq!(f["webhook.processing_status"], "completed");
    let hash = &f["webhook.idempotency_key_hash"];
    // The first 8 bytes of HMAC-SHA256 keyed by the route's secret, over the store's key.
    let mac = {
        use hmac::Mac as _;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"whsec_spans").unwrap();
        m.update(b"evt_secret_customer_42");
        m.finalize().into_bytes()
    };
    assert_eq!(*hash, hex::encode(&mac[..8]));
    assert!(
        !format!("{f:?}").contains("evt_secret_customer_42"),
        "the key itself leaked"
    );
    let spans = capture.0.lock().unwrap().clone();
    for child in ["webhook.store", "webhook.handler", "webhook.report"] {
        assert!(
            spans
                .iter()
                .any(|c| c.name == child && c.parent.as_deref() == Some("webhook.receive")),
            "{child} is not a child of webhook.receive: {spans:?}"
        );
    }
}
