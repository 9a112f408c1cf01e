//! A handler's response body is read only as far as something depends on it: without
//! idempotency (and without body capture) it streams straight through, even one that never
//! ends; with `capture_body` alone its first 64 KiB are read and the rest streams; with
//! idempotency it is read whole, since the key is completed only for a body that ended well (a
//! body past 64 KiB is replayed as status only, and one that fails, early or late, is a 500
//! that frees the key). Real HTTP on loopback; every request is bounded in time.

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
static FAILING_LATE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `n` chunks of 10 KiB: `a`s, then `b`s, ...
fn chunks(n: u8) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::iter((0..n).map(|i| Ok(Bytes::from(vec![b'a' + i; 10 * 1024]))))
}

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
    Body::from_stream(chunks(10))
}

/// The same, captured in the event but with no key: 64 KiB read, the rest streamed.
#[webhook(provider = "github", secret = "gh-stream-secret", capture_body)]
async fn captured(body: String) -> Body {
    let _ = body;
    Body::from_stream(chunks(10))
}

/// 1 KiB, then the body fails.
#[webhook(provider = "github", secret = "gh-stream-secret", idempotency)]
async fn failing(body: String) -> Body {
    let _ = body;
    FAILING_RUNS.fetch_add(1, Ordering::SeqCst);
    let parts = vec![
        Ok(Bytes::from(vec![b'x'; 1024])),
        Err(std::io::Error::other("the body broke")),
    ];
    Body::from_stream(futures_util::stream::iter(parts))
}

/// 70 KiB, then the body fails: past the replay's 64 KiB, and still no completed key.
#[webhook(provider = "github", secret = "gh-stream-secret", idempotency)]
async fn failing_late(body: String) -> Body {
    let _ = body;
    FAILING_LATE_RUNS.fetch_add(1, Ordering::SeqCst);
    let broken = futures_util::stream::once(async { Err(std::io::Error::other("late")) });
    Body::from_stream(futures_util::StreamExt::chain(chunks(7), broken))
}

async fn serve() -> String {
    let app = Router::new()
        .route("/endless", post(endless))
        .route("/large", post(large))
        .route("/captured", post(captured))
        .route("/failing", post(failing))
        .route("/failing_late", post(failing_late));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Sends a signed delivery; the answer's head within 20 s (a regression fails, never hangs).
async fn post_to(base: &str, path: &str, id: &str) -> reqwest::Response {
    let s = Signer::new(Provider::Github, SECRET)
        .id(id)
        .sign(r#"{"action":"opened"}"#)
        .unwrap();
    let send = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .headers(s.headers)
        .body(s.body)
        .send();
    tokio::time::timeout(Duration::from_secs(20), send)
        .await
        .expect("answered in time")
        .unwrap()
}

async fn body_of(r: reqwest::Response) -> Bytes {
    tokio::time::timeout(Duration::from_secs(20), r.bytes())
        .await
        .expect("the body in time")
        .unwrap()
}

fn intact(body: &[u8], n: usize) {
    assert_eq!(body.len(), n * 10 * 1024);
    for (i, chunk) in body.chunks(10 * 1024).enumerate() {
        assert!(
            chunk
                .iter()
                .all(|&b| usize::from(b) == usize::from(b'a') + i),
            "chunk {i} intact, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_read_only_as_far_as_something_depends_on_them() {
    let base = serve().await;

    // Nothing depends on it: the first bytes arrive although the body never ends.
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        let mut r = post_to(&base, "/endless", "e-1").await;
        assert_eq!(r.status(), 200);
        r.chunk().await.unwrap().unwrap()
    })
    .await
    .expect("streamed, not held until the end");
    assert_eq!(&first[..], b"first");

    // A key depends on it: read whole (its length known), replayed as status only past 64 KiB.
    let r = post_to(&base, "/large", "l-1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "102400");
    intact(&body_of(r).await, 10);
    let again = post_to(&base, "/large", "l-1").await;
    assert_eq!(again.status(), 200);
    assert!(body_of(again).await.is_empty(), "a status-only replay");

    // Captured, no key: the first 64 KiB read for the event, all of it sent.
    let r = post_to(&base, "/captured", "c-1").await;
    assert_eq!(r.status(), 200);
    intact(&body_of(r).await, 10);

    // A body that fails on a keyed route, early or past 64 KiB: a 500 that frees the key, so
    // the provider's retry runs the handler again.
    for _ in 0..2 {
        assert_eq!(post_to(&base, "/failing", "f-1").await.status(), 500);
        assert_eq!(post_to(&base, "/failing_late", "fl-1").await.status(), 500);
    }
    assert_eq!(FAILING_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(FAILING_LATE_RUNS.load(Ordering::SeqCst), 2);
}
