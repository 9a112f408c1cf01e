//! The delivery worker: lease due deliveries, sign and post them, record the attempt, and
//! schedule the next one, or give up (`dead`).
//!
//! One loop claims (a batch at a time, never more than the free concurrency), one task per
//! attempt posts, and one loop records the results a batch per transaction. A lease outlasts
//! the request timeout; a worker that dies leaves its leases to expire, and the next claim
//! (by any worker) takes them back: the reaper is the claim query itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, watch};

use super::emitter::{DeadLetter, DisabledEndpoint, Emitter};
use super::model::{Attempt, DeliveryStatus, Format, RESPONSE_SNIPPET_BYTES};
use super::store::{Job, Settle, Target, in_tx};
use super::target::GuardedResolver;
use super::{SendError, ids};
use crate::event::{DeliveryEvent, Direction};
use crate::queue::sql::storable;

/// How a worker runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// Attempts in flight at once (default 64).
    pub concurrency: usize,
    /// Attempts in flight to one endpoint at once, per worker (default 8).
    pub per_endpoint: usize,
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
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 64,
            per_endpoint: 8,
            batch: 64,
            poll: Duration::from_millis(250),
            timeout: Duration::from_secs(15),
            lease: Duration::from_secs(45),
            disable_after: Duration::from_secs(5 * 24 * 3600),
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
}

/// A delivery worker over one [`Emitter`]'s outbox.
pub struct Worker {
    emitter: Emitter,
    options: WorkerOptions,
    /// For `https` targets, and for plain `http` ones (whose resolver also applies the
    /// policy's http rule).
    client: reqwest::Client,
    http_client: reqwest::Client,
    id: String,
    claims: AtomicU64,
    in_flight: Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A running worker; [`WorkerHandle::shutdown`] stops it after recording what is in flight.
/// Dropping the handle does not stop it.
#[derive(Debug)]
#[must_use = "keep the handle to shut the worker down (it runs until then)"]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WorkerHandle {
    /// Stops claiming, waits for the attempts in flight, records them.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(join) = self.done.lock().await.take() {
            let _ = join.await;
        }
    }
}

/// Counts a worker's attempts in flight to one endpoint, until dropped.
struct Slot {
    worker: Arc<Worker>,
    endpoint: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .worker
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.endpoint) {
            let was_full = *n >= self.worker.options.per_endpoint;
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.endpoint);
            }
            if was_full {
                // Its deliveries were left out of the claims: they can be claimed again.
                self.worker.emitter.inner.wake.notify_one();
            }
        }
    }
}

impl Worker {
    pub(crate) fn new(emitter: Emitter, mut options: WorkerOptions) -> Worker {
        // Public fields: keep them in the ranges the worker's channels and semaphores take.
        options.concurrency = options.concurrency.clamp(1, 10_000);
        options.per_endpoint = options.per_endpoint.clamp(1, options.concurrency);
        options.batch = options.batch.clamp(1, 1_000);
        options.lease = options.lease.max(options.timeout);
        let client = |https: bool| {
            let resolver = GuardedResolver {
                policy: Arc::clone(&emitter.inner.policy),
                https,
            };
            // No redirects (a redirect is how a public URL reaches a private one), no system
            // proxy (it would resolve names where the policy cannot see), the policy's resolver.
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(options.timeout)
                .connect_timeout(options.timeout.min(Duration::from_secs(10)))
                .dns_resolver(Arc::new(resolver))
                .user_agent(concat!("outworx-hooks/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(options.per_endpoint)
                .build()
                .unwrap_or_default()
        };
        let (https, http) = (client(true), client(false));
        let id = ids::new_id("wk_", emitter.now()).unwrap_or_else(|_| "wk_".to_owned());
        Worker {
            emitter,
            options,
            client: https,
            http_client: http,
            id,
            claims: AtomicU64::new(0),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn token(&self) -> String {
        format!(
            "{}:{}",
            self.id,
            self.claims.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Claims up to one batch of due deliveries, attempts them all, records the results.
    /// Returns how many were attempted. For tests (with a manual clock) and one-shot runs.
    pub async fn run_once(self: &Arc<Self>) -> Result<usize, SendError> {
        let (token, jobs) = self.claim(self.options.batch).await?;
        let n = jobs.len();
        let mut tasks = Vec::with_capacity(n);
        let mut released = Vec::new();
        for job in jobs {
            match self.slot(&job.endpoint_id) {
                Some(slot) => {
                    let worker = Arc::clone(self);
                    tasks.push(tokio::spawn(async move {
                        let settle = worker.attempt(job).await;
                        drop(slot);
                        settle
                    }));
                }
                None => released.push(job.delivery_id),
            }
        }
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            if let Ok(s) = t.await {
                results.push(s);
            }
        }
        self.release(&released, &token).await?;
        let n = results.len();
        self.record(&[(token, results)]).await?;
        Ok(n)
    }

    /// Runs until [`WorkerHandle::shutdown`].
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let worker = Arc::new(self);
        let join = tokio::spawn(worker.run(stopped));
        WorkerHandle {
            stop,
            done: tokio::sync::Mutex::new(Some(join)),
        }
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.options.concurrency));
        let (tx, rx) = mpsc::channel::<(String, Settle)>(self.options.concurrency * 2);
        let recorder = tokio::spawn(Arc::clone(&self).recorder(rx));
        let mut backoff = Duration::from_millis(100);
        #[cfg(feature = "metrics")]
        let mut sampled = Instant::now() - Duration::from_secs(60);
        loop {
            if *stop.borrow() {
                break;
            }
            #[cfg(feature = "metrics")]
            if sampled.elapsed() >= Duration::from_secs(5) {
                sampled = Instant::now();
                // Off the claim loop, and by the status index (never the whole history).
                let emitter = self.emitter.clone();
                tokio::spawn(async move {
                    let counted: Result<u64, SendError> = async {
                        Ok(super::store::with_conn!(
                            &emitter.inner.outbox.pool,
                            |c, db| db::pending_count(c).await?
                        ))
                    }
                    .await;
                    if let Ok(n) = counted {
                        crate::report::metrics::outbound_pending(n);
                    }
                });
            }
            // Claim in chunks: one row per round trip would make the database the bottleneck.
            // With fewer than a quarter of the slots free, wait (2 ms at most) for more.
            let chunk = (self.options.concurrency / 4).clamp(
                1,
                usize::try_from(self.options.batch)
                    .unwrap_or(usize::MAX)
                    .max(1),
            );
            if permits.available_permits() < chunk {
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => drop(p),
                    _ = crate::queue::stopped(&mut stop) => break,
                }
                let more = u32::try_from(chunk).unwrap_or(u32::MAX);
                if let Ok(Ok(p)) =
                    tokio::time::timeout(Duration::from_millis(2), permits.acquire_many(more)).await
                {
                    drop(p);
                }
            }
            let free = permits.available_permits();
            if free == 0 {
                continue;
            }
            let want = u32::try_from(free)
                .unwrap_or(u32::MAX)
                .min(self.options.batch);
            let (token, jobs) = match self.claim(want).await {
                Ok(claimed) => {
                    backoff = Duration::from_millis(100);
                    claimed
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox worker: claiming deliveries failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = crate::queue::stopped(&mut stop) => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let got = jobs.len();
            let mut released = Vec::new();
            for job in jobs {
                let Some(slot) = self.slot(&job.endpoint_id) else {
                    released.push(job.delivery_id);
                    continue;
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    released.push(job.delivery_id);
                    continue;
                };
                let worker = Arc::clone(&self);
                let tx = tx.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let settle = worker.attempt(job).await;
                    drop(slot);
                    let _ = tx.send((token, settle)).await;
                    drop(permit);
                });
            }
            if let Err(e) = self.release(&released, &token).await {
                tracing::warn!(error = %e, "outbox worker: releasing deliveries failed; their leases will expire");
            }
            // Idle (or everything claimed was given back): wait for a send, or the poll.
            if got < usize::try_from(want).unwrap_or(usize::MAX) && released.len() == got
                || got == 0
            {
                tokio::select! {
                    _ = self.emitter.inner.wake.notified() => {}
                    _ = tokio::time::sleep(self.options.poll) => {}
                    _ = crate::queue::stopped(&mut stop) => break,
                }
            }
        }
        // Wait for the attempts in flight, then for their results to be recorded.
        let _ = permits
            .acquire_many(u32::try_from(self.options.concurrency).unwrap_or(u32::MAX))
            .await;
        drop(tx);
        let _ = recorder.await;
    }

    /// Records results as they come, many per transaction.
    async fn recorder(self: Arc<Self>, mut rx: mpsc::Receiver<(String, Settle)>) {
        let mut batch: Vec<(String, Settle)> = Vec::new();
        while rx.recv_many(&mut batch, 256).await > 0 {
            let mut by_token: HashMap<String, Vec<Settle>> = HashMap::new();
            for (token, s) in batch.drain(..) {
                by_token.entry(token).or_default().push(s);
            }
            let groups: Vec<(String, Vec<Settle>)> = by_token.into_iter().collect();
            let mut delay = Duration::from_millis(50);
            // A result is worth retrying a while: losing it repeats the attempt later.
            let mut recorded = false;
            for _ in 0..4 {
                match self.record(&groups).await {
                    Ok(()) => {
                        recorded = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox worker: recording results failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            if !recorded {
                // One result the database refuses must not take the others with it: each
                // alone, and what still fails is left to its lease (the attempt is made again).
                for (token, results) in groups {
                    for s in results {
                        let one = [(token.clone(), vec![s])];
                        if let Err(e) = self.record(&one).await {
                            tracing::error!(
                                error = %e,
                                delivery_id = one[0].1[0].delivery_id,
                                "outbox worker: a result could not be recorded; its lease will expire and it will be tried again"
                            );
                        }
                    }
                }
            }
        }
    }

    fn slot(self: &Arc<Self>, endpoint: &str) -> Option<Slot> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(endpoint.to_owned()).or_insert(0);
        if *n >= self.options.per_endpoint {
            return None;
        }
        *n += 1;
        Some(Slot {
            worker: Arc::clone(self),
            endpoint: endpoint.to_owned(),
        })
    }

    async fn claim(&self, limit: u32) -> Result<(String, Vec<Job>), SendError> {
        let token = self.token();
        let now = self.emitter.now();
        let lease = i64::try_from(self.options.lease.as_millis()).unwrap_or(i64::MAX);
        let busy: Vec<String> = {
            let map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            map.iter()
                .filter(|(_, n)| **n >= self.options.per_endpoint)
                .map(|(e, _)| e.clone())
                .collect()
        };
        let max = self.emitter.inner.schedule.attempts();
        let jobs = in_tx!(&self.emitter.inner.outbox.pool, |c, db| {
            let buried = db::bury(c, now, max).await?;
            if buried > 0 {
                tracing::warn!(
                    deliveries = buried,
                    "outbox: deliveries whose every attempt ended with its worker are dead"
                );
                #[cfg(feature = "metrics")]
                crate::report::metrics::outbound_dead(buried);
            }
            db::claim(c, now, now.saturating_add(lease), &token, limit, &busy).await?
        });
        Ok((token, jobs))
    }

    async fn release(&self, ids: &[i64], token: &str) -> Result<(), SendError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = self.emitter.now();
        in_tx!(&self.emitter.inner.outbox.pool, |c, db| db::release(
            c, ids, token, now
        )
        .await?);
        Ok(())
    }

    /// Records results, grouped by the claim (lease token) they came from, in one
    /// transaction: one commit for everything that finished meanwhile.
    async fn record(&self, groups: &[(String, Vec<Settle>)]) -> Result<(), SendError> {
        if groups.iter().all(|(_, r)| r.is_empty()) {
            return Ok(());
        }
        let now = self.emitter.now();
        let disable_after =
            i64::try_from(self.options.disable_after.as_millis()).unwrap_or(i64::MAX);
        let settled = in_tx!(&self.emitter.inner.outbox.pool, |c, db| {
            let mut all = super::store::Settled::default();
            for (token, results) in groups {
                let one = db::settle(c, results, token, now, disable_after).await?;
                all.lost_leases += one.lost_leases;
                all.lost_dead.extend(one.lost_dead);
                all.disabled.extend(one.disabled);
            }
            all
        });
        let results = groups.iter().flat_map(|(_, r)| r);
        if settled.lost_leases > 0 {
            tracing::warn!(
                deliveries = settled.lost_leases,
                "outbox worker: attempts outlived their lease; another worker may repeat them"
            );
        }
        let inner = &self.emitter.inner;
        let lost = &settled.lost_dead;
        for s in
            results.filter(|s| s.status == DeliveryStatus::Dead && !lost.contains(&s.delivery_id))
        {
            let dead = DeadLetter {
                delivery_id: s.delivery_id,
                message_id: s.message_id.clone(),
                endpoint_id: s.endpoint_id.clone(),
                owner: s.owner.clone(),
                event_type: s.event_type.clone(),
                attempts: s.attempts,
                last_status: s.last_status,
                last_error: s.last_error.clone(),
            };
            tracing::warn!(
                message_id = %dead.message_id,
                endpoint_id = %dead.endpoint_id,
                attempts = dead.attempts,
                last_status = ?dead.last_status,
                "webhook delivery is dead"
            );
            if let Some(hook) = &inner.on_dead {
                call_hook(|| hook(&dead));
            }
            #[cfg(feature = "metrics")]
            crate::report::metrics::outbound_dead(1);
        }
        for (endpoint_id, reason) in settled.disabled {
            tracing::warn!(%endpoint_id, %reason, "webhook endpoint disabled");
            let e = DisabledEndpoint {
                endpoint_id,
                reason,
            };
            if let Some(hook) = &inner.on_disabled {
                call_hook(|| hook(&e));
            }
        }
        Ok(())
    }

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
        let now = self.emitter.now();
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
        let outcome = self.post(&job, target, now).await;
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
                match self.emitter.inner.schedule.delay_after(job.attempt) {
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

    async fn post(&self, job: &Job, target: &Target, now: i64) -> Result<Answer, String> {
        let url = self
            .emitter
            .inner
            .policy
            .check_url(&target.url)
            .map_err(|e| e.to_string())?;
        let https = url.scheme() == "https";
        if let Some(ip) = url
            .host_str()
            .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
        {
            // A literal address skips the resolver: checked here, on every attempt.
            self.emitter
                .inner
                .policy
                .check_connect(ip, https)
                .map_err(|e| e.to_string())?;
        }
        let client = if https {
            &self.client
        } else {
            &self.http_client
        };
        let (body, mut headers) = build_request(job, target, now)?;
        // The attempt's own span (entered around this call) goes out as `traceparent`.
        crate::otel::inject(&tracing::Span::current(), &mut headers);
        let response = client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let snippet = read_snippet(response).await;
        Ok(Answer {
            status,
            snippet,
            retry_after,
        })
    }
}

struct Answer {
    status: u16,
    snippet: String,
    retry_after: Option<Duration>,
}

/// A hook that panics is logged, never takes the worker down.
fn call_hook(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("an outbox hook (on_dead / on_disabled) panicked");
    }
}

/// What went wrong, without the URL (which may carry a token in its query).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first 4 KiB of the body (lossy UTF-8); reads at most 64 KiB so the connection can be
/// reused, and stops there.
async fn read_snippet(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < 64 * 1024 {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = RESPONSE_SNIPPET_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    let mut text = storable(&String::from_utf8_lossy(&kept));
    if text.len() > RESPONSE_SNIPPET_BYTES {
        let mut cut = RESPONSE_SNIPPET_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// `Retry-After`: seconds, or an HTTP date; capped at one day.
pub(crate) fn parse_retry_after(v: &str, now_ms: i64) -> Option<Duration> {
    let cap = Duration::from_secs(24 * 3600);
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs).min(cap));
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v.trim(), &fmt)
        .ok()?
        .assume_utc();
    let at_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
    let ms = u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0);
    Some(Duration::from_millis(ms).min(cap))
}

/// The body and headers of one attempt, in the endpoint's format.
pub(crate) fn build_request(
    job: &Job,
    target: &Target,
    now_ms: i64,
) -> Result<(Bytes, http::HeaderMap), String> {
    use http::header::{CONTENT_TYPE, HeaderValue};
    let mut headers = http::HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let header =
        |v: &str| HeaderValue::from_str(v).map_err(|_| "a header value is not valid".to_owned());
    let mut secrets = vec![target.secret.as_str()];
    if let (Some(prev), Some(until)) = (&target.previous_secret, target.previous_until)
        && until > now_ms
    {
        secrets.push(prev);
    }
    let body = match target.format {
        Format::Standard => {
            let body = standard_body(&job.event_type, job.message_created_at, &job.payload);
            let ts = (now_ms / 1000).to_string();
            let mut sig = String::new();
            for secret in secrets {
                let one = crate::security::scheme::standard_signature(
                    crate::Provider::Standard,
                    secret,
                    &job.message_id,
                    &ts,
                    body.as_bytes(),
                )
                .map_err(|e| format!("signing: {e}"))?;
                if !sig.is_empty() {
                    sig.push(' ');
                }
                sig.push_str(&one);
            }
            headers.insert("webhook-id", header(&job.message_id)?);
            headers.insert("webhook-timestamp", header(&ts)?);
            headers.insert("webhook-signature", header(&sig)?);
            body
        }
        Format::Fastapihooks => {
            let body = job.payload.clone();
            headers.insert("x-fastapihooks-event", header(&job.event_type)?);
            // fastapihooks sends one signature; during a rotation the new secret signs.
            let hex =
                crate::security::scheme::hmac_sha256_hex(target.secret.as_bytes(), body.as_bytes());
            headers.insert(
                "x-fastapihooks-signature",
                header(&format!("sha256={hex}"))?,
            );
            body
        }
    };
    if let Some((name, value)) = target.auth.header() {
        headers.insert(name, value);
    }
    Ok((Bytes::from(body), headers))
}

/// `{"type":..,"timestamp":..,"data":..}`, the payload placed as stored (already JSON).
fn standard_body(event_type: &str, created_at_ms: i64, payload: &str) -> String {
    let ts = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_at_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
    let mut out = String::with_capacity(payload.len() + event_type.len() + 64);
    out.push_str("{\"type\":");
    out.push_str(&serde_json::Value::from(event_type).to_string());
    out.push_str(",\"timestamp\":\"");
    out.push_str(&ts);
    out.push_str("\",\"data\":");
    out.push_str(payload);
    out.push('}');
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(format: Format) -> (Job, Target) {
        let target = Target {
            url: "https://example.com/h".into(),
            auth: crate::send::Auth::Bearer {
                token: "tok".into(),
            },
            format,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            previous_secret: Some("whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0".into()),
            previous_until: Some(2_000_000),
            enabled: true,
            disabled_reason: None,
        };
        let job = Job {
            delivery_id: 1,
            attempt: 1,
            message_id: "msg_1".into(),
            endpoint_id: "ep_1".into(),
            owner: String::new(),
            event_type: "order.created".into(),
            payload: r#"{"id":1}"#.into(),
            message_created_at: 1_700_000_000_000,
            traceparent: None,
            target: Some(target.clone()),
        };
        (job, target)
    }

    #[test]
    fn standard_messages_verify_with_the_receive_side() {
        let (job, target) = job(Format::Standard);
        let (body, headers) = build_request(&job, &target, 1_000_000).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"type":"order.created","timestamp":"2023-11-14T22:13:20Z","data":{"id":1}}"#
        );
        assert_eq!(headers["webhook-id"], "msg_1");
        assert_eq!(headers["authorization"], "Bearer tok");
        assert!(headers["authorization"].is_sensitive());
        // Both secrets sign during the grace: a receiver with either accepts.
        let sig = headers["webhook-signature"].to_str().unwrap();
        assert_eq!(sig.split(' ').count(), 2);
        for secret in [&target.secret, target.previous_secret.as_ref().unwrap()] {
            let r = crate::security::verify_at(
                "standard",
                &headers,
                &body,
                &[secret.as_str()],
                std::time::Duration::from_secs(300),
                1_000,
            );
            assert!(r.valid, "{r:?}");
        }
        // After the grace, only the new one.
        let (_, later) = build_request(&job, &target, 3_000_000).unwrap();
        assert_eq!(
            later["webhook-signature"]
                .to_str()
                .unwrap()
                .split(' ')
                .count(),
            1
        );
    }

    #[test]
    fn fastapihooks_messages_are_the_raw_payload_with_a_hex_hmac() {
        let (job, target) = job(Format::Fastapihooks);
        let (body, headers) = build_request(&job, &target, 1_000_000).unwrap();
        assert_eq!(&body[..], br#"{"id":1}"#);
        assert_eq!(headers["x-fastapihooks-event"], "order.created");
        let expect = crate::security::scheme::hmac_sha256_hex(target.secret.as_bytes(), &body);
        assert_eq!(
            headers["x-fastapihooks-signature"],
            format!("sha256={expect}").as_str()
        );
        assert!(headers.get("webhook-signature").is_none());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("999999", 0),
            Some(Duration::from_secs(86400))
        );
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
