//! What both durable queues run on (features `send`, `inbox`), from the engine crate
//! [`outworx_hooks_queue`]: the time a queue runs on ([`Clock`]; tests drive a
//! [`ManualClock`]), when a failed job is tried again ([`RetrySchedule`]), how long finished
//! jobs are kept ([`Retention`]), and the handle of a running worker ([`WorkerHandle`]). The
//! pool, the claim/lease SQL and the worker loop are the engine's too; [`crate::send`] and [`crate::inbox`] each say only what a job is and how
//! it runs.

pub use outworx_hooks_queue::{
    Clock, Durability, ManualClock, Retention, RetrySchedule, SystemClock, WorkerHandle,
};
