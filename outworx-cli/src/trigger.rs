//! `outworx trigger`: a realistic sample event for a provider, signed and sent.

use clap::Args;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks_providers::Source;
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

/// The sample event types per provider, the first the default: values of the field or
/// header the catalog reads the provider's event type from.
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
        // Slack's event type is the envelope's: the inner event is an `app_mention`.
        Provider::Slack => &["event_callback"],
        Provider::Twilio => &["message.received"],
        Provider::Paddle => &["transaction.completed", "subscription.created"],
        Provider::Lemonsqueezy => &["order_created", "subscription_created"],
        Provider::Razorpay => &["payment.captured", "order.paid"],
        Provider::Zoom => &["meeting.started", "meeting.ended"],
        Provider::Calendly => &["invitee.created", "invitee.canceled"],
        Provider::Linear => &["Issue", "Comment"],
        Provider::Bitbucket => &["repo:push", "pullrequest:created"],
        Provider::Mailgun => &["delivered", "opened", "failed"],
        Provider::Meta => &["page", "instagram", "whatsapp_business_account"],
        _ => &["event.created", "event.updated"],
    }
}

/// A sample body for `p` and `kind`, with the headers that carry the event type. The event
/// type and a body-borne delivery id go where the provider catalog says the provider sends
/// them (the signer adds the id headers); the templates give the rest of a realistic body.
pub(crate) fn sample(p: Provider, kind: &str, n: u64) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let id = format!("{n:016x}");
    let mut headers = Vec::new();
    let Some(mut body) = template(p, &id) else {
        // Twilio posts a form, and signs no event type.
        let form = format!("MessageSid=SM{id}&From=%2B15550001111&To=%2B15550002222&Body=Hello");
        headers.push(("content-type", "application/x-www-form-urlencoded".into()));
        return (form.into_bytes(), headers);
    };
    let spec = p.spec();
    match spec.event_type {
        Some(Source::Header(name)) => headers.push((name, kind.to_owned())),
        Some(Source::Body(path)) => set(&mut body, path, json!(kind), true),
        None => {}
    }
    if let Some(Source::Body(path)) = spec.natural_key {
        set(&mut body, path, json!(format!("evt_{id}")), false);
    }
    (body.to_string().into_bytes(), headers)
}

/// Sets the field at `path` (making the objects on the way), replacing a value already there
/// only when `replace`.
fn set(body: &mut Value, path: &[&str], value: Value, replace: bool) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = body;
    for key in parents {
        let Some(object) = at.as_object_mut() else {
            return;
        };
        at = object.entry(*key).or_insert_with(|| json!({}));
    }
    if let Some(object) = at.as_object_mut()
        && (replace || !object.contains_key(*last))
    {
        object.insert((*last).to_owned(), value);
    }
}

/// The realistic part of each provider's body; `None` for a form body.
fn template(p: Provider, id: &str) -> Option<Value> {
    Some(match p {
        Provider::Stripe => json!({
            "id": format!("evt_{id}"), "object": "event", "api_version": "2024-06-20", "created": now(),
            "data": {"object": {"id": format!("pi_{id}"), "object": "payment_intent", "amount": 2000,
                "currency": "usd", "status": "succeeded", "customer": "cus_test"}},
            "livemode": false, "pending_webhooks": 1, "request": {"id": null},
        }),
        Provider::Github => json!({
            "ref": "refs/heads/main", "before": "0".repeat(40), "after": format!("{id:0>40}"),
            "repository": {"id": 1, "full_name": "octo/hello", "private": false},
            "sender": {"login": "octocat", "id": 1},
        }),
        Provider::Gitlab => json!({
            "object_kind": "push", "project": {"id": 1, "path_with_namespace": "group/project"},
            "user_name": "Ada",
        }),
        Provider::Shopify => json!({
            "id": u64::from_str_radix(id, 16).unwrap_or(1), "email": "buyer@example.com",
            "total_price": "20.00", "currency": "USD",
            "line_items": [{"title": "T-shirt", "quantity": 1, "price": "20.00"}],
        }),
        Provider::Slack => json!({
            "event_id": format!("Ev{id}"), "team_id": "T000",
            "event": {"type": "app_mention", "user": "U000", "text": "hello", "channel": "C000"},
        }),
        Provider::Twilio => return None,
        Provider::Paddle | Provider::Typeform => json!({
            "event_id": format!("evt_{id}"), "occurred_at": now_rfc3339(),
            "data": {"id": format!("txn_{id}"), "status": "completed"},
        }),
        Provider::Lemonsqueezy => json!({
            "meta": {"event_name": "order_created"},
            "data": {"id": id, "type": "orders", "attributes": {"total": 2000}},
        }),
        Provider::Razorpay | Provider::Zoom | Provider::Calendly => json!({
            "created_at": now(), "payload": {"id": id, "status": "ok"},
        }),
        Provider::Intercom => json!({
            "type": "notification_event", "id": format!("notif_{id}"), "data": {"item": {}},
        }),
        Provider::Meta => json!({
            "entry": [{"id": id, "time": now(), "changes": [{"field": "feed", "value": {}}]}],
        }),
        _ => json!({
            "id": format!("evt_{id}"), "created_at": now_rfc3339(),
            "data": {"object": {"id": format!("obj_{id}")}},
        }),
    })
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

    fn secret(p: Provider) -> String {
        match p {
            Provider::Discord | Provider::Sendgrid => {
                outworx_hooks::testing::TestKeys::for_provider(p).signing
            }
            _ => "whsec_dGVzdA==".into(),
        }
    }

    #[test]
    fn every_provider_has_a_signable_sample() {
        for p in Provider::ALL {
            for kind in event_types(*p) {
                let (body, _) = sample(*p, kind, 1);
                Signer::new(*p, secret(*p))
                    .url("https://example.com/hook")
                    .sign(body)
                    .unwrap_or_else(|e| panic!("{p:?} {kind}: {e}"));
            }
        }
    }

    /// The receiving SDK reads the event type and the delivery id where the catalog says: a
    /// sample that put them elsewhere would be reported without them.
    #[test]
    fn samples_carry_the_event_type_and_id_where_the_catalog_reads_them() {
        for p in Provider::ALL {
            let spec = p.spec();
            for kind in event_types(*p) {
                let (body, headers) = sample(*p, kind, 7);
                let signed = Signer::new(*p, secret(*p))
                    .url("https://example.com/hook")
                    .sign(body)
                    .unwrap();
                let json: Option<Value> = serde_json::from_slice(&signed.body).ok();
                let read = |source: Source| -> Option<String> {
                    match source {
                        Source::Header(name) => headers
                            .iter()
                            .find(|(h, _)| *h == name)
                            .map(|(_, v)| v.clone())
                            .or_else(|| {
                                let v = signed.headers.get(name)?.to_str().ok()?;
                                Some(v.to_owned())
                            }),
                        Source::Body(path) => {
                            let mut at = json.as_ref()?;
                            for key in path {
                                at = at.get(key)?;
                            }
                            at.as_str().map(str::to_owned)
                        }
                    }
                };
                if let Some(source) = spec.event_type {
                    assert_eq!(
                        read(source).as_deref(),
                        Some(*kind),
                        "{p} {kind}: event type"
                    );
                }
                if let Some(source) = spec.natural_key {
                    assert!(
                        read(source).is_some(),
                        "{p} {kind}: no delivery id at {source:?}"
                    );
                }
            }
        }
    }
}
