//! Every provider the SDK ships is accepted by the attribute, with its natural key where it has one.

use axum::{Router, routing::post};
use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = env("STRIPE_WEBHOOK_SECRET"), idempotency)]
async fn stripe_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "github", secret = env("GITHUB_WEBHOOK_SECRET"), idempotency)]
async fn github_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "shopify", secret = env("SHOPIFY_WEBHOOK_SECRET"), idempotency)]
async fn shopify_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "svix", secret = env("SVIX_WEBHOOK_SECRET"), idempotency)]
async fn svix_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "clerk", secret = env("CLERK_WEBHOOK_SECRET"), idempotency)]
async fn clerk_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "slack", secret = env("SLACK_WEBHOOK_SECRET"), idempotency)]
async fn slack_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "standard", secret = env("STANDARD_WEBHOOK_SECRET"), idempotency)]
async fn standard_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "paddle", secret = env("PADDLE_WEBHOOK_SECRET"), idempotency)]
async fn paddle_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "calendly", secret = env("CALENDLY_WEBHOOK_SECRET"))]
async fn calendly_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "zoom", secret = env("ZOOM_WEBHOOK_SECRET"))]
async fn zoom_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "twilio", secret = env("TWILIO_WEBHOOK_SECRET"), idempotency)]
async fn twilio_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "square", secret = env("SQUARE_WEBHOOK_SECRET"), idempotency)]
async fn square_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "hubspot", secret = env("HUBSPOT_WEBHOOK_SECRET"))]
async fn hubspot_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "discord", secret = env("DISCORD_WEBHOOK_SECRET"), idempotency)]
async fn discord_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "sendgrid", secret = env("SENDGRID_WEBHOOK_SECRET"))]
async fn sendgrid_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "gitlab", secret = env("GITLAB_WEBHOOK_SECRET"), idempotency)]
async fn gitlab_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "bitbucket", secret = env("BITBUCKET_WEBHOOK_SECRET"), idempotency)]
async fn bitbucket_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "intercom", secret = env("INTERCOM_WEBHOOK_SECRET"), idempotency)]
async fn intercom_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "vercel", secret = env("VERCEL_WEBHOOK_SECRET"), idempotency)]
async fn vercel_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "typeform", secret = env("TYPEFORM_WEBHOOK_SECRET"), idempotency)]
async fn typeform_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "linear", secret = env("LINEAR_WEBHOOK_SECRET"), idempotency)]
async fn linear_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "lemonsqueezy", secret = env("LEMONSQUEEZY_WEBHOOK_SECRET"))]
async fn lemonsqueezy_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "razorpay", secret = env("RAZORPAY_WEBHOOK_SECRET"), idempotency)]
async fn razorpay_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "twitch", secret = env("TWITCH_WEBHOOK_SECRET"), idempotency)]
async fn twitch_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "mailgun", secret = env("MAILGUN_WEBHOOK_SECRET"), idempotency)]
async fn mailgun_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "resend", secret = env("RESEND_WEBHOOK_SECRET"), idempotency)]
async fn resend_hook() -> &'static str {
    "ok"
}

#[webhook(provider = "meta", secret = env("META_WEBHOOK_SECRET"))]
async fn meta_hook() -> &'static str {
    "ok"
}

fn main() {
    let _app: Router = Router::new()
        .route("/stripe", post(stripe_hook))
        .route("/github", post(github_hook))
        .route("/shopify", post(shopify_hook))
        .route("/svix", post(svix_hook))
        .route("/clerk", post(clerk_hook))
        .route("/slack", post(slack_hook))
        .route("/standard", post(standard_hook))
        .route("/paddle", post(paddle_hook))
        .route("/calendly", post(calendly_hook))
        .route("/zoom", post(zoom_hook))
        .route("/twilio", post(twilio_hook))
        .route("/square", post(square_hook))
        .route("/hubspot", post(hubspot_hook))
        .route("/discord", post(discord_hook))
        .route("/sendgrid", post(sendgrid_hook))
        .route("/gitlab", post(gitlab_hook))
        .route("/bitbucket", post(bitbucket_hook))
        .route("/intercom", post(intercom_hook))
        .route("/vercel", post(vercel_hook))
        .route("/typeform", post(typeform_hook))
        .route("/linear", post(linear_hook))
        .route("/lemonsqueezy", post(lemonsqueezy_hook))
        .route("/razorpay", post(razorpay_hook))
        .route("/twitch", post(twitch_hook))
        .route("/mailgun", post(mailgun_hook))
        .route("/resend", post(resend_hook))
        .route("/meta", post(meta_hook));
}
