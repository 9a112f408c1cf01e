//! The durable-queue engine of `outworx-hooks`: what sending (the outbox) and queue-first
//! receiving (the inbox) both run on, written once.
//!
//! | piece | what |
//! |---|---|
//! | [`Pool`], [`on_pool!`] | where a queue lives (SQLite or PostgreSQL), its migrations, and the one macro that runs a query module's code on either driver |
//! | [`sql`] | the claim (with its lease; the reaper), bury, release and finish queries, for any [`QueueTable`] |
//! | [`Clock`], [`RetrySchedule`] | the time a queue runs on, and when a failed job is tried again |
//! | [`GroupCommit`], [`WriteGate`] | group commit of the writes a client waits for (receipts, sends), and the order in which they and a worker's writes take SQLite's one writer |
//! | [`Runner`], [`Queue`] | the worker loop: claims, concurrency and per-key caps, batched recording, backoff, shutdown ([`WorkerHandle`]), gauge sampling and the purge of finished jobs ([`Retention`]) |
//!
//! A queue implements [`Queue`]: how it claims (with [`sql`]), runs and settles its jobs.
//! Everything else, and every fix to leases, backoff, shutdown or sampling, lives here.
//!
//! Users of `outworx-hooks` meet this crate as `outworx_hooks::queue`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod dialect;
mod gate;
mod group;
mod pool;
mod retention;
mod runner;
mod schedule;
pub mod sql;

pub use clock::{Clock, ManualClock, SystemClock, now_ms};
pub use gate::{Turn, Urgency, WriteGate};
pub use group::{Commit, Committed, GroupCommit, GroupError, GroupOptions, Refusal};
pub use pool::{Durability, Pool, row_fault, storable};
pub use retention::{Cutoffs, Purged, Retention};
pub use runner::{BoxFuture, Busy, Job, Queue, Runner, RunnerOptions, WorkerHandle};
pub use schedule::RetrySchedule;
pub use sql::{Claim, ClaimPolicy, QueueTable};

/// The `sqlx` this crate is built with (queues and [`on_pool!`] name its types).
pub use sqlx;

#[cfg(test)]
mod tests;
