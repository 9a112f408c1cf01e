//! Sign deliveries the way providers do, verify them, and see why bad ones fail.
//!
//! Run: `cargo run --example verify`

use std::time::Duration;

use outworx_hooks::security::{Provider, SignatureResult, SignedRequest, Verifier, now_unix};
use outworx_hooks::testing::{Signed, Signer, TestKeys};

const URL: &str = "https://hooks.example.com/webhooks/twilio";

fn main() {
    let now = now_unix();
    let body = br#"{"id":"evt_1NqX","type":"payment_intent.succeeded","data":{"amount":2000}}"#;
    let mut rows: Vec<(String, &str, SignatureResult)> = Vec::new();

    for provider in [
        Provider::Stripe,
        Provider::Github,
        Provider::Svix,
        Provider::Twilio,
        Provider::Discord,
    ] {
        let keys = TestKeys::for_provider(provider);
        let verifier = Verifier::new(provider, &[&keys.verifying])
            .expect("test keys are well formed")
            .with_tolerance(Duration::from_secs(300));
        let sign = |at: i64| -> Signed {
            Signer::new(provider, &keys.signing)
                .at(at)
                .url(URL)
                .sign(&body[..])
                .expect("sign")
        };
        let check = |s: &Signed, body: &[u8]| {
            let url = s.url.as_deref().unwrap_or(URL);
            verifier.verify_at(&SignedRequest::new(&s.headers, body).with_url(url), now)
        };
        let fresh = sign(now);
        rows.push((
            provider.to_string(),
            "signed delivery",
            check(&fresh, &fresh.body),
        ));
        let mut tampered = fresh.body.clone();
        tampered[20] ^= 1;
        rows.push((
            provider.to_string(),
            "tampered body",
            check(&fresh, &tampered),
        ));
        let stale = sign(now - 3600);
        rows.push((
            provider.to_string(),
            "signed an hour ago",
            check(&stale, &stale.body),
        ));
    }

    // A framework that parses the JSON and re-encodes it breaks every signature; we prove it.
    let keys = TestKeys::for_provider(Provider::Stripe);
    let signed = Signer::new(Provider::Stripe, &keys.signing)
        .sign(&body[..])
        .expect("sign");
    let reencoded =
        br#"{"id": "evt_1NqX", "type": "payment_intent.succeeded", "data": {"amount": 2000}}"#;
    let verifier = Verifier::new(Provider::Stripe, &[&keys.verifying]).expect("key");
    rows.push((
        "stripe".into(),
        "re-serialized JSON",
        verifier.verify(&SignedRequest::new(&signed.headers, reencoded)),
    ));

    // A body that is not UTF-8 verifies: signatures are over bytes.
    let binary = b"\xff\xfe binary \x80";
    let signed = Signer::new(Provider::Github, "s3cret")
        .sign(&binary[..])
        .expect("sign");
    let verifier = Verifier::new(Provider::Github, &["s3cret"]).expect("key");
    rows.push((
        "github".into(),
        "non-UTF-8 body",
        verifier.verify(&SignedRequest::new(&signed.headers, binary)),
    ));

    println!(
        "{:<9} {:<20} {:<8} {:<17} hint",
        "provider", "case", "verdict", "reason"
    );
    println!("{}", "-".repeat(100));
    for (provider, case, r) in rows {
        let verdict = if r.valid { "valid" } else { "INVALID" };
        let reason = r.reason.map_or("", |r| r.as_str());
        let mut hint = r.hint.unwrap_or_default();
        if hint.len() > 60 {
            hint.truncate(hint.floor_char_boundary(57));
            hint.push_str("...");
        }
        println!("{provider:<9} {case:<20} {verdict:<8} {reason:<17} {hint}");
    }
}
