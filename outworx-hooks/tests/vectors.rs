//! Known-answer tests: vectors published by the providers (docs and official SDK test
//! suites), then vectors for providers that publish none, computed by a second, independent
//! implementation of each documented scheme (`vectors/independent.py`, beside this file).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use outworx_hooks::security::{FailureReason, Provider, SignatureResult, SignedRequest, Verifier};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::try_from(*k).unwrap(),
            HeaderValue::try_from(*v).unwrap(),
        );
    }
    h
}

fn check(
    provider: Provider,
    secret: &str,
    h: &HeaderMap,
    body: &[u8],
    url: Option<&str>,
    now: i64,
) -> SignatureResult {
    let v = Verifier::new(provider, &[secret]).unwrap();
    let mut d = SignedRequest::new(h, body);
    if let Some(url) = url {
        d = d.with_url(url);
    }
    v.verify_at(&d, now)
}

#[track_caller]
fn assert_valid(r: SignatureResult) {
    assert!(r.valid, "expected valid, got {r:?}");
}

#[track_caller]
fn assert_reason(r: SignatureResult, reason: FailureReason) {
    assert_eq!(r.reason, Some(reason), "{r:?}");
    assert!(!r.valid);
}

// ---- Published by the providers ------------------------------------------------------

/// GitHub docs, "Validating webhook deliveries", "Testing the webhook payload validation".
#[test]
fn github_docs_vector() {
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = headers(&[("x-hub-signature-256", sig)]);
    assert_valid(check(
        Provider::Github,
        "It's a Secret to Everybody",
        &h,
        b"Hello, World!",
        None,
        0,
    ));
    assert_reason(
        check(
            Provider::Github,
            "It's a Secret to Everybody",
            &h,
            b"Hello, World?",
            None,
            0,
        ),
        FailureReason::HmacMismatch,
    );
}

/// Slack docs, "Verifying requests from Slack" (also python-slack-sdk's signature tests).
#[test]
fn slack_docs_vector() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let h = headers(&[
        ("x-slack-request-timestamp", "1531420618"),
        (
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    assert_valid(check(Provider::Slack, secret, &h, body, None, 1531420618));
    let mut tampered = body.to_vec();
    tampered.extend_from_slice(b"------");
    assert_reason(
        check(Provider::Slack, secret, &h, &tampered, None, 1531420618),
        FailureReason::HmacMismatch,
    );
    // The same request today is a replay.
    assert_reason(
        check(Provider::Slack, secret, &h, body, None, 1_700_000_000),
        FailureReason::TimestampDrift,
    );
}

/// Svix docs, "Verifying payloads manually" example (used by Clerk and Resend, which deliver through Svix).
#[test]
fn svix_docs_vector_for_svix_clerk_and_resend() {
    let h = headers(&[
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("svix-timestamp", "1614265330"),
        (
            "svix-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ]);
    let body = br#"{"test": 2432232314}"#;
    for p in [Provider::Svix, Provider::Clerk, Provider::Resend] {
        assert_valid(check(
            p,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &h,
            body,
            None,
            1614265330,
        ));
        assert_reason(
            check(
                p,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                &h,
                body,
                None,
                1614265330 + 301,
            ),
            FailureReason::TimestampDrift,
        );
    }
}

/// standard-webhooks reference library (Rust) `test_sign`, and its multi-signature cases.
#[test]
fn standard_webhooks_reference_vector() {
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let sig = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    let with = |s: &str| {
        headers(&[
            ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
            ("webhook-timestamp", "1649367553"),
            ("webhook-signature", s),
        ])
    };
    assert_valid(check(
        Provider::Standard,
        secret,
        &with(sig),
        body,
        None,
        1649367553,
    ));
    let multi = format!(
        "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v2,ignored= {sig} v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE="
    );
    assert_valid(check(
        Provider::Standard,
        secret,
        &with(&multi),
        body,
        None,
        1649367553,
    ));
    let without = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=";
    assert_reason(
        check(
            Provider::Standard,
            secret,
            &with(without),
            body,
            None,
            1649367553,
        ),
        FailureReason::HmacMismatch,
    );
    // svix-branded headers are accepted by the `standard` provider too.
    let branded = headers(&[
        ("svix-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
        ("svix-timestamp", "1649367553"),
        ("svix-signature", sig),
    ]);
    assert_valid(check(
        Provider::Standard,
        secret,
        &branded,
        body,
        None,
        1649367553,
    ));
}

const TWILIO_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const TWILIO_FORM: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";

fn twilio(sig: &str, body: &[u8], url: &str) -> SignatureResult {
    let h = headers(&[
        ("x-twilio-signature", sig),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    check(Provider::Twilio, "12345", &h, body, Some(url), 0)
}

/// twilio-python `tests/unit/test_request_validator.py`.
#[test]
fn twilio_sdk_vectors() {
    assert_valid(twilio(
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        TWILIO_FORM,
        TWILIO_URL,
    ));
    // removes the port on https
    assert_valid(twilio(
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        TWILIO_FORM,
        "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
    ));
    // http with a port: the signature over the URL as given
    assert_valid(twilio(
        "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        TWILIO_FORM,
        "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
    ));
    // adds the default port
    assert_valid(twilio(
        "kvajT1Ptam85bY51eRf/AJRuM3w=",
        TWILIO_FORM,
        TWILIO_URL,
    ));
    assert_valid(twilio(
        "0ZXoZLH/DfblKGATFgpif+LLRf4=",
        TWILIO_FORM,
        "http://mycompany.com/myapp.php?foo=1&bar=2",
    ));
    // repeated parameters
    assert_valid(twilio(
        "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
        b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234",
        TWILIO_URL,
    ));
    // JSON body with bodySHA256
    let body = br#"{"property": "value", "boolean": true}"#;
    let url = format!(
        "{TWILIO_URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    );
    let h = headers(&[
        ("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4="),
        ("content-type", "application/json"),
    ]);
    assert_valid(check(Provider::Twilio, "12345", &h, body, Some(&url), 0));
    let r = check(
        Provider::Twilio,
        "12345",
        &h,
        br#"{"property": "other", "boolean": true}"#,
        Some(&url),
        0,
    );
    assert_reason(r, FailureReason::HmacMismatch);
    // Tampered form parameter, and no URL at all.
    assert_reason(
        twilio(
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            b"CallSid=CA1234567890ABCDE&Digits=9999",
            TWILIO_URL,
        ),
        FailureReason::HmacMismatch,
    );
    let h = headers(&[("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")]);
    assert_reason(
        check(Provider::Twilio, "12345", &h, TWILIO_FORM, None, 0),
        FailureReason::MissingHeader,
    );
}

/// square-nodejs-sdk `test/utilities/webhooksHelper.test.ts`.
#[test]
fn square_sdk_vectors() {
    let body = br#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
    let url = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";
    let h = headers(&[(
        "x-square-hmacsha256-signature",
        "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
    )]);
    assert_valid(check(
        Provider::Square,
        "Ibxx_5AKakO-3qeNVR61Dw",
        &h,
        body,
        Some(url),
        0,
    ));
    assert_reason(
        check(
            Provider::Square,
            "Ibxx_5AKakO-3qeNVR61Dw",
            &h,
            body,
            Some("https://webhook.site/79a4f3a-dcfa-49ee-bac5-9d0edad886b9"),
            0,
        ),
        FailureReason::HmacMismatch,
    );
    assert_reason(
        check(
            Provider::Square,
            "MCmhFRxGX82xMwg5FsaoQA",
            &h,
            body,
            Some(url),
            0,
        ),
        FailureReason::HmacMismatch,
    );
    let cases: [(&[u8], &str); 2] = [
        (
            br#"{"data":{"type":"webhooks","id":"fake_id"}}"#,
            "W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=",
        ),
        (
            br#"{"data":{"type":"webhooks","id":">id<"}}"#,
            "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=",
        ),
    ];
    for (body, sig) in cases {
        let h = headers(&[("x-square-hmacsha256-signature", sig)]);
        assert_valid(check(
            Provider::Square,
            "signature-key",
            &h,
            body,
            Some("https://webhook.site/webhooks"),
            0,
        ));
    }
}

/// hubspot-api-python `tests/spec/utils/test_signature.py` (`test_get_signature__v3`).
#[test]
fn hubspot_sdk_v3_vector() {
    let h = headers(&[
        (
            "x-hubspot-signature-v3",
            "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
        ),
        ("x-hubspot-request-timestamp", "15000000"),
    ]);
    let secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    let body = b"{'example_field':'example_value'}";
    // The timestamp is in milliseconds: 15000000 ms is 15000 s after 1970.
    assert_valid(check(
        Provider::Hubspot,
        secret,
        &h,
        body,
        Some("https://www.example.com/webhook_uri"),
        15_000,
    ));
    assert_reason(
        check(
            Provider::Hubspot,
            secret,
            &h,
            body,
            Some("https://www.example.com/webhook_uri"),
            15_000 + 301,
        ),
        FailureReason::TimestampDrift,
    );
    assert_reason(
        check(
            Provider::Hubspot,
            secret,
            &h,
            body,
            Some("https://www.example.com/other"),
            15_000,
        ),
        FailureReason::HmacMismatch,
    );
}

/// sendgrid-nodejs `packages/eventwebhook/src/eventwebhook.spec.js`.
#[cfg(feature = "ecdsa")]
#[test]
fn sendgrid_sdk_vector() {
    let key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    let other = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
    let sig = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    let bad = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
    let body: &[u8] =
        br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;
    let sg = |key: &str, sig: &str, ts: &str, body: &[u8]| {
        let h = headers(&[
            ("x-twilio-email-event-webhook-signature", sig),
            ("x-twilio-email-event-webhook-timestamp", ts),
        ]);
        check(Provider::Sendgrid, key, &h, body, None, 1588788367)
    };
    assert_valid(sg(key, sig, "1588788367", body));
    // A PEM-wrapped key works too.
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &key[..64],
        &key[64..]
    );
    assert_valid(sg(&pem, sig, "1588788367", body));
    assert_reason(
        sg(other, sig, "1588788367", body),
        FailureReason::HmacMismatch,
    );
    assert_reason(
        sg(key, sig, "1588788367", b"payload"),
        FailureReason::HmacMismatch,
    );
    assert_reason(
        sg(key, bad, "1588788367", body),
        FailureReason::HmacMismatch,
    );
    assert_reason(
        sg(key, sig, "timestamp", body),
        FailureReason::MalformedHeader,
    );
}

// ---- Computed by an independent implementation ---------------------------------------

// The Ed25519 vectors are unused when the `ed25519` feature is off.
#[cfg_attr(not(feature = "ed25519"), allow(dead_code))]
mod independent {
    use super::*;

    const TS: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded","data":{"amount":2000,"currency":"eur"}}"#;
    const NON_UTF8: &[u8] = b"\xff\xfe{\"id\":\"evt_bin\"}\x80";

    const STRIPE: &str =
        "t=1700000000,v1=93e22b0c474c209b9e1b04d0dafb0d4ab6d98c08db7fd32f827e210ca16a398e";
    const STRIPE_NON_UTF8: &str =
        "t=1700000000,v1=c9f84bd0ecd4222fddc0813b503adcca9e7ce25e32aa9ca3cb174b81cba9934a";
    const GITHUB_NON_UTF8: &str =
        "sha256=8e2ad8b19ab9ec80ac402684b696eb21f1745e8397b2188420e534cd51e0d074";
    const SHOPIFY: &str = "nlgJNeD17SQ+L8hWJYVS8plSEwhzvsGKElHL9+VB7dM=";
    const PADDLE: &str =
        "ts=1700000000;h1=5b1f4ef911b7216e0c2729e3b67715b296505a97b45fb1e46b59d84def17f5a6";
    const CALENDLY: &str =
        "t=1700000000,v1=b604933fda3ced6b7b6b95d57e0aff5a35af9f63ad1806c5cadafb7c73bb6b8c";
    const ZOOM: &str = "v0=ed5a78ded4a79a5773f21aa37c032c82847b713ce9fb4aa7d6d38bd261cf30f8";
    const BITBUCKET: &str =
        "sha256=9ecc5924aef09db2a4fd252d2cadbf9698747b0ffe797110e2f403123fc813b5";
    const INTERCOM: &str = "sha1=095abb3cc88f837ea6f5780437e1833213175009";
    const VERCEL: &str = "9ae15be687809e571df7d413d21a33e91953ceb3";
    const TYPEFORM: &str = "sha256=DTkhpUjIoyuIi7/y/U54ES3stxG2FDMcvyj5kr42axg=";
    const LINEAR_BODY: &str =
        "{\"action\":\"create\",\"type\":\"Issue\",\"webhookTimestamp\":1700000000000}";
    const LINEAR: &str = "91e919dc0fd99df1cae12efef1ca08b082cfa523f101b572ec14ed98863fdf35";
    const LEMONSQUEEZY: &str = "a947b15eda477039e4c9c1432294286bcf6a5a381473a5f8774e5c8e61c54370";
    const RAZORPAY: &str = "06113f3e3368b6890aa13837c87fa015a301ab241874fb5a93fbdbb118e56a74";
    const META: &str = "sha256=9027c987b5c7118be8c1338b5b0332a35a9f0d1f6ef1498185944c7fb805be13";
    const TWITCH: &str = "sha256=bd3b0e3ba4aca83dd52a34084dc35c3fa69bd1f3b483d61433d10e301f5f7567";
    const MAILGUN_BODY: &str = "{\"signature\":{\"timestamp\":\"1700000000\",\"token\":\"a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0\",\"signature\":\"62aa86de7e5b93d7848a5f7de54faccde0124d30afcc0a105a050487cae5bc7c\"},\"event-data\":{\"event\":\"delivered\",\"id\":\"CPgfbmQMTCKtHW6uIWtuVe\"}}";
    const DISCORD_PUBLIC_KEY: &str =
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
    const DISCORD_BODY: &str =
        "{\"type\":1,\"id\":\"1\",\"application_id\":\"2\",\"token\":\"t\",\"version\":1}";
    const DISCORD: &str = "0f9e54b264347b4abf8a98448093023b92be156813d2f25d6df7151bbd0632ec668fd2e83ace7421c389b138783a8a5a3833d2805bcd2d84c5b452027c07460a";
    const STANDARD_V1A_PUBLIC: &str = "whpk_/RckOFqgx1tk+3jNYC+h2ZH96/drE8WO1wLqyDXp9hg=";
    const STANDARD_V1A: &str = "v1a,pSpEof4pjH6eszjbzkHgoxgbCrpSamQqBluclxJaT4xGF2YwVLkXHtIMbdVuU9B8Dc1WI+VUjqpq8h9cz20DBw==";

    /// Changes the last letter or digit: a real edit, not a white-space one (which is
    /// reported as `parsed_body`, see below).
    fn tamper(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        if let Some(i) = out.iter().rposition(u8::is_ascii_alphanumeric) {
            out[i] = if out[i] == b'0' { b'1' } else { b'0' };
        }
        out
    }

    fn one(p: Provider, secret: &str, header: &str, value: &str, body: &[u8]) {
        let h = headers(&[(header, value)]);
        assert_valid(check(p, secret, &h, body, None, TS));
        assert_reason(
            check(p, secret, &h, &tamper(body), None, TS),
            FailureReason::HmacMismatch,
        );
        assert_reason(
            check(p, "wrong-secret", &h, body, None, TS),
            FailureReason::HmacMismatch,
        );
    }

    #[test]
    fn body_and_header_timestamped_schemes() {
        one(
            Provider::Stripe,
            "whsec_test_secret",
            "stripe-signature",
            STRIPE,
            BODY,
        );
        one(
            Provider::Shopify,
            "shpss_test_secret",
            "x-shopify-hmac-sha256",
            SHOPIFY,
            BODY,
        );
        one(
            Provider::Paddle,
            "pdl_ntfset_test",
            "paddle-signature",
            PADDLE,
            BODY,
        );
        one(
            Provider::Calendly,
            "calendly_signing_key",
            "calendly-webhook-signature",
            CALENDLY,
            BODY,
        );
        one(
            Provider::Bitbucket,
            "bb_secret",
            "x-hub-signature",
            BITBUCKET,
            BODY,
        );
        one(
            Provider::Intercom,
            "intercom_client_secret",
            "x-hub-signature",
            INTERCOM,
            BODY,
        );
        one(
            Provider::Vercel,
            "vercel_secret",
            "x-vercel-signature",
            VERCEL,
            BODY,
        );
        one(
            Provider::Typeform,
            "typeform_secret",
            "typeform-signature",
            TYPEFORM,
            BODY,
        );
        one(
            Provider::Linear,
            "lin_wh_secret",
            "linear-signature",
            LINEAR,
            LINEAR_BODY.as_bytes(),
        );
        one(
            Provider::Lemonsqueezy,
            "lemon_secret",
            "x-signature",
            LEMONSQUEEZY,
            BODY,
        );
        one(
            Provider::Razorpay,
            "razorpay_secret",
            "x-razorpay-signature",
            RAZORPAY,
            BODY,
        );
        one(
            Provider::Meta,
            "meta_app_secret",
            "x-hub-signature-256",
            META,
            BODY,
        );
    }

    #[test]
    fn reserialized_json_is_reported_as_parsed_body() {
        // What a framework that parses and re-encodes would hand over.
        let spaced = br#"{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "data": {"amount": 2000, "currency": "eur"}}"#;
        // Pretty-printed in the original key order (JSON.stringify(v, null, 2)).
        let pretty = b"{\n  \"id\": \"evt_1\",\n  \"object\": \"event\",\n  \"type\": \"payment_intent.succeeded\",\n  \"data\": {\n    \"amount\": 2000,\n    \"currency\": \"eur\"\n  }\n}".to_vec();
        let h = headers(&[("stripe-signature", STRIPE)]);
        for received in [&spaced[..], &pretty[..]] {
            let r = check(
                Provider::Stripe,
                "whsec_test_secret",
                &h,
                received,
                None,
                TS,
            );
            assert_reason(r.clone(), FailureReason::ParsedBody);
            assert!(r.hint.unwrap().contains("raw request bytes"));
        }
        // Re-ordered keys cannot be undone: that stays a plain mismatch.
        let sorted =
            serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(BODY).unwrap())
                .unwrap();
        assert_reason(
            check(Provider::Stripe, "whsec_test_secret", &h, &sorted, None, TS),
            FailureReason::HmacMismatch,
        );
        // A changed value is a mismatch, not a re-serialization.
        let changed = br#"{"id": "evt_2", "object": "event", "type": "payment_intent.succeeded", "data": {"amount": 2000, "currency": "eur"}}"#;
        assert_reason(
            check(Provider::Stripe, "whsec_test_secret", &h, changed, None, TS),
            FailureReason::HmacMismatch,
        );
        // Token and in-body schemes do not sign the body bytes: never parsed_body.
        let h = headers(&[("x-gitlab-token", "t")]);
        assert_reason(
            check(Provider::Gitlab, "other", &h, spaced, None, TS),
            FailureReason::HmacMismatch,
        );
    }

    #[test]
    fn bodies_that_are_not_utf8_verify() {
        one(
            Provider::Stripe,
            "whsec_test_secret",
            "stripe-signature",
            STRIPE_NON_UTF8,
            NON_UTF8,
        );
        one(
            Provider::Github,
            "gh_secret",
            "x-hub-signature-256",
            GITHUB_NON_UTF8,
            NON_UTF8,
        );
    }

    #[test]
    fn stripe_ignores_v0_and_accepts_any_of_several_v1() {
        let sig = STRIPE.split_once(",v1=").unwrap().1;
        let value = format!("t={TS},v0=deadbeef,v1=00ff,v1={sig},v1=zz");
        one(
            Provider::Stripe,
            "whsec_test_secret",
            "stripe-signature",
            &value,
            BODY,
        );
        let only_v0 = headers(&[("stripe-signature", &*format!("t={TS},v0={sig}"))]);
        assert_reason(
            check(
                Provider::Stripe,
                "whsec_test_secret",
                &only_v0,
                BODY,
                None,
                TS,
            ),
            FailureReason::MalformedHeader,
        );
    }

    #[test]
    fn zoom_and_linear_timestamps() {
        let h = headers(&[
            ("x-zm-signature", ZOOM),
            ("x-zm-request-timestamp", "1700000000"),
        ]);
        assert_valid(check(
            Provider::Zoom,
            "zoom_secret_token",
            &h,
            BODY,
            None,
            TS,
        ));
        assert_reason(
            check(
                Provider::Zoom,
                "zoom_secret_token",
                &h,
                BODY,
                None,
                TS + 600,
            ),
            FailureReason::TimestampDrift,
        );
        let h = headers(&[("linear-signature", LINEAR)]);
        assert_reason(
            check(
                Provider::Linear,
                "lin_wh_secret",
                &h,
                LINEAR_BODY.as_bytes(),
                None,
                TS + 301,
            ),
            FailureReason::TimestampDrift,
        );
    }

    #[test]
    fn twitch() {
        let h = headers(&[
            (
                "twitch-eventsub-message-id",
                "e76c6bd4-55c9-4987-8304-da1588d8988b",
            ),
            (
                "twitch-eventsub-message-timestamp",
                "2023-11-14T22:13:20.123456789Z",
            ),
            ("twitch-eventsub-message-signature", TWITCH),
        ]);
        assert_valid(check(
            Provider::Twitch,
            "twitch_secret_1234",
            &h,
            BODY,
            None,
            TS,
        ));
        assert_reason(
            check(
                Provider::Twitch,
                "twitch_secret_1234",
                &h,
                BODY,
                None,
                TS + 301,
            ),
            FailureReason::TimestampDrift,
        );
        assert_reason(
            check(Provider::Twitch, "twitch_secret_1234", &h, b"{}", None, TS),
            FailureReason::HmacMismatch,
        );
    }

    #[test]
    fn mailgun_json_and_form() {
        let h = HeaderMap::new();
        assert_valid(check(
            Provider::Mailgun,
            "key-mailgun-test",
            &h,
            MAILGUN_BODY.as_bytes(),
            None,
            TS,
        ));
        assert_reason(
            check(
                Provider::Mailgun,
                "key-other",
                &h,
                MAILGUN_BODY.as_bytes(),
                None,
                TS,
            ),
            FailureReason::HmacMismatch,
        );
        assert_reason(
            check(
                Provider::Mailgun,
                "key-mailgun-test",
                &h,
                MAILGUN_BODY.as_bytes(),
                None,
                TS + 301,
            ),
            FailureReason::TimestampDrift,
        );
        let v: serde_json::Value = serde_json::from_str(MAILGUN_BODY).unwrap();
        let s = &v["signature"];
        let form = format!(
            "timestamp={}&token={}&signature={}&event=delivered",
            s["timestamp"].as_str().unwrap(),
            s["token"].as_str().unwrap(),
            s["signature"].as_str().unwrap()
        );
        assert_valid(check(
            Provider::Mailgun,
            "key-mailgun-test",
            &h,
            form.as_bytes(),
            None,
            TS,
        ));
        assert_reason(
            check(
                Provider::Mailgun,
                "key-mailgun-test",
                &h,
                b"{\"event-data\":{}}",
                None,
                TS,
            ),
            FailureReason::MissingHeader,
        );
    }

    #[cfg(feature = "ed25519")]
    #[test]
    fn discord_ed25519() {
        let h = headers(&[
            ("x-signature-ed25519", DISCORD),
            ("x-signature-timestamp", "1700000000"),
        ]);
        let body = DISCORD_BODY.as_bytes();
        assert_valid(check(
            Provider::Discord,
            DISCORD_PUBLIC_KEY,
            &h,
            body,
            None,
            TS,
        ));
        assert_reason(
            check(Provider::Discord, DISCORD_PUBLIC_KEY, &h, b"{}", None, TS),
            FailureReason::HmacMismatch,
        );
        assert_reason(
            check(
                Provider::Discord,
                DISCORD_PUBLIC_KEY,
                &h,
                body,
                None,
                TS + 301,
            ),
            FailureReason::TimestampDrift,
        );
        // A signature that is not 128 hex characters can match nothing: a mismatch, as
        // Discord's own libraries say, not a malformed header.
        let short = headers(&[
            ("x-signature-ed25519", "abcd"),
            ("x-signature-timestamp", "1700000000"),
        ]);
        assert_reason(
            check(
                Provider::Discord,
                DISCORD_PUBLIC_KEY,
                &short,
                body,
                None,
                TS,
            ),
            FailureReason::HmacMismatch,
        );
    }

    #[cfg(feature = "ed25519")]
    #[test]
    fn standard_webhooks_v1a_ed25519() {
        let h = headers(&[
            ("webhook-id", "msg_v1a"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", STANDARD_V1A),
        ]);
        assert_valid(check(
            Provider::Standard,
            STANDARD_V1A_PUBLIC,
            &h,
            BODY,
            None,
            TS,
        ));
        assert_reason(
            check(Provider::Standard, STANDARD_V1A_PUBLIC, &h, b"{}", None, TS),
            FailureReason::HmacMismatch,
        );
        // A v1a signature with only an HMAC secret configured does not match.
        assert_reason(
            check(
                Provider::Standard,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                &h,
                BODY,
                None,
                TS,
            ),
            FailureReason::HmacMismatch,
        );
    }
}

#[test]
fn tolerance_is_configurable() {
    let h = headers(&[
        ("x-zm-signature", "v0=00"),
        ("x-zm-request-timestamp", "1000"),
    ]);
    let v = Verifier::new(Provider::Zoom, &["s"])
        .unwrap()
        .with_tolerance(Duration::from_secs(5));
    assert_eq!(v.tolerance(), Duration::from_secs(5));
    assert_reason(
        v.verify_at(&SignedRequest::new(&h, b""), 1000),
        FailureReason::HmacMismatch,
    );
}
