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
mod error;
mod filter;
mod ids;
pub mod limits;
mod manage;
mod model;
mod shared;
pub(crate) mod store;
mod target;
mod worker;

pub use crate::queue::WorkerHandle;
pub use emit::{EmitContext, EmitLayer, EmitService, IntoOwner, IntoPayload};
pub use emitter::{Emitter, EmitterBuilder, OutboxTx};
pub use error::SendError;
pub use manage::{OwnerFn, management_router};
pub use model::{
    Attempt, Auth, CreatedEndpoint, Delivery, DeliveryStatus, Endpoint, EndpointHealth,
    EndpointUpdate, Format, NewEndpoint, NewMessage, Sent,
};
pub use shared::{DeadLetter, DisabledEndpoint};
pub use store::{DeliveryFilter, Outbox, Scope};
pub use target::{ALLOW_TARGETS_ENV, TargetPolicy};
pub use worker::{Worker, WorkerOptions};

/// The `sqlx` this crate is built with, for [`Emitter::send_in`]'s transactions.
pub use sqlx;

#[doc(hidden)]
pub use emit::{EmitSpec, emit_around};
