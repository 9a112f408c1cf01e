//! Turning configured secrets into key material, once, before any request is verified.

use base64::Engine as _;

use super::provider::{KeyKind, Provider};

/// A shared secret's bytes, with its HMAC key schedules made once, on first use: each
/// verification then starts from a copy of the keyed state instead of hashing the key's
/// padded blocks again (two SHA compressions saved per delivery).
#[derive(Clone)]
pub(crate) struct Secret {
    bytes: Vec<u8>,
    // Boxed: a keyed state is a few hundred bytes, a key list is short and rarely all HMAC.
    sha256: std::sync::OnceLock<Box<hmac::Hmac<sha2::Sha256>>>,
    sha1: std::sync::OnceLock<Box<hmac::Hmac<sha1::Sha1>>>,
}

impl Secret {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Secret {
            bytes,
            sha256: std::sync::OnceLock::new(),
            sha1: std::sync::OnceLock::new(),
        }
    }

    /// The HMAC-SHA256 state keyed by this secret.
    pub(crate) fn hmac_sha256(&self) -> &hmac::Hmac<sha2::Sha256> {
        self.sha256.get_or_init(|| Box::new(keyed(&self.bytes)))
    }

    /// The HMAC-SHA1 state keyed by this secret.
    pub(crate) fn hmac_sha1(&self) -> &hmac::Hmac<sha1::Sha1> {
        self.sha1.get_or_init(|| Box::new(keyed(&self.bytes)))
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// HMAC takes a key of any length; the fallback (never taken) is an empty key.
fn keyed<M: hmac::digest::KeyInit>(key: &[u8]) -> M {
    M::new_from_slice(key).unwrap_or_else(|_| M::new(&Default::default()))
}

impl std::ops::Deref for Secret {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Key material for one configured secret.
#[derive(Clone)]
pub(crate) enum Key {
    /// HMAC key bytes, or the shared token for token schemes.
    Secret(Secret),
    /// An Ed25519 public key (Discord, Standard Webhooks `whpk_`).
    #[cfg(feature = "ed25519")]
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A P-256 public key (SendGrid).
    #[cfg(feature = "ecdsa")]
    P256(p256::ecdsa::VerifyingKey),
}

impl Key {
    /// Whether this is a shared secret (HMAC key or token), not a public key.
    pub(crate) fn is_secret(&self) -> bool {
        matches!(self, Key::Secret(_))
    }
}

impl std::fmt::Debug for Key {
    // Never print key bytes: a Debug of a verifier must be safe to log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Secret(_) => f.write_str("Key::Secret([REDACTED])"),
            #[cfg(feature = "ed25519")]
            Key::Ed25519(_) => f.write_str("Key::Ed25519(..)"),
            #[cfg(feature = "ecdsa")]
            Key::P256(_) => f.write_str("Key::P256(..)"),
        }
    }
}

/// A configured secret that cannot be used for its provider.
///
/// Messages name the provider and the expected format, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No secret was configured at all.
    #[error("no secret configured for provider `{0}`")]
    Missing(Provider),
    /// The secret is empty or only white space.
    #[error("the secret for provider `{0}` is empty")]
    Empty(Provider),
    /// The secret does not have the encoding the provider uses.
    #[error("the secret for provider `{provider}` is not {expected}")]
    Malformed {
        /// The provider the secret was configured for.
        provider: Provider,
        /// What the secret should look like.
        expected: &'static str,
    },
    /// The provider's scheme needs a cargo feature this build does not have.
    #[error("provider `{provider}` needs the `{feature}` cargo feature of outworx-hooks")]
    FeatureDisabled {
        /// The provider.
        provider: Provider,
        /// The feature to enable.
        feature: &'static str,
    },
}

const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Standard base64, padding optional: what providers put in headers and secrets.
pub(crate) fn b64() -> &'static base64::engine::GeneralPurpose {
    &B64
}

/// How `whsec_`/`whpk_` secrets are decoded: as leniently as the Standard Webhooks reference
/// libraries (`base64.b64decode(secret + "==")`), so a secret pasted without its padding, or
/// whose last character carries stray bits, is the key the dashboard meant.
const SECRET_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub(crate) fn parse_key(provider: Provider, secret: &str) -> Result<Key, SecretError> {
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(SecretError::Empty(provider));
    }
    match provider.spec().key {
        KeyKind::Raw => Ok(Key::Secret(Secret::new(secret.as_bytes().to_vec()))),
        KeyKind::Standard => parse_standard(provider, secret),
        KeyKind::Ed25519Hex => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(secret, &mut bytes).map_err(|_| SecretError::Malformed {
                provider,
                expected: "a 64-character hex Ed25519 public key",
            })?;
            ed25519_key(provider, &bytes)
        }
        KeyKind::P256Der => p256_key(provider, secret),
    }
}

fn parse_standard(provider: Provider, secret: &str) -> Result<Key, SecretError> {
    if let Some(public) = secret.strip_prefix("whpk_") {
        let bytes = SECRET_B64.decode(public).ok();
        return match bytes.as_deref().and_then(|b| <&[u8; 32]>::try_from(b).ok()) {
            Some(bytes) => ed25519_key(provider, bytes),
            None => Err(SecretError::Malformed {
                provider,
                expected: "`whpk_` followed by a base64 32-byte Ed25519 public key",
            }),
        };
    }
    // As the reference libraries do, the `whsec_` prefix is optional; the rest is base64.
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    match SECRET_B64.decode(encoded) {
        Ok(bytes) if !bytes.is_empty() => Ok(Key::Secret(Secret::new(bytes))),
        _ => Err(SecretError::Malformed {
            provider,
            expected: "`whsec_` followed by base64 (or a `whpk_` public key)",
        }),
    }
}

#[cfg(feature = "ed25519")]
fn ed25519_key(provider: Provider, bytes: &[u8; 32]) -> Result<Key, SecretError> {
    ed25519_dalek::VerifyingKey::from_bytes(bytes)
        .map(Key::Ed25519)
        .map_err(|_| SecretError::Malformed {
            provider,
            expected: "a valid Ed25519 public key",
        })
}

#[cfg(not(feature = "ed25519"))]
fn ed25519_key(provider: Provider, _bytes: &[u8; 32]) -> Result<Key, SecretError> {
    Err(SecretError::FeatureDisabled {
        provider,
        feature: "ed25519",
    })
}

#[cfg(feature = "ecdsa")]
fn p256_key(provider: Provider, secret: &str) -> Result<Key, SecretError> {
    use p256::pkcs8::DecodePublicKey as _;
    // Accept the dashboard's base64 DER as well as a PEM block around it.
    let body: String = secret
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = b64().decode(body).map_err(|_| SecretError::Malformed {
        provider,
        expected: "a base64 (or PEM) P-256 public key",
    })?;
    p256::ecdsa::VerifyingKey::from_public_key_der(&der)
        .map(Key::P256)
        .map_err(|_| SecretError::Malformed {
            provider,
            expected: "a DER SubjectPublicKeyInfo of a P-256 key",
        })
}

#[cfg(not(feature = "ecdsa"))]
fn p256_key(provider: Provider, _secret: &str) -> Result<Key, SecretError> {
    Err(SecretError::FeatureDisabled {
        provider,
        feature: "ecdsa",
    })
}

#[cfg(test)]
// Without the asymmetric features `Key` has one variant, so these matches are irrefutable.
#[allow(irrefutable_let_patterns, unreachable_patterns)]
mod tests {
    use super::*;

    #[test]
    fn raw_secrets_are_bytes() {
        let Key::Secret(k) = parse_key(Provider::Github, " s3cret\n").unwrap() else {
            panic!("expected a secret");
        };
        assert_eq!(&*k, b"s3cret");
    }

    #[test]
    fn empty_and_malformed_secrets_are_errors_that_do_not_echo_the_secret() {
        assert_eq!(
            parse_key(Provider::Stripe, "   ").unwrap_err(),
            SecretError::Empty(Provider::Stripe)
        );
        let err = parse_key(Provider::Svix, "whsec_not*base64!").unwrap_err();
        assert!(matches!(err, SecretError::Malformed { .. }));
        assert!(!err.to_string().contains("not*base64"));
        assert!(parse_key(Provider::Discord, "abcd").is_err());
        assert!(parse_key(Provider::Sendgrid, "bm90IGEga2V5").is_err());
        assert!(parse_key(Provider::Standard, "whpk_AAAA").is_err());
    }

    #[test]
    fn standard_secrets_decode_with_or_without_prefix() {
        let a = parse_key(Provider::Standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = parse_key(Provider::Standard, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        match (a, b) {
            (Key::Secret(a), Key::Secret(b)) => assert_eq!(a, b),
            _ => panic!("expected HMAC keys"),
        }
    }

    #[test]
    fn standard_secrets_without_padding_or_with_loose_trailing_bits_decode() {
        // 32 bytes 1..=32: 44 base64 characters with one `=`; users paste them without it.
        let padded = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
        let key = |s: &str| match parse_key(Provider::Svix, s) {
            Ok(Key::Secret(k)) => k.into_bytes(),
            other => panic!("{s}: {other:?}"),
        };
        let expected: Vec<u8> = (1..=32).collect();
        assert_eq!(key(padded), expected);
        assert_eq!(key(padded.trim_end_matches('=')), expected);
        // The last character's unused bits set, as Python's decoder tolerates.
        assert_eq!(
            key("whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyB"),
            expected
        );
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = parse_key(Provider::Github, "topsecret").unwrap();
        assert!(!format!("{k:?}").contains("topsecret"));
    }
}
