//! `outworx trigger`: a realistic sample event for a provider, signed and sent.

use clap::Args;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use serde_json::{Value, json};

#[derive(Args)]
pub(crate) struct TriggerArgs {
    /// Provider name (stripe, github, shopify, slack, ...).
    provider: String,
    /// Event type (default: the provider's first sample; `--list` shows them).
    event_type: Option<String>,
    /// The receiving URL.
    #[arg(long, required_unless_present_any = ["print", "list"])]
    to: Option<String>,
    /// The signing secret (a test key pair is used for Ed25519/ECDSA providers when absent).
    #[arg(long, default_value = DEFAULT_SECRET)]
    secret: String,
    /// Print the signed headers and body instead of sending.
    #[arg(long)]
    print: bool,
    /// List the sample event types of the provider.
    #[arg(long)]
    list: bool,
}

const DEFAULT_SECRET: &str = "whsec_outworx_trigger_secret";

fn say_stderr(s: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{s}");
}

/// The sample event types per provider; the first is the default.
pub(crate) fn event_types(p: Provider) -> &'static [&'static str] {
    match p {
        Provider::Stripe => &[
            "payment_intent.succeeded",
            "charge.succeeded",
            "customer.subscription.created",
            "invoice.payment_failed",
        ],
        Provider::Github => &["push", "pull_request", "issues", "ping"],
        Provider::Gitlab => &["Push Hook", "Merge Request Hook"],
        Provider::Shopify => &["orders/create", "orders/paid", "products/update"],
        Provider::Slack => &["app_mention", "message"],
        Provider::Twilio => &["message.received"],
        Provider::Paddle => &["transaction.completed", "subscription.created"],
        Provider::Lemonsqueezy => &["order_created", "subscription_created"],
        Provider::Razorpay => &["payment.captured", "order.paid"],
        Provider::Zoom => &["meeting.started", "meeting.ended"],
        Provider::Calendly => &["invitee.created", "invitee.canceled"],
        Provider::Linear => &["Issue", "Comment"],
        Provider::Bitbucket => &["repo:push", "pullrequest:created"],
        _ => &["event.created", "event.updated"],
    }
}

/// A sample body for `p` and `kind`, with the headers that carry the event type.
pub(crate) fn sample(p: Provider, kind: &str, n: u64) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let id = format!("{n:016x}");
    let json = |v: Value| v.to_string().into_bytes();
    match p {
        Provider::Stripe => (
            json(json!({
                "id": format!("evt_{id}"), "object": "event", "api_version": "2024-06-20", "created": now(),
                "data": {"object": {"id": format!("pi_{id}"), "object": "payment_intent", "amount": 2000,
                    "currency": "usd", "status": "succeeded", "customer": "cus_test"}},
                "livemode": false, "pending_webhooks": 1, "request": {"id": null}, "type": kind,
            })),
            vec![],
        ),
        Provider::Github => (
            json(json!({
                "ref": "refs/heads/main", "before": "0".repeat(40), "after": format!("{id:0>40}"),
                "action": if kind == "push" { Value::Null } else { json!("opened") },
                "repository": {"id": 1, "full_name": "octo/hello", "private": false},
                "sender": {"login": "octocat", "id": 1},
            })),
            vec![
                ("x-github-event", kind.into()),
                (
                    "x-github-delivery",
                    format!("{id:0>8}-0000-4000-8000-000000000000"),
                ),
            ],
        ),
        Provider::Gitlab => (
            json(json!({
                "object_kind": kind.split(' ').next().unwrap_or("push").to_lowercase(),
                "project": {"id": 1, "path_with_namespace": "group/project"}, "user_name": "Ada",
            })),
            vec![
                ("x-gitlab-event", kind.into()),
                ("x-gitlab-event-uuid", format!("{id}-uuid")),
            ],
        ),
        Provider::Shopify => (
            json(json!({
                "id": n, "email": "buyer@example.com", "total_price": "20.00", "currency": "USD",
                "line_items": [{"title": "T-shirt", "quantity": 1, "price": "20.00"}],
            })),
            vec![
                ("x-shopify-topic", kind.into()),
                ("x-shopify-webhook-id", id.clone()),
                ("x-shopify-shop-domain", "example.myshopify.com".into()),
            ],
        ),
        Provider::Slack => (
            json(json!({
                "type": "event_callback", "event_id": format!("Ev{id}"), "team_id": "T000",
                "event": {"type": kind, "user": "U000", "text": "hello", "channel": "C000"},
            })),
            vec![],
        ),
        Provider::Twilio => (
            format!("MessageSid=SM{id}&From=%2B15550001111&To=%2B15550002222&Body=Hello")
                .into_bytes(),
            vec![("content-type", "application/x-www-form-urlencoded".into())],
        ),
        Provider::Paddle | Provider::Typeform => (
            json(json!({
                "event_id": format!("evt_{id}"), "event_type": kind, "occurred_at": now_rfc3339(),
                "data": {"id": format!("txn_{id}"), "status": "completed"},
            })),
            vec![],
        ),
        Provider::Lemonsqueezy => (
            json(json!({
                "meta": {"event_name": kind}, "data": {"id": id, "type": "orders", "attributes": {"total": 2000}},
            })),
            vec![("x-event-name", kind.into())],
        ),
        Provider::Razorpay | Provider::Zoom | Provider::Calendly => (
            json(json!({
                "event": kind, "created_at": now(), "payload": {"id": id, "status": "ok"},
            })),
            vec![],
        ),
        Provider::Intercom => (
            json(json!({
                "type": "notification_event", "id": format!("notif_{id}"), "topic": kind, "data": {"item": {}},
            })),
            vec![],
        ),
        _ => (
            json(json!({
                "id": format!("evt_{id}"), "type": kind, "created_at": now_rfc3339(),
                "data": {"object": {"id": format!("obj_{id}")}},
            })),
            vec![],
        ),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) async fn run(args: TriggerArgs) -> Result<(), String> {
    let provider: Provider = args
        .provider
        .parse()
        .map_err(|e: outworx_hooks::security::UnknownProvider| e.to_string())?;
    let types = event_types(provider);
    if args.list {
        for t in types {
            println!("{t}");
        }
        return Ok(());
    }
    let kind = args.event_type.as_deref().unwrap_or(types[0]);
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let (body, headers) = sample(provider, kind, n);
    let url = args
        .to
        .clone()
        .unwrap_or_else(|| "http://localhost:3000/webhook".into());
    // Ed25519 / ECDSA providers sign with a private key: without one, a test pair (printed).
    let secret = if args.secret == DEFAULT_SECRET
        && matches!(provider, Provider::Discord | Provider::Sendgrid)
    {
        let keys = outworx_hooks::testing::TestKeys::for_provider(provider);
        say_stderr(&format!(
            "using a test key pair; verify with the public key {}",
            keys.verifying
        ));
        keys.signing
    } else {
        args.secret.clone()
    };
    let signed = Signer::new(provider, secret)
        .url(url.clone())
        .sign(body)
        .map_err(|e| e.to_string())?;
    let url = signed.url.clone().unwrap_or(url);
    if args.print {
        println!("{} {url}", signed.method);
        for (k, v) in &signed.headers {
            println!("{k}: {}", v.to_str().unwrap_or("<binary>"));
        }
        for (k, v) in &headers {
            println!("{k}: {v}");
        }
        println!("\n{}", String::from_utf8_lossy(&signed.body));
        return Ok(());
    }
    let mut req = reqwest::Client::new().request(signed.method.clone(), &url);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    if !signed.headers.contains_key(http::header::CONTENT_TYPE) {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = req
        .body(signed.body)
        .send()
        .await
        .map_err(|e| format!("cannot send to {url}: {}", e.without_url()))?;
    println!("{} {} → {}", provider.name(), kind, res.status());
    let text = res.text().await.unwrap_or_default();
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_a_signable_sample() {
        for p in Provider::ALL {
            for kind in event_types(*p) {
                let (body, _) = sample(*p, kind, 1);
                let secret = match p {
                    Provider::Discord | Provider::Sendgrid => {
                        outworx_hooks::testing::TestKeys::for_provider(*p).signing
                    }
                    _ => "whsec_dGVzdA==".into(),
                };
                Signer::new(*p, secret)
                    .url("https://example.com/hook")
                    .sign(body)
                    .unwrap_or_else(|e| panic!("{p:?} {kind}: {e}"));
            }
        }
    }
}
