//! What an unauthenticated request can cost: a forged but well-formed signature over 64 KiB
//! of nested JSON (`[` × 32,767 then `]` × 32,767) sent to `#[webhook]` routes of three
//! body-signing schemes (Stripe, GitHub, Twilio with `bodySHA256`), over real HTTP. Each is
//! answered 401, and the process's peak heap during the request stays under 32 MiB: the
//! `parsed_body` diagnosis is bounded by construction (before the fix: 12-16 s and about
//! 4 GB per request).
//!
//! Its own test binary: the counting allocator sees the whole process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::webhook;

/// The system allocator, counting the bytes live now and the most ever live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with its arguments unchanged; the
// counters are only observed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promised for `ptr`, `layout` and `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[webhook(provider = "stripe", secret = "whsec_hostile")]
async fn stripe(body: Bytes) -> String {
    body.len().to_string()
}

#[webhook(provider = "github", secret = "gh_hostile")]
async fn github(body: Bytes) -> String {
    body.len().to_string()
}

#[webhook(provider = "twilio", secret = "twilio_hostile")]
async fn twilio(body: Bytes) -> String {
    body.len().to_string()
}

const LIMIT: usize = 32 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_bodies_with_forged_signatures_cost_little() {
    let app = Router::new()
        .route("/stripe", post(stripe))
        .route("/github", post(github))
        .route("/twilio", post(twilio));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();

    let mut nested = vec![b'['; 32_767];
    nested.resize(65_534, b']');
    let cases = [
        ("/stripe", Signer::new(Provider::Stripe, "whsec_forged")),
        ("/github", Signer::new(Provider::Github, "forged")),
        (
            "/twilio",
            // Twilio signs a JSON body's SHA-256 in the URL: the forged URL claims another body.
            Signer::new(Provider::Twilio, "forged").url(format!("https://{addr}/twilio")),
        ),
    ];
    for (path, signer) in cases {
        let forged = signer.sign(nested.clone()).unwrap();
        let url = forged.url.clone().map_or_else(
            || format!("http://{addr}{path}"),
            |u| u.replacen("https", "http", 1),
        );
        // Warm up the connection and the route before measuring.
        let _ = client.post(&url).body("{}").send().await.unwrap();
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let r = client
            .post(&url)
            .headers(forged.headers.clone())
            .body(forged.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        eprintln!(
            "{path}: peak {} KiB above the baseline, {:?}",
            peak / 1024,
            started.elapsed()
        );
        assert!(
            peak < LIMIT,
            "{path}: the request's peak heap was {} MiB",
            peak >> 20
        );
    }
}
