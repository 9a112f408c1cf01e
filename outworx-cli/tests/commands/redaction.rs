//! No credential a provider sends is ever reported: for every provider, a delivery signed by
//! `testing::Signer` with a sentinel secret goes through a real route, its event is serialized
//! and stored by a real `outworx serve`, and neither the secret nor any signature or token
//! header value the signer produced appears in the event or in `GET /api/events`. A route's
//! own `redact` list is honoured too.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use futures_util::StreamExt as _;
use outworx_hooks::security::Provider;
use outworx_hooks::security::catalog::Source;
use outworx_hooks::testing::{Signer, TestKeys};
use outworx_hooks::{OutworxHooksLayer, OutworxSink, OutworxSinkOptions, Sink as _, TrackOptions};
use serde_json::Value;

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";

/// Headers the signers send that are not secret (ids, timestamps, kinds): the only signer
/// output that may appear in a report.
const PUBLIC_HEADERS: &[&str] = &[
    "content-type",
    "x-github-delivery",
    "x-shopify-webhook-id",
    "x-gitlab-event-uuid",
    "svix-id",
    "svix-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "twitch-eventsub-message-id",
    "twitch-eventsub-message-timestamp",
    "twitch-eventsub-message-type",
    "x-slack-request-timestamp",
    "x-zm-request-timestamp",
    "x-hubspot-request-timestamp",
    "x-signature-timestamp",
    "x-twilio-email-event-webhook-timestamp",
];

/// A secret for `p` that carries a greppable sentinel, in the format the provider uses, and
/// the key to sign with.
fn sentinel_keys(p: Provider) -> (String, String) {
    match p {
        // Asymmetric: the private key never travels; the public one must not be echoed either.
        Provider::Discord | Provider::Sendgrid => {
            let k = TestKeys::from_seed(p, [42; 32]);
            (k.signing, k.verifying)
        }
        _ => {
            let standard = TestKeys::for_provider(p).verifying.starts_with("whsec_");
            let secret = if standard {
                use base64::Engine as _;
                let raw = format!("SENTINEL-{}-5ec7e7", p.name());
                format!(
                    "whsec_{}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            } else {
                format!("SENTINEL-{}-5ec7e7", p.name())
            };
            (secret.clone(), secret)
        }
    }
}

/// The next event of a request under `prefix` (the tests of this file run side by side).
async fn next_under(
    events: &mut outworx_hooks::Subscription,
    prefix: &str,
) -> std::sync::Arc<outworx_hooks::event::DeliveryEvent> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = events.next().await.unwrap();
            if e.source_url
                .as_deref()
                .is_some_and(|u| u.starts_with(prefix))
            {
                return e;
            }
        }
    })
    .await
    .unwrap()
}

/// A real `outworx serve` on a fresh SQLite file in a directory of its own: its address,
/// and the directory to remove.
async fn start_serve(tag: &str) -> (std::net::SocketAddr, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("outworx-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("events.db").to_string_lossy().into_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = outworx_serve::ServeConfig::new(vec![KEY.into()]);
    tokio::spawn(async move { outworx_serve::serve(listener, &db, config).await });
    (addr, dir)
}

/// What the backend stored, newest first.
async fn stored(http: &reqwest::Client, serve_addr: std::net::SocketAddr) -> Value {
    http.get(format!("http://{serve_addr}/api/events?limit=1000"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_credential_reaches_an_event_or_the_backend() {
    let (serve_addr, dir) = start_serve("redaction").await;

    // One route per provider, through the layer (the same pipeline as the attribute).
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = local.local_addr().unwrap();
    let mut app = Router::new();
    for &p in Provider::ALL {
        let (_, verifying) = sentinel_keys(p);
        let mut options = TrackOptions::new(p).secret(verifying);
        if p == Provider::Github {
            options = options.redact(["X-Hook-Secret"]);
        }
        app = app.route(
            &format!("/p/{}", p.name()),
            post(|| async { "ok" }).layer(OutworxHooksLayer::new(options)),
        );
    }
    tokio::spawn(async move { axum::serve(local, app).await });

    let sink = OutworxSink::spawn(OutworxSinkOptions::new(
        format!("http://{serve_addr}/api/ingest"),
        KEY,
    ))
    .unwrap();
    let mut events = outworx_hooks::subscribe();
    let http = reqwest::Client::new();
    // What must never be seen: per provider, the secrets and the signer's secret headers.
    let mut forbidden: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &p in Provider::ALL {
        let (signing, verifying) = sentinel_keys(p);
        let url = format!("https://{addr}/p/{}", p.name());
        let body = format!(
            r#"{{"id":"evt_{0}","type":"redaction.test","provider":"{0}"}}"#,
            p.name()
        );
        let mut signed = Signer::new(p, &signing).url(&url).sign(body).unwrap();
        if p == Provider::Github {
            signed
                .headers
                .insert("x-hook-secret", "SENTINEL-custom-header".parse().unwrap());
        }
        let mut never = vec![signing.clone(), verifying.clone()];
        for (name, value) in &signed.headers {
            // Delivery ids (each provider's natural key, from the catalog) are public too.
            let delivery_id =
                matches!(p.spec().natural_key, Some(Source::Header(h)) if h == name.as_str());
            if !PUBLIC_HEADERS.contains(&name.as_str()) && !delivery_id {
                never.push(value.to_str().unwrap().to_owned());
            }
        }
        let target = signed
            .url
            .clone()
            .unwrap_or(url)
            .replacen("https", "http", 1);
        let r = http
            .post(&target)
            .headers(signed.headers.clone())
            .body(signed.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{p}: {}", r.text().await.unwrap());
        let e = next_under(&mut events, "/p/").await;
        assert_eq!(e.provider, p.name());
        let wire = serde_json::to_string(&*e).unwrap();
        for secret in &never {
            assert!(
                !wire.contains(secret.as_str()),
                "{p}: `{secret}` reported in {wire}"
            );
        }
        assert!(
            !format!("{e:?}").contains("SENTINEL"),
            "{p}: in the event's Debug"
        );
        sink.send(&e);
        forbidden.insert(p.name().to_owned(), never);
    }
    sink.flush().await;
    assert_eq!(sink.sent(), Provider::ALL.len() as u64);

    let stored = stored(&http, serve_addr).await;
    assert_eq!(
        stored["events"].as_array().unwrap().len(),
        Provider::ALL.len()
    );
    let text = stored.to_string();
    for (p, never) in &forbidden {
        for secret in never {
            assert!(
                !text.contains(secret.as_str()),
                "{p}: `{secret}` stored by the backend"
            );
        }
    }
    assert!(
        !text.contains("SENTINEL"),
        "a sentinel reached the backend: {text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A delivery cannot make its own report unstorable: a forged request with a 33 KiB header
/// and a 9 KiB query name, and a handler that fails with a 10 KiB reason and 100 KiB of
/// metadata, are both reported, cut to the ingest's limits, and stored by `outworx serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_deliveries_are_still_reported_and_stored() {
    use outworx_hooks::Track;

    let (serve_addr, dir) = start_serve("oversized").await;

    async fn fails(track: Track) -> &'static str {
        let big: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("k{i}"), Value::from("v".repeat(1000))))
            .collect();
        track.failed_with("r".repeat(10_000), Value::Object(big));
        "ok"
    }
    let app = Router::new().route(
        "/hook",
        post(fails).layer(OutworxHooksLayer::new(
            TrackOptions::new(Provider::Github).secret("gh-oversized"),
        )),
    );
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = local.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(local, app).await });
    let sink = OutworxSink::spawn(OutworxSinkOptions::new(
        format!("http://{serve_addr}/api/ingest"),
        KEY,
    ))
    .unwrap();
    let mut events = outworx_hooks::subscribe();
    let http = reqwest::Client::new();

    let forged = Signer::new(Provider::Github, "wrong").sign("{}").unwrap();
    let r = http
        .post(format!("http://{addr}/hook?{}=1", "n".repeat(9 * 1024)))
        .headers(forged.headers)
        .header("x-junk", "j".repeat(33 * 1024))
        .body(forged.body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let valid = Signer::new(Provider::Github, "gh-oversized")
        .sign("{}")
        .unwrap();
    let r = http
        .post(format!("http://{addr}/hook"))
        .headers(valid.headers)
        .body(valid.body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let e = next_under(&mut events, "/hook").await;
        sink.send(&e);
    }
    sink.flush().await;
    assert_eq!((sink.sent(), sink.dropped()), (2, 0), "both stored");
    let stored = stored(&http, serve_addr).await;
    let events = stored["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let failed = events
        .iter()
        .find(|e| e["event"]["status_code"] == 200)
        .unwrap();
    let reason = failed["event"]["processing_failure_reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.ends_with("...[truncated]"),
        "{}",
        &reason[reason.len() - 20..]
    );
    assert_eq!(failed["event"]["metadata"]["metadata_truncated"], true);
    let _ = std::fs::remove_dir_all(dir);
}
