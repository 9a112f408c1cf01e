//! The providers the SDK knows, each one a row of configuration over a scheme family.

use std::fmt;
use std::str::FromStr;

use super::scheme::{Algo, Encoding, Scheme};

/// How a provider's configured secret becomes verification key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// The secret's UTF-8 bytes are the HMAC key (or the shared token).
    Raw,
    /// Standard Webhooks: `whsec_<base64>` HMAC key, or `whpk_<base64>` Ed25519 public key.
    Standard,
    /// A hex-encoded Ed25519 public key (Discord's "application public key").
    Ed25519Hex,
    /// A base64 DER (or PEM) SubjectPublicKeyInfo of a P-256 key (SendGrid's "verification key").
    P256Der,
}

/// A provider's static description: its name, the documentation its scheme is taken from,
/// the scheme family with its parameters, and how its secrets are read.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) docs: &'static str,
    pub(crate) scheme: Scheme,
    pub(crate) key: KeyKind,
}

macro_rules! providers {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $docs:literal, $key:ident, $scheme:expr; )+) => {
        /// A webhook provider whose signature scheme the SDK verifies.
        ///
        /// The string form (`Provider::name`, [`FromStr`], [`fmt::Display`]) is the lowercase
        /// name used by the `#[webhook(provider = "..")]` attribute and the `outworx` CLI.
        ///
        /// ```
        /// use outworx_hooks::security::Provider;
        ///
        /// let p: Provider = "stripe".parse().unwrap();
        /// assert_eq!(p, Provider::Stripe);
        /// assert_eq!(p.name(), "stripe");
        /// assert!(Provider::ALL.len() >= 27);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Provider {
            $( $(#[$doc])* $variant, )+
        }

        impl Provider {
            /// Every provider, in a stable order.
            pub const ALL: &'static [Provider] = &[ $( Provider::$variant, )+ ];

            pub(crate) fn spec(self) -> &'static Spec {
                match self {
                    $( Provider::$variant => {
                        static SPEC: Spec = Spec {
                            name: $name,
                            docs: $docs,
                            key: KeyKind::$key,
                            scheme: $scheme,
                        };
                        &SPEC
                    } )+
                }
            }
        }
    };
}

providers! {
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>`, HMAC-SHA256 over `<ts>.<body>`.
    Stripe = "stripe", "https://docs.stripe.com/webhooks#verify-manually", Raw,
        Scheme::HeaderTimestamped { header: "stripe-signature", separator: b',', timestamp_key: "t", signature_key: "v1", joiner: "." };
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over the body.
    Github = "github", "https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries", Raw,
        Scheme::BodyHmac { header: "x-hub-signature-256", prefix: "sha256=", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None };
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 over the body.
    Shopify = "shopify", "https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook", Raw,
        Scheme::BodyHmac { header: "x-shopify-hmac-sha256", prefix: "", algo: Algo::Sha256, encoding: Encoding::Base64, body_timestamp_ms: None };
    /// Svix: `svix-id`, `svix-timestamp`, `svix-signature: v1,<base64>`; Standard Webhooks scheme.
    Svix = "svix", "https://docs.svix.com/receiving/verifying-payloads/how-manual", Standard,
        Scheme::Standard { brand: "svix" };
    /// Clerk (delivers through Svix): Standard Webhooks scheme with `svix-*` headers.
    Clerk = "clerk", "https://clerk.com/docs/webhooks/sync-data", Standard,
        Scheme::Standard { brand: "svix" };
    /// Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 over `v0:<ts>:<body>`.
    Slack = "slack", "https://api.slack.com/authentication/verifying-requests-from-slack", Raw,
        Scheme::VersionedTimestamp { signature_header: "x-slack-signature", timestamp_header: "x-slack-request-timestamp" };
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1` HMAC, `v1a` Ed25519).
    Standard = "standard", "https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md", Standard,
        Scheme::Standard { brand: "webhook" };
    /// Paddle Billing: `Paddle-Signature: ts=<ts>;h1=<hex>`, HMAC-SHA256 over `<ts>:<body>`.
    Paddle = "paddle", "https://developer.paddle.com/webhooks/signature-verification", Raw,
        Scheme::HeaderTimestamped { header: "paddle-signature", separator: b';', timestamp_key: "ts", signature_key: "h1", joiner: ":" };
    /// Calendly: `Calendly-Webhook-Signature: t=<ts>,v1=<hex>`, HMAC-SHA256 over `<ts>.<body>`.
    Calendly = "calendly", "https://developer.calendly.com/api-docs/4c305798a61d3-webhook-signatures", Raw,
        Scheme::HeaderTimestamped { header: "calendly-webhook-signature", separator: b',', timestamp_key: "t", signature_key: "v1", joiner: "." };
    /// Zoom: `x-zm-signature: v0=<hex>`, HMAC-SHA256 over `v0:<ts>:<body>`.
    Zoom = "zoom", "https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events", Raw,
        Scheme::VersionedTimestamp { signature_header: "x-zm-signature", timestamp_header: "x-zm-request-timestamp" };
    /// Twilio: `X-Twilio-Signature: <base64>`, HMAC-SHA1 over the URL and sorted form params
    /// (or the URL alone when it carries `bodySHA256`).
    Twilio = "twilio", "https://www.twilio.com/docs/usage/webhooks/webhooks-security", Raw,
        Scheme::Twilio;
    /// Square: `x-square-hmacsha256-signature: <base64>`, HMAC-SHA256 over `<notification url><body>`.
    Square = "square", "https://developer.squareup.com/docs/webhooks/step3validate", Raw,
        Scheme::Square;
    /// HubSpot v3: `X-HubSpot-Signature-v3: <base64>`, HMAC-SHA256 over `<method><uri><body><ts ms>`.
    Hubspot = "hubspot", "https://developers.hubspot.com/docs/api/webhooks/validating-requests", Raw,
        Scheme::HubSpotV3;
    /// Discord interactions: `X-Signature-Ed25519` over `<ts><body>` with the application's public key.
    Discord = "discord", "https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers", Ed25519Hex,
        Scheme::Discord;
    /// SendGrid Event Webhook: ECDSA P-256 / SHA-256 over `<ts><body>`, base64 DER signature.
    Sendgrid = "sendgrid", "https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features", P256Der,
        Scheme::SendGrid;
    /// GitLab: `X-Gitlab-Token` equals the configured secret token.
    Gitlab = "gitlab", "https://docs.gitlab.com/user/project/integrations/webhooks/#create-a-webhook", Raw,
        Scheme::Token { header: "x-gitlab-token" };
    /// Bitbucket Cloud: `X-Hub-Signature: sha256=<hex>`, HMAC-SHA256 over the body.
    Bitbucket = "bitbucket", "https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/#Secure-webhooks", Raw,
        Scheme::BodyHmac { header: "x-hub-signature", prefix: "sha256=", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None };
    /// Intercom: `X-Hub-Signature: sha1=<hex>`, HMAC-SHA1 over the body with the app's client secret.
    Intercom = "intercom", "https://developers.intercom.com/docs/references/webhooks/webhook-models#signed-notifications", Raw,
        Scheme::BodyHmac { header: "x-hub-signature", prefix: "sha1=", algo: Algo::Sha1, encoding: Encoding::Hex, body_timestamp_ms: None };
    /// Vercel: `x-vercel-signature: <hex>`, HMAC-SHA1 over the body.
    Vercel = "vercel", "https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks", Raw,
        Scheme::BodyHmac { header: "x-vercel-signature", prefix: "", algo: Algo::Sha1, encoding: Encoding::Hex, body_timestamp_ms: None };
    /// Typeform: `Typeform-Signature: sha256=<base64>`, HMAC-SHA256 over the body.
    Typeform = "typeform", "https://www.typeform.com/developers/webhooks/secure-your-webhooks/", Raw,
        Scheme::BodyHmac { header: "typeform-signature", prefix: "sha256=", algo: Algo::Sha256, encoding: Encoding::Base64, body_timestamp_ms: None };
    /// Linear: `Linear-Signature: <hex>`, HMAC-SHA256 over the body; `webhookTimestamp` (ms) in the body.
    Linear = "linear", "https://linear.app/developers/webhooks#securing-webhooks", Raw,
        Scheme::BodyHmac { header: "linear-signature", prefix: "", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: Some("webhookTimestamp") };
    /// Lemon Squeezy: `X-Signature: <hex>`, HMAC-SHA256 over the body.
    Lemonsqueezy = "lemonsqueezy", "https://docs.lemonsqueezy.com/help/webhooks/signing-requests", Raw,
        Scheme::BodyHmac { header: "x-signature", prefix: "", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None };
    /// Razorpay: `X-Razorpay-Signature: <hex>`, HMAC-SHA256 over the body.
    Razorpay = "razorpay", "https://razorpay.com/docs/webhooks/validate-test/", Raw,
        Scheme::BodyHmac { header: "x-razorpay-signature", prefix: "", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None };
    /// Twitch EventSub: `Twitch-Eventsub-Message-Signature: sha256=<hex>` over `<id><timestamp><body>`.
    Twitch = "twitch", "https://dev.twitch.tv/docs/eventsub/handling-webhook-events/#verifying-the-event-message", Raw,
        Scheme::Twitch;
    /// Mailgun: the signature travels in the body (`signature.{timestamp,token,signature}`),
    /// HMAC-SHA256 over `<timestamp><token>` with the webhook signing key.
    Mailgun = "mailgun", "https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/#securing-webhooks", Raw,
        Scheme::Mailgun;
    /// Resend (delivers through Svix): Standard Webhooks scheme with `svix-*` headers.
    Resend = "resend", "https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests", Standard,
        Scheme::Standard { brand: "svix" };
    /// Meta (Facebook, Instagram, WhatsApp): `X-Hub-Signature-256: sha256=<hex>` with the app secret.
    Meta = "meta", "https://developers.facebook.com/docs/graph-api/webhooks/getting-started#event-notifications", Raw,
        Scheme::BodyHmac { header: "x-hub-signature-256", prefix: "sha256=", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None };
}

impl Provider {
    /// The lowercase name used in attributes, configuration and the CLI.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The provider's documentation of the scheme this SDK implements.
    pub fn docs_url(self) -> &'static str {
        self.spec().docs
    }

    /// Whether verification needs the full request URL (and method): Twilio, Square, HubSpot.
    pub fn signs_url(self) -> bool {
        matches!(
            self.spec().scheme,
            Scheme::Twilio | Scheme::Square | Scheme::HubSpotV3
        )
    }

    /// Looks a provider up by name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The known provider whose name is closest to `name`, for "did you mean" messages.
    ///
    /// ```
    /// use outworx_hooks::security::Provider;
    /// assert_eq!(Provider::suggest("strpe"), Some(Provider::Stripe));
    /// assert_eq!(Provider::suggest("completely-different"), None);
    /// ```
    pub fn suggest(name: &str) -> Option<Provider> {
        let name = name.to_ascii_lowercase();
        Provider::ALL
            .iter()
            .map(|p| (edit_distance(&name, p.name()), *p))
            .filter(|(d, p)| *d <= (p.name().len() / 3).max(1))
            .min_by_key(|(d, _)| *d)
            .map(|(_, p)| p)
    }

    /// Every provider name, comma separated: for error messages.
    pub fn known_names() -> String {
        Provider::ALL
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where a provider puts its natural idempotency key and its event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Defaults {
    pub(crate) key: Option<crate::pipeline::Source>,
    pub(crate) event_type: Option<crate::pipeline::Source>,
}

impl Provider {
    /// The provider's natural idempotency key and event type (bare `idempotency`).
    pub(crate) fn defaults(self) -> Defaults {
        use crate::pipeline::Source::{Body, Header};
        let (key, event_type) = match self {
            Provider::Stripe => (Some(Body(&["id"])), Some(Body(&["type"]))),
            Provider::Github => (
                Some(Header("x-github-delivery")),
                Some(Header("x-github-event")),
            ),
            Provider::Shopify => (
                Some(Header("x-shopify-webhook-id")),
                Some(Header("x-shopify-topic")),
            ),
            Provider::Svix | Provider::Clerk | Provider::Resend => {
                (Some(Header("svix-id")), Some(Body(&["type"])))
            }
            Provider::Standard => (Some(Header("webhook-id")), Some(Body(&["type"]))),
            Provider::Slack => (Some(Body(&["event_id"])), Some(Body(&["type"]))),
            Provider::Paddle => (Some(Body(&["event_id"])), Some(Body(&["event_type"]))),
            Provider::Calendly => (None, Some(Body(&["event"]))),
            Provider::Zoom => (None, Some(Body(&["event"]))),
            Provider::Twilio => (Some(Header("i-twilio-idempotency-token")), None),
            Provider::Square => (Some(Body(&["event_id"])), Some(Body(&["type"]))),
            Provider::Hubspot => (None, None),
            Provider::Discord => (Some(Body(&["id"])), Some(Body(&["type"]))),
            Provider::Sendgrid => (None, None),
            Provider::Gitlab => (
                Some(Header("x-gitlab-event-uuid")),
                Some(Header("x-gitlab-event")),
            ),
            Provider::Bitbucket => (Some(Header("x-request-uuid")), Some(Header("x-event-key"))),
            Provider::Intercom => (Some(Body(&["id"])), Some(Body(&["topic"]))),
            Provider::Vercel => (Some(Body(&["id"])), Some(Body(&["type"]))),
            Provider::Typeform => (Some(Body(&["event_id"])), Some(Body(&["event_type"]))),
            Provider::Linear => (
                Some(Header("linear-delivery")),
                Some(Header("linear-event")),
            ),
            Provider::Lemonsqueezy => (None, Some(Header("x-event-name"))),
            Provider::Razorpay => (Some(Header("x-razorpay-event-id")), Some(Body(&["event"]))),
            Provider::Twitch => (
                Some(Header("twitch-eventsub-message-id")),
                Some(Header("twitch-eventsub-subscription-type")),
            ),
            Provider::Mailgun => (
                Some(Body(&["event-data", "id"])),
                Some(Body(&["event-data", "event"])),
            ),
            Provider::Meta => (None, Some(Body(&["object"]))),
        };
        Defaults { key, event_type }
    }

    /// Whether the provider has a natural idempotency key (so bare `idempotency` works).
    pub fn has_natural_key(self) -> bool {
        self.defaults().key.is_some()
    }

    /// Whether the natural key is a header the signature does not cover (GitHub, Shopify,
    /// GitLab, Bitbucket, Linear, Razorpay, Twilio): a captured delivery could be replayed with
    /// a new id in it, so the pipeline also deduplicates on a digest of the signed body.
    pub(crate) fn natural_key_is_unsigned(self) -> bool {
        match self.defaults().key {
            Some(crate::pipeline::Source::Header(h)) => !self.spec().scheme.signs_header(h),
            _ => false,
        }
    }

    /// The headers that carry this provider's signature or shared credential. Reports never
    /// include their values (nor those of any other provider's).
    ///
    /// ```
    /// use outworx_hooks::security::Provider;
    /// assert_eq!(Provider::Gitlab.secret_headers(), ["x-gitlab-token"]);
    /// assert_eq!(Provider::Stripe.secret_headers(), ["stripe-signature"]);
    /// ```
    pub fn secret_headers(self) -> &'static [&'static str] {
        self.spec().scheme.secret_headers()
    }
}

/// Levenshtein distance over bytes; names are short ASCII, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The error of parsing an unknown provider name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider `{name}`{}; known providers: {}", suggestion.map(|p| format!(" (did you mean `{}`?)", p.name())).unwrap_or_default(), Provider::known_names())]
pub struct UnknownProvider {
    /// The name that was given.
    pub name: String,
    /// The nearest known provider, when one is close.
    pub suggestion: Option<Provider>,
}

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::from_name(s).ok_or_else(|| UnknownProvider {
            name: s.to_owned(),
            suggestion: Provider::suggest(s),
        })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in Provider::ALL {
            assert!(seen.insert(p.name()), "duplicate name {}", p.name());
            assert_eq!(Provider::from_name(p.name()), Some(*p));
            assert_eq!(p.to_string().parse::<Provider>(), Ok(*p));
            assert!(p.docs_url().starts_with("https://"), "{p} has no docs link");
        }
        assert!(Provider::ALL.len() >= 27);
    }

    #[test]
    fn unknown_names_suggest_the_nearest() {
        let err = "githbu".parse::<Provider>().unwrap_err();
        assert_eq!(err.suggestion, Some(Provider::Github));
        let msg = err.to_string();
        assert!(msg.contains("did you mean `github`"), "{msg}");
        assert!(msg.contains("stripe"), "{msg}");
        assert_eq!(Provider::suggest("zzzzzzzzzz"), None);
        assert_eq!(Provider::from_name("STRIPE"), Some(Provider::Stripe));
    }

    /// Must agree with the attribute's table (`outworx-hooks-macros/src/webhook/providers.rs`),
    /// which decides at compile time whether bare `idempotency` is accepted.
    #[test]
    fn providers_without_a_natural_key_match_the_attribute() {
        let without: Vec<_> = Provider::ALL
            .iter()
            .filter(|p| !p.has_natural_key())
            .map(|p| p.name())
            .collect();
        assert_eq!(
            without,
            [
                "calendly",
                "zoom",
                "hubspot",
                "sendgrid",
                "lemonsqueezy",
                "meta"
            ]
        );
        let macro_table = include_str!("../../../outworx-hooks-macros/src/webhook/providers.rs");
        for p in Provider::ALL {
            let row = macro_table
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("\"{}\" =>", p.name())))
                .unwrap_or_else(|| panic!("{p} is missing from the attribute's table"));
            let flag = if p.has_natural_key() {
                ", true,"
            } else {
                ", false,"
            };
            assert!(
                row.contains(flag),
                "{p}: natural key differs in the attribute's table"
            );
        }
    }

    #[test]
    fn only_url_schemes_need_the_url() {
        let needing: Vec<_> = Provider::ALL.iter().filter(|p| p.signs_url()).collect();
        assert_eq!(
            needing,
            [&Provider::Twilio, &Provider::Square, &Provider::Hubspot]
        );
    }
}
