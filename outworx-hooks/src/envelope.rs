//! The common top-level fields of each provider's event body, as types.
//!
//! `#[webhook(idempotency = body.id)]` on a handler without a `Json<T>` body is type-checked
//! against the provider's envelope here: a path that does not exist is a compile error.
//! Every field is optional; a missing value skips deduplication for that delivery.

use serde::Deserialize;

macro_rules! envelopes {
    ($( $(#[$doc:meta])* $name:ident { $( $(#[$fattr:meta])* $field:ident : $ty:ty ),* $(,)? } )*) => { $(
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Deserialize)]
        #[non_exhaustive]
        pub struct $name { $( $(#[$fattr])* #[serde(default)] #[allow(missing_docs)] pub $field: $ty, )* }
    )* };
}

envelopes! {
    /// Stripe `Event`.
    Stripe { id: Option<String>, r#type: Option<String>, api_version: Option<String>, created: Option<i64>, livemode: Option<bool> }
    /// Slack Events API outer event.
    Slack { event_id: Option<String>, r#type: Option<String>, team_id: Option<String>, api_app_id: Option<String>, event_time: Option<i64> }
    /// Standard Webhooks / Svix / Clerk / Resend payloads.
    Standard { r#type: Option<String>, timestamp: Option<String> }
    /// Paddle Billing notification.
    Paddle { event_id: Option<String>, event_type: Option<String>, notification_id: Option<String>, occurred_at: Option<String> }
    /// Square notification.
    Square { event_id: Option<String>, r#type: Option<String>, merchant_id: Option<String>, created_at: Option<String> }
    /// Discord interaction.
    Discord { id: Option<String>, r#type: Option<u8>, application_id: Option<String> }
    /// Intercom notification.
    Intercom { id: Option<String>, topic: Option<String>, app_id: Option<String> }
    /// Vercel webhook.
    Vercel { id: Option<String>, r#type: Option<String>, created_at: Option<i64> }
    /// Typeform webhook.
    Typeform { event_id: Option<String>, event_type: Option<String> }
    /// Razorpay webhook.
    Razorpay { event: Option<String>, account_id: Option<String>, created_at: Option<i64> }
    /// Mailgun event webhook (`event-data`).
    Mailgun { #[serde(rename = "event-data")] event_data: Option<MailgunEventData> }
    /// Mailgun `event-data`.
    MailgunEventData { id: Option<String>, event: Option<String>, timestamp: Option<f64> }
    /// Zoom event notification.
    Zoom { event: Option<String>, event_ts: Option<i64> }
    /// Calendly webhook.
    Calendly { event: Option<String>, created_at: Option<String> }
    /// Meta (Graph API) webhook.
    Meta { object: Option<String> }
    /// Linear webhook.
    Linear { action: Option<String>, r#type: Option<String>, #[serde(rename = "webhookId")] webhook_id: Option<String>, #[serde(rename = "webhookTimestamp")] webhook_timestamp: Option<i64> }
}
