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
//! [`webhook`] documents the attribute: its arguments, the checks the compiler makes, and the
//! steps of one delivery. The same pipeline without a macro is the [`layer`].
//!
//! The building blocks are public too:
//!
//! | module | what |
//! |---|---|
//! | [`security`] | verify a delivery from any [`Provider`], with rotation, a replay window and a reason for every failure |
//! | [`testing`] | sign deliveries like each provider, to test your own handlers |
//! | [`store`] | the idempotency stores: [`MemoryStore`], `RedisStore`, `OutworxApiStore` |
//! | [`report`] | where delivery events go: sinks, the Outworx reporter, [`subscribe`] |
//! | [`event`] | the [`DeliveryEvent`](event::DeliveryEvent) every delivery produces |
//! | [`envelope`] | the provider envelopes `body.` keys are read from |
//! | [`wire`] | the Outworx HTTP API's types, shared with `outworx-serve` and `outworx-cli` |
//! | `send` | (feature `send`) sending webhooks: `#[emit]`, `Emitter`, the outbox, the delivery worker |
//! | `inbox` | (feature `inbox`) queue-first receiving: the durable inbox behind `#[webhook(.., queue)]` and its worker |
//! | `queue` | (features `send`, `inbox`) the clock, the retry schedule and the worker handle both queues run on |
//!
//! Configure the process once with [`init`] and a [`Config`]; without it, the embedded
//! defaults apply (no network, the memory store, one `tracing` line per delivery).
//!
//! # Feature flags
//!
//! Items behind a feature say which on docs.rs.
// The feature list, rendered in the docs from Cargo.toml's comments: its macro is a docs-only
// dependency (docs.rs builds with every feature), not one every receiver compiles.
#![cfg_attr(
    feature = "document-features",
    doc = document_features::document_features!()
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

// Which module may use which is a list of allowed edges (tests/tests/sdk/architecture.rs);
// ARCHITECTURE.md says what each holds.
mod body;
mod config;
pub mod envelope;
pub mod event;
#[cfg(feature = "inbox")]
pub mod inbox;
pub mod layer;
pub mod metrics;
pub mod otel;
mod pipeline;
/// The plan of every listed query (for the plan test); not a public API.
#[cfg(any(feature = "send", feature = "inbox"))]
#[doc(hidden)]
pub mod plans;
#[cfg(any(feature = "send", feature = "inbox"))]
pub mod queue;
pub mod report;
mod route;
mod runtime;
pub mod security;
#[cfg(feature = "send")]
pub mod send;
pub mod store;
pub mod testing;
mod track;
mod util;
pub mod wire;

pub use config::{Config, ConfigError, DEFAULT_ENDPOINT, SecretProblem};
pub use layer::{KeyFn, OutworxHooksLayer, OutworxHooksService, TrackOptions};
#[doc = include_str!("../docs/webhook.md")]
pub use outworx_hooks_macros::webhook;

#[cfg(feature = "send")]
#[doc = include_str!("../docs/emit.md")]
pub use outworx_hooks_macros::emit;
#[cfg(feature = "outworx-api")]
pub use report::{OnError, OutworxSink, OutworxSinkOptions, ReportError};
pub use report::{Sink, Subscription, TracingSink, subscribe};
pub use runtime::{Guard, init};
pub use security::Provider;
pub use store::MemoryStore;
pub use track::{Track, TrackRejection};

/// What generated code needs; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::envelope;
    pub use crate::pipeline::{IntoKey, Verified, WithState, receive};
    pub use crate::route::{IntoSecret, KeyOrigin, Route, RouteRef, SecretSource};
    pub use crate::runtime::EmitRef;
    pub use crate::security::custom::{CustomVerifier, IntoVerdict, Verdict};
    pub use crate::security::{Provider, SignedRequest};
    #[cfg(feature = "send")]
    pub use crate::send::{EmitContext, EmitSpec, emit_around};
    pub use crate::util::BoxFuture;
    /// Whether the `inbox` feature is on: `#[webhook(.., queue)]` asserts it at compile time.
    pub const INBOX: bool = cfg!(feature = "inbox");
    /// Whether the `ed25519` feature is on: a Discord route asserts it at compile time.
    pub const ED25519: bool = cfg!(feature = "ed25519");
    /// Whether the `ecdsa` feature is on: a SendGrid route asserts it at compile time.
    pub const ECDSA: bool = cfg!(feature = "ecdsa");
    pub use std::borrow::Cow;
    pub use {axum, bytes, http, inventory, serde_json};

    /// The idempotency key (or event type) of a field value.
    pub fn key<K: IntoKey>(k: K) -> Option<String> {
        k.into_key()
    }
}
