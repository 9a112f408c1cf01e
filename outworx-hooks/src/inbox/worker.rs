//! The inbox's worker: claim due deliveries (with a lease longer than the handler's
//! timeout), re-dispatch each through the application's router with the [`Dispatch`]
//! marker, read what the pipeline says became of it, and finish it: done, a retry with
//! exponential backoff and jitter, or dead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use super::store::{Claimed, InboxEntry, InboxFilter, InboxStatus, on_pool};
use super::{DeadDelivery, Dispatch, Inbox, InboxError, Processed};
use crate::queue::RetrySchedule;
use crate::queue::sql::Table;

/// How the inbox's worker runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InboxWorkerOptions {
    /// Handlers running at once (default 16).
    pub concurrency: usize,
    /// How long one handler may run before it counts as failed and is retried (default 30 s).
    pub handler_timeout: Duration,
    /// How often an idle worker looks for due deliveries (default 200 ms).
    pub poll: Duration,
    /// How much longer than the handler's timeout a lease lasts (default 30 s). A worker that
    /// dies leaves its deliveries to be taken again when their lease ends.
    pub lease_margin: Duration,
}

impl Default for InboxWorkerOptions {
    fn default() -> Self {
        InboxWorkerOptions {
            concurrency: 16,
            handler_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            lease_margin: Duration::from_secs(30),
        }
    }
}

impl InboxWorkerOptions {
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

    /// The lease: the handler's timeout and a margin, so a running handler is never taken
    /// over by another worker.
    fn lease(&self) -> Duration {
        self.handler_timeout.saturating_add(self.lease_margin)
    }
}

/// Processes an [`Inbox`] through an application's router.
pub struct InboxWorker {
    inbox: Inbox,
    router: axum::Router,
    options: InboxWorkerOptions,
    id: String,
    claims: AtomicU64,
}

impl std::fmt::Debug for InboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxWorker")
            .field("id", &self.id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A running inbox worker. Dropping the handle does not stop it; [`InboxWorkerHandle::shutdown`]
/// does.
#[derive(Debug)]
#[must_use = "keep the handle to shut the worker down (it runs until then)"]
pub struct InboxWorkerHandle {
    stop: watch::Sender<bool>,
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl InboxWorkerHandle {
    /// Stops claiming, waits for the handlers running, records them.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(join) = self.done.lock().await.take() {
            let _ = join.await;
        }
    }
}

impl InboxWorker {
    /// A worker over `inbox` that runs deliveries through `router`.
    pub fn new(inbox: Inbox, router: axum::Router, mut options: InboxWorkerOptions) -> Self {
        options.concurrency = options.concurrency.clamp(1, 10_000);
        let mut random = [0u8; 8];
        let _ = getrandom::fill(&mut random);
        InboxWorker {
            inbox,
            router,
            options,
            id: format!("ib_{}", hex::encode(random)),
            claims: AtomicU64::new(0),
        }
    }

    /// Runs until the handle's `shutdown`.
    pub fn spawn(self) -> InboxWorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(Arc::new(self).run(stopped));
        InboxWorkerHandle {
            stop,
            done: tokio::sync::Mutex::new(Some(join)),
        }
    }

    /// Claims up to `limit` due deliveries, runs them all, records them; returns how many.
    /// For tests (with a manual clock) and one-shot runs.
    pub async fn run_once(self: &Arc<Self>, limit: u32) -> Result<usize, InboxError> {
        let (token, claimed) = self.claim(limit.clamp(1, 1_000)).await?;
        let n = claimed.len();
        let mut tasks = Vec::with_capacity(n);
        for c in claimed {
            let w = Arc::clone(self);
            let token = token.clone();
            tasks.push(tokio::spawn(async move { w.process(c, &token).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(n)
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.options.concurrency));
        let mut backoff = Duration::from_millis(100);
        #[cfg(feature = "metrics")]
        let mut sampled = std::time::Instant::now() - Duration::from_secs(60);
        loop {
            if *stop.borrow() {
                break;
            }
            #[cfg(feature = "metrics")]
            if sampled.elapsed() >= Duration::from_secs(5) {
                sampled = std::time::Instant::now();
                // Off the claim loop: a large backlog makes the sample slow, not the worker.
                let w = Arc::clone(&self);
                tokio::spawn(async move { w.sample().await });
            }
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => drop(p),
                    _ = crate::queue::stopped(&mut stop) => break,
                }
                continue;
            }
            let want = u32::try_from(free).unwrap_or(u32::MAX).min(64);
            let (token, claimed) = match self.claim(want).await {
                Ok(c) => {
                    backoff = Duration::from_millis(100);
                    c
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inbox worker: claiming failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = crate::queue::stopped(&mut stop) => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let got = claimed.len();
            for c in claimed {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    break; // cannot happen: no more were claimed than permits were free
                };
                let w = Arc::clone(&self);
                let token = token.clone();
                tokio::spawn(async move {
                    w.process(c, &token).await;
                    drop(permit);
                });
            }
            if got < usize::try_from(want).unwrap_or(usize::MAX) {
                tokio::select! {
                    _ = tokio::time::sleep(self.options.poll) => {}
                    _ = crate::queue::stopped(&mut stop) => break,
                }
            }
        }
        let _ = permits
            .acquire_many(u32::try_from(self.options.concurrency).unwrap_or(u32::MAX))
            .await;
    }

    async fn claim(&self, limit: u32) -> Result<(String, Vec<Claimed>), InboxError> {
        let token = format!(
            "{}:{}",
            self.id,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let now = self.inbox.now();
        let lease = i64::try_from(self.options.lease().as_millis()).unwrap_or(i64::MAX);
        let claimed = on_pool!(&self.inbox.inner.pool, |c, db, q| {
            // A delivery whose every attempt outlived its lease (a handler that crashes or
            // hangs its process) is dead, not taken again forever.
            let buried = q::bury(c, Table::Inbox, now, None).await?;
            if buried > 0 {
                tracing::warn!(
                    deliveries = buried,
                    "inbox: deliveries whose every attempt ended with its process are dead"
                );
            }
            db::claim(c, now, now.saturating_add(lease), &token, limit).await?
        });
        Ok((token, claimed))
    }

    /// Runs one delivery through the router and records what became of it.
    async fn process(&self, mut c: Claimed, token: &str) {
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
            (Processed::Done, code) => (InboxStatus::Done, now, code, None),
            (Processed::Dead(why), code) => (InboxStatus::Dead, now, code, Some(why)),
            (Processed::Retry(why), code) => {
                let schedule = RetrySchedule::exponential(
                    c.max_attempts,
                    Duration::from_millis(u64::try_from(c.backoff_ms).unwrap_or(0)),
                );
                match schedule.delay_after(c.attempt) {
                    Some(d) => {
                        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                        (
                            InboxStatus::Pending,
                            now.saturating_add(ms),
                            code,
                            Some(why),
                        )
                    }
                    None => (InboxStatus::Dead, now, code, Some(why)),
                }
            }
        };
        // What became of the run, after the schedule: a last retry is dead.
        span.record(
            "webhook.processing_status",
            match status {
                InboxStatus::Done => "completed",
                InboxStatus::Dead => "dead",
                _ => "retry",
            },
        );
        let error = error.as_deref().map(crate::queue::sql::storable);
        let mut delay = Duration::from_millis(50);
        for _ in 0..6 {
            let r = self
                .finish_row(
                    c.id,
                    token,
                    status,
                    next,
                    last_status,
                    error.as_deref(),
                    now,
                )
                .await;
            match r {
                Ok(true) => {
                    if status == InboxStatus::Dead {
                        self.dead(&c, error.clone());
                    }
                    return;
                }
                Ok(false) => {
                    tracing::warn!(
                        id = c.id,
                        "inbox worker: the lease expired while the handler ran; another worker may run it again"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(id = c.id, error = %e, "inbox worker: recording failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::error!(
            id = c.id,
            "inbox worker: the outcome could not be recorded; the lease will expire and the handler will run again"
        );
    }

    /// The inbox's gauges: depth per route and status, the oldest pending delivery's age.
    #[cfg(feature = "metrics")]
    async fn sample(&self) {
        let now = self.inbox.now();
        let r: Result<_, InboxError> =
            async { on_pool!(&self.inbox.inner.pool, |c, db, _q| db::depth(c).await) }.await;
        match r {
            Ok((depth, oldest)) => {
                let age = oldest.map_or(0.0, |t| (now.saturating_sub(t)).max(0) as f64 / 1000.0);
                crate::report::metrics::inbox_gauges(&depth, age);
            }
            Err(e) => tracing::debug!(error = %e, "inbox: sampling the gauges failed"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_row(
        &self,
        id: i64,
        token: &str,
        status: InboxStatus,
        next: i64,
        last_status: Option<u16>,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool, InboxError> {
        on_pool!(&self.inbox.inner.pool, |conn, _db, q| Ok(q::finish(
            conn,
            Table::Inbox,
            id,
            token,
            status.as_str(),
            next,
            last_status.map(i64::from),
            error,
            now
        )
        .await?))
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

    fn dead(&self, c: &Claimed, last_error: Option<String>) {
        let d = DeadDelivery {
            id: c.id,
            route: c.route.clone(),
            key: c.key.clone(),
            attempts: c.attempt,
            last_error,
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

impl Inbox {
    /// Queued deliveries, newest first (at most 1,000).
    pub async fn list(&self, filter: &InboxFilter) -> Result<Vec<InboxEntry>, InboxError> {
        on_pool!(&self.inner.pool, |c, db, _q| db::list(c, filter).await)
    }

    /// One queued delivery, with its stored body.
    pub async fn show(&self, id: i64) -> Result<Option<(InboxEntry, Vec<u8>)>, InboxError> {
        let entry = self
            .list(&InboxFilter::default().id(id))
            .await?
            .into_iter()
            .next();
        let Some(entry) = entry else { return Ok(None) };
        let body = on_pool!(&self.inner.pool, |c, db, _q| db::body(c, id).await?);
        Ok(Some((entry, body.unwrap_or_default())))
    }

    /// Puts deliveries not in flight (dead, done, or pending a far-off retry) matching
    /// `filter` back in the queue, due now, with a new round of attempts. A filter must name an
    /// id, a status or a route.
    pub async fn replay(&self, filter: &InboxFilter) -> Result<u64, InboxError> {
        if filter.id.is_none() && filter.status.is_none() && filter.route.is_none() {
            return Err(InboxError::Invalid(
                "replay: name a delivery, a status (dead) or a route".into(),
            ));
        }
        let now = self.now();
        on_pool!(&self.inner.pool, |c, db, _q| db::replay(c, filter, now)
            .await)
    }

    /// Deletes finished deliveries (done, dead) last changed more than `older_than` ago.
    pub async fn purge(&self, older_than: Duration) -> Result<u64, InboxError> {
        let ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let before = self.now().saturating_sub(ms);
        on_pool!(&self.inner.pool, |c, db, _q| db::purge(c, before).await)
    }

    /// How many deliveries are in each state (each count capped at `cap`: a count equal to it
    /// means at least that many), the retries among the pending ones, and when the oldest
    /// pending one arrived: an operator's overview (`outworx serve --inbox-db`), read from an
    /// index, so its cost is bounded by `cap` whatever the inbox's history.
    pub async fn summary(&self, cap: u32) -> Result<super::InboxSummary, InboxError> {
        let cap = i64::from(cap.max(1));
        on_pool!(&self.inner.pool, |c, db, _q| db::summary(c, cap).await)
    }

    /// How many deliveries are in each status.
    pub async fn counts(&self) -> Result<Vec<(InboxStatus, u64)>, InboxError> {
        on_pool!(&self.inner.pool, |c, db, _q| db::counts(c).await)
    }

    /// A worker over this inbox and `router`, to spawn or step by hand.
    pub fn worker(&self, router: axum::Router, options: InboxWorkerOptions) -> InboxWorker {
        InboxWorker::new(self.clone(), router, options)
    }

    /// Commits one verified delivery (the receive path of a `queue` route).
    pub(crate) async fn enqueue(
        &self,
        e: &super::store::NewEntry<'_>,
    ) -> Result<super::store::Enqueued, InboxError> {
        let now = self.now();
        on_pool!(&self.inner.pool, |c, db, _q| db::enqueue(c, e, now).await)
    }
}
