#![doc = include_str!("../../docs/send.md")]

mod emit;
mod emitter;
mod error;
mod filter;
mod ids;
pub mod limits;
mod manage;
mod model;
mod quota;
mod shared;
pub(crate) mod store;
pub mod svix;
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
pub use quota::{Quotas, Rate};
pub use shared::{DeadLetter, DisabledEndpoint};
pub use store::{DeliveryFilter, Outbox, Scope};
pub use target::{ALLOW_TARGETS_ENV, TargetPolicy};
pub use worker::{Worker, WorkerOptions};

/// The `sqlx` this crate is built with, for [`Emitter::send_in`]'s transactions.
pub use sqlx;

#[doc(hidden)]
pub use emit::{EmitSpec, emit_around};
