//! What an [`Emitter`](super::Emitter) and its [`Worker`](super::Worker) share: the outbox,
//! its target policy and clock, the retry schedule, the wake-up a send gives an idle worker,
//! and the hooks (with what they are given). Neither reads the other's fields.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::TargetPolicy;
use super::store::Outbox;
use crate::queue::{Clock, RetrySchedule};

/// A delivery that ran out of attempts (or whose endpoint is gone), for [`EmitterBuilder::on_dead`](super::EmitterBuilder::on_dead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The delivery's row id.
    pub delivery_id: i64,
    /// The message.
    pub message_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The tenant.
    pub owner: String,
    /// The message's event type.
    pub event_type: String,
    /// Attempts made in the round that ended.
    pub attempts: u32,
    /// The last HTTP status, if any.
    pub last_status: Option<u16>,
    /// The last error.
    pub last_error: Option<String>,
}

/// An endpoint the worker disabled (410 Gone, or failing for longer than
/// [`WorkerOptions::disable_after`](super::WorkerOptions::disable_after)), for [`EmitterBuilder::on_disabled`](super::EmitterBuilder::on_disabled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DisabledEndpoint {
    /// The endpoint.
    pub endpoint_id: String,
    /// Why.
    pub reason: String,
}

pub(crate) type DeadHook = Arc<dyn Fn(&DeadLetter) + Send + Sync>;
pub(crate) type DisabledHook = Arc<dyn Fn(&DisabledEndpoint) + Send + Sync>;

/// The core value of one emitter and its worker.
pub(crate) struct Shared {
    pub(crate) outbox: Outbox,
    pub(crate) policy: Arc<TargetPolicy>,
    pub(crate) max_payload: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) schedule: RetrySchedule,
    pub(crate) rotation_grace: Duration,
    pub(crate) commit_timeout: Option<Duration>,
    /// A send in this process wakes an idle worker at once.
    pub(crate) wake: Notify,
    pub(crate) on_dead: Option<DeadHook>,
    pub(crate) on_disabled: Option<DisabledHook>,
    /// SQLite's one writer in this process: sends first, the worker after.
    pub(crate) gate: Arc<outworx_hooks_queue::WriteGate>,
    /// Concurrent sends (outside a caller's transaction), committed together.
    pub(crate) sends: outworx_hooks_queue::GroupCommit<super::store::messages::Sends>,
    /// Each owner's messages and test calls, when limited ([`super::Quotas`]).
    pub(crate) messages_quota: Option<super::quota::Buckets>,
    pub(crate) tests_quota: Option<super::quota::Buckets>,
}

impl Shared {
    /// Now, on the emitter's clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Counts one message of `owner` against its quota.
    pub(crate) fn admit_message(&self, owner: &str) -> Result<(), super::SendError> {
        self.take(&self.messages_quota, "messages", owner)
    }

    /// Counts one test call of `owner` against its quota.
    pub(crate) fn admit_test(&self, owner: &str) -> Result<(), super::SendError> {
        self.take(&self.tests_quota, "test calls", owner)
    }

    fn take(
        &self,
        quota: &Option<super::quota::Buckets>,
        what: &'static str,
        owner: &str,
    ) -> Result<(), super::SendError> {
        match quota {
            Some(b) => b
                .take(owner, 1, self.now())
                .map_err(|retry_after| super::SendError::RateLimited { what, retry_after }),
            None => Ok(()),
        }
    }
}
