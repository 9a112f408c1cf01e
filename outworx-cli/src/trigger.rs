//! `outworx trigger`: a realistic sample event for a provider, signed and sent.

use clap::Args;
use outworx_hooks::security::Provider;
use outworx_hooks::security::catalog::Source;
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
    let Some(mut body) = template(p, kind, &id) else {
        // Twilio posts a form, and signs no event type.
        let form = format!("MessageSid=SM{id}&From=%2B15550001111&To=%2B15550002222&Body=Hello");
        headers.push(("content-type", "application/x-www-form-urlencoded".into()));
        return (form.into_bytes(), headers);
    };
    if p == Provider::Shopify {
        headers.push(("x-shopify-shop-domain", "example.myshopify.com".into()));
    }
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
fn template(p: Provider, kind: &str, id: &str) -> Option<Value> {
    Some(match p {
        Provider::Stripe => json!({
            "id": format!("evt_{id}"), "object": "event", "api_version": "2024-06-20", "created": now(),
            "data": {"object": {"id": format!("pi_{id}"), "object": "payment_intent", "amount": 2000,
                "currency": "usd", "status": "succeeded", "customer": "cus_test"}},
            "livemode": false, "pending_webhooks": 1, "request": {"id": null},
        }),
        Provider::Github => json!({
            "ref": "refs/heads/main", "before": "0".repeat(40), "after": format!("{id:0>40}"),
            "action": if kind == "push" { Value::Null } else { json!("opened") },
            "repository": {"id": 1, "full_name": "octo/hello", "private": false},
            "sender": {"login": "octocat", "id": 1},
        }),
        Provider::Gitlab => json!({
            "object_kind": kind.split(' ').next().unwrap_or("push").to_lowercase(),
            "project": {"id": 1, "path_with_namespace": "group/project"},
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
            "meta": {"event_name": kind},
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
    let secret = if args.secret == DEFAULT_SECRET && provider.signs_with_private_key() {
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
        if p.signs_with_private_key() {
            outworx_hooks::testing::TestKeys::for_provider(p).signing
        } else {
            "whsec_dGVzdA==".into()
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

    /// Every sample, signed as `trigger` signs it, goes through the SDK's own pipeline (a
    /// layer): it verifies, it is reported with the sample's event type, and where the
    /// provider has a natural key, the same delivery again is answered as a duplicate.
    #[tokio::test]
    async fn every_sample_is_received_as_the_sdk_reads_it() {
        use axum::body::Body;
        use outworx_hooks::testing::TestKeys;
        use outworx_hooks::{OutworxHooksLayer, TrackOptions};
        use tower::{Layer as _, ServiceExt as _};

        let mut events = outworx_hooks::subscribe();
        for &p in Provider::ALL {
            let keys = TestKeys::for_provider(p);
            let (signing, verifying) = if p.signs_with_private_key() {
                (keys.signing, keys.verifying)
            } else {
                (secret(p), secret(p))
            };
            for kind in event_types(p) {
                let name = format!("trigger-{p}-{kind}");
                let mut options = TrackOptions::new(p).secret(&verifying).name(&name);
                if p.has_natural_key() {
                    options = options.natural_idempotency_key();
                }
                let service = OutworxHooksLayer::new(options).layer(tower::service_fn(
                    |_req: axum::extract::Request| async {
                        Ok::<_, std::convert::Infallible>(axum::response::Response::new(
                            Body::empty(),
                        ))
                    },
                ));
                let (body, headers) = sample(p, kind, 7);
                let signed = Signer::new(p, &signing)
                    .url("https://example.com/hook")
                    .sign(body)
                    .unwrap();
                let url = signed.url.clone().unwrap_or_default();
                let uri = url.trim_start_matches("https://example.com").to_owned();
                let request = || {
                    let mut req = signed.clone().into_request(&uri).unwrap().map(Body::from);
                    for (k, v) in &headers {
                        req.headers_mut().insert(*k, v.parse().unwrap());
                    }
                    req.headers_mut()
                        .insert("host", "example.com".parse().unwrap());
                    req
                };

                let resp = service.clone().oneshot(request()).await.unwrap();
                assert_eq!(resp.status(), 200, "{p} {kind}");
                let e = next_of(&mut events, &name).await;
                assert_eq!(
                    e.signature_valid,
                    Some(true),
                    "{p} {kind}: {:?}",
                    e.signature_hint
                );
                if p.spec().event_type.is_some() {
                    assert_eq!(e.event_type.as_deref(), Some(*kind), "{p}: event type");
                }
                if p.has_natural_key() {
                    service.clone().oneshot(request()).await.unwrap();
                    let e = next_of(&mut events, &name).await;
                    assert!(
                        e.meta("duplicate").is_some(),
                        "{p} {kind}: not deduplicated"
                    );
                }
            }
        }
    }

    /// The next event of the layer named `name` (other tests' events are skipped).
    async fn next_of(
        events: &mut outworx_hooks::Subscription,
        name: &str,
    ) -> std::sync::Arc<outworx_hooks::event::DeliveryEvent> {
        loop {
            let e = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
                .await
                .expect("an event")
                .expect("the stream is open");
            if e.handler == name {
                return e;
            }
        }
    }
}
