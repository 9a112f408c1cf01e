//! The providers outworx-hooks knows, as one table: names, documentation, how each signs a
//! delivery, where its natural idempotency key and event type are, the body envelope the
//! attribute type-checks `body.` keys against, the handshake it expects answered, and the
//! conventional variable for its secret.
//!
//! Both the runtime crate (`outworx-hooks`: verification, signing, handshakes, defaults) and
//! the attribute (`outworx-hooks-macros`: names, "did you mean", natural keys, envelopes) read
//! this table, as Rocket's codegen and runtime share `rocket_http`; neither keeps a copy. It
//! has no dependencies, so the proc-macro crate stays light.
//!
//! ```
//! use outworx_hooks_providers::{Provider, Source};
//!
//! let stripe: Provider = "stripe".parse().unwrap();
//! assert_eq!(stripe.spec().natural_key, Some(Source::Body(&["id"])));
//! assert_eq!(Provider::suggest("strpe"), Some(Provider::Stripe));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

mod scheme;

pub use scheme::{Algo, Encoding, KeyKind, Scheme};

/// Where a provider puts a value it sends: a request header, or a field of its JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A header, by its lowercase name.
    Header(&'static str),
    /// A path of object keys into the JSON body.
    Body(&'static [&'static str]),
}

/// A request a provider sends to check an endpoint, answered after the signature check and
/// never passed to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Slack's `url_verification`: echo the `challenge`.
    SlackUrlVerification,
    /// Zoom's `endpoint.url_validation`: the plain token and its HMAC.
    ZoomUrlValidation,
    /// Twitch EventSub's `webhook_callback_verification`: echo the challenge as text.
    TwitchCallbackVerification,
    /// Discord's PING (`type: 1`): answer `{"type": 1}`.
    DiscordPing,
}

/// Everything known about one provider.
#[derive(Debug)]
#[non_exhaustive]
pub struct Spec {
    /// The lowercase name used in attributes, configuration and the CLI.
    pub name: &'static str,
    /// The Rust variant of [`Provider`], as text (for generated code).
    pub variant: &'static str,
    /// One line: the headers and what is signed.
    pub summary: &'static str,
    /// The provider's documentation of its scheme.
    pub docs: &'static str,
    /// How a configured secret becomes key material.
    pub key: KeyKind,
    /// The signature scheme family, with its parameters.
    pub scheme: Scheme,
    /// The natural idempotency key (bare `idempotency`), when the provider has one.
    pub natural_key: Option<Source>,
    /// The event type, when the provider sends one.
    pub event_type: Option<Source>,
    /// The name of the body envelope type in `outworx_hooks::envelope`, when there is one.
    pub envelope: Option<&'static str>,
    /// The handshake the provider sends, when it has one.
    pub handshake: Option<Handshake>,
    /// The conventional environment variable for its secret (for help messages).
    pub env_var: &'static str,
}

macro_rules! providers {
    ($( $variant:ident { name: $name:literal, summary: $summary:literal, $($field:ident: $value:expr,)* } )+) => {
        /// A webhook provider whose signature scheme outworx-hooks verifies.
        ///
        /// The string form ([`Provider::name`], [`FromStr`], [`fmt::Display`]) is the
        /// lowercase name used by `#[webhook(provider = "..")]` and the `outworx` CLI.
        ///
        /// ```
        /// use outworx_hooks_providers::Provider;
        ///
        /// let p: Provider = "stripe".parse().unwrap();
        /// assert_eq!(p, Provider::Stripe);
        /// assert_eq!(p.name(), "stripe");
        /// assert!(Provider::ALL.len() >= 27);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Provider {
            $( #[doc = $summary] $variant, )+
        }

        impl Spec {
    /// The cargo feature of `outworx-hooks` this provider's verification needs beyond the
    /// default build: `ed25519` (Discord) or `ecdsa` (SendGrid). Standard Webhooks' `v1a`
    /// needs `ed25519` too, but only for a `whpk_` key, which `init` checks.
    ///
    /// ```
    /// use outworx_hooks_providers::Provider;
    /// assert_eq!(Provider::Discord.spec().feature(), Some("ed25519"));
    /// assert_eq!(Provider::Sendgrid.spec().feature(), Some("ecdsa"));
    /// assert_eq!(Provider::Stripe.spec().feature(), None);
    /// ```
    pub fn feature(&self) -> Option<&'static str> {
        match self.key {
            KeyKind::Ed25519Hex => Some("ed25519"),
            KeyKind::P256Der => Some("ecdsa"),
            _ => None,
        }
    }
}

impl Provider {
            /// Every provider, in a stable order.
            pub const ALL: &'static [Provider] = &[ $( Provider::$variant, )+ ];

            /// The provider's row of the table.
            pub fn spec(self) -> &'static Spec {
                match self {
                    $( Provider::$variant => {
                        static SPEC: Spec = Spec {
                            name: $name,
                            variant: stringify!($variant),
                            summary: $summary,
                            $( $field: $value, )*
                        };
                        &SPEC
                    } )+
                }
            }
        }
    };
}

providers! {
    Stripe {
        name: "stripe",
        summary: "Stripe: `Stripe-Signature: t=<ts>,v1=<hex>`, HMAC-SHA256 over `<ts>.<body>`.",
        docs: "https://docs.stripe.com/webhooks#verify-manually",
        key: KeyKind::Raw,
        scheme: Scheme::HeaderTimestamped { header: "stripe-signature", separator: b',', timestamp_key: "t", signature_key: "v1", joiner: "." },
        natural_key: Some(Source::Body(&["id"])),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Stripe"),
        handshake: None,
        env_var: "STRIPE_WEBHOOK_SECRET",
    }
    Github {
        name: "github",
        summary: "GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over the body.",
        docs: "https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "x-hub-signature-256", prefix: "sha256=", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None },
        natural_key: Some(Source::Header("x-github-delivery")),
        event_type: Some(Source::Header("x-github-event")),
        envelope: None,
        handshake: None,
        env_var: "GITHUB_WEBHOOK_SECRET",
    }
    Shopify {
        name: "shopify",
        summary: "Shopify: `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 over the body.",
        docs: "https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "x-shopify-hmac-sha256", prefix: "", algo: Algo::Sha256, encoding: Encoding::Base64, body_timestamp_ms: None },
        natural_key: Some(Source::Header("x-shopify-webhook-id")),
        event_type: Some(Source::Header("x-shopify-topic")),
        envelope: None,
        handshake: None,
        env_var: "SHOPIFY_WEBHOOK_SECRET",
    }
    Svix {
        name: "svix",
        summary: "Svix: `svix-id`, `svix-timestamp`, `svix-signature: v1,<base64>`; Standard Webhooks scheme.",
        docs: "https://docs.svix.com/receiving/verifying-payloads/how-manual",
        key: KeyKind::Standard,
        scheme: Scheme::Standard { brand: "svix" },
        natural_key: Some(Source::Header("svix-id")),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Standard"),
        handshake: None,
        env_var: "SVIX_WEBHOOK_SECRET",
    }
    Clerk {
        name: "clerk",
        summary: "Clerk (delivers through Svix): Standard Webhooks scheme with `svix-*` headers.",
        docs: "https://clerk.com/docs/webhooks/sync-data",
        key: KeyKind::Standard,
        scheme: Scheme::Standard { brand: "svix" },
        natural_key: Some(Source::Header("svix-id")),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Standard"),
        handshake: None,
        env_var: "CLERK_WEBHOOK_SECRET",
    }
    Slack {
        name: "slack",
        summary: "Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 over `v0:<ts>:<body>`.",
        docs: "https://api.slack.com/authentication/verifying-requests-from-slack",
        key: KeyKind::Raw,
        scheme: Scheme::VersionedTimestamp { signature_header: "x-slack-signature", timestamp_header: "x-slack-request-timestamp" },
        natural_key: Some(Source::Body(&["event_id"])),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Slack"),
        handshake: Some(Handshake::SlackUrlVerification),
        env_var: "SLACK_SIGNING_SECRET",
    }
    Standard {
        name: "standard",
        summary: "Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1` HMAC, `v1a` Ed25519).",
        docs: "https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md",
        key: KeyKind::Standard,
        scheme: Scheme::Standard { brand: "webhook" },
        natural_key: Some(Source::Header("webhook-id")),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Standard"),
        handshake: None,
        env_var: "STANDARD_WEBHOOK_SECRET",
    }
    Paddle {
        name: "paddle",
        summary: "Paddle Billing: `Paddle-Signature: ts=<ts>;h1=<hex>`, HMAC-SHA256 over `<ts>:<body>`.",
        docs: "https://developer.paddle.com/webhooks/signature-verification",
        key: KeyKind::Raw,
        scheme: Scheme::HeaderTimestamped { header: "paddle-signature", separator: b';', timestamp_key: "ts", signature_key: "h1", joiner: ":" },
        natural_key: Some(Source::Body(&["event_id"])),
        event_type: Some(Source::Body(&["event_type"])),
        envelope: Some("Paddle"),
        handshake: None,
        env_var: "PADDLE_WEBHOOK_SECRET",
    }
    Calendly {
        name: "calendly",
        summary: "Calendly: `Calendly-Webhook-Signature: t=<ts>,v1=<hex>`, HMAC-SHA256 over `<ts>.<body>`.",
        docs: "https://developer.calendly.com/api-docs/4c305798a61d3-webhook-signatures",
        key: KeyKind::Raw,
        scheme: Scheme::HeaderTimestamped { header: "calendly-webhook-signature", separator: b',', timestamp_key: "t", signature_key: "v1", joiner: "." },
        natural_key: None,
        event_type: Some(Source::Body(&["event"])),
        envelope: Some("Calendly"),
        handshake: None,
        env_var: "CALENDLY_WEBHOOK_SECRET",
    }
    Zoom {
        name: "zoom",
        summary: "Zoom: `x-zm-signature: v0=<hex>`, HMAC-SHA256 over `v0:<ts>:<body>`.",
        docs: "https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events",
        key: KeyKind::Raw,
        scheme: Scheme::VersionedTimestamp { signature_header: "x-zm-signature", timestamp_header: "x-zm-request-timestamp" },
        natural_key: None,
        event_type: Some(Source::Body(&["event"])),
        envelope: Some("Zoom"),
        handshake: Some(Handshake::ZoomUrlValidation),
        env_var: "ZOOM_WEBHOOK_SECRET",
    }
    Twilio {
        name: "twilio",
        summary: "Twilio: `X-Twilio-Signature: <base64>`, HMAC-SHA1 over the URL and sorted form params (or the URL alone when it carries `bodySHA256`).",
        docs: "https://www.twilio.com/docs/usage/webhooks/webhooks-security",
        key: KeyKind::Raw,
        scheme: Scheme::Twilio,
        natural_key: Some(Source::Header("i-twilio-idempotency-token")),
        event_type: None,
        envelope: None,
        handshake: None,
        env_var: "TWILIO_WEBHOOK_SECRET",
    }
    Square {
        name: "square",
        summary: "Square: `x-square-hmacsha256-signature: <base64>`, HMAC-SHA256 over `<notification url><body>`.",
        docs: "https://developer.squareup.com/docs/webhooks/step3validate",
        key: KeyKind::Raw,
        scheme: Scheme::Square,
        natural_key: Some(Source::Body(&["event_id"])),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Square"),
        handshake: None,
        env_var: "SQUARE_WEBHOOK_SECRET",
    }
    Hubspot {
        name: "hubspot",
        summary: "HubSpot v3: `X-HubSpot-Signature-v3: <base64>`, HMAC-SHA256 over `<method><uri><body><ts ms>`.",
        docs: "https://developers.hubspot.com/docs/api/webhooks/validating-requests",
        key: KeyKind::Raw,
        scheme: Scheme::HubSpotV3,
        natural_key: None,
        event_type: None,
        envelope: None,
        handshake: None,
        env_var: "HUBSPOT_WEBHOOK_SECRET",
    }
    Discord {
        name: "discord",
        summary: "Discord interactions: `X-Signature-Ed25519` over `<ts><body>` with the application's public key.",
        docs: "https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers",
        key: KeyKind::Ed25519Hex,
        scheme: Scheme::Discord,
        natural_key: Some(Source::Body(&["id"])),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Discord"),
        handshake: Some(Handshake::DiscordPing),
        env_var: "DISCORD_WEBHOOK_SECRET",
    }
    Sendgrid {
        name: "sendgrid",
        summary: "SendGrid Event Webhook: ECDSA P-256 / SHA-256 over `<ts><body>`, base64 DER signature.",
        docs: "https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features",
        key: KeyKind::P256Der,
        scheme: Scheme::SendGrid,
        natural_key: None,
        event_type: None,
        envelope: None,
        handshake: None,
        env_var: "SENDGRID_WEBHOOK_SECRET",
    }
    Gitlab {
        name: "gitlab",
        summary: "GitLab: `X-Gitlab-Token` equals the configured secret token.",
        docs: "https://docs.gitlab.com/user/project/integrations/webhooks/#create-a-webhook",
        key: KeyKind::Raw,
        scheme: Scheme::Token { header: "x-gitlab-token" },
        natural_key: Some(Source::Header("x-gitlab-event-uuid")),
        event_type: Some(Source::Header("x-gitlab-event")),
        envelope: None,
        handshake: None,
        env_var: "GITLAB_WEBHOOK_SECRET",
    }
    Bitbucket {
        name: "bitbucket",
        summary: "Bitbucket Cloud: `X-Hub-Signature: sha256=<hex>`, HMAC-SHA256 over the body.",
        docs: "https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/#Secure-webhooks",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "x-hub-signature", prefix: "sha256=", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None },
        natural_key: Some(Source::Header("x-request-uuid")),
        event_type: Some(Source::Header("x-event-key")),
        envelope: None,
        handshake: None,
        env_var: "BITBUCKET_WEBHOOK_SECRET",
    }
    Intercom {
        name: "intercom",
        summary: "Intercom: `X-Hub-Signature: sha1=<hex>`, HMAC-SHA1 over the body with the app's client secret.",
        docs: "https://developers.intercom.com/docs/references/webhooks/webhook-models#signed-notifications",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "x-hub-signature", prefix: "sha1=", algo: Algo::Sha1, encoding: Encoding::Hex, body_timestamp_ms: None },
        natural_key: Some(Source::Body(&["id"])),
        event_type: Some(Source::Body(&["topic"])),
        envelope: Some("Intercom"),
        handshake: None,
        env_var: "INTERCOM_WEBHOOK_SECRET",
    }
    Vercel {
        name: "vercel",
        summary: "Vercel: `x-vercel-signature: <hex>`, HMAC-SHA1 over the body.",
        docs: "https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "x-vercel-signature", prefix: "", algo: Algo::Sha1, encoding: Encoding::Hex, body_timestamp_ms: None },
        natural_key: Some(Source::Body(&["id"])),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Vercel"),
        handshake: None,
        env_var: "VERCEL_WEBHOOK_SECRET",
    }
    Typeform {
        name: "typeform",
        summary: "Typeform: `Typeform-Signature: sha256=<base64>`, HMAC-SHA256 over the body.",
        docs: "https://www.typeform.com/developers/webhooks/secure-your-webhooks/",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "typeform-signature", prefix: "sha256=", algo: Algo::Sha256, encoding: Encoding::Base64, body_timestamp_ms: None },
        natural_key: Some(Source::Body(&["event_id"])),
        event_type: Some(Source::Body(&["event_type"])),
        envelope: Some("Typeform"),
        handshake: None,
        env_var: "TYPEFORM_WEBHOOK_SECRET",
    }
    Linear {
        name: "linear",
        summary: "Linear: `Linear-Signature: <hex>`, HMAC-SHA256 over the body; `webhookTimestamp` (ms) in the body.",
        docs: "https://linear.app/developers/webhooks#securing-webhooks",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "linear-signature", prefix: "", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: Some("webhookTimestamp") },
        natural_key: Some(Source::Header("linear-delivery")),
        event_type: Some(Source::Header("linear-event")),
        envelope: Some("Linear"),
        handshake: None,
        env_var: "LINEAR_WEBHOOK_SECRET",
    }
    Lemonsqueezy {
        name: "lemonsqueezy",
        summary: "Lemon Squeezy: `X-Signature: <hex>`, HMAC-SHA256 over the body.",
        docs: "https://docs.lemonsqueezy.com/help/webhooks/signing-requests",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "x-signature", prefix: "", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None },
        natural_key: None,
        event_type: Some(Source::Header("x-event-name")),
        envelope: None,
        handshake: None,
        env_var: "LEMONSQUEEZY_WEBHOOK_SECRET",
    }
    Razorpay {
        name: "razorpay",
        summary: "Razorpay: `X-Razorpay-Signature: <hex>`, HMAC-SHA256 over the body.",
        docs: "https://razorpay.com/docs/webhooks/validate-test/",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "x-razorpay-signature", prefix: "", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None },
        natural_key: Some(Source::Header("x-razorpay-event-id")),
        event_type: Some(Source::Body(&["event"])),
        envelope: Some("Razorpay"),
        handshake: None,
        env_var: "RAZORPAY_WEBHOOK_SECRET",
    }
    Twitch {
        name: "twitch",
        summary: "Twitch EventSub: `Twitch-Eventsub-Message-Signature: sha256=<hex>` over `<id><timestamp><body>`.",
        docs: "https://dev.twitch.tv/docs/eventsub/handling-webhook-events/#verifying-the-event-message",
        key: KeyKind::Raw,
        scheme: Scheme::Twitch,
        natural_key: Some(Source::Header("twitch-eventsub-message-id")),
        event_type: Some(Source::Header("twitch-eventsub-subscription-type")),
        envelope: None,
        handshake: Some(Handshake::TwitchCallbackVerification),
        env_var: "TWITCH_WEBHOOK_SECRET",
    }
    Mailgun {
        name: "mailgun",
        summary: "Mailgun: the signature travels in the body (`signature.{timestamp,token,signature}`), HMAC-SHA256 over `<timestamp><token>` with the webhook signing key.",
        docs: "https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/#securing-webhooks",
        key: KeyKind::Raw,
        scheme: Scheme::Mailgun,
        natural_key: Some(Source::Body(&["event-data", "id"])),
        event_type: Some(Source::Body(&["event-data", "event"])),
        envelope: Some("Mailgun"),
        handshake: None,
        env_var: "MAILGUN_WEBHOOK_SECRET",
    }
    Resend {
        name: "resend",
        summary: "Resend (delivers through Svix): Standard Webhooks scheme with `svix-*` headers.",
        docs: "https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests",
        key: KeyKind::Standard,
        scheme: Scheme::Standard { brand: "svix" },
        natural_key: Some(Source::Header("svix-id")),
        event_type: Some(Source::Body(&["type"])),
        envelope: Some("Standard"),
        handshake: None,
        env_var: "RESEND_WEBHOOK_SECRET",
    }
    Meta {
        name: "meta",
        summary: "Meta (Facebook, Instagram, WhatsApp): `X-Hub-Signature-256: sha256=<hex>` with the app secret.",
        docs: "https://developers.facebook.com/docs/graph-api/webhooks/getting-started#event-notifications",
        key: KeyKind::Raw,
        scheme: Scheme::BodyHmac { header: "x-hub-signature-256", prefix: "sha256=", algo: Algo::Sha256, encoding: Encoding::Hex, body_timestamp_ms: None },
        natural_key: None,
        event_type: Some(Source::Body(&["object"])),
        envelope: Some("Meta"),
        handshake: None,
        env_var: "META_WEBHOOK_SECRET",
    }
}

impl Provider {
    /// The lowercase name used in attributes, configuration and the CLI.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The provider's documentation of the scheme outworx-hooks implements.
    pub fn docs_url(self) -> &'static str {
        self.spec().docs
    }

    /// Whether verification needs the full request URL (and method): Twilio, Square, HubSpot.
    pub fn signs_url(self) -> bool {
        self.spec().scheme.signs_url()
    }

    /// Whether the provider signs with a private key and is verified with its public key
    /// (Discord's Ed25519, SendGrid's ECDSA), rather than with a shared secret.
    ///
    /// ```
    /// use outworx_hooks_providers::Provider;
    /// assert!(Provider::Discord.signs_with_private_key());
    /// assert!(!Provider::Stripe.signs_with_private_key());
    /// ```
    pub fn signs_with_private_key(self) -> bool {
        matches!(self.spec().key, KeyKind::Ed25519Hex | KeyKind::P256Der)
    }

    /// Whether the provider has a natural idempotency key (so bare `idempotency` works).
    pub fn has_natural_key(self) -> bool {
        self.spec().natural_key.is_some()
    }

    /// Whether the natural key is a header the signature does not cover (GitHub, Shopify,
    /// GitLab, Bitbucket, Linear, Razorpay, Twilio): a captured delivery could be replayed with
    /// a new id in it.
    pub fn natural_key_is_unsigned(self) -> bool {
        match self.spec().natural_key {
            Some(Source::Header(h)) => !self.spec().scheme.signs_header(h),
            _ => false,
        }
    }

    /// The headers that carry this provider's signature or shared credential.
    ///
    /// ```
    /// use outworx_hooks_providers::Provider;
    /// assert_eq!(Provider::Gitlab.secret_headers(), ["x-gitlab-token"]);
    /// assert_eq!(Provider::Stripe.secret_headers(), ["stripe-signature"]);
    /// ```
    pub fn secret_headers(self) -> &'static [&'static str] {
        self.spec().scheme.secret_headers()
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
    /// use outworx_hooks_providers::Provider;
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

/// The longest event type (and event pattern), in bytes.
#[doc(hidden)]
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// Whether `t` is an event type the SDK sends and filters on: 1 to 128 bytes of letters,
/// digits and `. _ - : /`. `#[emit]` checks it at compile time, `send` at run time: one rule.
#[doc(hidden)]
pub fn is_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_EVENT_TYPE_LEN
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b))
}

/// Whether `p` is an event pattern: `*`, an event type, or one followed by `.*` (every type
/// under it), at most 128 bytes. `#[webhook(events = ..)]` checks it at compile time, an
/// endpoint's filters at run time: one rule.
#[doc(hidden)]
pub fn is_event_pattern(p: &str) -> bool {
    p == "*" || (p.len() <= MAX_EVENT_TYPE_LEN && is_event_type(p.strip_suffix(".*").unwrap_or(p)))
}

/// Levenshtein distance over bytes; names are short ASCII, so the quadratic table is fine.
/// The macro crate's "did you mean" for attribute keys uses it too.
#[doc(hidden)]
pub fn edit_distance(a: &str, b: &str) -> usize {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProvider {
    /// The name that was given.
    pub name: String,
    /// The nearest known provider, when one is close.
    pub suggestion: Option<Provider>,
}

impl fmt::Display for UnknownProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown provider `{}`", self.name)?;
        if let Some(p) = self.suggestion {
            write!(f, " (did you mean `{}`?)", p.name())?;
        }
        write!(f, "; known providers: {}", Provider::known_names())
    }
}

impl std::error::Error for UnknownProvider {}

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
            assert_eq!(format!("{p:?}"), p.spec().variant);
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

    #[test]
    fn only_url_schemes_need_the_url() {
        let needing: Vec<_> = Provider::ALL.iter().filter(|p| p.signs_url()).collect();
        assert_eq!(
            needing,
            [&Provider::Twilio, &Provider::Square, &Provider::Hubspot]
        );
    }

    #[test]
    fn natural_keys_and_which_are_unsigned() {
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
        let unsigned: Vec<_> = Provider::ALL
            .iter()
            .filter(|p| p.natural_key_is_unsigned())
            .map(|p| p.name())
            .collect();
        assert_eq!(
            unsigned,
            [
                "github",
                "shopify",
                "twilio",
                "gitlab",
                "bitbucket",
                "linear",
                "razorpay"
            ]
        );
    }
}
