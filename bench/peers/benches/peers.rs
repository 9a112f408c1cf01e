//! Signature verification side by side with every Rust peer, in one run: the same signed
//! delivery (signed by this crate's `testing::Signer`, so every peer also proves it accepts
//! our signatures) through each implementation, at 1 KiB, 64 KiB and 1 MiB, for Standard
//! Webhooks, Stripe and GitHub; with the bare HMAC-SHA256 of the `hmac`/`sha2` crates as the
//! floor.
//!
//! Run: `cargo bench --manifest-path bench/peers/Cargo.toml` (add a group name, e.g.
//! `-- standard`, to run one scheme).
//!
//! - `ours_verifier`: `security::Verifier`, the key parsed once (as `#[webhook]` runs it).
//! - `ours_verify`: the one-shot `security::verify`, the secret parsed on every call.
//! - Peers with a keyed object (`standardwebhooks`, `svix`, `octocrab`) build it once; those
//!   with a function (`webhook-verify`, `async-stripe`) take the secret on every call.
//! - `async-stripe` verifies, then parses the body into an `Event`; the Stripe rows' body is
//!   not JSON, so its parse fails at the first byte and what is measured is its verification
//!   (its `BadParse` error means the signature passed). Every body is the same for everyone.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use outworx_hooks::security::{SignedRequest, Provider, Verifier, now_unix};
use outworx_hooks::testing::Signer;

const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STRIPE_SECRET: &str = "whsec_peers_bench_secret";
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const TOLERANCE: Duration = Duration::from_secs(300);

/// A JSON body of exactly `size` bytes.
fn json_body(size: usize) -> Vec<u8> {
    let head = br#"{"type":"invoice.paid","timestamp":"2026-11-30T00:00:00Z","data":{"pad":""#;
    let mut b = head.to_vec();
    b.resize(size - 3, b'x');
    b.extend_from_slice(b"\"}}");
    b
}

/// A body of `size` bytes that is not JSON (see the module's note on async-stripe).
fn opaque_body(size: usize) -> Vec<u8> {
    vec![b'x'; size]
}

/// `webhook-verify`'s one function, with its default options (the system clock, 300 s).
fn wv(
    provider: webhook_verify::Provider,
    headers: &http::HeaderMap,
    body: &[u8],
    secret: &webhook_verify::Secret,
) -> Result<(), webhook_verify::VerifyError> {
    webhook_verify::verify(
        provider,
        headers,
        body,
        secret,
        webhook_verify::VerifyOptions::default(),
    )
}

/// The bare HMAC-SHA256 of the body, two ways: keyed on every call (what a verifier that
/// takes the secret per call must do), and from a keyed state made once and copied (what
/// `security::Verifier` does).
fn floor(c: &mut Criterion, group: &str, key: &[u8], body: &[u8], label: &str) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function(BenchmarkId::new("hmac_sha256_floor", label), |b| {
        b.iter(|| {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
            m.update(black_box(body));
            m.finalize().into_bytes()
        })
    });
    let keyed = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
    g.bench_function(BenchmarkId::new("hmac_sha256_prekeyed_floor", label), |b| {
        b.iter(|| {
            let mut m = keyed.clone();
            m.update(black_box(body));
            m.finalize().into_bytes()
        })
    });
    g.finish();
}

fn standard(c: &mut Criterion) {
    for (size, label) in SIZES {
        let body = json_body(size);
        // Peers check the timestamp against the clock: sign now, per size.
        let signed = Signer::new(Provider::Standard, STANDARD_SECRET)
            .id("msg_peers")
            .at(now_unix())
            .sign(body.clone())
            .expect("sign");
        let (h, body) = (&signed.headers, &signed.body);
        let ours = Verifier::new(Provider::Standard, &[STANDARD_SECRET]).expect("key");
        let sw = standardwebhooks::Webhook::new(STANDARD_SECRET).expect("key");
        let svix = svix::webhooks::Webhook::new(STANDARD_SECRET).expect("key");
        let wv_secret = webhook_verify::Secret::new(STANDARD_SECRET);
        // Everyone accepts the same delivery before anything is timed.
        assert!(ours.verify(&SignedRequest::new(h, body)).valid);
        assert!(
            outworx_hooks::security::verify("standard", h, body, &[STANDARD_SECRET], TOLERANCE)
                .valid
        );
        sw.verify(body, h).expect("standardwebhooks accepts it");
        svix.verify(body, h).expect("svix accepts it");
        wv(
            webhook_verify::Provider::StandardWebhooks,
            h,
            body,
            &wv_secret,
        )
        .expect("webhook-verify accepts it");

        let mut g = c.benchmark_group("standard");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(BenchmarkId::new("ours_verifier", label), |b| {
            b.iter(|| ours.verify(black_box(&SignedRequest::new(h, body))))
        });
        g.bench_function(BenchmarkId::new("ours_verify", label), |b| {
            b.iter(|| {
                outworx_hooks::security::verify(
                    "standard",
                    h,
                    black_box(body),
                    &[STANDARD_SECRET],
                    TOLERANCE,
                )
            })
        });
        g.bench_function(BenchmarkId::new("standardwebhooks", label), |b| {
            b.iter(|| sw.verify(black_box(body), h))
        });
        g.bench_function(BenchmarkId::new("svix", label), |b| {
            b.iter(|| svix.verify(black_box(body), h))
        });
        g.bench_function(BenchmarkId::new("webhook_verify", label), |b| {
            b.iter(|| {
                wv(
                    webhook_verify::Provider::StandardWebhooks,
                    h,
                    black_box(body),
                    &wv_secret,
                )
            })
        });
        g.finish();
        // Still inside every peer's 300 s window: no row timed an early rejection.
        assert!(ours.verify(&SignedRequest::new(h, body)).valid);
        sw.verify(body, h)
            .expect("standardwebhooks still accepts it");
        // The key's length, not its bytes, is what costs (24 bytes, as the decoded secret).
        floor(c, "standard", &[7u8; 24], body, label);
    }
}

fn stripe(c: &mut Criterion) {
    for (size, label) in SIZES {
        let signed = Signer::new(Provider::Stripe, STRIPE_SECRET)
            .at(now_unix())
            .sign(opaque_body(size))
            .expect("sign");
        let (h, body) = (&signed.headers, &signed.body);
        let text = std::str::from_utf8(body).expect("ascii");
        let header = h["stripe-signature"].to_str().expect("ascii").to_owned();
        let ours = Verifier::new(Provider::Stripe, &[STRIPE_SECRET]).expect("key");
        let wv_secret = webhook_verify::Secret::new(STRIPE_SECRET);
        let async_stripe_ok = |r: Result<_, stripe_webhook::WebhookError>| {
            matches!(r, Err(stripe_webhook::WebhookError::BadParse(_)))
        };
        assert!(ours.verify(&SignedRequest::new(h, body)).valid);
        wv(webhook_verify::Provider::Stripe, h, body, &wv_secret)
            .expect("webhook-verify accepts it");
        assert!(
            async_stripe_ok(stripe_webhook::Webhook::construct_event(
                text,
                &header,
                STRIPE_SECRET
            )),
            "async-stripe accepts the signature (then fails to parse a body that is not JSON)"
        );

        let mut g = c.benchmark_group("stripe");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(BenchmarkId::new("ours_verifier", label), |b| {
            b.iter(|| ours.verify(black_box(&SignedRequest::new(h, body))))
        });
        g.bench_function(BenchmarkId::new("ours_verify", label), |b| {
            b.iter(|| {
                outworx_hooks::security::verify(
                    "stripe",
                    h,
                    black_box(body),
                    &[STRIPE_SECRET],
                    TOLERANCE,
                )
            })
        });
        g.bench_function(BenchmarkId::new("webhook_verify", label), |b| {
            b.iter(|| {
                wv(
                    webhook_verify::Provider::Stripe,
                    h,
                    black_box(body),
                    &wv_secret,
                )
            })
        });
        g.bench_function(BenchmarkId::new("async_stripe", label), |b| {
            b.iter(|| {
                stripe_webhook::Webhook::construct_event(black_box(text), &header, STRIPE_SECRET)
                    .is_err()
            })
        });
        g.finish();
        assert!(
            ours.verify(&SignedRequest::new(h, body)).valid,
            "still in the window"
        );
        assert!(async_stripe_ok(stripe_webhook::Webhook::construct_event(
            text,
            &header,
            STRIPE_SECRET
        )));
        floor(c, "stripe", STRIPE_SECRET.as_bytes(), body, label);
    }
}

fn github(c: &mut Criterion) {
    for (size, label) in SIZES {
        let signed = Signer::new(Provider::Github, GITHUB_SECRET)
            .sign(json_body(size))
            .expect("sign");
        let (h, body) = (&signed.headers, &signed.body);
        let header = h["x-hub-signature-256"].to_str().expect("ascii").to_owned();
        let ours = Verifier::new(Provider::Github, &[GITHUB_SECRET]).expect("key");
        let octo =
            octocrab::models::webhook_events::verification::WebhookVerifier::new(GITHUB_SECRET);
        let wv_secret = webhook_verify::Secret::new(GITHUB_SECRET);
        assert!(ours.verify(&SignedRequest::new(h, body)).valid);
        octo.verify(&header, body).expect("octocrab accepts it");
        wv(webhook_verify::Provider::GitHub, h, body, &wv_secret)
            .expect("webhook-verify accepts it");

        let mut g = c.benchmark_group("github");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(BenchmarkId::new("ours_verifier", label), |b| {
            b.iter(|| ours.verify(black_box(&SignedRequest::new(h, body))))
        });
        g.bench_function(BenchmarkId::new("ours_verify", label), |b| {
            b.iter(|| {
                outworx_hooks::security::verify(
                    "github",
                    h,
                    black_box(body),
                    &[GITHUB_SECRET],
                    TOLERANCE,
                )
            })
        });
        g.bench_function(BenchmarkId::new("octocrab", label), |b| {
            b.iter(|| octo.verify(&header, black_box(body)))
        });
        g.bench_function(BenchmarkId::new("webhook_verify", label), |b| {
            b.iter(|| {
                wv(
                    webhook_verify::Provider::GitHub,
                    h,
                    black_box(body),
                    &wv_secret,
                )
            })
        });
        g.finish();
        floor(c, "github", GITHUB_SECRET.as_bytes(), body, label);
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = peers; config = config(); targets = standard, stripe, github }
criterion_main!(peers);
