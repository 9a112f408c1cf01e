//! A secret never shows in `Debug`: every public type that holds one (the layer, its service
//! and options, the route behind them once its secrets are resolved, the configuration, the
//! stores, the sink's options, the signer and the verifier) is printed with a sentinel secret
//! and searched.

use outworx_hooks::security::{Provider, Verifier};
use outworx_hooks::store::OutworxApiStore;
use outworx_hooks::testing::Signer;
use outworx_hooks::{Config, OutworxHooksLayer, OutworxSinkOptions, TrackOptions};
use tower::Layer as _;

const SENTINEL: &str = "SENTINEL5ec7e7";
const API_KEY: &str = "ohk_5e0e5e0e5e0e5e0e5e0e5e0e5e0e5e0e";

fn assert_clean(what: &str, text: String) {
    assert!(!text.contains(SENTINEL), "{what} prints the secret: {text}");
    assert!(
        !text.contains(&API_KEY[4..]),
        "{what} prints the API key: {text}"
    );
}

#[test]
fn no_secret_in_any_debug() {
    let options = TrackOptions::new(Provider::Github)
        .secret(SENTINEL)
        .secret(format!("old-{SENTINEL}"));
    assert_clean("TrackOptions", format!("{options:?}"));
    let layer = OutworxHooksLayer::new(options);
    layer.check().unwrap(); // resolved: the parsed keys are held now
    assert_clean("OutworxHooksLayer", format!("{layer:?} {layer:#?}"));
    let service = layer.layer(tower::service_fn(|_: axum::extract::Request| async {
        Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::empty()))
    }));
    assert_clean("OutworxHooksService", format!("{service:?}"));

    let config = Config::new()
        .api_key(API_KEY)
        .store(OutworxApiStore::new("http://127.0.0.1:1", API_KEY));
    assert_clean("Config", format!("{config:?}"));
    assert_clean(
        "OutworxApiStore",
        format!("{:?}", OutworxApiStore::new("http://127.0.0.1:1", API_KEY)),
    );
    assert_clean(
        "OutworxSinkOptions",
        format!(
            "{:?}",
            OutworxSinkOptions::new("http://127.0.0.1:1", API_KEY)
        ),
    );
    assert_clean(
        "Signer",
        format!("{:?}", Signer::new(Provider::Github, SENTINEL)),
    );
    assert_clean(
        "Verifier",
        format!(
            "{:?}",
            Verifier::new(Provider::Github, &[SENTINEL]).unwrap()
        ),
    );
}
