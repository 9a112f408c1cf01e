//! Sending webhooks: `#[emit]`, [`Emitter::send`] and [`Emitter::send_in`] (inside the
//! caller's own transaction), a durable [`Outbox`], and a [`Worker`] that delivers, retries,
//! gives up (`dead`), and replays.
//!
//! A message is committed to the outbox before anything is sent, together with one delivery
//! per subscribed endpoint. Workers (one in process by default, or `outworx worker`, as many
//! as you like on PostgreSQL) lease due deliveries, sign them, post them, record every
//! attempt, and schedule the next one. Nothing lives only in memory: a worker killed
//! mid-attempt leaves a lease that expires, and the delivery is tried again.
//!
//! ```no_run
//! use outworx_hooks::send::{Emitter, NewEndpoint, Outbox};
//!
//! # async fn run() -> Result<(), outworx_hooks::send::SendError> {
//! let emitter = Emitter::builder(Outbox::open("outbox.db").await?).build();
//! let created = emitter
//!     .create_endpoint(NewEndpoint::new("https://customer.example/hooks").event("order.*"))
//!     .await?;
//! println!("give the customer this secret once: {}", created.secret);
//! emitter.send("order.created", &serde_json::json!({"id": 42})).await?;
//! # Ok(()) }
//! ```
//!
//! Messages follow [Standard Webhooks](https://www.standardwebhooks.com/) (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`), which `#[webhook(provider = "standard")]`
//! verifies; an endpoint can ask for the `fastapihooks` format instead ([`Format`]).

mod emit;
mod emitter;
mod filter;
mod ids;
mod manage;
mod model;
pub(crate) mod store;
mod target;
mod worker;

pub use emit::{EmitContext, EmitLayer, EmitService, IntoOwner, IntoPayload, MAX_KEPT_REQUEST};
pub use emitter::{DeadLetter, DisabledEndpoint, Emitter, EmitterBuilder, OutboxTx};
pub use manage::{OwnerFn, management_router};
pub use model::{
    Attempt, Auth, CreatedEndpoint, Delivery, DeliveryStatus, Endpoint, EndpointHealth,
    EndpointUpdate, Format, MAX_ENDPOINTS_PER_OWNER, MAX_EVENT_TYPE_LEN, MAX_METADATA_BYTES,
    MAX_PATTERNS, MAX_TEXT_LEN, MAX_URL_LEN, NewEndpoint, NewMessage, RESPONSE_SNIPPET_BYTES, Sent,
};
pub use store::{DeliveryFilter, MAX_LIST, Outbox, Scope};
pub use target::{ALLOW_TARGETS_ENV, TargetPolicy};
pub use worker::{Worker, WorkerHandle, WorkerOptions};

/// The `sqlx` this crate is built with, for [`Emitter::send_in`]'s transactions.
pub use sqlx;

/// The message size limit by default: 256 KiB of payload.
pub const DEFAULT_MAX_PAYLOAD: usize = 256 * 1024;

#[doc(hidden)]
pub use emit::{EmitSpec, emit_around};

/// Why a send, an endpoint change or a query failed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A value was refused before anything was stored.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why, and what is accepted.
        reason: String,
    },
    /// The payload is over the emitter's limit.
    #[error("the payload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit ([`EmitterBuilder::max_payload`]).
        limit: usize,
    },
    /// The target address is not allowed ([`TargetPolicy`]).
    #[error("target refused: {0}")]
    Target(String),
    /// The outbox's database failed; nothing was committed.
    #[error("outbox: {0}")]
    Store(String),
    /// The outbox's database did not answer in time
    /// ([`EmitterBuilder::commit_timeout`]); the message may still be committed and sent.
    #[error("outbox: the database did not answer within {} ms", .0.as_millis())]
    Timeout(std::time::Duration),
    /// No such endpoint or message for this owner.
    #[error("not found")]
    NotFound,
    /// The system gave no randomness for an id or a secret.
    #[error("the system has no randomness to give for an id or a secret")]
    Randomness,
    /// `#[emit]` ran with no emitter: neither `Emitter::install` nor an `Extension<Emitter>`.
    #[error(
        "no Emitter: call `emitter.install()` at start, or add `Extension(emitter)` to the router"
    )]
    NoEmitter,
}

impl SendError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        SendError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Whether the caller's input was at fault (a 4xx), rather than the outbox (a 5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SendError::Invalid { .. }
                | SendError::TooLarge { .. }
                | SendError::Target(_)
                | SendError::NotFound
        )
    }
}
