//! Who may deliver, and which URL is verified: `allow_ips` over real loopback sources
//! (127.0.0.1, 127.0.0.2 and ::1), `X-Forwarded-For` believed only from trusted proxies, and
//! the public URL of URL-signing providers from a trusted proxy or `Config::public_url`.
//!
//! Its own test binary: it installs process-wide configurations one after another.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use futures_util::StreamExt as _;
use outworx_hooks::event::DeliveryEvent;
use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Config, webhook};

#[webhook(provider = "github", secret = "gh_proxies", allow_ips = ["127.0.0.2/32", "::1"])]
async fn listed(body: Bytes) -> String {
    format!("{} bytes", body.len())
}

#[webhook(provider = "github", secret = "gh_proxies", allow_ips = env("OUTWORX_TEST_ALLOW_IPS"))]
async fn from_env(body: Bytes) -> String {
    format!("{} bytes", body.len())
}

#[webhook(provider = "twilio", secret = "twilio_proxies")]
async fn twilio(body: Bytes) -> String {
    format!("{} bytes", body.len())
}

fn app() -> Router {
    Router::new()
        .route("/listed", post(listed))
        .route("/env", post(from_env))
        .route("/twilio", post(twilio))
}

/// Serves `app()` with the peer address on `addr` (port 0: any).
async fn serve(addr: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    port
}

/// A client whose connections come from `source`.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    signed: &outworx_hooks::testing::Signed,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut req = client
        .post(url)
        .headers(signed.headers.clone())
        .body(signed.body.clone());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn next_event(sub: &mut outworx_hooks::Subscription) -> Arc<DeliveryEvent> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_proxies_and_public_urls() {
    // SAFETY: set before any route reads it (`env` allow lists are read once), in the one
    // test of this binary.
    unsafe { std::env::set_var("OUTWORX_TEST_ALLOW_IPS", "10.9.9.9, 127.0.0.2") };
    let v4 = serve("127.0.0.1:0").await;
    let v6 = serve("[::1]:0").await;
    let gh = Signer::new(Provider::Github, "gh_proxies")
        .sign("{}")
        .unwrap();
    let (one, two, six) = (
        client_from("127.0.0.1"),
        client_from("127.0.0.2"),
        client_from("::1"),
    );
    let listed4 = format!("http://127.0.0.1:{v4}/listed");
    let mut sub = outworx_hooks::subscribe();

    // allow_ips, by the connection's own address.
    let (status, body) = send(&one, &listed4, &gh, &[]).await;
    assert_eq!((status, body.as_str()), (403, "forbidden"));
    let e = next_event(&mut sub).await;
    assert_eq!(e.status_code, 403);
    let why = e.error_message.as_deref().unwrap();
    assert!(
        why.contains("127.0.0.1") && why.contains("allow_ips"),
        "{why}"
    );
    assert_eq!(e.payload_size, 0, "refused before the body was read");
    assert_eq!(send(&two, &listed4, &gh, &[]).await.0, 200);
    let (status, _) = send(&six, &format!("http://[::1]:{v6}/listed"), &gh, &[]).await;
    assert_eq!(status, 200, "::1 is listed");
    let env4 = format!("http://127.0.0.1:{v4}/env");
    assert_eq!(send(&two, &env4, &gh, &[]).await.0, 200);
    assert_eq!(send(&one, &env4, &gh, &[]).await.0, 403);

    // A forwarding header from a peer that is not a trusted proxy changes nothing.
    let spoof = [("x-forwarded-for", "127.0.0.2")];
    assert_eq!(send(&one, &listed4, &gh, &spoof).await.0, 403);

    // Behind a trusted proxy (here 127.0.0.1), the forwarded client is the source.
    let config = Config::new().trusted_proxies(["127.0.0.1/32"]);
    let _guard = outworx_hooks::init(config).unwrap();
    assert_eq!(send(&one, &listed4, &gh, &spoof).await.0, 200);
    let other = [("x-forwarded-for", "127.0.0.2, 198.51.100.7")];
    assert_eq!(
        send(&one, &listed4, &gh, &other).await.0,
        403,
        "the right-most untrusted entry is the client"
    );
    let garbage = [("x-forwarded-for", "not-an-address")];
    assert_eq!(send(&one, &listed4, &gh, &garbage).await.0, 403);

    // URL signing: a trusted proxy's X-Forwarded-Host/-Proto name the public URL...
    let form = "From=%2B15551234567&Body=hi";
    let public = Signer::new(Provider::Twilio, "twilio_proxies")
        .url("https://hooks.example.com/twilio")
        .sign(form)
        .unwrap();
    let fwd = [
        ("x-forwarded-host", "hooks.example.com"),
        ("x-forwarded-proto", "https"),
    ];
    let twilio4 = format!("http://127.0.0.1:{v4}/twilio");
    assert_eq!(send(&one, &twilio4, &public, &fwd).await.0, 200);
    // ...and anyone else's are ignored.
    assert_eq!(send(&two, &twilio4, &public, &fwd).await.0, 401);

    // A configured public URL wins, whoever connects.
    let config = Config::new().public_url("https://hooks.example.com/");
    let _guard = outworx_hooks::init(config).unwrap();
    assert_eq!(send(&two, &twilio4, &public, &[]).await.0, 200);

    // Served without the peer address, an `allow_ips` route cannot check it: a configuration
    // fault, answered 500 (the provider retries once it is fixed), never let through.
    use tower::ServiceExt as _;
    let req = Signer::new(Provider::Github, "gh_proxies")
        .request("/listed", "{}")
        .unwrap()
        .map(axum::body::Body::from);
    let resp = app().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 500);
    let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("misconfigured")
    );
}
