//! What the attribute must know about providers at compile time.
//!
//! The runtime crate owns the schemes; this table only names the providers (the generated
//! `Provider::<variant>` fails to compile if the two ever disagree), says which have a natural
//! idempotency key, and which ship a body envelope for `body.<path>` keys.

pub(crate) struct Known {
    pub(crate) name: &'static str,
    pub(crate) variant: &'static str,
    pub(crate) natural_key: bool,
    pub(crate) envelope: Option<&'static str>,
}

macro_rules! known {
    ($( $name:literal => $variant:literal, $key:literal, $env:expr; )*) => {
        pub(crate) const PROVIDERS: &[Known] = &[ $( Known { name: $name, variant: $variant, natural_key: $key, envelope: $env }, )* ];
    };
}

known! {
    "stripe" => "Stripe", true, Some("Stripe");
    "github" => "Github", true, None;
    "shopify" => "Shopify", true, None;
    "svix" => "Svix", true, Some("Standard");
    "clerk" => "Clerk", true, Some("Standard");
    "slack" => "Slack", true, Some("Slack");
    "standard" => "Standard", true, Some("Standard");
    "paddle" => "Paddle", true, Some("Paddle");
    "calendly" => "Calendly", false, Some("Calendly");
    "zoom" => "Zoom", false, Some("Zoom");
    "twilio" => "Twilio", true, None;
    "square" => "Square", true, Some("Square");
    "hubspot" => "Hubspot", false, None;
    "discord" => "Discord", true, Some("Discord");
    "sendgrid" => "Sendgrid", false, None;
    "gitlab" => "Gitlab", true, None;
    "bitbucket" => "Bitbucket", true, None;
    "intercom" => "Intercom", true, Some("Intercom");
    "vercel" => "Vercel", true, Some("Vercel");
    "typeform" => "Typeform", true, Some("Typeform");
    "linear" => "Linear", true, Some("Linear");
    "lemonsqueezy" => "Lemonsqueezy", false, None;
    "razorpay" => "Razorpay", true, Some("Razorpay");
    "twitch" => "Twitch", true, None;
    "mailgun" => "Mailgun", true, Some("Mailgun");
    "resend" => "Resend", true, Some("Standard");
    "meta" => "Meta", false, Some("Meta");
}

pub(crate) fn find(name: &str) -> Option<&'static Known> {
    PROVIDERS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The known name nearest to `name`, when it is close enough to be a typo.
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    PROVIDERS
        .iter()
        .map(|p| (distance(&name, p.name), p.name))
        .filter(|(d, n)| *d <= (n.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

pub(crate) fn names() -> String {
    PROVIDERS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The conventional environment variable for a provider's secret, for help messages.
pub(crate) fn env_var(name: &str) -> String {
    match name {
        "slack" => "SLACK_SIGNING_SECRET".into(),
        other => format!("{}_WEBHOOK_SECRET", other.to_ascii_uppercase()),
    }
}
