//! App-wide configuration: a tower layer in front of routes, over the same pipeline as
//! `#[webhook]`.
//!
//! ```
//! use axum::{Router, routing::post};
//! use outworx_hooks::{OutworxHooksLayer, Track, TrackOptions};
//! use outworx_hooks::security::Provider;
//!
//! async fn stripe(track: Track, body: String) -> &'static str {
//!     track.processed();
//!     "ok"
//! }
//!
//! let layer = OutworxHooksLayer::new(
//!     TrackOptions::new(Provider::Stripe).secret("whsec_test").natural_idempotency_key(),
//! );
//! let app: Router = Router::new().route("/webhooks/stripe", post(stripe).layer(layer));
//! ```

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
/// Layers are built once at start; each keeps its configuration for the life of the process.
#[derive(Clone, Debug)]
pub struct OutworxHooksLayer {
    pub(crate) route: &'static crate::route::Route,
    pub(crate) options: std::sync::Arc<TrackOptions>,
}

impl OutworxHooksLayer {
    /// A layer with these options. A secret that is missing or unusable answers 500 (never 401)
    /// until it is fixed; [`OutworxHooksLayer::check`] finds it at start.
    pub fn new(options: TrackOptions) -> Self {
        OutworxHooksLayer {
            route: options.route(),
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
