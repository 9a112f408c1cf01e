//! Webhook signature verification over the exact raw request bytes, for every provider.
//!
//! It works on its own, without axum (`cargo run --example verify` shows valid, tampered,
//! stale, re-serialized and non-UTF-8 deliveries side by side). One call, as in the Python
//! package, or a [`Verifier`] that parses the secrets once (what the receive pipeline does):
//!
//! ```
//! use std::time::Duration;
//! use outworx_hooks::security::{self, FailureReason};
//! use outworx_hooks::testing::Signer;
//! use outworx_hooks::security::Provider;
//!
//! let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
//! let signed = Signer::new(Provider::Stripe, "whsec_test").at(1_700_000_000).sign(body).unwrap();
//!
//! let ok = security::verify_at("stripe", &signed.headers, body, &["whsec_test"],
//!                              Duration::from_secs(300), 1_700_000_010);
//! assert!(ok.valid);
//!
//! let tampered = security::verify_at("stripe", &signed.headers, b"{}", &["whsec_test"],
//!                                    Duration::from_secs(300), 1_700_000_010);
//! assert_eq!(tampered.reason, Some(FailureReason::HmacMismatch));
//! ```
//!
//! ```
//! use outworx_hooks::security::{SignedRequest, Provider, Verifier};
//! use outworx_hooks::testing::Signer;
//!
//! let verifier = Verifier::new(Provider::Github, &["new-secret", "old-secret"]).unwrap();
//! let signed = Signer::new(Provider::Github, "old-secret").sign(&b"{}"[..]).unwrap();
//! assert!(verifier.verify(&SignedRequest::new(&signed.headers, &signed.body)).valid);
//!
//! // Twilio, Square and HubSpot sign the public URL (and HubSpot the method) too.
//! let signed = Signer::new(Provider::Twilio, "token")
//!     .url("https://example.com/twilio/sms").sign(&b"Digits=1234"[..]).unwrap();
//! let url = signed.url.as_deref().unwrap();
//! let delivery = SignedRequest::new(&signed.headers, &signed.body).with_url(url);
//! assert!(Verifier::new(Provider::Twilio, &["token"]).unwrap().verify(&delivery).valid);
//! ```
//!
//! - **Bytes, not strings.** A correctly signed body that is not UTF-8 verifies (the Python
//!   package 1.5 rejects it with `hmac_mismatch`).
//! - **Rotation.** Any number of secrets per route × any number of signatures per header
//!   (Stripe's several `v1=`, Svix's space-separated list, Paddle's several `h1=`; at most 16
//!   are tried): valid if any pair matches. Unknown signature versions (Stripe `v0`, Svix
//!   `v2`) are ignored. Standard Webhooks `v1a` (Ed25519, `whpk_` keys) and `v1` HMAC secrets
//!   can share one route.
//! - **Replay window** of [`DEFAULT_TOLERANCE`] (300 s), checked both ways, with an injectable
//!   clock ([`verify_at`]). Schemes that sign no timestamp (GitHub, Shopify, Twilio, Square,
//!   GitLab and the other body-only HMACs) cannot have one: there only idempotency stops a
//!   replay.
//! - **Constant-time** comparisons (`subtle`); secrets are never logged, echoed in errors or
//!   hints, or printed by `Debug`.
//! - **No input panics**: empty, huge, non-ASCII and malformed headers give `missing_header`
//!   or `malformed_header`.
//! - **`parsed_body` is proven, not guessed.** When a JSON body fails, the verifier rebuilds
//!   its likely originals (compact, `, `/`: ` separators, 2- and 4-space indentation, `\u`
//!   escapes added or removed; key order kept) and re-checks them: if one verifies, the body
//!   was parsed and re-serialized before verification. Only on the failure path of an HMAC,
//!   for bodies up to 64 KiB, within a fixed budget. Re-ordered keys cannot be undone and stay
//!   `hmac_mismatch`.
//!
//! Each provider's headers, what it signs and how it is tested are listed in
//! `docs/providers.md`. The Python package's per-provider functions
//! (`verify_stripe_signature`, ...) are in [`compat`].
//!
pub mod compat;
pub(crate) mod custom;
pub(crate) mod handshake;
mod keys;
mod provider;
mod reserialized;
pub(crate) mod scheme;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

pub use keys::SecretError;
pub(crate) use keys::{Key, b64, parse_key};
/// The provider catalog (`outworx-hooks-providers`): the types [`Provider::spec`] describes
/// a provider with.
pub use outworx_hooks_providers as catalog;
pub(crate) use provider::{KeyKind, Source};
pub use provider::{Provider, UnknownProvider};
use scheme::Failure;

/// The replay window used when none is configured: 300 seconds either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a delivery failed verification. Serializes to the stable codes shared with the
/// Python package and the Outworx API.
///
/// ```
/// use outworx_hooks::security::FailureReason;
/// assert_eq!(FailureReason::TimestampDrift.as_str(), "timestamp_drift");
/// assert_eq!(serde_json::to_string(&FailureReason::ParsedBody).unwrap(), "\"parsed_body\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// A header (or in-body field) the scheme needs is absent or empty, or the URL is unknown.
    MissingHeader,
    /// A header is present but cannot be parsed.
    MalformedHeader,
    /// The signature matches but the signed timestamp is outside the tolerance.
    TimestampDrift,
    /// No configured secret produces the signature.
    HmacMismatch,
    /// The signature matches a re-serialization of the body: it was parsed and re-encoded
    /// before verification.
    ParsedBody,
    /// The provider name is not one this SDK knows.
    UnsupportedProvider,
    /// A custom verifier returned an error or panicked.
    VerifierThrew,
}

impl FailureReason {
    /// The stable code string.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::MissingHeader => "missing_header",
            FailureReason::MalformedHeader => "malformed_header",
            FailureReason::TimestampDrift => "timestamp_drift",
            FailureReason::HmacMismatch => "hmac_mismatch",
            FailureReason::ParsedBody => "parsed_body",
            FailureReason::UnsupportedProvider => "unsupported_provider",
            FailureReason::VerifierThrew => "verifier_threw",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one delivery: whether it is valid and, when it is not, why.
///
/// Serializes as `{"valid": .., "reason": .., "hint": ..}` (absent values as `null`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignatureResult {
    /// Whether the signature is valid (and fresh, where the scheme is timestamped).
    pub valid: bool,
    /// The stable failure code; `None` when valid.
    pub reason: Option<FailureReason>,
    /// A sentence for the human reading the log; never contains a secret.
    pub hint: Option<String>,
}

impl SignatureResult {
    /// A valid verdict.
    pub fn ok() -> Self {
        SignatureResult {
            valid: true,
            reason: None,
            hint: None,
        }
    }

    /// An invalid verdict with its reason and hint.
    pub fn fail(reason: FailureReason, hint: impl Into<String>) -> Self {
        SignatureResult {
            valid: false,
            reason: Some(reason),
            hint: Some(hint.into()),
        }
    }
}

impl From<Failure> for SignatureResult {
    fn from(f: Failure) -> Self {
        SignatureResult::fail(f.reason, f.hint)
    }
}

/// One received request as verification sees it: headers, raw body, and for the schemes
/// that sign it (Twilio, Square, HubSpot) the method and full public URL.
///
/// ```
/// use outworx_hooks::security::SignedRequest;
/// let headers = http::HeaderMap::new();
/// let d = SignedRequest::new(&headers, b"Digits=1234")
///     .with_url("https://example.com/twilio")
///     .with_method("POST");
/// assert_eq!(d.url, Some("https://example.com/twilio"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The body exactly as received.
    pub body: &'a [u8],
    /// The HTTP method, `POST` unless set.
    pub method: &'a str,
    /// The full URL the provider sent the request to, as the provider saw it.
    pub url: Option<&'a str>,
}

impl<'a> SignedRequest<'a> {
    /// A `POST` delivery without a URL.
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        SignedRequest {
            headers,
            body,
            method: "POST",
            url: None,
        }
    }

    /// Sets the public URL the provider posted to.
    pub fn with_url(mut self, url: &'a str) -> Self {
        self.url = Some(url);
        self
    }

    /// Sets the HTTP method.
    pub fn with_method(mut self, method: &'a str) -> Self {
        self.method = method;
        self
    }
}

/// A provider with its secrets parsed once, ready to verify many deliveries.
///
/// Building it is where a malformed or missing secret is found (a configuration fault:
/// the receiving pipeline answers 5xx for it, never 401).
///
/// ```
/// use outworx_hooks::security::{SignedRequest, Provider, Verifier};
/// use outworx_hooks::testing::Signer;
///
/// // Rotation: the new secret first, the old one still accepted.
/// let verifier = Verifier::new(Provider::Github, &["new-secret", "old-secret"]).unwrap();
/// let signed = Signer::new(Provider::Github, "old-secret").sign(&b"{}"[..]).unwrap();
/// assert!(verifier.verify(&SignedRequest::new(&signed.headers, &signed.body)).valid);
/// ```
#[derive(Debug, Clone)]
pub struct Verifier {
    provider: Provider,
    keys: Vec<Key>,
    tolerance: Duration,
}

impl Verifier {
    /// Parses `secrets` for `provider`. Every secret must be usable.
    pub fn new<S: AsRef<str>>(provider: Provider, secrets: &[S]) -> Result<Self, SecretError> {
        if secrets.is_empty() {
            return Err(SecretError::Missing(provider));
        }
        let keys = secrets
            .iter()
            .map(|s| parse_key(provider, s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Verifier {
            provider,
            keys,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// Sets the replay window (default [`DEFAULT_TOLERANCE`]).
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The provider this verifier checks.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The replay window.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Verifies a delivery against the system clock.
    pub fn verify(&self, delivery: &SignedRequest<'_>) -> SignatureResult {
        self.verify_at(delivery, now_unix())
    }

    /// Verifies a delivery as if the time were `now_unix` (seconds since 1970).
    pub fn verify_at(&self, delivery: &SignedRequest<'_>, now_unix: i64) -> SignatureResult {
        run(
            self.provider,
            delivery,
            &self.keys,
            self.tolerance,
            now_unix,
        )
    }
}

fn run(
    provider: Provider,
    d: &SignedRequest<'_>,
    keys: &[Key],
    tolerance: Duration,
    now: i64,
) -> SignatureResult {
    let spec = provider.spec();
    let check =
        |d: &SignedRequest<'_>| scheme::check(&spec.scheme, spec.name, d, keys, tolerance, now);
    match check(d) {
        Ok(()) => SignatureResult::ok(),
        // Only for shared secrets: re-trying a dozen candidates costs a dozen HMACs, but a
        // dozen Ed25519 or ECDSA verifications over the whole body for a public key.
        Err(f) if f.compared && spec.scheme.signs_body() && keys.iter().all(Key::is_secret) => {
            // Bounded by construction: see `reserialized`.
            let original = reserialized::find_original(d.body, |candidate| {
                let alt = SignedRequest {
                    body: candidate,
                    ..*d
                };
                !matches!(check(&alt), Err(ref e) if e.reason == FailureReason::HmacMismatch)
            });
            match original {
                Some(style) => SignatureResult::fail(
                    FailureReason::ParsedBody,
                    format!(
                        "the signature matches this JSON body re-encoded with {style}: the request \
                         was parsed and serialized again before verification; verify the raw \
                         request bytes exactly as received"
                    ),
                ),
                None => f.into(),
            }
        }
        Err(f) => f.into(),
    }
}

/// Seconds since 1970 by the system clock (0 if the clock is before 1970).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Verifies a delivery for the provider named `provider` against any of `secrets`.
///
/// Unknown provider names give [`FailureReason::UnsupportedProvider`]; secrets that cannot
/// be used for the provider are skipped (the hint says so). Providers that sign the URL
/// (Twilio, Square, HubSpot) need [`Verifier`] with [`SignedRequest::with_url`].
///
/// ```
/// use std::time::Duration;
/// let headers = http::HeaderMap::new();
/// let r = outworx_hooks::security::verify("github", &headers, b"{}", &["s"], Duration::from_secs(300));
/// assert_eq!(r.reason.unwrap().as_str(), "missing_header");
/// ```
pub fn verify<S: AsRef<str>>(
    provider: &str,
    headers: &HeaderMap,
    raw_body: &[u8],
    secrets: &[S],
    tolerance: Duration,
) -> SignatureResult {
    verify_at(provider, headers, raw_body, secrets, tolerance, now_unix())
}

/// [`verify`] as if the time were `now_unix`: for tests and for replaying captured requests.
///
/// ```
/// use std::time::Duration;
/// let r = outworx_hooks::security::verify_at("nope", &http::HeaderMap::new(), b"", &["s"],
///                                            Duration::from_secs(300), 0);
/// assert_eq!(r.reason.unwrap().as_str(), "unsupported_provider");
/// ```
pub fn verify_at<S: AsRef<str>>(
    provider: &str,
    headers: &HeaderMap,
    raw_body: &[u8],
    secrets: &[S],
    tolerance: Duration,
    now_unix: i64,
) -> SignatureResult {
    let provider = match provider.parse::<Provider>() {
        Ok(p) => p,
        Err(e) => return SignatureResult::fail(FailureReason::UnsupportedProvider, e.to_string()),
    };
    verify_delivery_at(
        provider,
        &SignedRequest::new(headers, raw_body),
        secrets,
        tolerance,
        now_unix,
    )
}

/// Verifies a [`SignedRequest`] (which may carry the URL and method) against any of `secrets`,
/// skipping unusable secrets as [`verify`] does.
pub fn verify_delivery_at<S: AsRef<str>>(
    provider: Provider,
    delivery: &SignedRequest<'_>,
    secrets: &[S],
    tolerance: Duration,
    now_unix: i64,
) -> SignatureResult {
    let mut keys = Vec::with_capacity(secrets.len());
    let mut first_error = None;
    for secret in secrets {
        match parse_key(provider, secret.as_ref()) {
            Ok(k) => keys.push(k),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if keys.is_empty() {
        let why = first_error.unwrap_or(SecretError::Missing(provider));
        return SignatureResult::fail(
            FailureReason::HmacMismatch,
            format!("no usable secret, so nothing can match: {why}"),
        );
    }
    run(provider, delivery, &keys, tolerance, now_unix)
}
