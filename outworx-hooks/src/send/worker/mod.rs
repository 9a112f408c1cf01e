//! The delivery worker: the engine's loop ([`outworx_hooks_queue::Runner`]) over the outbox's
//! deliveries. This module says what a job is (a delivery with its message and endpoint)
//! and what running one means: an attempt ([`attempt`]: sign and post), what comes next
//! (delivered, a retry on the schedule, dead, a disabled endpoint), and its recording
//! ([`record`]: a batch per transaction).
//!
//! A lease outlasts the request timeout; a worker that dies leaves its leases to expire, and
//! the next claim (by any worker) takes them back.

mod attempt;
mod record;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outworx_hooks_queue::{
    BoxFuture, Busy, Claim, Purged, Retention, Runner, RunnerOptions, WorkerHandle, on_pool,
    storable,
};

use super::SendError;
use super::model::{Attempt, DeliveryStatus};
use super::shared::Shared;
use super::store::deliveries::{Job, Settle, Target};
use crate::event::{DeliveryEvent, Direction};

/// How a worker runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// Attempts in flight at once (default 64).
    pub concurrency: usize,
    /// Attempts in flight to one endpoint at once, per worker (default 8).
    pub per_endpoint: usize,
    /// Attempts in flight for one owner (tenant) at once, per worker, while other owners
    /// have deliveries due (default 16): one tenant's slow endpoints or backlog hold at
    /// most this many of the worker's places. Alone, an owner may use all but this many,
    /// which stay free for the next owner's deliveries (48 of 64 at the defaults).
    pub per_owner: usize,
    /// Deliveries leased per claim (default 64).
    pub batch: u32,
    /// How often an idle worker looks for due deliveries (default 250 ms); a send in this
    /// process wakes it at once.
    pub poll: Duration,
    /// The request timeout (default 15 s).
    pub timeout: Duration,
    /// How long a lease lasts (default the timeout + 30 s). An attempt outliving it may be
    /// made again by another worker: it is at least once, and the receiver's `webhook-id`
    /// makes it once in effect.
    pub lease: Duration,
    /// An endpoint whose every attempt failed for this long is disabled (default 5 days).
    pub disable_after: Duration,
    /// How long finished messages are kept (default: 30 days once delivered, 90 once dead);
    /// the worker deletes them past it, with their deliveries and attempts, a batch per
    /// short transaction. `None`: the worker never purges (another process does, or
    /// [`Emitter::purge`](super::Emitter::purge)).
    pub retention: Option<Retention>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 64,
            per_endpoint: 8,
            per_owner: 16,
            batch: 64,
            poll: Duration::from_millis(250),
            timeout: Duration::from_secs(15),
            lease: Duration::from_secs(45),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            retention: Some(Retention::default()),
        }
    }
}

impl WorkerOptions {
    /// Sets the concurrency.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets the per-endpoint cap.
    pub fn per_endpoint(mut self, n: usize) -> Self {
        self.per_endpoint = n.max(1);
        self
    }

    /// Sets the per-owner cap (while other owners wait).
    pub fn per_owner(mut self, n: usize) -> Self {
        self.per_owner = n.max(1);
        self
    }

    /// Sets the poll interval.
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Sets the request timeout, and the lease to 30 s more.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self.lease = t + Duration::from_secs(30);
        self
    }

    /// Sets the lease (at least the timeout: a shorter lease would let a second worker start
    /// the same attempt while the first is still waiting for its answer).
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d.max(self.timeout);
        self
    }

    /// Sets how long an endpoint may fail before it is disabled.
    pub fn disable_after(mut self, d: Duration) -> Self {
        self.disable_after = d;
        self
    }

    /// Sets how long finished messages are kept (`None`: this worker never purges).
    ///
    /// ```
    /// use std::time::Duration;
    /// use outworx_hooks::queue::Retention;
    /// use outworx_hooks::send::WorkerOptions;
    ///
    /// let week = Duration::from_secs(7 * 86_400);
    /// let options = WorkerOptions::default().retention(Retention::default().done(week));
    /// assert_eq!(options.retention.unwrap().done, Some(week));
    /// ```
    pub fn retention(mut self, keep: impl Into<Option<Retention>>) -> Self {
        self.retention = keep.into();
        self
    }
}

/// A delivery worker over one [`Emitter`](super::Emitter)'s outbox: [`Worker::spawn`] runs it
/// until shut down; [`Worker::run_once`] steps it by hand.
#[derive(Debug)]
pub struct Worker {
    runner: Runner<Outbound>,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, mut options: WorkerOptions) -> Worker {
        // A shorter lease would let a second worker start an attempt still waiting for its
        // answer.
        options.lease = options.lease.max(options.timeout);
        let runner = RunnerOptions::new("outbox worker", "wk_")
            .concurrency(options.concurrency)
            .per_key(Some(options.per_endpoint))
            .per_group(Some(options.per_owner))
            .batch(options.batch)
            .poll(options.poll)
            .sample_every(crate::metrics::ENABLED.then_some(Duration::from_secs(5)))
            .retention(options.retention);
        let client = attempt::Client::new(
            Arc::clone(&shared.policy),
            options.timeout,
            options.per_endpoint.clamp(1, options.concurrency.max(1)),
        );
        let queue = Outbound {
            shared,
            options,
            client,
            cursor: Mutex::new(None),
            turn: Mutex::new(None),
        };
        Worker {
            runner: Runner::new(Arc::new(queue), runner),
        }
    }

    /// Claims up to `limit` due deliveries, attempts them all, records the results. Returns
    /// how many were attempted. For tests (with a manual clock) and one-shot runs.
    pub async fn run_once(&self, limit: u32) -> Result<usize, SendError> {
        self.runner.run_once(limit).await
    }

    /// Deletes the messages finished before `retention`'s cut-offs, with their deliveries
    /// and attempts, a batch per short transaction; returns how many messages it deleted.
    /// A spawned worker does this every [`Retention::every`] by itself.
    pub async fn purge(&self, retention: &Retention) -> Result<u64, SendError> {
        self.runner.purge(retention).await
    }

    /// Runs until [`WorkerHandle::shutdown`].
    pub fn spawn(self) -> WorkerHandle {
        self.runner.spawn()
    }
}

impl outworx_hooks_queue::Job for Job {
    fn id(&self) -> i64 {
        self.delivery_id
    }

    /// An endpoint's deliveries share the per-endpoint cap.
    fn key(&self) -> Option<&str> {
        Some(&self.endpoint_id)
    }

    /// An owner's deliveries share the per-owner cap.
    fn group(&self) -> Option<&str> {
        Some(&self.owner)
    }
}

/// Owners looked at per claim: each costs one index seek, whatever its backlog.
const OWNERS_PER_CLAIM: u32 = 32;

/// The outbox as the engine's queue.
struct Outbound {
    shared: Arc<Shared>,
    options: WorkerOptions,
    client: attempt::Client,
    /// Where the purge's walk over the messages stopped.
    cursor: Mutex<crate::send::store::retention::Cursor>,
    /// The last owner the claims served: the next claim starts after it (round robin).
    turn: Mutex<Option<String>>,
}

impl outworx_hooks_queue::Queue for Outbound {
    type Job = Job;
    type Outcome = Settle;
    type Error = SendError;

    fn claim<'a>(
        &'a self,
        token: &'a str,
        limit: u32,
        busy: &'a Busy,
    ) -> BoxFuture<'a, Result<Vec<Job>, SendError>> {
        Box::pin(async move {
            let now = self.shared.now();
            let max = self.shared.schedule.attempts();
            let after = self.turn.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let (jobs, last) = on_pool!(
                &self.shared.outbox.pool,
                tx,
                crate::send::store::deliveries,
                |c, db| {
                    let buried = db::bury(c, now, max).await?;
                    if buried > 0 {
                        tracing::warn!(
                            deliveries = buried,
                            "outbox: deliveries whose every attempt ended with its worker are dead"
                        );
                        crate::metrics::outbound_dead(buried);
                    }
                    // Round robin over the owners with deliveries waiting, from the one after
                    // the last served, each given a share of the claim: one owner's backlog
                    // does not fill every claim. An owner at its cap sits out while others
                    // wait.
                    let owners: Vec<String> =
                        db::owners_waiting(c, after.as_deref(), OWNERS_PER_CLAIM, now)
                            .await?
                            .into_iter()
                            .filter(|o| !busy.full_groups.contains(o))
                            .collect();
                    let free: Vec<String> = owners
                        .iter()
                        .filter(|o| !busy.groups.contains(o))
                        .cloned()
                        .collect();
                    // Busy owners alone: no more than the places they have left.
                    let (owners, limit) = if free.is_empty() {
                        let room: usize = owners
                            .iter()
                            .map(|o| busy.room_for(o))
                            .fold(0, usize::saturating_add);
                        (
                            owners,
                            limit.min(u32::try_from(room).unwrap_or(u32::MAX)).max(1),
                        )
                    } else {
                        (free, limit)
                    };
                    // Endpoints this worker is at its cap for are left for later, so one
                    // endpoint's backlog does not fill every claim.
                    let claim = Claim::new(token, limit, now, self.options.lease)
                        .excluding("endpoint_id", &busy.keys)
                        .fair("owner", &owners);
                    (db::claim(c, claim).await?, owners.last().cloned())
                }
            );
            *self.turn.lock().unwrap_or_else(|p| p.into_inner()) = last;
            Ok(jobs)
        })
    }

    fn release<'a>(
        &'a self,
        token: &'a str,
        ids: &'a [i64],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let now = self.shared.now();
            on_pool!(
                &self.shared.outbox.pool,
                tx,
                crate::send::store::deliveries,
                |c, db| db::release(c, ids, token, now).await?
            );
            Ok(())
        })
    }

    fn run(&self, job: Job) -> BoxFuture<'_, Settle> {
        Box::pin(self.attempt(job))
    }

    fn settle<'a>(
        &'a self,
        batch: &'a [(String, Vec<Settle>)],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        let disable_after =
            i64::try_from(self.options.disable_after.as_millis()).unwrap_or(i64::MAX);
        Box::pin(record::record(&self.shared, disable_after, batch))
    }

    fn outcome_id(&self, outcome: &Settle) -> i64 {
        outcome.delivery_id
    }

    /// The pending gauge, by the status index (never the whole history).
    fn sample(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let counted: Result<u64, SendError> = async {
                Ok(on_pool!(
                    &self.shared.outbox.pool,
                    conn,
                    crate::send::store::views,
                    |c, db| db::pending_count(c).await?
                ))
            }
            .await;
            if let Ok(n) = counted {
                crate::metrics::outbound_pending(n);
            }
        })
    }

    fn wake(&self) -> Option<&tokio::sync::Notify> {
        Some(&self.shared.wake)
    }

    fn gate(&self) -> Option<&outworx_hooks_queue::WriteGate> {
        Some(&self.shared.gate)
    }

    fn purge<'a>(&'a self, retention: &'a Retention) -> BoxFuture<'a, Result<Purged, SendError>> {
        Box::pin(async move {
            let cut = retention.cutoffs(self.shared.now());
            let batch = retention.batch_size();
            let mut cursor = self
                .cursor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let done = on_pool!(
                &self.shared.outbox.pool,
                tx,
                crate::send::store::retention,
                |c, db| db::purge(c, cut, batch, &mut cursor).await?
            );
            *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = cursor;
            Ok(done)
        })
    }
}

impl Outbound {
    /// Makes one attempt and decides what comes next.
    async fn attempt(&self, job: Job) -> Settle {
        use tracing::Instrument as _;
        // One span per attempt, with OpenTelemetry's client fields: the target's host only.
        let host = job
            .target
            .as_ref()
            .and_then(|t| reqwest::Url::parse(&t.url).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let span = tracing::info_span!(
            "webhook.send",
            "http.request.method" = "POST",
            "server.address" = %host,
            "webhook.event_type" = %job.event_type,
            "webhook.message_id" = %job.message_id,
            "webhook.attempt" = job.attempt,
            "http.response.status_code" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            "webhook.delivery_status" = tracing::field::Empty,
        );
        crate::otel::set_stored_parent(&span, job.traceparent.as_deref());
        let settle = self.attempt_in(job).instrument(span.clone()).await;
        match settle.last_status {
            Some(code) => {
                span.record("http.response.status_code", code);
            }
            None => {
                span.record(
                    "error.type",
                    if settle.attempt.is_some() {
                        "no_answer"
                    } else {
                        "not_attempted"
                    },
                );
            }
        }
        span.record("webhook.delivery_status", settle.status.as_str());
        settle
    }

    async fn attempt_in(&self, job: Job) -> Settle {
        let now = self.shared.now();
        let mut s = Settle {
            delivery_id: job.delivery_id,
            endpoint_id: job.endpoint_id.clone(),
            message_id: job.message_id.clone(),
            owner: job.owner.clone(),
            event_type: job.event_type.clone(),
            attempts: job.attempt,
            status: DeliveryStatus::Dead,
            next_attempt_at: now,
            last_status: None,
            last_error: None,
            attempt: None,
            endpoint_ok: None,
            disable: None,
        };
        if job.expunged {
            s.last_error = Some(crate::send::store::retention::EXPUNGED.to_owned());
            return s;
        }
        let target = match &job.target {
            None => {
                s.last_error = Some("endpoint deleted".to_owned());
                return s;
            }
            Some(t) if !t.enabled => {
                s.last_error = Some(format!(
                    "endpoint disabled: {}",
                    t.disabled_reason.as_deref().unwrap_or("by an operator")
                ));
                return s;
            }
            Some(t) => t,
        };
        let started = Instant::now();
        let outcome = self.client.post(&job, target, now).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, response, retry_after, error) = match outcome {
            Ok(r) => (Some(r.status), r.snippet, r.retry_after, None),
            Err(e) => (None, String::new(), None, Some(storable(&e))),
        };
        s.last_status = status;
        s.attempt = Some(Attempt {
            delivery_id: job.delivery_id,
            message_id: job.message_id.clone(),
            endpoint_id: job.endpoint_id.clone(),
            attempt: job.attempt,
            at: now,
            status_code: status,
            duration_ms,
            error: error.clone(),
            response,
        });
        let ok = status.is_some_and(|c| (200..300).contains(&c));
        match status {
            Some(_) if ok => {
                s.status = DeliveryStatus::Delivered;
                s.endpoint_ok = Some(true);
            }
            Some(410) => {
                s.status = DeliveryStatus::Dead;
                s.last_error = Some("410 Gone: the endpoint asked to be removed".to_owned());
                s.disable = Some("the endpoint answered 410 Gone".to_owned());
            }
            _ => {
                s.endpoint_ok = Some(false);
                s.last_error = Some(match (&error, status) {
                    (Some(e), _) => e.clone(),
                    (None, Some(code)) => format!("the endpoint answered {code}"),
                    (None, None) => "no answer".to_owned(),
                });
                match self.shared.schedule.delay_after(job.attempt) {
                    Some(delay) => {
                        let honoured = match status {
                            Some(429 | 503) => retry_after.map_or(delay, |r| r.max(delay)),
                            _ => delay,
                        };
                        let ms = i64::try_from(honoured.as_millis()).unwrap_or(i64::MAX);
                        s.status = DeliveryStatus::Pending;
                        s.next_attempt_at = now.saturating_add(ms);
                    }
                    None => s.status = DeliveryStatus::Dead,
                }
            }
        }
        report(&job, target, &s, duration_ms);
        s
    }
}

/// One attempt, as a `tracing` event and a delivery event (`direction: outbound`) for the
/// same sinks as received deliveries.
fn report(job: &Job, target: &Target, s: &Settle, duration_ms: u64) {
    let status = s.last_status.unwrap_or(0);
    let ok = s.status == DeliveryStatus::Delivered;
    // Scheme and host only: a URL's path and query may carry tokens.
    let host = reqwest::Url::parse(&target.url)
        .ok()
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()));
    if ok {
        tracing::info!(
            message_id = %job.message_id,
            endpoint_id = %job.endpoint_id,
            event_type = %job.event_type,
            attempt = job.attempt,
            status,
            duration_ms,
            "webhook sent"
        );
    } else {
        tracing::warn!(
            message_id = %job.message_id,
            endpoint_id = %job.endpoint_id,
            event_type = %job.event_type,
            attempt = job.attempt,
            status,
            duration_ms,
            error = s.last_error.as_deref().unwrap_or(""),
            next = s.status.as_str(),
            "webhook attempt failed"
        );
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert("message_id".into(), job.message_id.clone().into());
    metadata.insert("endpoint_id".into(), job.endpoint_id.clone().into());
    metadata.insert("attempt".into(), job.attempt.into());
    metadata.insert("delivery_status".into(), s.status.as_str().into());
    let event = DeliveryEvent::outbound(
        target.format.as_str(),
        status,
        ok,
        duration_ms,
        job.payload.len(),
        job.event_type.clone(),
        s.last_error.clone(),
        metadata,
        host,
    );
    debug_assert_eq!(event.direction, Some(Direction::Outbound));
    crate::runtime::runtime().emit(event);
}
