//! A handler's response body is read only as far as something keeps it: without idempotency
//! (and without body capture) it streams straight through, even one that never ends; with
//! idempotency the first 64 KiB are read to cache, and a longer body is sent whole but
//! replayed as status only; a body that fails while it is read is a 500 that frees the key.
//! Real HTTP on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::post;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::webhook;

const SECRET: &str = "gh-stream-secret";
static FAILING_RUNS: AtomicUsize = AtomicUsize::new(0);

/// "first", then nothing, forever.
#[webhook(provider = "github", secret = "gh-stream-secret")]
async fn endless(body: String) -> Body {
    let _ = body;
    let first = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("first")) });
    Body::from_stream(futures_util::StreamExt::chain(
        first,
        futures_util::stream::pending(),
    ))
}

/// 100 KiB in 10 KiB chunks: past the 64 KiB a retry's replay keeps.
#[webhook(provider = "github", secret = "gh-stream-secret", idempotency)]
async fn large(body: String) -> Body {
    let _ = body;
    let chunks = (0..10u8).map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![b'a' + i; 10 * 1024])));
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// 1 KiB, then the body fails.
#[webhook(provider = "github", secret = "gh-stream-secret", idempotency)]
async fn failing(body: String) -> Body {
    let _ = body;
    FAILING_RUNS.fetch_add(1, Ordering::SeqCst);
    let chunks = vec![
        Ok(Bytes::from(vec![b'x'; 1024])),
        Err(std::io::Error::other("the body broke")),
    ];
    Body::from_stream(futures_util::stream::iter(chunks))
}

async fn serve() -> String {
    let app = Router::new()
        .route("/endless", post(endless))
        .route("/large", post(large))
        .route("/failing", post(failing));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn post_to(base: &str, path: &str, id: &str) -> reqwest::Response {
    let s = Signer::new(Provider::Github, SECRET)
        .id(id)
        .sign(r#"{"action":"opened"}"#)
        .unwrap();
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .headers(s.headers)
        .body(s.body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_read_only_as_far_as_something_keeps_them() {
    let base = serve().await;

    // Nothing keeps it: the first bytes arrive although the body never ends.
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        let mut r = post_to(&base, "/endless", "e-1").await;
        assert_eq!(r.status(), 200);
        r.chunk().await.unwrap().unwrap()
    })
    .await
    .expect("streamed, not held until the end");
    assert_eq!(&first[..], b"first");

    // Past the replay's 64 KiB: sent whole, replayed as status only.
    let r = post_to(&base, "/large", "l-1").await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), 100 * 1024);
    for (i, chunk) in body.chunks(10 * 1024).enumerate() {
        assert!(
            chunk.iter().all(|&b| b == b'a' + i as u8),
            "chunk {i} intact, in order"
        );
    }
    let again = post_to(&base, "/large", "l-1").await;
    assert_eq!(again.status(), 200);
    assert!(
        again.bytes().await.unwrap().is_empty(),
        "a status-only replay"
    );

    // A body that fails while it is read for the cache: a 500, and the key is freed, so the
    // provider's retry runs the handler again.
    let r = post_to(&base, "/failing", "f-1").await;
    assert_eq!(r.status(), 500);
    let r = post_to(&base, "/failing", "f-1").await;
    assert_eq!(r.status(), 500);
    assert_eq!(FAILING_RUNS.load(Ordering::SeqCst), 2);
}
