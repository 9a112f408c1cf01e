//! Verification throughput per scheme family at 1 KiB, 64 KiB and 1 MiB.
//!
//! Run: `cargo bench -p outworx-hooks --bench verify`
//! (add `-- hmac_sha256_raw` or a family name to run one group).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use outworx_hooks::security::{Provider, SignedRequest, Verifier};
use outworx_hooks::testing::{Signer, TestKeys};

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://hooks.example.com/webhooks/square";
const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];

/// A JSON body of exactly `size` bytes.
fn body(size: usize) -> Vec<u8> {
    let head = br#"{"id":"evt_bench","type":"charge.succeeded","pad":""#;
    let mut b = head.to_vec();
    b.resize(size - 2, b'x');
    b.extend_from_slice(b"\"}");
    b
}

/// One provider per family.
const FAMILIES: [(Provider, &str); 9] = [
    (Provider::Github, "body_hmac_github"),
    (Provider::Stripe, "header_timestamped_stripe"),
    (Provider::Slack, "v0_slack"),
    (Provider::Svix, "standard_svix"),
    (Provider::Square, "url_square"),
    (Provider::Discord, "ed25519_discord"),
    (Provider::Sendgrid, "ecdsa_sendgrid"),
    (Provider::Gitlab, "token_gitlab"),
    (Provider::Mailgun, "in_body_mailgun"),
];

fn families(c: &mut Criterion) {
    for (provider, name) in FAMILIES {
        let keys = TestKeys::for_provider(provider);
        let verifier = Verifier::new(provider, &[&keys.verifying]).expect("test keys");
        let mut group = c.benchmark_group(name);
        for (size, label) in SIZES {
            let signed = Signer::new(provider, &keys.signing)
                .at(NOW)
                .url(URL)
                .sign(body(size))
                .expect("sign");
            let delivery = SignedRequest::new(&signed.headers, &signed.body).with_url(URL);
            assert!(verifier.verify_at(&delivery, NOW).valid, "{provider}");
            group.throughput(Throughput::Bytes(signed.body.len() as u64));
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| verifier.verify_at(black_box(&delivery), NOW))
            });
        }
        group.finish();
    }
}

/// The bare HMAC-SHA256 of the `hmac`/`sha2` crates: the floor the verifier sits on.
fn raw_hmac(c: &mut Criterion) {
    let mut group = c.benchmark_group("hmac_sha256_raw");
    for (size, label) in SIZES {
        let data = body(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"secret").expect("any key");
                m.update(black_box(&data));
                m.finalize().into_bytes()
            })
        });
    }
    group.finish();
}

/// The worst case of an invalid delivery: a forged, well-formed signature over 64 KiB of
/// nesting (`[` × 32,767 then `]` × 32,767), which makes the `parsed_body` diagnosis try its
/// re-encodings. Bounded by construction; compare with the valid 64 KiB rows above.
fn hostile(c: &mut Criterion) {
    let mut group = c.benchmark_group("hostile_nested_64KiB");
    let mut nested = vec![b'['; 32_767];
    nested.resize(65_534, b']');
    for provider in [Provider::Github, Provider::Stripe] {
        let keys = TestKeys::for_provider(provider);
        let verifier = Verifier::new(provider, &[&keys.verifying]).expect("test keys");
        let forged = Signer::new(provider, "not-the-secret")
            .at(NOW)
            .sign(nested.clone())
            .expect("sign");
        let delivery = SignedRequest::new(&forged.headers, &nested);
        assert!(!verifier.verify_at(&delivery, NOW).valid);
        group.throughput(Throughput::Bytes(nested.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(provider.name()), |b| {
            b.iter(|| verifier.verify_at(black_box(&delivery), NOW))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = raw_hmac, families, hostile
}
criterion_main!(benches);
