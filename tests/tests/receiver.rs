//! The example receiver (`examples/receiver.rs`, mounted here as is) over real HTTP: every
//! route accepts its provider's deliveries with the natural key and the processing rule its
//! header describes. Its own binary, because it sets the secrets' environment variables.

#[allow(dead_code)]
#[path = "../../examples/receiver.rs"]
mod receiver;

use std::time::Duration;

use outworx_hooks::event::ProcessingStatus;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::{Signer, TestKeys};
use serde_json::json;

const ROUTES: [(Provider, &str, &str); 7] = [
    (Provider::Stripe, "stripe", "STRIPE_WEBHOOK_SECRET"),
    (Provider::Github, "github", "GITHUB_WEBHOOK_SECRET"),
    (Provider::Shopify, "shopify", "SHOPIFY_WEBHOOK_SECRET"),
    (Provider::Svix, "svix", "SVIX_WEBHOOK_SECRET"),
    (Provider::Clerk, "clerk", "CLERK_WEBHOOK_SECRET"),
    (Provider::Slack, "slack", "SLACK_SIGNING_SECRET"),
    (Provider::Standard, "standard", "STANDARD_WEBHOOK_SECRET"),
];

#[tokio::test]
async fn the_example_receiver_serves_all_seven_providers() {
    // Before the secrets are set, init names every route that cannot verify.
    let err = outworx_hooks::init(outworx_hooks::Config::new())
        .unwrap_err()
        .to_string();
    for (_, _, var) in ROUTES {
        assert!(err.contains(var), "{err}");
    }
    assert!(err.contains("examples/receiver.rs:"), "{err}");

    for (p, _, var) in ROUTES {
        // SAFETY: this test binary has this one test and sets the variables before it starts
        // any other thread of its own.
        unsafe { std::env::set_var(var, TestKeys::for_provider(p).verifying) };
    }
    let _guard = outworx_hooks::init(outworx_hooks::Config::new()).expect("all secrets set");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver::app()).await });
    let client = reqwest::Client::new();
    let mut events = outworx_hooks::subscribe();

    for (p, name, _) in ROUTES {
        let keys = TestKeys::for_provider(p);
        let body = json!({ "id": format!("evt_{name}"), "event_id": format!("Ev_{name}"), "type": "payment_intent.succeeded" });
        let signed = Signer::new(p, &keys.signing)
            .sign(body.to_string())
            .unwrap();
        for attempt in 0..2 {
            let r = client
                .post(format!("{base}/webhooks/{name}"))
                .headers(signed.headers.clone())
                .body(signed.body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{name}: {}", r.text().await.unwrap());
            let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(e.provider, name);
            assert_eq!(
                e.processing_status.is_some(),
                attempt == 0,
                "{name}: only the first run marks"
            );
            assert_eq!(
                e.meta("duplicate").is_some(),
                attempt == 1,
                "{name}: the retry is a duplicate"
            );
        }
    }

    // Stripe marks only payment_intent.succeeded and charge.succeeded.
    let keys = TestKeys::for_provider(Provider::Stripe);
    for (kind, expected) in [
        ("charge.succeeded", ProcessingStatus::Completed),
        ("invoice.created", ProcessingStatus::SilentDrop),
    ] {
        let body = json!({ "id": format!("evt_{kind}"), "type": kind });
        let s = Signer::new(Provider::Stripe, &keys.signing)
            .sign(body.to_string())
            .unwrap();
        let r = client
            .post(format!("{base}/webhooks/stripe"))
            .headers(s.headers)
            .body(s.body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.processing_status, Some(expected), "{kind}");
        assert_eq!(e.event_type.as_deref(), Some(kind));
    }
}
