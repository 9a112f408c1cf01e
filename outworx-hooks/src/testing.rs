//! Signing deliveries the way each provider does, so you can test your own handlers.
//!
//! [`Signer`] is the inverse of every verifier in [`crate::security`]: it produces the
//! headers (and, for Mailgun and Twilio, the body or URL) that a real provider would send.
//!
//! ```
//! use outworx_hooks::security::{Delivery, Provider, Verifier};
//! use outworx_hooks::testing::Signer;
//!
//! let request = Signer::new(Provider::Github, "my-secret")
//!     .request("/webhooks/github", &br#"{"action":"opened"}"#[..])
//!     .unwrap();
//! assert_eq!(request.method(), "POST");
//! assert!(request.headers().contains_key("x-hub-signature-256"));
//!
//! let verifier = Verifier::new(Provider::Github, &["my-secret"]).unwrap();
//! assert!(verifier.verify(&Delivery::new(request.headers(), request.body())).valid);
//! ```

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::security::scheme::{self, Algo, Encoding, Scheme};
use crate::security::{Key, Provider, SecretError, b64, now_unix, parse_key};

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
        match provider {
            Provider::Discord => ed25519_pair(seed, |b| hex::encode(b), |b| hex::encode(b)),
            Provider::Sendgrid => p256_pair(seed),
            p => {
                let shared = match p.spec().key {
                    crate::security::KeyKind::Standard => {
                        format!("whsec_{}", b64().encode(seed))
                    }
                    _ => format!("test_{}_{}", p.name(), hex::encode(&seed[..8])),
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

    /// The message / delivery id for providers that send one in a header (Standard Webhooks,
    /// Svix, Twitch, GitHub, Shopify). Default: derived from the body, so equal bodies share it.
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
        let mut body = body.into();
        let ts = self.timestamp.unwrap_or_else(now_unix);
        let ts_text = ts.to_string();
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| format!("msg_{}", &scheme::sha256_hex(&body)[..24]));
        let mut headers = HeaderMap::new();
        let mut url = self.url.clone();
        let json = is_json(&body);

        match &self.provider.spec().scheme {
            Scheme::BodyHmac {
                header,
                prefix,
                algo,
                encoding,
                ..
            } => {
                let sig = scheme::mac(*algo, &self.hmac_key()?, &[&body]);
                put(
                    &mut headers,
                    header,
                    format!("{prefix}{}", scheme::encode(*encoding, sig.bytes())),
                )?;
            }
            Scheme::HeaderTimestamped {
                header,
                separator,
                timestamp_key,
                signature_key,
                joiner,
            } => {
                let parts = scheme::header_timestamped_parts(&ts_text, joiner, &body);
                let sig = hex::encode(scheme::mac(Algo::Sha256, &self.hmac_key()?, &parts).bytes());
                let sep = char::from(*separator);
                put(
                    &mut headers,
                    header,
                    format!("{timestamp_key}={ts_text}{sep}{signature_key}={sig}"),
                )?;
            }
            Scheme::VersionedTimestamp {
                signature_header,
                timestamp_header,
            } => {
                let parts = scheme::versioned_parts(&ts_text, &body);
                let sig = hex::encode(scheme::mac(Algo::Sha256, &self.hmac_key()?, &parts).bytes());
                put(&mut headers, signature_header, format!("v0={sig}"))?;
                put(&mut headers, timestamp_header, ts_text.clone())?;
            }
            Scheme::Standard { brand } => {
                let [id_h, ts_h, sig_h] = scheme::standard_headers(brand);
                let parts = scheme::standard_parts(&id, &ts_text, &body);
                let sig = if let Some(seed) = self.secret.strip_prefix("whsk_") {
                    let seed = b64()
                        .decode(seed)
                        .ok()
                        .and_then(|s| <[u8; 32]>::try_from(s).ok());
                    let seed = seed.ok_or(SignError::SigningKey {
                        provider: self.provider,
                        expected: "`whsk_` followed by a base64 32-byte Ed25519 seed",
                    })?;
                    format!(
                        "v1a,{}",
                        b64().encode(ed25519_sign(self.provider, seed, &scheme::concat(&parts))?)
                    )
                } else {
                    let key = self.hmac_key()?;
                    format!(
                        "v1,{}",
                        b64().encode(scheme::mac(Algo::Sha256, &key, &parts).bytes())
                    )
                };
                put(&mut headers, id_h, id.clone())?;
                put(&mut headers, ts_h, ts_text.clone())?;
                put(&mut headers, sig_h, sig)?;
            }
            Scheme::Twitch => {
                let stamp = time::OffsetDateTime::from_unix_timestamp(ts)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .ok_or(SignError::HeaderValue("twitch-eventsub-message-timestamp"))?;
                let parts = [id.as_bytes(), stamp.as_bytes(), &body];
                let sig = hex::encode(scheme::mac(Algo::Sha256, &self.hmac_key()?, &parts).bytes());
                put(&mut headers, "twitch-eventsub-message-id", id.clone())?;
                put(&mut headers, "twitch-eventsub-message-timestamp", stamp)?;
                put(
                    &mut headers,
                    "twitch-eventsub-message-signature",
                    format!("sha256={sig}"),
                )?;
                put(
                    &mut headers,
                    "twitch-eventsub-message-type",
                    "notification".into(),
                )?;
            }
            Scheme::Twilio => {
                let base = self
                    .url
                    .clone()
                    .ok_or(SignError::UrlRequired(self.provider))?;
                let key = self.hmac_key()?;
                let sig = if json {
                    let sep = if base.contains('?') { '&' } else { '?' };
                    let signed_url = format!("{base}{sep}bodySHA256={}", scheme::sha256_hex(&body));
                    let sig = scheme::mac(Algo::Sha1, &key, &[signed_url.as_bytes()]);
                    url = Some(signed_url);
                    sig
                } else {
                    let params = scheme::twilio_params(&body);
                    scheme::mac(Algo::Sha1, &key, &[base.as_bytes(), &params])
                };
                put(
                    &mut headers,
                    "x-twilio-signature",
                    scheme::encode(Encoding::Base64, sig.bytes()),
                )?;
            }
            Scheme::Square => {
                let u = self
                    .url
                    .as_deref()
                    .ok_or(SignError::UrlRequired(self.provider))?;
                let sig = scheme::mac(Algo::Sha256, &self.hmac_key()?, &[u.as_bytes(), &body]);
                put(
                    &mut headers,
                    "x-square-hmacsha256-signature",
                    scheme::encode(Encoding::Base64, sig.bytes()),
                )?;
            }
            Scheme::HubSpotV3 => {
                let u = self
                    .url
                    .as_deref()
                    .ok_or(SignError::UrlRequired(self.provider))?;
                let ts_ms = (i128::from(ts) * 1000).to_string();
                let uri = scheme::hubspot_uri(u);
                let parts = scheme::hubspot_parts(self.method.as_str(), &uri, &body, &ts_ms);
                let sig = scheme::mac(Algo::Sha256, &self.hmac_key()?, &parts);
                put(
                    &mut headers,
                    "x-hubspot-signature-v3",
                    scheme::encode(Encoding::Base64, sig.bytes()),
                )?;
                put(&mut headers, "x-hubspot-request-timestamp", ts_ms)?;
            }
            Scheme::Discord => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(self.secret.trim(), &mut seed).map_err(|_| {
                    SignError::SigningKey {
                        provider: self.provider,
                        expected: "a 64-character hex Ed25519 seed",
                    }
                })?;
                let message = scheme::concat(&[ts_text.as_bytes(), &body]);
                let sig = ed25519_sign(self.provider, seed, &message)?;
                put(&mut headers, "x-signature-ed25519", hex::encode(sig))?;
                put(&mut headers, "x-signature-timestamp", ts_text.clone())?;
            }
            Scheme::SendGrid => {
                let message = scheme::concat(&[ts_text.as_bytes(), &body]);
                let der = p256_sign(self.provider, &self.secret, &message)?;
                put(
                    &mut headers,
                    "x-twilio-email-event-webhook-signature",
                    b64().encode(der),
                )?;
                put(
                    &mut headers,
                    "x-twilio-email-event-webhook-timestamp",
                    ts_text.clone(),
                )?;
            }
            Scheme::Token { header } => {
                put(&mut headers, header, self.secret.trim().to_owned())?;
            }
            Scheme::Mailgun => {
                let token = scheme::mailgun_token(&body);
                let parts = [ts_text.as_bytes(), token.as_bytes()];
                let sig = hex::encode(scheme::mac(Algo::Sha256, &self.hmac_key()?, &parts).bytes());
                body = mailgun_body(body, &ts_text, &token, &sig);
            }
        }

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

    /// Delivery-id headers real providers send beside the signature (used for idempotency).
    fn id_headers(&self, headers: &mut HeaderMap, id: &str) -> Result<(), SignError> {
        let name = match self.provider {
            Provider::Github => "x-github-delivery",
            Provider::Shopify => "x-shopify-webhook-id",
            Provider::Gitlab => "x-gitlab-event-uuid",
            _ => return Ok(()),
        };
        put(headers, name, id.to_owned())
    }

    fn hmac_key(&self) -> Result<Vec<u8>, SignError> {
        match parse_key(self.provider, &self.secret)? {
            Key::Secret(k) => Ok(k),
            #[allow(unreachable_patterns)]
            _ => Err(SignError::SigningKey {
                provider: self.provider,
                expected: "a shared secret",
            }),
        }
    }
}

fn is_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

fn put(headers: &mut HeaderMap, name: &'static str, value: String) -> Result<(), SignError> {
    let value = HeaderValue::try_from(value).map_err(|_| SignError::HeaderValue(name))?;
    headers.insert(HeaderName::from_static(name), value);
    Ok(())
}

fn mailgun_body(body: Vec<u8>, ts: &str, token: &str, sig: &str) -> Vec<u8> {
    let signature = serde_json::json!({ "timestamp": ts, "token": token, "signature": sig });
    if is_json(&body)
        && let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&body)
    {
        map.insert("signature".into(), signature);
        return serde_json::to_vec(&map).unwrap_or(body);
    }
    let mut out = body;
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("timestamp", ts)
        .append_pair("token", token)
        .append_pair("signature", sig);
    if !out.is_empty() {
        out.push(b'&');
    }
    out.extend_from_slice(form.finish().as_bytes());
    out
}

#[cfg(feature = "ed25519")]
fn ed25519_sign(
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
fn ed25519_sign(
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

#[cfg(feature = "ecdsa")]
fn p256_sign(provider: Provider, secret: &str, message: &[u8]) -> Result<Vec<u8>, SignError> {
    use p256::ecdsa::signature::Signer as _;
    let key = b64()
        .decode(secret.trim())
        .ok()
        .and_then(|s| p256::ecdsa::SigningKey::from_slice(&s).ok())
        .ok_or(SignError::SigningKey {
            provider,
            expected: "a base64 32-byte P-256 private scalar",
        })?;
    let sig: p256::ecdsa::Signature = key.sign(message);
    Ok(sig.to_der().as_bytes().to_vec())
}

#[cfg(not(feature = "ecdsa"))]
fn p256_sign(provider: Provider, _secret: &str, _message: &[u8]) -> Result<Vec<u8>, SignError> {
    Err(SecretError::FeatureDisabled {
        provider,
        feature: "ecdsa",
    }
    .into())
}
