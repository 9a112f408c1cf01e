//! The signature scheme families, parameterised so that a provider is mostly configuration:
//! one file per family, each with its `check` and its `sign` side by side (as svix keeps
//! `sign` beside `verify`), over the shared helpers here. [`crate::testing`] signs through
//! them, so the verifier and the signer cannot drift.

mod asymmetric;
mod body_hmac;
mod mailgun;
mod standard;
mod timestamped;
mod token;
mod twitch;
mod url;

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::keys::{Key, b64};
use super::{FailureReason, Provider, SecretError, SignedRequest};

pub(crate) use outworx_hooks_providers::{Algo, Encoding, Scheme};
#[cfg(feature = "send")]
pub(crate) use standard::{standard_public_key, standard_signature};

/// `hex(HMAC-SHA256(key, body))`: the `fastapihooks` format's signature (the sending side).
#[cfg(feature = "send")]
pub(crate) fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_sha256(key, body))
}

/// `HMAC-SHA256(key, body)`.
pub(crate) fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let sig = mac(Algo::Sha256, key, &[body]);
    out.copy_from_slice(sig.bytes().get(..32).unwrap_or(&[0; 32]));
    out
}

/// Writes a MAC as a header value.
pub(crate) fn encode(encoding: Encoding, bytes: &[u8]) -> String {
    match encoding {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => b64().encode(bytes),
    }
}

/// Why a delivery did not verify: a stable reason and a hint for the human reading the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) reason: FailureReason,
    pub(crate) hint: String,
    /// Whether a signature was compared and did not match, so a re-serialized body could
    /// explain it (an unreadable signature can match no body).
    pub(crate) compared: bool,
}

impl Failure {
    pub(crate) fn new(reason: FailureReason, hint: impl Into<String>) -> Self {
        Failure {
            reason,
            hint: hint.into(),
            compared: false,
        }
    }

    /// The header's structure parses, but its signature value cannot be decoded: like the
    /// providers' own SDKs, a mismatch (it can match nothing), not a malformed header.
    fn unreadable(header: &str, why: &str) -> Self {
        Failure::new(
            FailureReason::HmacMismatch,
            format!("the signature in `{header}` cannot match: {why}"),
        )
    }

    fn missing(header: &str) -> Self {
        Failure::new(
            FailureReason::MissingHeader,
            format!("the `{header}` header is missing or empty"),
        )
    }

    fn malformed(header: &str, why: &str) -> Self {
        Failure::new(
            FailureReason::MalformedHeader,
            format!("the `{header}` header is malformed: {why}"),
        )
    }

    fn url_required(provider: &str) -> Self {
        Failure::new(
            FailureReason::MissingHeader,
            format!(
                "{provider} signs the full request URL, and none was given: pass the public URL \
                 the provider posts to (`SignedRequest::with_url`, or `--url` in the CLI)"
            ),
        )
    }

    fn mismatch(keys: &[Key]) -> Self {
        let n = keys.len();
        Failure {
            compared: true,
            ..Failure::new(
                FailureReason::HmacMismatch,
                format!(
                    "the signature does not match the body under any of the {n} configured secret{}: \
                 check that the secret is this endpoint's signing secret and that the body is \
                 verified exactly as received",
                    if n == 1 { "" } else { "s" }
                ),
            )
        }
    }
}

type Check = Result<(), Failure>;

/// The most signatures one header may carry. Providers send one, or a few while a secret
/// rotates; each costs a MAC (or an Ed25519 verification over the whole body), so more are
/// refused as malformed rather than tried.
pub(crate) const MAX_SIGNATURES: usize = 16;

fn too_many(header: &str) -> Failure {
    Failure::malformed(
        header,
        &format!("it carries more than {MAX_SIGNATURES} signatures"),
    )
}

/// Whether a body looks like JSON (an object or array), as providers decide the content type.
pub(crate) fn is_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// A MAC or signature of at most 64 bytes, decoded from a header (longer never matches).
#[derive(Clone, Copy)]
pub(crate) struct Sig {
    buf: [u8; 64],
    len: usize,
}

impl Sig {
    fn empty() -> Self {
        Sig {
            buf: [0; 64],
            len: 0,
        }
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut s = Sig::empty();
        s.buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        s.len = bytes.len();
        Some(s)
    }

    pub(crate) fn decode(encoding: Encoding, text: &str) -> Option<Self> {
        let mut s = Sig::empty();
        s.len = match encoding {
            Encoding::Hex => {
                let n = text.len() / 2;
                if !text.len().is_multiple_of(2) || n == 0 {
                    return None;
                }
                hex::decode_to_slice(text, s.buf.get_mut(..n)?).ok()?;
                n
            }
            Encoding::Base64 => b64().decode_slice(text, &mut s.buf).ok()?,
        };
        (s.len > 0).then_some(s)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// HMAC of the concatenation of `parts` under `key`.
pub(crate) fn mac(algo: Algo, key: &[u8], parts: &[&[u8]]) -> Sig {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Sig {
        // HMAC accepts keys of any length, so this never fails; an empty Sig never matches.
        <M as hmac::digest::KeyInit>::new_from_slice(key)
            .map_or_else(|_| Sig::empty(), |m| absorb(m, parts))
    }
    match algo {
        Algo::Sha1 => run::<Hmac<Sha1>>(key, parts),
        Algo::Sha256 => run::<Hmac<Sha256>>(key, parts),
    }
}

/// [`mac`] from a secret's keyed state (its key schedule made once, not per delivery).
pub(crate) fn keyed_mac(algo: Algo, key: &super::keys::Secret, parts: &[&[u8]]) -> Sig {
    match algo {
        Algo::Sha1 => absorb(key.hmac_sha1().clone(), parts),
        Algo::Sha256 => absorb(key.hmac_sha256().clone(), parts),
    }
}

/// Feeds `parts` to a keyed MAC and finishes it.
fn absorb<M: Mac>(mut m: M, parts: &[&[u8]]) -> Sig {
    for p in parts {
        m.update(p);
    }
    Sig::from_bytes(&m.finalize().into_bytes()).unwrap_or_else(Sig::empty)
}

/// Constant-time equality of a computed MAC and a received one. The early length check leaks
/// nothing: a MAC's length is fixed by its algorithm, which is public.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Constant-time equality of a received value and a secret of any length (a shared token):
/// their SHA-256 digests are compared, so neither the time nor an early return tells the
/// secret's length.
fn ct_eq_secret(received: &[u8], secret: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(received), Sha256::digest(secret));
    !secret.is_empty() && bool::from(a.ct_eq(&b))
}

/// Whether any HMAC key, over `parts`, equals any candidate signature.
fn any_hmac(keys: &[Key], algo: Algo, parts: &[&[u8]], candidates: &[Sig]) -> bool {
    if candidates.is_empty() {
        return false;
    }
    keys.iter().any(|k| match k {
        Key::Secret(secret) => {
            let expected = keyed_mac(algo, secret, parts);
            candidates
                .iter()
                .any(|c| ct_eq(c.bytes(), expected.bytes()))
        }
        #[allow(unreachable_patterns)]
        _ => false,
    })
}

#[cfg(feature = "ed25519")]
fn any_ed25519(keys: &[Key], message: &[u8], candidates: &[Sig]) -> bool {
    keys.iter().any(|k| match k {
        Key::Ed25519(public) => candidates.iter().any(|c| {
            <[u8; 64]>::try_from(c.bytes()).is_ok_and(|bytes| {
                public
                    .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
                    .is_ok()
            })
        }),
        _ => false,
    })
}

#[cfg(not(feature = "ed25519"))]
fn any_ed25519(_keys: &[Key], _message: &[u8], _candidates: &[Sig]) -> bool {
    false
}

fn has_ed25519(keys: &[Key]) -> bool {
    keys.iter().any(|k| !matches!(k, Key::Secret(_)))
}

fn header<'a>(d: &SignedRequest<'a>, name: &str) -> Result<&'a str, Failure> {
    let value = d.headers.get(name).ok_or_else(|| Failure::missing(name))?;
    let text = value
        .to_str()
        .map_err(|_| Failure::malformed(name, "it holds bytes that are not visible ASCII"))?
        .trim();
    if text.is_empty() {
        return Err(Failure::missing(name));
    }
    Ok(text)
}

fn parse_unix(name: &str, text: &str) -> Result<i64, Failure> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::malformed(
            name,
            "the timestamp is not a whole number of seconds since 1970",
        ));
    }
    text.parse()
        .map_err(|_| Failure::malformed(name, "the timestamp is out of range"))
}

/// The signed time must lie within `tolerance` of now, in either direction.
fn within(signed_ms: i128, now_unix: i64, tolerance: Duration) -> Check {
    let now_ms = i128::from(now_unix) * 1000;
    let age_ms = now_ms - signed_ms;
    if age_ms.unsigned_abs() <= tolerance.as_millis() {
        return Ok(());
    }
    let secs = age_ms.unsigned_abs() / 1000;
    let hint = if age_ms > 0 {
        format!(
            "the signature matches, but it was made {secs} s ago and the tolerance is {} s: \
             a replayed delivery, a delayed retry, or a server clock that is behind",
            tolerance.as_secs()
        )
    } else {
        format!(
            "the signature matches, but its timestamp is {secs} s in the future (tolerance {} s): \
             check the server clock",
            tolerance.as_secs()
        )
    };
    Err(Failure::new(FailureReason::TimestampDrift, hint))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

// The bytes each family signs, shared with the test signers.

pub(crate) fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub(crate) fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// A delivery being checked, with what every family needs.
#[derive(Clone, Copy)]
pub(super) struct Input<'a> {
    pub(super) provider: &'a str,
    pub(super) d: &'a SignedRequest<'a>,
    pub(super) keys: &'a [Key],
    pub(super) tolerance: Duration,
    pub(super) now: i64,
}

/// Checks a delivery against one scheme family, with its parameters.
pub(crate) fn check(
    scheme: &Scheme,
    provider: &str,
    d: &SignedRequest<'_>,
    keys: &[Key],
    tolerance: Duration,
    now: i64,
) -> Check {
    let i = Input {
        provider,
        d,
        keys,
        tolerance,
        now,
    };
    match *scheme {
        Scheme::BodyHmac {
            header,
            prefix,
            algo,
            encoding,
            body_timestamp_ms,
        } => body_hmac::check_body_hmac(&i, header, prefix, algo, encoding, body_timestamp_ms),
        Scheme::HeaderTimestamped {
            header,
            separator,
            timestamp_key,
            signature_key,
            joiner,
        } => timestamped::check_header_timestamped(
            &i,
            header,
            separator,
            timestamp_key,
            signature_key,
            joiner,
        ),
        Scheme::VersionedTimestamp {
            signature_header,
            timestamp_header,
        } => timestamped::check_versioned(&i, signature_header, timestamp_header),
        Scheme::Standard { brand } => standard::check_standard(&i, brand),
        Scheme::Twitch => twitch::check_twitch(&i),
        Scheme::Twilio => url::check_twilio(&i),
        Scheme::Square => url::check_square(&i),
        Scheme::HubSpotV3 => url::check_hubspot(&i),
        Scheme::Discord => asymmetric::check_discord(&i),
        Scheme::SendGrid => asymmetric::check_sendgrid(&i),
        Scheme::Token { header } => token::check_token(&i, header),
        Scheme::Mailgun => mailgun::check_mailgun(&i),
    }
}

/// What signing a body needs, and what it produces: the test signers' side of a scheme.
pub(crate) struct SignCtx<'a> {
    pub(crate) provider: Provider,
    /// The signing secret (or private key).
    pub(crate) secret: &'a str,
    pub(crate) ts: i64,
    pub(crate) ts_text: String,
    /// The message id, for the schemes that sign one.
    pub(crate) id: String,
    /// The URL to sign, when set.
    pub(crate) base_url: Option<&'a str>,
    pub(crate) method: &'a http::Method,
    /// Whether the body is JSON.
    pub(crate) json: bool,
    /// In: the body; out: the body to send (Mailgun signs in it).
    pub(crate) body: Vec<u8>,
    /// Out: the headers to send.
    pub(crate) headers: http::HeaderMap,
    /// Out: the URL to send to (Twilio may add `bodySHA256`).
    pub(crate) url: Option<String>,
}

impl SignCtx<'_> {
    /// The shared secret as HMAC key bytes.
    pub(super) fn hmac_key(&self) -> Result<Vec<u8>, SignError> {
        match super::parse_key(self.provider, self.secret)? {
            Key::Secret(k) => Ok(k.into_bytes()),
            #[allow(unreachable_patterns)]
            _ => Err(SignError::SigningKey {
                provider: self.provider,
                expected: "a shared secret",
            }),
        }
    }
}

/// Signs a body as one scheme family does: the inverse of [`check`], beside it family by
/// family so the two cannot drift.
pub(crate) fn sign(scheme: &Scheme, s: &mut SignCtx<'_>) -> Result<(), SignError> {
    match *scheme {
        Scheme::BodyHmac {
            header,
            prefix,
            algo,
            encoding,
            ..
        } => body_hmac::sign_body_hmac(s, header, prefix, algo, encoding),
        Scheme::HeaderTimestamped {
            header,
            separator,
            timestamp_key,
            signature_key,
            joiner,
        } => timestamped::sign_header_timestamped(
            s,
            header,
            separator,
            timestamp_key,
            signature_key,
            joiner,
        ),
        Scheme::VersionedTimestamp {
            signature_header,
            timestamp_header,
        } => timestamped::sign_versioned(s, signature_header, timestamp_header),
        Scheme::Standard { brand } => standard::sign_standard(s, brand),
        Scheme::Twitch => twitch::sign_twitch(s),
        Scheme::Twilio => url::sign_twilio(s),
        Scheme::Square => url::sign_square(s),
        Scheme::HubSpotV3 => url::sign_hubspot(s),
        Scheme::Discord => asymmetric::sign_discord(s),
        Scheme::SendGrid => asymmetric::sign_sendgrid(s),
        Scheme::Token { header } => token::sign_token(s, header),
        Scheme::Mailgun => mailgun::sign_mailgun(s),
    }
}

#[cfg(feature = "ed25519")]
pub(super) fn ed25519_sign(
    _provider: Provider,
    seed: [u8; 32],
    message: &[u8],
) -> Result<[u8; 64], SignError> {
    use ed25519_dalek::Signer as _;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed)
        .sign(message)
        .to_bytes())
}

#[cfg(not(feature = "ed25519"))]
pub(super) fn ed25519_sign(
    provider: Provider,
    _seed: [u8; 32],
    _message: &[u8],
) -> Result<[u8; 64], SignError> {
    Err(SecretError::FeatureDisabled {
        provider,
        feature: "ed25519",
    }
    .into())
}

pub(crate) fn put(
    headers: &mut HeaderMap,
    name: &'static str,
    value: String,
) -> Result<(), SignError> {
    let value = HeaderValue::try_from(value).map_err(|_| SignError::HeaderValue(name))?;
    headers.insert(HeaderName::from_static(name), value);
    Ok(())
}

/// A signing problem: a key in the wrong format, or a URL the scheme needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The shared secret cannot be used for the provider.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The provider signs the request URL, and none was set.
    #[error("provider `{0}` signs the request URL: set it with `Signer::url`")]
    UrlRequired(Provider),
    /// The private key is not in the expected format.
    #[error("the signing key for provider `{provider}` is not {expected}")]
    SigningKey {
        /// The provider.
        provider: Provider,
        /// What the key should look like.
        expected: &'static str,
    },
    /// A value cannot be placed in a header (it has characters headers cannot carry).
    #[error("`{0}` cannot be sent as a header value")]
    HeaderValue(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_state_reused_gives_the_same_mac_as_a_fresh_key_every_time() {
        // Keys shorter than, equal to and longer than a block (longer ones are hashed first).
        for key in [b"k".to_vec(), vec![7u8; 64], vec![9u8; 200]] {
            let secret = super::super::keys::Secret::new(key.clone());
            for algo in [Algo::Sha1, Algo::Sha256] {
                for parts in [&[b"a".as_slice(), b"bc"][..], &[b""], &[b"body"]] {
                    for _ in 0..2 {
                        assert_eq!(
                            keyed_mac(algo, &secret, parts).bytes(),
                            mac(algo, &key, parts).bytes()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn signatures_longer_than_64_bytes_or_odd_hex_never_decode() {
        assert!(Sig::decode(Encoding::Hex, &"ab".repeat(65)).is_none());
        assert!(Sig::decode(Encoding::Hex, "abc").is_none());
        assert!(Sig::decode(Encoding::Hex, "").is_none());
        assert!(Sig::decode(Encoding::Base64, &"QUFB".repeat(30)).is_none());
        assert_eq!(
            Sig::decode(Encoding::Base64, "QUFB").unwrap().bytes(),
            b"AAA"
        );
    }

    #[test]
    fn drift_is_checked_in_both_directions() {
        let tol = Duration::from_secs(300);
        assert!(within(1_000_000, 1000, tol).is_ok());
        assert!(within(700_000, 1000, tol).is_ok());
        assert_eq!(
            within(699_000, 1000, tol).unwrap_err().reason,
            FailureReason::TimestampDrift
        );
        assert!(within(1_301_000, 1000, tol).is_err());
        assert!(within(i128::from(i64::MAX) * 1000, 1000, tol).is_err());
    }
}
