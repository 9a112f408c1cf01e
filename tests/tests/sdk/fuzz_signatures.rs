//! Property tests of every signature-header parser: no input makes verification panic, and
//! for two schemes the verdict equals a straightforward reference written here from the
//! providers' documentation (GitHub: `sha256=` and the hex HMAC of the body; Stripe: `t=` and
//! any `v1=` HMAC of `t.body`, within the tolerance).
//!
//! CI runs a fixed seed; `PROPTEST_CASES=100000 cargo test -p outworx-hooks-tests --test
//! fuzz_signatures` runs a longer search.

use std::time::Duration;

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use outworx_hooks::security::{self, Provider};
use outworx_hooks::testing::{Signer, TestKeys};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

const NOW: i64 = 1_700_000_000;
const TOL: Duration = Duration::from_secs(300);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(0x6f75_7477_6f72_7833),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    hex::encode(m.finalize().into_bytes())
}

/// Header text that is mostly the right shape, often not quite: pieces of real headers.
fn header_text(good: String) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(good.clone()),
        "[ -~]{0,40}",
        "(t|v1|v0|h1|ts|sha256|sha1)=[0-9a-fA-F]{0,70}",
        "[0-9]{0,12}",
        Just(",".to_owned()),
        Just(";".to_owned()),
        Just(" ".to_owned()),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|v| v.concat())
}

fn verify(p: Provider, secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    security::verify_at(p.name(), headers, body, &[secret], TOL, NOW).valid
}

fn github_reference(header: &str, body: &[u8]) -> bool {
    let Some(hexsig) = header.trim().get(7..).filter(|_| {
        header
            .trim()
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("sha256="))
    }) else {
        return false;
    };
    hexsig.to_ascii_lowercase() == hmac_hex(b"gh-secret", &[body])
}

fn stripe_reference(header: &str, body: &[u8]) -> bool {
    let items: Vec<(&str, &str)> = header
        .split(',')
        .filter_map(|i| i.trim().split_once('='))
        .collect();
    let Some(ts) = items.iter().rev().find(|(k, _)| *k == "t").map(|(_, v)| *v) else {
        return false;
    };
    let Ok(t) = ts.parse::<i64>() else {
        return false;
    };
    if !ts.bytes().all(|b| b.is_ascii_digit()) || ts.len() > 18 {
        return false;
    }
    let expected = hmac_hex(b"whsec_fuzz", &[ts.as_bytes(), b".", body]);
    let matches = items
        .iter()
        .any(|(k, v)| *k == "v1" && v.to_ascii_lowercase() == expected);
    matches && (NOW - t).unsigned_abs() <= TOL.as_secs()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn github_verdicts_equal_the_reference(
        body in prop::collection::vec(any::<u8>(), 0..64),
        mutate in any::<bool>(),
    ) {
        let good = format!("sha256={}", hmac_hex(b"gh-secret", &[&body]));
        let runner_header = if mutate { good.to_uppercase().replace("SHA256=", "sha256=") } else { good };
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", HeaderValue::from_str(&runner_header).unwrap());
        prop_assert_eq!(verify(Provider::Github, "gh-secret", &h, &body), github_reference(&runner_header, &body));
    }

    #[test]
    fn github_header_shapes_equal_the_reference(
        body in prop::collection::vec(any::<u8>(), 0..32),
        text in header_text(String::new()),
    ) {
        let good = format!("sha256={}", hmac_hex(b"gh-secret", &[&body]));
        for candidate in [text.clone(), format!("{good}{text}"), good.clone()] {
            let Ok(v) = HeaderValue::from_str(&candidate) else { continue };
            let mut h = HeaderMap::new();
            h.insert("x-hub-signature-256", v);
            prop_assert_eq!(
                verify(Provider::Github, "gh-secret", &h, &body),
                github_reference(&candidate, &body),
                "{}", candidate
            );
        }
    }

    #[test]
    fn stripe_verdicts_equal_the_reference(
        body in "[ -~]{0,40}",
        offset in -400i64..400,
        extra in header_text(String::new()),
    ) {
        let ts = NOW + offset;
        let sig = hmac_hex(b"whsec_fuzz", &[ts.to_string().as_bytes(), b".", body.as_bytes()]);
        for candidate in [
            format!("t={ts},v1={sig}"),
            format!("t={ts},v1={sig},{extra}"),
            format!("{extra},t={ts},v0=00,v1={sig}"),
            extra.clone(),
        ] {
            let Ok(v) = HeaderValue::from_str(&candidate) else { continue };
            let mut h = HeaderMap::new();
            h.insert("stripe-signature", v);
            prop_assert_eq!(
                verify(Provider::Stripe, "whsec_fuzz", &h, body.as_bytes()),
                stripe_reference(&candidate, body.as_bytes()),
                "{}", candidate
            );
        }
    }

    /// Every provider, every header it signs with, any bytes in it: no panic, and never valid
    /// once a signature header is replaced.
    #[test]
    fn no_header_value_makes_any_scheme_panic(
        index in any::<prop::sample::Index>(),
        value in prop::collection::vec(any::<u8>(), 0..120),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let p = index.get(Provider::ALL);
        let keys = TestKeys::for_provider(*p);
        let url = "https://hooks.example.com/x";
        let signed = Signer::new(*p, &keys.signing).at(NOW).url(url).sign(body.clone()).unwrap();
        for name in signed.headers.keys().cloned().collect::<Vec<HeaderName>>() {
            let Ok(v) = HeaderValue::from_bytes(&value) else { continue };
            let mut h = signed.headers.clone();
            h.insert(name.clone(), v);
            let d = security::SignedRequest::new(&h, &signed.body).with_url(signed.url.as_deref().unwrap_or(url));
            let verifier = security::Verifier::new(*p, &[&keys.verifying]).unwrap();
            let r = verifier.verify_at(&d, NOW);
            if p.secret_headers().contains(&name.as_str()) {
                prop_assert!(!r.valid || signed.headers.get(&name).map(|o| o.as_bytes()) == Some(&value[..]));
            }
        }
    }
}
