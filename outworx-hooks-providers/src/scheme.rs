//! The signature scheme families, as data: a provider is a row of parameters over one of them.
//! The runtime crate implements checking and signing for each family, side by side.

/// The hash under an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
}

/// How a MAC is written into a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase (or any case) hexadecimal.
    Hex,
    /// Standard base64, padding optional.
    Base64,
}

/// How a provider's configured secret becomes verification key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The secret's UTF-8 bytes are the HMAC key (or the shared token).
    Raw,
    /// Standard Webhooks: `whsec_<base64>` HMAC key, or `whpk_<base64>` Ed25519 public key.
    Standard,
    /// A hex-encoded Ed25519 public key (Discord's "application public key").
    Ed25519Hex,
    /// A base64 DER (or PEM) SubjectPublicKeyInfo of a P-256 key (SendGrid's "verification key").
    P256Der,
}

/// A scheme family with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// HMAC over the raw body, one header, optional prefix (`sha256=`).
    BodyHmac {
        /// The signature header.
        header: &'static str,
        /// What the value starts with (`sha256=`), or `""`.
        prefix: &'static str,
        /// The hash.
        algo: Algo,
        /// How the MAC is written.
        encoding: Encoding,
        /// A top-level body field holding the send time in milliseconds, checked against the
        /// tolerance when present (Linear's `webhookTimestamp`).
        body_timestamp_ms: Option<&'static str>,
    },
    /// One header carrying `t=<ts>` and `v1=<hex>` items (Stripe, Calendly, Paddle);
    /// HMAC-SHA256 over `<ts><joiner><body>`.
    HeaderTimestamped {
        /// The signature header.
        header: &'static str,
        /// Between items (`,` or `;`).
        separator: u8,
        /// The timestamp item's key (`t`, `ts`).
        timestamp_key: &'static str,
        /// The signature items' key (`v1`, `h1`).
        signature_key: &'static str,
        /// Between the timestamp and the body in the signed message (`.` or `:`).
        joiner: &'static str,
    },
    /// `v0=<hex>` over `v0:<ts>:<body>`, timestamp in its own header (Slack, Zoom).
    VersionedTimestamp {
        /// The signature header.
        signature_header: &'static str,
        /// The timestamp header.
        timestamp_header: &'static str,
    },
    /// Standard Webhooks with `<brand>-id/-timestamp/-signature` headers (`svix` or `webhook`).
    Standard {
        /// The header prefix.
        brand: &'static str,
    },
    /// Twitch EventSub: HMAC-SHA256 over `<id><timestamp><body>`, RFC 3339 timestamp.
    Twitch,
    /// Twilio: HMAC-SHA1 over the URL and sorted form params, or over a URL with `bodySHA256`.
    Twilio,
    /// Square: HMAC over `<notification url><body>`.
    Square,
    /// HubSpot v3: HMAC-SHA256 over `<method><uri><body><timestamp ms>`.
    HubSpotV3,
    /// Discord: Ed25519 over `<timestamp><body>`.
    Discord,
    /// SendGrid: ECDSA P-256 / SHA-256 over `<timestamp><body>`.
    SendGrid,
    /// The header equals the secret (GitLab).
    Token {
        /// The token header.
        header: &'static str,
    },
    /// Mailgun: HMAC-SHA256 over `<timestamp><token>`, both and the signature in the body.
    Mailgun,
}

impl Scheme {
    /// Whether a re-serialized body can explain a mismatch (the body bytes are signed as a whole).
    pub fn signs_body(&self) -> bool {
        !matches!(self, Scheme::Token { .. } | Scheme::Mailgun)
    }

    /// Whether verification needs the full request URL (and method).
    pub fn signs_url(&self) -> bool {
        matches!(self, Scheme::Twilio | Scheme::Square | Scheme::HubSpotV3)
    }

    /// Whether the header `name` is part of the signed message.
    pub fn signs_header(&self, name: &str) -> bool {
        match self {
            Scheme::Standard { .. } => name.ends_with("-id") || name.ends_with("-timestamp"),
            Scheme::Twitch => matches!(
                name,
                "twitch-eventsub-message-id" | "twitch-eventsub-message-timestamp"
            ),
            Scheme::VersionedTimestamp {
                timestamp_header, ..
            } => name == *timestamp_header,
            Scheme::HubSpotV3 => name == "x-hubspot-request-timestamp",
            Scheme::Discord => name == "x-signature-timestamp",
            Scheme::SendGrid => name == "x-twilio-email-event-webhook-timestamp",
            _ => false,
        }
    }

    /// The headers that carry a signature or a shared credential in this scheme.
    pub fn secret_headers(&'static self) -> &'static [&'static str] {
        match self {
            Scheme::BodyHmac { header, .. } | Scheme::HeaderTimestamped { header, .. } => {
                std::slice::from_ref(header)
            }
            Scheme::VersionedTimestamp {
                signature_header, ..
            } => std::slice::from_ref(signature_header),
            Scheme::Token { header } => std::slice::from_ref(header),
            Scheme::Standard { .. } => &["svix-signature", "webhook-signature"],
            Scheme::Twitch => &["twitch-eventsub-message-signature"],
            Scheme::Twilio => &["x-twilio-signature"],
            Scheme::Square => &["x-square-hmacsha256-signature", "x-square-signature"],
            Scheme::HubSpotV3 => &["x-hubspot-signature-v3", "x-hubspot-signature"],
            Scheme::Discord => &["x-signature-ed25519"],
            Scheme::SendGrid => &["x-twilio-email-event-webhook-signature"],
            // Mailgun signs in the body, which is reported only with `capture_body`.
            Scheme::Mailgun => &[],
        }
    }
}
