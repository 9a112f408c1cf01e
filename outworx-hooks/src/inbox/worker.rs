//! The inbox's worker: the engine's loop ([`outworx_hooks_queue::Runner`]) over the inbox.
//! A job is a verified delivery as it was received; running one re-dispatches it through the
//! application's router with the [`Dispatch`] marker (within the handler's timeout, under a
//! lease longer than it), and the pipeline says what became of it: done, a retry with
//! exponential backoff and jitter, or dead.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use outworx_hooks_queue::{
    BoxFuture, Busy, Claim, Purged, Retention, RetrySchedule, Runner, RunnerOptions, WorkerHandle,
    on_pool, storable,
};
use tower::ServiceExt as _;

use super::store::{Claimed, DeliveryStatus};
use super::{DeadLetter, Dispatch, Inbox, InboxError, Processed};

/// How the inbox's worker runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// Handlers running at once (default 16).
    pub concurrency: usize,
    /// How long one handler may run before it counts as failed and is retried (default 30 s).
    pub handler_timeout: Duration,
    /// How often an idle worker looks for due deliveries (default 200 ms).
    pub poll: Duration,
    /// How much longer than the handler's timeout a lease lasts (default 30 s). A worker that
    /// dies leaves its deliveries to be taken again when their lease ends.
    pub lease_margin: Duration,
    /// How long finished deliveries are kept (default: 30 days once done, 90 once dead); the
    /// worker deletes them past it, a batch per short transaction. `None`: never (another
    /// process does, or [`Inbox::purge`]).
    pub retention: Option<Retention>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 16,
            handler_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            lease_margin: Duration::from_secs(30),
            retention: Some(Retention::default()),
        }
    }
}

impl WorkerOptions {
    /// Sets the concurrency.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.clamp(1, 10_000);
        self
    }
    /// Sets the handler timeout.
    pub fn handler_timeout(mut self, t: Duration) -> Self {
        self.handler_timeout = t;
        self
    }
    /// Sets the poll interval.
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Sets the lease's margin over the handler's timeout.
    pub fn lease_margin(mut self, margin: Duration) -> Self {
        self.lease_margin = margin;
        self
    }

    /// Sets how long finished deliveries are kept (`None`: this worker never purges).
    pub fn retention(mut self, keep: impl Into<Option<Retention>>) -> Self {
        self.retention = keep.into();
        self
    }

    /// The lease: the handler's timeout and a margin, so a running handler is never taken
    /// over by another worker.
    fn lease(&self) -> Duration {
        self.handler_timeout.saturating_add(self.lease_margin)
    }
}

/// Processes an [`Inbox`] through an application's router: [`Worker::spawn`] runs it
/// until shut down; [`Worker::run_once`] steps it by hand.
#[derive(Debug)]
pub struct Worker {
    runner: Runner<Inbound>,
}

impl Worker {
    /// A worker over `inbox` that runs deliveries through `router`.
    pub fn new(inbox: Inbox, router: axum::Router, options: WorkerOptions) -> Self {
        let runner = RunnerOptions::new("inbox worker", "ib_")
            .concurrency(options.concurrency)
            .poll(options.poll)
            .sample_every(crate::metrics::ENABLED.then_some(Duration::from_secs(5)))
            .retention(options.retention);
        let queue = Inbound {
            inbox,
            router,
            options,
        };
        Worker {
            runner: Runner::new(Arc::new(queue), runner),
        }
    }

    /// Runs until the handle's `shutdown`.
    pub fn spawn(self) -> WorkerHandle {
        self.runner.spawn()
    }

    /// Claims up to `limit` due deliveries, runs them all, records them; returns how many.
    /// For tests (with a manual clock) and one-shot runs.
    pub async fn run_once(&self, limit: u32) -> Result<usize, InboxError> {
        self.runner.run_once(limit).await
    }
}

impl outworx_hooks_queue::Job for Claimed {
    fn id(&self) -> i64 {
        self.id
    }
}

/// The inbox as the engine's queue.
struct Inbound {
    inbox: Inbox,
    router: axum::Router,
    options: WorkerOptions,
}

/// What became of one run, to record.
struct Ran {
    id: i64,
    status: DeliveryStatus,
    next_attempt_at: i64,
    last_status: Option<u16>,
    error: Option<String>,
    /// For the dead-letter hook.
    route: String,
    key: String,
    attempt: u32,
}

impl outworx_hooks_queue::Queue for Inbound {
    type Job = Claimed;
    type Outcome = Ran;
    type Error = InboxError;

    fn claim<'a>(
        &'a self,
        token: &'a str,
        limit: u32,
        _busy: &'a Busy,
    ) -> BoxFuture<'a, Result<Vec<Claimed>, InboxError>> {
        Box::pin(async move {
            let now = self.inbox.now();
            let claim = Claim::new(token, limit, now, self.options.lease());
            on_pool!(&self.inbox.inner.pool, tx, crate::inbox::store, |c, db| {
                // A delivery whose every attempt outlived its lease (a handler that crashes
                // or hangs its process) is dead, not taken again forever.
                let buried = db::bury(c, now).await?;
                if buried > 0 {
                    tracing::warn!(
                        deliveries = buried,
                        "inbox: deliveries whose every attempt ended with its process are dead"
                    );
                }
                db::claim(c, claim).await
            })
        })
    }

    fn release<'a>(
        &'a self,
        token: &'a str,
        ids: &'a [i64],
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            let now = self.inbox.now();
            on_pool!(&self.inbox.inner.pool, tx, crate::inbox::store, |c, db| {
                db::release(c, ids, token, now).await
            })
        })
    }

    fn run(&self, job: Claimed) -> BoxFuture<'_, Ran> {
        Box::pin(self.process(job))
    }

    /// Finishes each run's row (while its lease is still this worker's), in one transaction;
    /// then the dead ones go to the hook.
    fn settle<'a>(
        &'a self,
        batch: &'a [(String, Vec<Ran>)],
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            let now = self.inbox.now();
            let held = on_pool!(&self.inbox.inner.pool, tx, crate::inbox::store, |c, db| {
                let mut held = Vec::new();
                for (token, runs) in batch {
                    for r in runs {
                        let mine = db::finish(
                            c,
                            r.id,
                            token,
                            r.status,
                            r.next_attempt_at,
                            r.last_status,
                            r.error.as_deref(),
                            now,
                        )
                        .await?;
                        held.push(mine);
                    }
                }
                held
            });
            let runs = batch.iter().flat_map(|(_, runs)| runs);
            for (r, mine) in runs.zip(held) {
                if !mine {
                    tracing::warn!(
                        id = r.id,
                        "inbox worker: the lease expired while the handler ran; another worker may run it again"
                    );
                } else if r.status == DeliveryStatus::Dead {
                    self.dead(r);
                }
            }
            Ok(())
        })
    }

    fn outcome_id(&self, outcome: &Ran) -> i64 {
        outcome.id
    }

    /// The inbox's gauges: depth per route and status, the oldest pending delivery's age.
    fn sample(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let now = self.inbox.now();
            let r: Result<_, InboxError> = async {
                on_pool!(
                    &self.inbox.inner.pool,
                    conn,
                    crate::inbox::store,
                    |c, db| db::depth(c).await
                )
            }
            .await;
            match r {
                Ok((depth, oldest)) => {
                    let age =
                        oldest.map_or(0.0, |t| (now.saturating_sub(t)).max(0) as f64 / 1000.0);
                    crate::metrics::inbox_gauges(&depth, age);
                }
                Err(e) => tracing::debug!(error = %e, "inbox: sampling the gauges failed"),
            }
        })
    }

    fn gate(&self) -> Option<&outworx_hooks_queue::WriteGate> {
        Some(&self.inbox.inner.gate)
    }

    fn purge<'a>(&'a self, retention: &'a Retention) -> BoxFuture<'a, Result<Purged, InboxError>> {
        Box::pin(self.inbox.purge_batch(retention))
    }
}

impl Inbound {
    /// Runs one delivery through the router and decides what becomes of it.
    async fn process(&self, mut c: Claimed) -> Ran {
        use tracing::Instrument as _;
        // One span per run, in the trace of the delivery's receipt: the dispatched request's
        // `webhook.receive` span (and the handler's) are its children.
        let span = tracing::info_span!(
            "webhook.process",
            "webhook.route" = %c.route,
            "webhook.inbox_id" = c.id,
            "webhook.attempt" = c.attempt,
            "webhook.processing_status" = tracing::field::Empty,
            "http.response.status_code" = tracing::field::Empty,
        );
        crate::otel::set_stored_parent(&span, c.traceparent.as_deref());
        let outcome = self.dispatch(&mut c).instrument(span.clone()).await;
        if let Some(code) = outcome.1 {
            span.record("http.response.status_code", code);
        }
        let now = self.inbox.now();
        let (status, next, last_status, error) = match outcome {
            (Processed::Done, code) => (DeliveryStatus::Done, now, code, None),
            (Processed::Dead(why), code) => (DeliveryStatus::Dead, now, code, Some(why)),
            (Processed::Retry(why), code) => {
                let schedule = RetrySchedule::exponential(
                    c.max_attempts,
                    Duration::from_millis(u64::try_from(c.backoff_ms).unwrap_or(0)),
                );
                match schedule.delay_after(c.attempt) {
                    Some(d) => {
                        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                        (
                            DeliveryStatus::Pending,
                            now.saturating_add(ms),
                            code,
                            Some(why),
                        )
                    }
                    None => (DeliveryStatus::Dead, now, code, Some(why)),
                }
            }
        };
        // What became of the run, after the schedule: a last retry is dead.
        span.record(
            "webhook.processing_status",
            match status {
                DeliveryStatus::Done => "completed",
                DeliveryStatus::Dead => "dead",
                _ => "retry",
            },
        );
        Ran {
            id: c.id,
            status,
            next_attempt_at: next,
            last_status,
            error: error.as_deref().map(storable),
            route: c.route,
            key: c.key,
            attempt: c.attempt,
        }
    }

    /// The stored request, through the router, within the handler's time.
    async fn dispatch(&self, c: &mut Claimed) -> (Processed, Option<u16>) {
        let mut builder = http::Request::builder()
            .method(c.method.as_str())
            .uri(c.uri.as_str());
        for (name, value) in &c.headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        let mut req = match builder.body(Body::from(std::mem::take(&mut c.body))) {
            Ok(r) => r,
            Err(e) => {
                return (
                    Processed::Retry(format!("the stored request is unreadable: {e}")),
                    None,
                );
            }
        };
        req.extensions_mut().insert(Dispatch {
            id: c.id,
            attempt: c.attempt,
            signature_valid: c.signature_valid,
            route: c.route.clone(),
        });
        let call = self.router.clone().oneshot(req);
        match tokio::time::timeout(self.options.handler_timeout, call).await {
            Err(_) => (
                Processed::Retry(format!(
                    "the handler ran past its {} s",
                    self.options.handler_timeout.as_secs_f64()
                )),
                None,
            ),
            Ok(Err(never)) => match never {},
            Ok(Ok(resp)) => {
                let code = resp.status().as_u16();
                match resp.extensions().get::<Processed>() {
                    Some(p) => (p.clone(), Some(code)),
                    None => {
                        let path = c.uri.split('?').next().unwrap_or_default();
                        (
                            Processed::Retry(format!(
                                "{} {path} answered {code} without a queue route's outcome (no queue route at this path, or the request was refused before the handler)",
                                c.method
                            )),
                            Some(code),
                        )
                    }
                }
            }
        }
    }

    fn dead(&self, r: &Ran) {
        let d = DeadLetter {
            id: r.id,
            route: r.route.clone(),
            key: r.key.clone(),
            attempts: r.attempt,
            last_error: r.error.clone(),
        };
        tracing::warn!(id = d.id, route = %d.route, attempts = d.attempts, "queued delivery is dead");
        let hook = self
            .inbox
            .inner
            .on_dead
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(hook) = hook
            && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&d))).is_err()
        {
            tracing::error!("the inbox's on_dead hook panicked");
        }
    }
}
