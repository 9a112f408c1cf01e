//! App-wide configuration at run time: a tower layer in front of routes, over the same
//! pipeline as `#[webhook]`, for services that prefer no macro or build routes dynamically.
//!
//! ```
//! use axum::{Router, routing::post};
//! use outworx_hooks::{OutworxHooksLayer, Provider, Track, TrackOptions};
//!
//! async fn stripe(track: Track, body: String) -> &'static str {
//!     let _ = body;
//!     track.processed();
//!     "ok"
//! }
//!
//! let layer = OutworxHooksLayer::new(
//!     TrackOptions::new(Provider::Stripe)
//!         .secret_env("STRIPE_WEBHOOK_SECRET")
//!         .secret("whsec_old")                          // rotation: any may match
//!         .idempotency_key(|_parts, body, _headers| body?["id"].as_str().map(str::to_owned))
//!         .event_type_field("type")
//!         .require_processed(true),
//! );
//! // layer.check()?: are the secrets readable and usable? Call it at start.
//! let app: Router = Router::new().route("/webhooks/stripe", post(stripe).layer(layer));
//! ```
//!
//! Handlers under it are ordinary axum handlers that take [`Track`](crate::Track) exactly as
//! under the attribute (`cargo run --example layer`: one app, three providers, a layer per
//! route). [`TrackOptions`] carries every option of the attribute, named as the attribute
//! names them (and, as aliases, as the Python package's `TrackOptions` does), plus what only
//! run time can give: an idempotency-key closure (over the request parts, the parsed JSON body
//! if any, and the headers; `None` skips), and a custom verifier closure, sync
//! ([`TrackOptions::verifier`]) or async ([`TrackOptions::verifier_async`]).
//!
//! A layer's keys are namespaced by its name and the path it guards (axum's matched path), so
//! two layers on two endpoints never answer each other's deliveries. It works on a `Router`
//! (`.layer`), on one route (`post(h).layer`), or around any tower `Service` taking
//! `http::Request`. A handler that asks for `Track` outside any layer or attribute gets a
//! clear 500 and a log line saying why.
//!
//! There is no second pipeline: the layer builds a route description when it is created and
//! calls the same receive and finish steps as the attribute (`tests/tests/layer.rs` runs the
//! attribute's delivery scenarios through the layer).

mod options;
mod service;

use tower::Layer;

pub use options::{KeyFn, TrackOptions};
pub use service::OutworxHooksService;

/// A tower layer that verifies, deduplicates and reports every request it sees, and gives the
/// handlers under it a [`crate::Track`], exactly as `#[webhook]` does.
///
/// Use it on an axum `Router` (`.layer(..)` or `.route_layer(..)`), on one route
/// (`post(handler).layer(..)`), or around any tower `Service` taking `http::Request`.
/// A layer owns its configuration; its clones (one per service it wraps) share it.
#[derive(Clone, Debug)]
pub struct OutworxHooksLayer {
    pub(crate) route: std::sync::Arc<crate::route::Route>,
    pub(crate) options: std::sync::Arc<TrackOptions>,
}

impl OutworxHooksLayer {
    /// A layer with these options. A secret that is missing or unusable answers 500 (never 401)
    /// until it is fixed; [`OutworxHooksLayer::check`] finds it at start.
    pub fn new(options: TrackOptions) -> Self {
        OutworxHooksLayer {
            route: std::sync::Arc::new(options.route()),
            options: std::sync::Arc::new(options),
        }
    }

    /// Checks now that the secrets can be read and used, so a bad configuration fails at start.
    pub fn check(&self) -> Result<(), String> {
        self.route.check()
    }
}

impl<S> Layer<S> for OutworxHooksLayer {
    type Service = OutworxHooksService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OutworxHooksService {
            inner,
            layer: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::security::Provider;
    use crate::testing::Signer;

    #[tokio::test]
    async fn a_layer_owns_its_route_and_frees_it_with_its_last_clone() {
        let layer = OutworxHooksLayer::new(
            TrackOptions::new(Provider::Stripe)
                .secret("whsec_test")
                .metadata("team", "billing"),
        );
        let route = Arc::downgrade(&layer.route);
        let service = layer.layer(tower::service_fn(|_req: axum::extract::Request| async {
            Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::empty()))
        }));
        drop(layer);
        let body = br#"{"id":"evt_1","type":"x"}"#;
        let signed = Signer::new(Provider::Stripe, "whsec_test")
            .sign(body)
            .unwrap();
        let mut req = http::Request::post("/hook")
            .body(Body::from(&body[..]))
            .unwrap();
        *req.headers_mut() = signed.headers;
        let resp = service.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            route.upgrade().is_none(),
            "nothing keeps the route once the service is gone"
        );
    }
}
