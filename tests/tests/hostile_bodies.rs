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

/// The tests of this binary measure the whole process's heap: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn nested_bodies_with_forged_signatures_cost_little() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(nested_bodies());
}

async fn nested_bodies() {
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

mod properties {
    use super::*;
    use outworx_hooks::security::{SignedRequest, Verifier};
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 64,
            rng_seed: RngSeed::Fixed(0x6f75_7477_6f72_7836),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Bodies up to 64 KiB built from what makes re-encoding grow: nesting, separators,
    /// non-ASCII text and escapes.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            (1usize..16_000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
            (1usize..3000).prop_map(|n| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n))),
            (1usize..16_000).prop_map(|n| format!("[{}0]", "0,".repeat(n))),
            (1usize..8000).prop_map(|n| format!("[\"{}\"]", "\u{1F600}".repeat(n))),
            (1usize..5000).prop_map(|n| format!("[\"{}\"]", "\\u00e9".repeat(n))),
            "[ -~]{0,64}",
        ];
        prop::collection::vec(piece, 1..4).prop_map(|mut v| {
            // One JSON document, the pieces as the items of an array, of at most 64 KiB:
            // whole pieces are left out from the end until it fits.
            while v.len() > 1 && v.iter().map(|p| p.len() + 1).sum::<usize>() + 1 > 64 * 1024 {
                v.pop();
            }
            let s = format!("[{}]", v.join(","));
            s.into_bytes()
        })
    }

    proptest! {
        #![proptest_config(config())]

        /// No body up to 64 KiB makes verifying a forged signature allocate more than a
        /// fixed multiple of its size (the diagnosis's candidates are at most twice the body).
        #[test]
        fn verification_allocates_a_bounded_multiple_of_the_body(body in body()) {
            let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
            for provider in [Provider::Github, Provider::Stripe] {
                let forged = Signer::new(provider, "not-the-secret").sign(body.clone()).unwrap();
                let secret = if provider == Provider::Stripe { "whsec_real" } else { "real" };
                let verifier = Verifier::new(provider, &[secret]).unwrap();
                prop_assume!(body.len() <= 64 * 1024);
                let before = LIVE.load(Ordering::Relaxed);
                PEAK.store(before, Ordering::Relaxed);
                let r = verifier.verify(&SignedRequest::new(&forged.headers, &body));
                let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
                prop_assert!(!r.valid);
                prop_assert!(
                    peak <= 4 * body.len() + (64 << 10),
                    "{} bytes allocated for a {}-byte body", peak, body.len()
                );
            }
        }
    }
}
