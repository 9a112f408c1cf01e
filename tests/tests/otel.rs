//! OpenTelemetry end to end: the OTLP/HTTP exporter (configured from `OTEL_*` only) reaches a
//! collector on loopback that decodes the protobuf, and one trace holds a message's whole
//! life. A message emitted inside an application span is sent by the outbox's worker (one
//! `webhook.send` span per attempt, the child of the emit's span, its context on the wire as
//! `traceparent`) to two real receiving routes on loopback: one inline, whose
//! `webhook.receive` span is the attempt's child, and one queued, whose inbox worker's
//! `webhook.process` span is the receipt's child. The subscriber is the process's: one test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use outworx_hooks::inbox::{self, Inbox};
use outworx_hooks::send::{Emitter, NewEndpoint, Outbox, TargetPolicy, WorkerOptions};
use outworx_hooks::{Track, webhook};
use prost::Message as _;
use serde_json::json;
use tracing::Instrument as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The `traceparent` each route saw on the wire.
static SEEN: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());

fn saw(route: &'static str, headers: &HeaderMap) {
    let tp = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    SEEN.lock().unwrap().push((route, tp));
}

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    require_processed
)]
async fn inline(track: Track, headers: HeaderMap, body: String) -> &'static str {
    let _ = body;
    saw("inline", &headers);
    track.processed();
    "ok"
}

#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency,
    queue,
    require_processed
)]
async fn queued(track: Track, body: String) -> &'static str {
    let _ = body;
    track.processed();
    "ok"
}

/// Reached directly, with a hostile `traceparent` and `tracestate`.
#[webhook(
    provider = "standard",
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    idempotency
)]
async fn direct(body: String) -> &'static str {
    let _ = body;
    "ok"
}

fn app() -> Router {
    Router::new()
        .route("/inline", post(inline))
        .route("/queued", post(queued))
        .route("/direct", post(direct))
}

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attrs: HashMap<String, String>,
    service: String,
}

type Spans = Arc<Mutex<Vec<Span>>>;

fn text(v: Option<&Any>) -> String {
    match v {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP collector: decodes each protobuf batch into `spans`.
async fn collector(listener: std::net::TcpListener, spans: Spans) {
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let spans = Arc::clone(&spans);
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf batch");
                let mut out = spans.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Span {
                                name: s.name,
                                trace: hex::encode(&s.trace_id),
                                id: hex::encode(&s.span_id),
                                parent: hex::encode(&s.parent_span_id),
                                attrs: s
                                    .attributes
                                    .iter()
                                    .map(|kv| {
                                        (
                                            kv.key.clone(),
                                            text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                                        )
                                    })
                                    .collect(),
                                service: service.clone(),
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    axum::serve(listener, app).await.unwrap();
}

#[test]
fn one_trace_from_emit_through_send_receive_and_the_inbox() {
    // The exporter is configured from the standard variables only, before any thread runs.
    let otlp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // No endpoint configured: nothing is built.
    // SAFETY: no other thread exists yet in this test binary's one test.
    unsafe {
        std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
        std::env::set_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", " ");
    }
    assert!(
        outworx_hooks::otel::Otel::from_env_if_configured()
            .unwrap()
            .is_none()
    );
    // SAFETY: no other thread exists yet in this test binary's one test.
    unsafe {
        std::env::set_var(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", otlp.local_addr().unwrap()),
        );
        std::env::set_var("OTEL_SERVICE_NAME", "outworx-otel-test");
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
        for v in [
            "OTEL_SDK_DISABLED",
            "OTEL_TRACES_EXPORTER",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            std::env::remove_var(v);
        }
    }
    let otel = outworx_hooks::otel::Otel::from_env_if_configured()
        .unwrap()
        .expect("an endpoint is configured");
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("outworx_hooks", tracing::Level::DEBUG)
        .with_target("otel_test", tracing::Level::INFO);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(otel.layer().with_filter(filter)),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spans: Spans = Arc::default();
    rt.spawn(collector(otlp, Arc::clone(&spans)));
    rt.block_on(deliver());

    // Flush until every span of the story has arrived (the report's span ends a moment after
    // the answer, in the background).
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        // A batch that fails is retried on the next turn (the deadline bounds it).
        let _ = otel.flush();
        let all = spans.lock().unwrap().clone();
        let n = |name: &str| all.iter().filter(|s| s.name == name).count();
        if (
            n("webhook.send"),
            n("webhook.receive"),
            n("webhook.process"),
        ) == (2, 4, 1)
            && n("webhook.handler") == 3
            && n("test.order") == 1
        {
            break all;
        }
        assert!(Instant::now() < deadline, "spans so far: {all:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    check(&all);
    otel.shutdown().unwrap();
    drop(rt);
}

/// A message emitted in an application span, sent to both routes, then the inbox processed.
async fn deliver() {
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", receiver.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(receiver, app()).await.unwrap() });
    let inbox = Inbox::memory().await.unwrap();
    inbox.install();
    let processing = inbox.worker(app(), inbox::WorkerOptions::default());

    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
        .worker(None)
        .build();
    for path in ["inline", "queued"] {
        emitter
            .create_endpoint(NewEndpoint::new(format!("{base}/{path}")).secret(SECRET))
            .await
            .unwrap();
    }
    let order = tracing::info_span!(target: "otel_test", "test.order");
    emitter
        .send("order.created", &json!({"id": 7}))
        .instrument(order)
        .await
        .unwrap();
    let sending = emitter.worker(WorkerOptions::default());
    assert_eq!(sending.run_once(64).await.unwrap(), 2);
    assert_eq!(processing.run_once(16).await.unwrap(), 1);

    // A sender's malformed `traceparent` (and an oversized `tracestate`) changes nothing:
    // the delivery is answered as any other, and its span starts a trace of its own.
    let s =
        outworx_hooks::testing::Signer::new(outworx_hooks::security::Provider::Standard, SECRET)
            .id("msg_direct")
            .sign(json!({"type": "order.created", "data": {"id": 8}}).to_string())
            .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{base}/direct"))
        .headers(s.headers.clone())
        .header("traceparent", "00-1-1-01")
        .header("tracestate", format!("k={}", "v".repeat(4000)))
        .body(s.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn check(all: &[Span]) {
    let one = |name: &str| -> &Span {
        let found: Vec<_> = all.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "{name}: {all:#?}");
        found[0]
    };
    let named = |name: &str| -> Vec<&Span> { all.iter().filter(|s| s.name == name).collect() };
    let by_id = |id: &str| all.iter().find(|s| s.id == id);

    let order = one("test.order");
    assert_eq!(order.parent, "", "the application's span is the root");
    assert_eq!(order.service, "outworx-otel-test", "OTEL_SERVICE_NAME");
    let direct: Vec<&Span> = named("webhook.receive")
        .into_iter()
        .filter(|s| s.attrs["url.path"] == "/direct")
        .collect();
    assert_eq!(direct.len(), 1);
    let direct = direct[0];
    assert_eq!(direct.parent, "", "a malformed traceparent is ignored");
    assert_ne!(direct.trace, order.trace);
    assert_eq!(direct.attrs["http.response.status_code"], "200");
    for s in all.iter().filter(|s| s.name.starts_with("webhook.")) {
        if s.trace != direct.trace {
            assert_eq!(s.trace, order.trace, "one trace: {s:#?}");
        }
    }

    // Each attempt is the emit's child, and its own context went out on the wire.
    let sends = named("webhook.send");
    for s in &sends {
        assert_eq!(s.parent, order.id);
        assert_eq!(s.attrs["http.request.method"], "POST");
        assert_eq!(s.attrs["server.address"], "127.0.0.1", "the host only");
        assert_eq!(s.attrs["http.response.status_code"], "200");
        assert_eq!(s.attrs["webhook.attempt"], "1");
        assert_eq!(s.attrs["webhook.event_type"], "order.created");
    }
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the inline route ran once");
    let wire = &seen[0].1;
    let parts: Vec<&str> = wire.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {wire:?}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", order.trace.as_str(), "01")
    );
    assert!(
        sends.iter().any(|s| s.id == parts[2]),
        "the attempt's own span id"
    );

    // The inline route's delivery: the attempt's child, with the fields and the children.
    let receives = named("webhook.receive");
    let receive_of = |path: &str| -> Vec<&Span> {
        receives
            .iter()
            .copied()
            .filter(|s| s.attrs["url.path"] == path)
            .collect()
    };
    let inline = receive_of("/inline");
    assert_eq!(inline.len(), 1);
    let inline = inline[0];
    assert_eq!(
        inline.parent, parts[2],
        "the receive span continues the sender's"
    );
    let f = &inline.attrs;
    assert_eq!(f["http.request.method"], "POST");
    assert_eq!(f["webhook.provider"], "standard");
    assert_eq!(f["webhook.event_type"], "order.created");
    assert_eq!(f["webhook.signature.valid"], "true");
    assert_eq!(f["http.response.status_code"], "200");
    assert_eq!(f["webhook.processing_status"], "completed");
    assert_eq!(f["webhook.idempotency_key_hash"].len(), 16);
    for child in ["webhook.store", "webhook.handler", "webhook.report"] {
        assert!(
            all.iter().any(|s| s.name == child && s.parent == inline.id),
            "{child} under the inline receive: {all:#?}"
        );
    }

    // The queued route: acknowledged in a receive span (the other attempt's child), then
    // processed in the worker's span, the receipt's child, around a dispatched receive.
    let queued = receive_of("/queued");
    assert_eq!(queued.len(), 2, "the receipt and the worker's run");
    let (receipt, run): (Vec<&Span>, Vec<&Span>) = queued
        .iter()
        .partition(|s| by_id(&s.parent).is_some_and(|p| p.name == "webhook.send"));
    assert_eq!((receipt.len(), run.len()), (1, 1), "{queued:#?}");
    let (receipt, run) = (receipt[0], run[0]);
    assert_ne!(receipt.parent, inline.parent, "one attempt each");
    assert!(!receipt.attrs["webhook.inbox_id"].is_empty());
    let process = one("webhook.process");
    assert_eq!(
        process.parent, receipt.id,
        "the queue does not break the trace"
    );
    assert_eq!(process.attrs["webhook.processing_status"], "completed");
    assert_eq!(process.attrs["webhook.attempt"], "1");
    assert_eq!(
        process.attrs["webhook.inbox_id"],
        receipt.attrs["webhook.inbox_id"]
    );
    assert_eq!(run.parent, process.id);
    assert!(
        all.iter()
            .any(|s| s.name == "webhook.handler" && s.parent == run.id),
        "the handler ran under the worker's span"
    );
}
