//! Receive webhooks in axum services, correct to the byte.
//!
//! One attribute on a handler verifies the provider's signature over the exact raw bytes,
//! answers retried duplicates with the first response, hands the handler a [`Track`] to mark
//! the event processed or failed, and reports every delivery.
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use outworx_hooks::{Track, webhook};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Event { id: String, r#type: String }
//!
//! #[webhook(provider = "stripe", secret = "whsec_test", idempotency = body.id, require_processed)]
//! async fn stripe(track: Track, Json(event): Json<Event>) -> &'static str {
//!     if event.r#type == "charge.succeeded" {
//!         track.processed();
//!     }
//!     "ok"
//! }
//!
//! let app: Router = Router::new().route("/webhooks/stripe", post(stripe));
//! ```
//!
//! The building blocks are public too: [`security`] verifies signatures for every provider,
//! [`testing`] signs test deliveries, [`store`] holds idempotency keys.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Modules from the bottom up: each uses only those above it (see ARCHITECTURE.md).
mod body;
mod config;
pub mod envelope;
pub mod event;
mod layer;
mod pipeline;
mod report;
mod route;
mod runtime;
pub mod security;
pub mod store;
pub mod testing;
mod track;
mod util;
pub mod wire;

pub use config::{Config, ConfigError, DEFAULT_ENDPOINT, SecretProblem};
pub use layer::{KeyFn, OutworxHooksLayer, OutworxHooksService, TrackOptions};
pub use outworx_hooks_macros::webhook;
#[cfg(feature = "outworx-api")]
pub use report::{OnError, OutworxSink, OutworxSinkOptions, ReportError};
pub use report::{Sink, Subscription, TracingSink, subscribe};
pub use runtime::{Guard, init};
pub use store::MemoryStore;
pub use track::{Track, TrackRejection};

/// What generated code needs; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::envelope;
    pub use crate::pipeline::{IntoKey, Verified, WithState, receive};
    pub use crate::route::{IntoSecret, IpSource, KeyOrigin, Route, RouteRef, SecretSource};
    pub use crate::security::custom::{CustomVerifier, IntoVerdict, Verdict};
    pub use crate::security::{Delivery, Provider};
    pub use crate::util::BoxFuture;
    pub use std::borrow::Cow;
    pub use {axum, bytes, http, inventory, serde_json};

    /// The idempotency key (or event type) of a field value.
    pub fn key<K: IntoKey>(k: K) -> Option<String> {
        k.into_key()
    }
}
