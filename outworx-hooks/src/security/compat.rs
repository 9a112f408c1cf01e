//! The Python package's per-provider functions: `verify_<provider>_signature(headers, body,
//! secret) -> bool` and `..._detailed(..) -> SignatureResult`, for every provider (for
//! Twilio, Square and HubSpot with the public URL first). Each is one call of
//! [`verify_delivery_at`] with one secret, the default tolerance
//! and the system clock; a [`Verifier`](super::Verifier) does the same for any provider, with
//! rotation and a fixed clock.

use http::HeaderMap;

use super::{
    DEFAULT_TOLERANCE, Provider, SignatureResult, SignedRequest, now_unix, verify_delivery_at,
};

fn one(provider: Provider, delivery: SignedRequest<'_>, secret: &str) -> SignatureResult {
    verify_delivery_at(
        provider,
        &delivery,
        &[secret],
        DEFAULT_TOLERANCE,
        now_unix(),
    )
}

macro_rules! per_provider {
    (body: $( $p:ident => $short:ident, $detailed:ident; )+) => { $(
        #[doc = concat!("Whether a `", stringify!($p), "` delivery is validly signed with `secret`")]
        #[doc = "(default tolerance, system clock). See the `_detailed` form for the reason."]
        ///
        /// ```
        /// use outworx_hooks::{security::{self, Provider}, testing::{Signer, TestKeys}};
        #[doc = concat!("let keys = TestKeys::for_provider(Provider::", stringify!($p), ");")]
        #[doc = concat!("let signed = Signer::new(Provider::", stringify!($p), ", &keys.signing)")]
        ///     .sign(&br#"{"id":"evt_1","type":"test"}"#[..]).unwrap();
        #[doc = concat!("assert!(security::compat::", stringify!($short), "(&signed.headers, &signed.body, &keys.verifying));")]
        #[doc = concat!("let other = TestKeys::from_seed(Provider::", stringify!($p), ", [9; 32]);")]
        #[doc = concat!("assert!(!security::compat::", stringify!($short), "(&signed.headers, &signed.body, &other.verifying));")]
        /// ```
        pub fn $short(headers: &HeaderMap, raw_body: &[u8], secret: &str) -> bool {
            $detailed(headers, raw_body, secret).valid
        }

        #[doc = concat!("Verifies a `", stringify!($p), "` delivery with `secret` and says why it failed.")]
        pub fn $detailed(headers: &HeaderMap, raw_body: &[u8], secret: &str) -> SignatureResult {
            one(Provider::$p, SignedRequest::new(headers, raw_body), secret)
        }
    )+ };
    (url: $( $p:ident => $short:ident, $detailed:ident; )+) => { $(
        #[doc = concat!("Whether a `", stringify!($p), "` delivery to the public `url` is validly signed")]
        #[doc = "with `secret` (a `POST`; default tolerance, system clock)."]
        ///
        /// ```
        /// use outworx_hooks::{security::{self, Provider}, testing::{Signer, TestKeys}};
        #[doc = concat!("let keys = TestKeys::for_provider(Provider::", stringify!($p), ");")]
        #[doc = concat!("let signed = Signer::new(Provider::", stringify!($p), ", &keys.signing)")]
        ///     .url("https://example.com/hooks").sign(&b"Digits=1234"[..]).unwrap();
        /// let url = signed.url.as_deref().unwrap();
        #[doc = concat!("assert!(security::compat::", stringify!($short), "(url, &signed.headers, &signed.body, &keys.verifying));")]
        /// ```
        pub fn $short(url: &str, headers: &HeaderMap, raw_body: &[u8], secret: &str) -> bool {
            $detailed(url, headers, raw_body, secret).valid
        }

        #[doc = concat!("Verifies a `", stringify!($p), "` `POST` to `url` with `secret` and says why it failed.")]
        pub fn $detailed(url: &str, headers: &HeaderMap, raw_body: &[u8], secret: &str) -> SignatureResult {
            one(Provider::$p, SignedRequest::new(headers, raw_body).with_url(url), secret)
        }
    )+ };
}

per_provider! { body:
    Stripe => verify_stripe_signature, verify_stripe_signature_detailed;
    Github => verify_github_signature, verify_github_signature_detailed;
    Shopify => verify_shopify_signature, verify_shopify_signature_detailed;
    Svix => verify_svix_signature, verify_svix_signature_detailed;
    Clerk => verify_clerk_signature, verify_clerk_signature_detailed;
    Slack => verify_slack_signature, verify_slack_signature_detailed;
    Standard => verify_standard_signature, verify_standard_signature_detailed;
    Paddle => verify_paddle_signature, verify_paddle_signature_detailed;
    Calendly => verify_calendly_signature, verify_calendly_signature_detailed;
    Zoom => verify_zoom_signature, verify_zoom_signature_detailed;
    Discord => verify_discord_signature, verify_discord_signature_detailed;
    Sendgrid => verify_sendgrid_signature, verify_sendgrid_signature_detailed;
    Gitlab => verify_gitlab_signature, verify_gitlab_signature_detailed;
    Bitbucket => verify_bitbucket_signature, verify_bitbucket_signature_detailed;
    Intercom => verify_intercom_signature, verify_intercom_signature_detailed;
    Vercel => verify_vercel_signature, verify_vercel_signature_detailed;
    Typeform => verify_typeform_signature, verify_typeform_signature_detailed;
    Linear => verify_linear_signature, verify_linear_signature_detailed;
    Lemonsqueezy => verify_lemonsqueezy_signature, verify_lemonsqueezy_signature_detailed;
    Razorpay => verify_razorpay_signature, verify_razorpay_signature_detailed;
    Twitch => verify_twitch_signature, verify_twitch_signature_detailed;
    Mailgun => verify_mailgun_signature, verify_mailgun_signature_detailed;
    Resend => verify_resend_signature, verify_resend_signature_detailed;
    Meta => verify_meta_signature, verify_meta_signature_detailed;
}

per_provider! { url:
    Twilio => verify_twilio_signature, verify_twilio_signature_detailed;
    Square => verify_square_signature, verify_square_signature_detailed;
    Hubspot => verify_hubspot_signature, verify_hubspot_signature_detailed;
}
