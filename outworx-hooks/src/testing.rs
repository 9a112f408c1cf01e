//! Signing deliveries the way each provider does, so you can test your own handlers.
//!
//! [`Signer`] is the inverse of every verifier in [`crate::security`]: it produces the
//! headers (and, for Mailgun and Twilio, the body or URL) that a real provider would send.
//!
//! ```
//! use outworx_hooks::security::{SignedRequest, Provider, Verifier};
//! use outworx_hooks::testing::Signer;
//!
//! let request = Signer::new(Provider::Github, "my-secret")
//!     .request("/webhooks/github", &br#"{"action":"opened"}"#[..])
//!     .unwrap();
//! assert_eq!(request.method(), "POST");
//! assert!(request.headers().contains_key("x-hub-signature-256"));
//!
//! let verifier = Verifier::new(Provider::Github, &["my-secret"]).unwrap();
//! assert!(verifier.verify(&SignedRequest::new(request.headers(), request.body())).valid);
//! ```
//!
//! Send such a request to your router (`tower::ServiceExt::oneshot`) to test a handler end to
//! end. Asymmetric providers sign with a private key; [`TestKeys`] gives a matching pair:
//!
//! ```
//! use outworx_hooks::security::{self, Provider};
//! use outworx_hooks::testing::{Signer, TestKeys};
//!
//! let keys = TestKeys::for_provider(Provider::Discord); // keys.signing: the seed; keys.verifying: the public key
//! let signed = Signer::new(Provider::Discord, &keys.signing).sign(&b"{}"[..]).unwrap();
//! assert!(security::compat::verify_discord_signature(&signed.headers, &signed.body, &keys.verifying));
//! ```
//!
//! [`Signer`] sets the id headers real providers send (`X-GitHub-Delivery`, `svix-id`, ...),
//! takes [`Signer::at`] for a fixed clock, [`Signer::url`] for URL-signing providers (Twilio
//! JSON bodies get `bodySHA256` added to the returned URL) and [`Signer::id`] for a fixed
//! delivery id. It signs through the same scheme code that verifies (each scheme family's
//! `sign` sits beside its `check`), so the two cannot drift.

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};

pub use crate::security::scheme::SignError;
use crate::security::scheme::{self, is_json, put};
use crate::security::{KeyKind, Provider, Source, b64, now_unix};

/// A matching pair of keys for tests: what the provider signs with, and what you configure.
///
/// For HMAC and token schemes both are the same shared secret. For Discord and SendGrid
/// `signing` is a private key (hex seed, base64 scalar) and `verifying` the public key in the
/// format the provider's dashboard shows; [`TestKeys::standard_ed25519`] gives the
/// `whsk_`/`whpk_` pair of Standard Webhooks `v1a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestKeys {
    /// Give this to [`Signer::new`].
    pub signing: String,
    /// Configure this as the route's secret.
    pub verifying: String,
}

impl TestKeys {
    /// Fixed, well-formed keys for `provider` (never use them outside tests).
    ///
    /// ```
    /// use outworx_hooks::{security::Provider, testing::TestKeys};
    /// let k = TestKeys::for_provider(Provider::Svix);
    /// assert!(k.verifying.starts_with("whsec_"));
    /// assert_eq!(k.signing, k.verifying);
    /// ```
    pub fn for_provider(provider: Provider) -> TestKeys {
        TestKeys::from_seed(provider, [7u8; 32])
    }

    /// Keys for `provider` derived from `seed`.
    pub fn from_seed(provider: Provider, seed: [u8; 32]) -> TestKeys {
        match provider.spec().key {
            KeyKind::Ed25519Hex => ed25519_pair(seed, |b| hex::encode(b), |b| hex::encode(b)),
            KeyKind::P256Der => p256_pair(seed),
            kind => {
                let shared = match kind {
                    KeyKind::Standard => format!("whsec_{}", b64().encode(seed)),
                    _ => format!("test_{}_{}", provider.name(), hex::encode(&seed[..8])),
                };
                TestKeys {
                    signing: shared.clone(),
                    verifying: shared,
                }
            }
        }
    }

    /// A Standard Webhooks asymmetric (`v1a`) pair: `whsk_` signing key, `whpk_` public key.
    ///
    /// ```
    /// use outworx_hooks::testing::TestKeys;
    /// let k = TestKeys::standard_ed25519([1; 32]);
    /// assert!(k.signing.starts_with("whsk_") && k.verifying.starts_with("whpk_"));
    /// ```
    pub fn standard_ed25519(seed: [u8; 32]) -> TestKeys {
        ed25519_pair(
            seed,
            |b| format!("whsk_{}", b64().encode(b)),
            |b| format!("whpk_{}", b64().encode(b)),
        )
    }
}

#[cfg(feature = "ed25519")]
fn ed25519_pair(
    seed: [u8; 32],
    private: impl Fn(&[u8]) -> String,
    public: impl Fn(&[u8]) -> String,
) -> TestKeys {
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    TestKeys {
        signing: private(&seed),
        verifying: public(key.verifying_key().as_bytes()),
    }
}

#[cfg(not(feature = "ed25519"))]
fn ed25519_pair(
    seed: [u8; 32],
    private: impl Fn(&[u8]) -> String,
    _public: impl Fn(&[u8]) -> String,
) -> TestKeys {
    TestKeys {
        signing: private(&seed),
        verifying: String::from("(the ed25519 feature is disabled)"),
    }
}

#[cfg(feature = "ecdsa")]
fn p256_pair(seed: [u8; 32]) -> TestKeys {
    use p256::pkcs8::EncodePublicKey as _;
    // A seed is a valid scalar unless it is zero or above the group order; retry by hashing.
    let mut scalar = seed;
    loop {
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&scalar)
            && let Ok(der) = key.verifying_key().to_public_key_der()
        {
            return TestKeys {
                signing: b64().encode(scalar),
                verifying: b64().encode(der.as_bytes()),
            };
        }
        scalar = <sha2::Sha256 as sha2::Digest>::digest(scalar).into();
    }
}

#[cfg(not(feature = "ecdsa"))]
fn p256_pair(seed: [u8; 32]) -> TestKeys {
    TestKeys {
        signing: b64().encode(seed),
        verifying: String::from("(the ecdsa feature is disabled)"),
    }
}

/// The output of [`Signer::sign`]: what to send.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Signature headers, and a `content-type` when the body is JSON or form data.
    pub headers: HeaderMap,
    /// The body to send (unchanged, except for Mailgun, which signs in the body).
    pub body: Vec<u8>,
    /// The URL to send to, for providers that sign it (Twilio may add `bodySHA256`).
    pub url: Option<String>,
    /// The HTTP method that was signed.
    pub method: http::Method,
}

impl Signed {
    /// An `http::Request` to `uri` with the signed headers and body.
    pub fn into_request(self, uri: &str) -> Result<http::Request<Vec<u8>>, http::Error> {
        let mut builder = http::Request::builder().method(self.method).uri(uri);
        if let Some(h) = builder.headers_mut() {
            h.extend(self.headers);
        }
        builder.body(self.body)
    }
}

/// Signs request bodies the way `provider` does.
///
/// ```
/// use outworx_hooks::{security::Provider, testing::Signer};
/// let signed = Signer::new(Provider::Stripe, "whsec_x").at(1_700_000_000).sign(&b"{}"[..]).unwrap();
/// assert!(signed.headers["stripe-signature"].to_str().unwrap().starts_with("t=1700000000,v1="));
/// ```
#[derive(Clone)]
pub struct Signer {
    provider: Provider,
    secret: String,
    timestamp: Option<i64>,
    url: Option<String>,
    method: http::Method,
    id: Option<String>,
}

impl std::fmt::Debug for Signer {
    // Written out: the signing secret is never printed, even in tests' logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("provider", &self.provider)
            .field("secret", &"[REDACTED]")
            .field("timestamp", &self.timestamp)
            .field("url", &self.url)
            .field("method", &self.method)
            .field("id", &self.id)
            .finish()
    }
}

impl Signer {
    /// A signer for `provider` with its signing secret (for asymmetric schemes, the private
    /// key: see [`TestKeys`]).
    pub fn new(provider: Provider, signing_secret: impl Into<String>) -> Self {
        Signer {
            provider,
            secret: signing_secret.into(),
            timestamp: None,
            url: None,
            method: http::Method::POST,
            id: None,
        }
    }

    /// Signs as if at `unix` seconds (default: now).
    pub fn at(mut self, unix: i64) -> Self {
        self.timestamp = Some(unix);
        self
    }

    /// The public URL the provider posts to (needed by Twilio, Square, HubSpot).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The HTTP method (default `POST`; HubSpot signs it).
    pub fn method(mut self, method: http::Method) -> Self {
        self.method = method;
        self
    }

    /// The message / delivery id, for providers whose signature covers one (Standard Webhooks,
    /// Svix, Twitch) or that send one beside it (their natural idempotency key: GitHub,
    /// Shopify, GitLab, Bitbucket, Linear, Razorpay, Twilio). Default: derived from the body,
    /// so equal bodies share it, as a provider's retries do.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Signs `body` and builds an `http::Request` to `uri` (a path for in-process tests).
    pub fn request(
        &self,
        uri: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<http::Request<Vec<u8>>, SignError> {
        self.sign(body)?
            .into_request(uri)
            .map_err(|_| SignError::HeaderValue("the request uri"))
    }

    /// Signs `body`.
    pub fn sign(&self, body: impl Into<Vec<u8>>) -> Result<Signed, SignError> {
        let body = body.into();
        let ts = self.timestamp.unwrap_or_else(now_unix);
        let ts_text = ts.to_string();
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| format!("msg_{}", &scheme::sha256_hex(&body)[..24]));
        let json = is_json(&body);

        let mut ctx = scheme::SignCtx {
            provider: self.provider,
            secret: &self.secret,
            ts,
            ts_text,
            id,
            base_url: self.url.as_deref(),
            method: &self.method,
            json,
            body,
            headers: HeaderMap::new(),
            url: self.url.clone(),
        };
        scheme::sign(&self.provider.spec().scheme, &mut ctx)?;
        let scheme::SignCtx {
            id,
            body,
            mut headers,
            url,
            ..
        } = ctx;

        self.id_headers(&mut headers, &id)?;
        if !headers.contains_key(http::header::CONTENT_TYPE) {
            let ct = if is_json(&body) {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            };
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        Ok(Signed {
            headers,
            body,
            url,
            method: self.method.clone(),
        })
    }

    /// The delivery-id header the provider sends beside the signature (its natural
    /// idempotency key, from the catalog), when the scheme has not set it already.
    fn id_headers(&self, headers: &mut HeaderMap, id: &str) -> Result<(), SignError> {
        match self.provider.spec().natural_key {
            Some(Source::Header(name)) if !headers.contains_key(name) => {
                put(headers, name, id.to_owned())
            }
            _ => Ok(()),
        }
    }
}
