//! Every provider, through the public API: signer and verifier agree, and tampered, stale,
//! missing and malformed deliveries fail with the right reason, and no input panics.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use outworx_hooks::security::{
    self, FailureReason, Provider, SignatureResult, SignedRequest, Verifier,
};
use outworx_hooks::testing::{Signed, Signer, TestKeys};

const T: i64 = 1_700_000_000;
const URL: &str = "https://hooks.example.com/webhooks/in?tenant=42";
const BODY: &[u8] =
    r#"{"id":"evt_123","type":"charge.succeeded","data":{"object":{"amount":1999,"name":"Zoë"}}}"#
        .as_bytes();

/// Providers whose scheme carries a signed timestamp (and so a replay window).
const TIMESTAMPED: &[Provider] = &[
    Provider::Stripe,
    Provider::Svix,
    Provider::Clerk,
    Provider::Slack,
    Provider::Standard,
    Provider::Paddle,
    Provider::Calendly,
    Provider::Zoom,
    Provider::Hubspot,
    Provider::Discord,
    Provider::Sendgrid,
    Provider::Twitch,
    Provider::Mailgun,
    Provider::Resend,
];

/// Headers a signer adds beside the signature that verification does not read.
const NOT_SIGNATURE: &[&str] = &[
    "content-type",
    // Delivery ids the signer adds beside the signature (each provider's natural key).
    "x-github-delivery",
    "x-shopify-webhook-id",
    "x-gitlab-event-uuid",
    "x-request-uuid",
    "linear-delivery",
    "x-razorpay-event-id",
    "i-twilio-idempotency-token",
    "twitch-eventsub-message-type",
];

fn sign(p: Provider, keys: &TestKeys, at: i64, body: &[u8]) -> Signed {
    Signer::new(p, &keys.signing)
        .at(at)
        .url(URL)
        .sign(body)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn verify(p: Provider, secrets: &[&str], s: &Signed, body: &[u8], now: i64) -> SignatureResult {
    let v = Verifier::new(p, secrets).unwrap_or_else(|e| panic!("{p}: {e}"));
    let url = s.url.as_deref().unwrap_or(URL);
    v.verify_at(&SignedRequest::new(&s.headers, body).with_url(url), now)
}

#[track_caller]
fn reason(r: &SignatureResult) -> FailureReason {
    assert!(!r.valid, "expected a failure, got {r:?}");
    r.reason.expect("a failure has a reason")
}

/// Changes one letter inside the payload (the body after any signature block Mailgun adds).
fn tamper(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let i = out
        .windows(7)
        .position(|w| w == b"evt_123")
        .expect("payload id");
    out[i + 6] = b'4';
    out
}

#[test]
fn every_provider_round_trips() {
    assert!(Provider::ALL.len() >= 27);
    for &p in Provider::ALL {
        let keys = TestKeys::for_provider(p);
        let s = sign(p, &keys, T, BODY);
        let r = verify(p, &[&keys.verifying], &s, &s.body, T);
        assert!(r.valid, "{p}: {r:?}");
        assert_eq!((r.reason, r.hint), (None, None));
    }
}

#[test]
fn rotation_any_configured_secret_may_match() {
    for &p in Provider::ALL {
        let old = TestKeys::from_seed(p, [1; 32]);
        let new = TestKeys::from_seed(p, [2; 32]);
        let unrelated = TestKeys::from_seed(p, [3; 32]);
        let s = sign(p, &old, T, BODY);
        let both = [new.verifying.as_str(), old.verifying.as_str()];
        assert!(
            verify(p, &both, &s, &s.body, T).valid,
            "{p}: old secret after rotation"
        );
        let r = verify(p, &[&new.verifying, &unrelated.verifying], &s, &s.body, T);
        assert_eq!(reason(&r), FailureReason::HmacMismatch, "{p}");
    }
}

#[test]
fn tampered_bodies_fail_with_hmac_mismatch() {
    for &p in Provider::ALL {
        let keys = TestKeys::for_provider(p);
        let s = sign(p, &keys, T, BODY);
        let r = verify(p, &[&keys.verifying], &s, &tamper(&s.body), T);
        match p {
            // GitLab's token and Mailgun's in-body signature do not cover the payload bytes.
            Provider::Gitlab | Provider::Mailgun => assert!(r.valid, "{p}: {r:?}"),
            _ => assert_eq!(reason(&r), FailureReason::HmacMismatch, "{p}: {r:?}"),
        }
    }
}

#[test]
fn stale_and_future_timestamps_fail_with_timestamp_drift() {
    for &p in Provider::ALL {
        let keys = TestKeys::for_provider(p);
        let s = sign(p, &keys, T, BODY);
        assert!(
            verify(p, &[&keys.verifying], &s, &s.body, T + 299).valid,
            "{p}"
        );
        let stale = verify(p, &[&keys.verifying], &s, &s.body, T + 301);
        let future = verify(p, &[&keys.verifying], &s, &s.body, T - 301);
        if TIMESTAMPED.contains(&p) {
            assert_eq!(reason(&stale), FailureReason::TimestampDrift, "{p}");
            assert_eq!(reason(&future), FailureReason::TimestampDrift, "{p}");
            assert!(stale.hint.unwrap().contains("301 s"), "{p}");
        } else {
            // No timestamp in the scheme: only idempotency can stop a replay.
            assert!(stale.valid && future.valid, "{p}");
        }
    }
}

#[test]
fn tolerance_is_honoured() {
    let keys = TestKeys::for_provider(Provider::Stripe);
    let s = sign(Provider::Stripe, &keys, T, BODY);
    let v = Verifier::new(Provider::Stripe, &[&keys.verifying])
        .unwrap()
        .with_tolerance(Duration::from_secs(3600));
    assert!(
        v.verify_at(&SignedRequest::new(&s.headers, &s.body), T + 3000)
            .valid
    );
}

#[test]
fn each_missing_signature_header_fails_with_missing_header() {
    for &p in Provider::ALL {
        let keys = TestKeys::for_provider(p);
        let s = sign(p, &keys, T, BODY);
        let names: Vec<_> = s
            .headers
            .keys()
            .filter(|n| !NOT_SIGNATURE.contains(&n.as_str()))
            .cloned()
            .collect();
        if p == Provider::Mailgun {
            assert!(names.is_empty());
            let r = verify(p, &[&keys.verifying], &s, BODY, T);
            assert_eq!(reason(&r), FailureReason::MissingHeader, "{p}");
            continue;
        }
        assert!(!names.is_empty(), "{p} sets no signature header");
        for name in names {
            let mut without = s.clone();
            without.headers.remove(&name);
            let r = verify(p, &[&keys.verifying], &without, &s.body, T);
            assert_eq!(
                reason(&r),
                FailureReason::MissingHeader,
                "{p} without {name}"
            );
            let mut empty = s.clone();
            empty.headers.insert(&name, HeaderValue::from_static(""));
            let r = verify(p, &[&keys.verifying], &empty, &s.body, T);
            assert_eq!(
                reason(&r),
                FailureReason::MissingHeader,
                "{p} with empty {name}"
            );
        }
    }
}

#[test]
fn malformed_signature_headers_fail_without_panicking() {
    for &p in Provider::ALL {
        let keys = TestKeys::for_provider(p);
        let s = sign(p, &keys, T, BODY);
        for name in s
            .headers
            .keys()
            .filter(|n| !NOT_SIGNATURE.contains(&n.as_str()))
        {
            // Bytes that are not visible ASCII.
            let mut bad = s.clone();
            bad.headers.insert(
                name,
                HeaderValue::from_bytes(b"\xff\xfe v1=\xc3\xa9").unwrap(),
            );
            let r = verify(p, &[&keys.verifying], &bad, &s.body, T);
            assert_eq!(reason(&r), FailureReason::MalformedHeader, "{p}: {name}");
            // ASCII that is not the expected shape.
            for junk in [
                "x",
                "t=,v1=",
                "v0=zz",
                "sha256=",
                "v1a,!!!",
                "=,=;=",
                "9999999999999999999999",
            ] {
                let mut bad = s.clone();
                bad.headers.insert(name, HeaderValue::from_static(junk));
                let r = verify(p, &[&keys.verifying], &bad, &s.body, T);
                assert!(
                    matches!(
                        reason(&r),
                        FailureReason::MalformedHeader | FailureReason::HmacMismatch
                    ),
                    "{p}: {name}={junk}: {r:?}"
                );
            }
        }
    }
}

/// As the providers' own SDKs do: a header whose structure parses but whose signature value
/// does not decode is a mismatch (it can match nothing); `malformed_header` is for structure.
#[test]
fn undecodable_signature_values_are_mismatches_and_broken_structure_is_malformed() {
    let h = |pairs: &[(&'static str, &str)]| {
        let mut m = http::HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    };
    let ts = T.to_string();
    let cases: Vec<(Provider, &str, http::HeaderMap, FailureReason)> = vec![
        (
            Provider::Stripe,
            "whsec_x",
            h(&[("stripe-signature", &format!("t={T},v1=bad_signature"))]),
            FailureReason::HmacMismatch,
        ),
        (
            Provider::Paddle,
            "pdl",
            h(&[("paddle-signature", &format!("ts={T};h1=invalid_signature"))]),
            FailureReason::HmacMismatch,
        ),
        (
            Provider::Github,
            "gh",
            h(&[("x-hub-signature-256", "sha256=zz-not-hex")]),
            FailureReason::HmacMismatch,
        ),
        (
            Provider::Slack,
            "sl",
            h(&[
                ("x-slack-signature", "v0=nothex"),
                ("x-slack-request-timestamp", &ts),
            ]),
            FailureReason::HmacMismatch,
        ),
        (
            Provider::Svix,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            h(&[
                ("svix-id", "msg_1"),
                ("svix-timestamp", &ts),
                ("svix-signature", "v1,notbase64!!"),
            ]),
            FailureReason::HmacMismatch,
        ),
        // Structure that does not parse.
        (
            Provider::Stripe,
            "whsec_x",
            h(&[("stripe-signature", "v1=abcd")]),
            FailureReason::MalformedHeader,
        ),
        (
            Provider::Stripe,
            "whsec_x",
            h(&[("stripe-signature", &format!("t={T},v0=abcd"))]),
            FailureReason::MalformedHeader,
        ),
        (
            Provider::Paddle,
            "pdl",
            h(&[("paddle-signature", &format!("ts={T}"))]),
            FailureReason::MalformedHeader,
        ),
        (
            Provider::Github,
            "gh",
            h(&[("x-hub-signature-256", "md5=abcd")]),
            FailureReason::MalformedHeader,
        ),
        (
            Provider::Svix,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            h(&[
                ("svix-id", "msg_1"),
                ("svix-timestamp", &ts),
                ("svix-signature", "v2,abcd"),
            ]),
            FailureReason::MalformedHeader,
        ),
    ];
    for (p, secret, headers, want) in cases {
        let r = security::verify_at(
            p.name(),
            &headers,
            BODY,
            &[secret],
            Duration::from_secs(300),
            T,
        );
        assert_eq!(r.reason, Some(want), "{p} {headers:?}: {r:?}");
    }
}

/// Each signature in a header costs a MAC, or an Ed25519 verification over the whole body:
/// a header may carry at most 16 (rotation needs a few), and more are refused untried.
#[test]
fn a_header_with_too_many_signatures_is_refused_untried() {
    for p in [Provider::Stripe, Provider::Standard] {
        let keys = TestKeys::for_provider(p);
        let s = sign(p, &keys, T, BODY);
        let name = if p == Provider::Stripe {
            "stripe-signature"
        } else {
            "webhook-signature"
        };
        let good = s.headers[name].to_str().unwrap().to_owned();
        let (filler, sep) = if p == Provider::Stripe {
            (format!("v1={}", "ab".repeat(32)), ",")
        } else {
            (format!("v1,{}", "A".repeat(44)), " ")
        };
        let with = |n: usize| {
            let mut h = s.headers.clone();
            let extra = vec![filler.as_str(); n].join(sep);
            h.insert(
                name,
                HeaderValue::from_str(&format!("{good}{sep}{extra}")).unwrap(),
            );
            security::verify_at(
                p.name(),
                &h,
                BODY,
                &[&keys.verifying],
                Duration::from_secs(300),
                T,
            )
        };
        assert!(with(15).valid, "{p}: 16 signatures, one of them right");
        assert_eq!(
            with(16).reason,
            Some(FailureReason::MalformedHeader),
            "{p}: 17"
        );
        assert_eq!(
            with(4000).reason,
            Some(FailureReason::MalformedHeader),
            "{p}: 4001"
        );
    }
}

#[test]
fn random_inputs_never_panic_and_never_verify() {
    // A small deterministic generator: the same cases run on every machine.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"0123456789abcdefABCDEF=,;:.+/ v1v0t=ts=h1=sha256=whsec_-\t";
    for &p in Provider::ALL {
        let keys = TestKeys::for_provider(p);
        let template = sign(p, &keys, T, BODY);
        let v = Verifier::new(p, &[&keys.verifying]).unwrap();
        for round in 0..300 {
            let mut headers = HeaderMap::new();
            for name in template.headers.keys() {
                let len = (next() % 200) as usize;
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = next();
                        if r % 7 == 0 {
                            (r >> 8) as u8 | 0x80
                        } else {
                            alphabet[(r >> 8) as usize % alphabet.len()]
                        }
                    })
                    .collect();
                if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                    headers.insert(name, value);
                }
            }
            let body: Vec<u8> = match round % 3 {
                0 => Vec::new(),
                // Mailgun signs inside the body, so its signed body stays valid whatever the
                // headers are: it gets random bytes here instead.
                2 if p != Provider::Mailgun => template.body.clone(),
                _ => (0..(next() % 512)).map(|_| next() as u8).collect(),
            };
            let d = SignedRequest::new(&headers, &body).with_url(URL);
            let r = v.verify_at(&d, T);
            assert!(!r.valid, "{p}: random input verified");
            assert!(r.reason.is_some() && r.hint.is_some());
        }
    }
}

#[test]
fn huge_headers_and_bodies_are_handled() {
    let keys = TestKeys::for_provider(Provider::Stripe);
    let big = vec![b'a'; 1 << 20];
    let s = sign(Provider::Stripe, &keys, T, &big);
    assert!(verify(Provider::Stripe, &[&keys.verifying], &s, &big, T).valid);
    let mut h = HeaderMap::new();
    h.insert(
        "stripe-signature",
        HeaderValue::try_from(format!("t={T},{}", "v1=00,".repeat(20_000))).unwrap(),
    );
    let r = security::verify_at(
        "stripe",
        &h,
        &big,
        &[&keys.verifying],
        Duration::from_secs(300),
        T,
    );
    // 20,000 signatures are not tried one by one: more than 16 is a malformed header.
    assert_eq!(reason(&r), FailureReason::MalformedHeader);
}

#[test]
fn free_functions_report_configuration_problems_in_the_result() {
    let h = HeaderMap::new();
    let r = security::verify_at("stripey", &h, b"", &["s"], Duration::from_secs(300), T);
    assert_eq!(reason(&r), FailureReason::UnsupportedProvider);
    assert!(r.hint.unwrap().contains("did you mean `stripe`"));
    let none: [&str; 0] = [];
    let r = security::verify_at("stripe", &h, b"", &none, Duration::from_secs(300), T);
    assert!(r.hint.unwrap().contains("no usable secret"));
    // Secrets never appear in hints.
    let r = security::verify_at(
        "svix",
        &h,
        b"",
        &["whsec_%%%secret%%%"],
        Duration::from_secs(300),
        T,
    );
    assert!(!r.hint.unwrap().contains("secret%%%"));
    assert!(Verifier::new(Provider::Stripe, &none).is_err());
}

#[test]
fn per_provider_functions_agree_with_the_generic_path() {
    let keys = TestKeys::for_provider(Provider::Paddle);
    let s = Signer::new(Provider::Paddle, &keys.signing)
        .sign(BODY)
        .unwrap();
    assert!(security::compat::verify_paddle_signature(
        &s.headers,
        &s.body,
        &keys.verifying
    ));
    let r = security::compat::verify_paddle_signature_detailed(&s.headers, b"{}", &keys.verifying);
    assert_eq!(reason(&r), FailureReason::HmacMismatch);

    let keys = TestKeys::for_provider(Provider::Hubspot);
    let s = Signer::new(Provider::Hubspot, &keys.signing)
        .url(URL)
        .sign(BODY)
        .unwrap();
    assert!(security::compat::verify_hubspot_signature(
        URL,
        &s.headers,
        &s.body,
        &keys.verifying
    ));
    assert!(!security::compat::verify_hubspot_signature(
        "https://evil.example/x",
        &s.headers,
        &s.body,
        &keys.verifying
    ));
}

#[test]
fn signers_explain_what_they_need() {
    let err = Signer::new(Provider::Twilio, "t").sign(BODY).unwrap_err();
    assert!(err.to_string().contains("Signer::url"), "{err}");
    let err = Signer::new(Provider::Discord, "not-hex")
        .sign(BODY)
        .unwrap_err();
    assert!(err.to_string().contains("hex"), "{err}");
}

#[test]
fn standard_webhooks_asymmetric_v1a() {
    let keys = TestKeys::standard_ed25519([5; 32]);
    let s = Signer::new(Provider::Standard, &keys.signing)
        .at(T)
        .sign(BODY)
        .unwrap();
    assert!(
        s.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .starts_with("v1a,")
    );
    assert!(verify(Provider::Standard, &[&keys.verifying], &s, BODY, T).valid);
    // Rotation across kinds: an HMAC secret and an Ed25519 key on one route.
    let hmac = TestKeys::for_provider(Provider::Standard);
    assert!(
        verify(
            Provider::Standard,
            &[&hmac.verifying, &keys.verifying],
            &s,
            BODY,
            T
        )
        .valid
    );
}

#[test]
fn twilio_form_and_json_requests() {
    let keys = TestKeys::for_provider(Provider::Twilio);
    let form = b"From=%2B15551234567&Body=hello+world&MessageSid=SM1";
    let s = Signer::new(Provider::Twilio, &keys.signing)
        .url(URL)
        .sign(&form[..])
        .unwrap();
    assert_eq!(
        s.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert!(verify(Provider::Twilio, &[&keys.verifying], &s, form, T).valid);
    let s = Signer::new(Provider::Twilio, &keys.signing)
        .url(URL)
        .sign(BODY)
        .unwrap();
    assert!(s.url.as_deref().unwrap().contains("&bodySHA256="));
    assert!(verify(Provider::Twilio, &[&keys.verifying], &s, BODY, T).valid);
}
