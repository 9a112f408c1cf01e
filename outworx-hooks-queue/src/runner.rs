//! The worker loop every queue runs, written once: claim due jobs a batch at a time (never
//! more than the free concurrency, never past a key's cap), run each in a task of its own,
//! record the outcomes a batch per transaction, back off while the database fails, sample
//! the queue's gauges, and stop cleanly.
//!
//! A queue says only what differs, through [`Queue`]: how it claims, runs and settles its
//! jobs. The sending side's outbox runs an HTTP attempt; the inbox re-dispatches a request
//! through the application's router. The loop, its backoff, its shutdown and its sampling
//! are here, and nowhere else.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::gate::WriteGate;
use crate::retention::{Purged, Retention};

/// A boxed, `Send` future: what [`Queue`]'s methods return, so a queue is a plain trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A claimed job: its row, and (for a per-key cap) its key.
pub trait Job: Send + 'static {
    /// The row's id.
    fn id(&self) -> i64;

    /// The key whose jobs share [`RunnerOptions::per_key`] (the sending side's endpoint);
    /// `None` for none.
    fn key(&self) -> Option<&str> {
        None
    }
}

/// What a queue is to its [`Runner`]: how its jobs are claimed, run and settled.
///
/// Every method that writes does it in one transaction of its own. `claim` leases jobs
/// under the runner's `token`; a job whose lease runs out (its worker died) is due again, and
/// the next claim, by any worker, takes it: the reaper is the claim itself.
pub trait Queue: Send + Sync + 'static {
    /// A claimed job.
    type Job: Job;
    /// What became of a job, to record.
    type Outcome: Send + Sync + 'static;
    /// Why the database refused a claim, a release or a settlement.
    type Error: fmt::Display + Send + 'static;

    /// Leases up to `limit` due jobs under `token`, leaving out the jobs whose key is in
    /// `busy`.
    fn claim<'a>(
        &'a self,
        token: &'a str,
        limit: u32,
        busy: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Self::Job>, Self::Error>>;

    /// Gives claimed jobs back untried (a key at its cap, or a full runner).
    fn release<'a>(
        &'a self,
        token: &'a str,
        ids: &'a [i64],
    ) -> BoxFuture<'a, Result<(), Self::Error>>;

    /// Runs one job to its outcome (an outcome says what failed: this never fails).
    fn run(&self, job: Self::Job) -> BoxFuture<'_, Self::Outcome>;

    /// Records outcomes, grouped by the claim (`token`) they came from, in one transaction;
    /// then does what follows a commit (hooks, logs).
    fn settle<'a>(
        &'a self,
        batch: &'a [(String, Vec<Self::Outcome>)],
    ) -> BoxFuture<'a, Result<(), Self::Error>>;

    /// The row an outcome is for (for the log line of one that cannot be recorded).
    fn outcome_id(&self, outcome: &Self::Outcome) -> i64;

    /// Samples the queue's gauges (every [`RunnerOptions::sample_every`]); nothing by default.
    fn sample(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Notified when a job is added in this process, so an idle runner claims at once rather
    /// than at its next poll; `None` to rely on polling.
    fn wake(&self) -> Option<&Notify> {
        None
    }

    /// The writer this queue's database shares with urgent writes in this process (SQLite's
    /// receipts and sends): the runner's claims, releases and settlements take
    /// [`WriteGate::background`] turns at it. `None`: no gate.
    fn gate(&self) -> Option<&WriteGate> {
        None
    }

    /// Deletes one batch (at most [`Retention::batch_size`] rows, in one short transaction)
    /// of the jobs finished before `retention`'s cut-offs, by the queue's clock; nothing by
    /// default.
    fn purge<'a>(&'a self, retention: &'a Retention) -> BoxFuture<'a, Result<Purged, Self::Error>> {
        let _ = retention;
        Box::pin(async { Ok(Purged::default()) })
    }
}

/// How a [`Runner`] runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunnerOptions {
    /// The queue's name in log lines (`outbox worker`, `inbox worker`).
    pub name: &'static str,
    /// The prefix of the runner's id, which begins each of its lease tokens.
    pub id_prefix: &'static str,
    /// Jobs running at once.
    pub concurrency: usize,
    /// Jobs of one key running at once (see [`Job::key`]); `None` for no cap.
    pub per_key: Option<usize>,
    /// Most jobs leased per claim.
    pub batch: u32,
    /// How often an idle runner looks for due jobs.
    pub poll: Duration,
    /// How often the queue's gauges are sampled; `None` for never.
    pub sample_every: Option<Duration>,
    /// Most outcomes recorded per transaction.
    pub record_batch: usize,
    /// How long finished jobs are kept (the runner purges them every
    /// [`Retention::every`]); `None`: the runner never purges.
    pub retention: Option<Retention>,
}

impl RunnerOptions {
    /// Options named `name`, with ids `id_prefix`..: 16 at once, no key cap, claims of 64,
    /// a 250 ms poll, no sampling, 256 outcomes per transaction.
    pub fn new(name: &'static str, id_prefix: &'static str) -> Self {
        RunnerOptions {
            name,
            id_prefix,
            concurrency: 16,
            per_key: None,
            batch: 64,
            poll: Duration::from_millis(250),
            sample_every: None,
            record_batch: 256,
            retention: None,
        }
    }

    /// Purges finished jobs by `retention` (`None`: never).
    pub fn retention(mut self, retention: Option<Retention>) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the concurrency (1 to 10,000).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Caps the jobs of one key running at once.
    pub fn per_key(mut self, n: Option<usize>) -> Self {
        self.per_key = n;
        self
    }

    /// Sets the claim size (1 to 1,000).
    pub fn batch(mut self, n: u32) -> Self {
        self.batch = n;
        self
    }

    /// Sets the poll interval.
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Samples the gauges this often.
    pub fn sample_every(mut self, every: Option<Duration>) -> Self {
        self.sample_every = every;
        self
    }

    /// The values a runner can work with: public fields are brought into range.
    fn clamped(mut self) -> Self {
        self.concurrency = self.concurrency.clamp(1, 10_000);
        self.per_key = self.per_key.map(|n| n.clamp(1, self.concurrency));
        self.batch = self.batch.clamp(1, 1_000);
        self.record_batch = self.record_batch.clamp(1, 10_000);
        self
    }
}

/// Runs a [`Queue`]: [`Runner::spawn`] until shut down, or [`Runner::run_once`] by hand.
/// Cheap to clone.
pub struct Runner<Q: Queue> {
    inner: Arc<Inner<Q>>,
}

impl<Q: Queue> Clone for Runner<Q> {
    fn clone(&self) -> Self {
        Runner {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<Q: Queue> fmt::Debug for Runner<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("id", &self.inner.id)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

struct Inner<Q: Queue> {
    queue: Arc<Q>,
    options: RunnerOptions,
    id: String,
    claims: AtomicU64,
    /// Jobs running per key, for the per-key cap.
    keys: Mutex<HashMap<String, usize>>,
    /// A key fell below its cap: its jobs, left out of the claims, can be claimed again.
    freed: Notify,
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
    /// Stops claiming, waits for the jobs running, records them.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(join) = self.done.lock().await.take() {
            let _ = join.await;
        }
    }
}

/// Counts a running job against its key's cap, until dropped.
struct Slot<Q: Queue> {
    inner: Arc<Inner<Q>>,
    key: String,
}

impl<Q: Queue> Drop for Slot<Q> {
    fn drop(&mut self) {
        let cap = self.inner.options.per_key.unwrap_or(usize::MAX);
        let mut keys = self.inner.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = keys.get_mut(&self.key) {
            let was_full = *n >= cap;
            *n = n.saturating_sub(1);
            if *n == 0 {
                keys.remove(&self.key);
            }
            if was_full {
                self.inner.freed.notify_one();
            }
        }
    }
}

impl<Q: Queue> Runner<Q> {
    /// A runner over `queue`.
    pub fn new(queue: Arc<Q>, options: RunnerOptions) -> Self {
        let id = format!("{}{}", options.id_prefix, random_hex());
        Runner {
            inner: Arc::new(Inner {
                queue,
                options: options.clamped(),
                id,
                claims: AtomicU64::new(0),
                keys: Mutex::new(HashMap::new()),
                freed: Notify::new(),
            }),
        }
    }

    /// The queue it runs.
    pub fn queue(&self) -> &Arc<Q> {
        &self.inner.queue
    }

    /// Its options, in range.
    pub fn options(&self) -> &RunnerOptions {
        &self.inner.options
    }

    /// Claims up to `limit` due jobs, runs them all, records the outcomes; returns how many
    /// ran. For tests (with a manual clock) and one-shot runs.
    pub async fn run_once(&self, limit: u32) -> Result<usize, Q::Error> {
        let token = self.inner.token();
        let busy = self.inner.busy();
        let q = &self.inner.queue;
        let jobs = self
            .inner
            .claim(&token, limit.clamp(1, 1_000), &busy)
            .await?;
        let mut tasks = Vec::with_capacity(jobs.len());
        let mut released = Vec::new();
        for job in jobs {
            match self.inner.slot(&job) {
                Ok(slot) => {
                    let q = Arc::clone(q);
                    tasks.push(tokio::spawn(async move {
                        let outcome = q.run(job).await;
                        drop(slot);
                        outcome
                    }));
                }
                Err(id) => released.push(id),
            }
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        for t in tasks {
            if let Ok(o) = t.await {
                outcomes.push(o);
            }
        }
        // What ran is recorded first: a release that fails must not lose it.
        let n = outcomes.len();
        if n > 0 {
            self.inner.settle(&[(token.clone(), outcomes)]).await?;
        }
        if !released.is_empty() {
            self.inner.release(&token, &released).await?;
        }
        Ok(n)
    }

    /// Deletes every job finished before `retention`'s cut-offs, a batch per transaction
    /// with [`Retention::pause`] between batches; returns how many rows it deleted. The
    /// runner does this by itself every [`Retention::every`] when its options carry one.
    pub async fn purge(&self, retention: &Retention) -> Result<u64, Q::Error> {
        let mut total = 0;
        loop {
            let done = self.inner.purge_batch(retention).await?;
            total += done.rows;
            if !done.more {
                return Ok(total);
            }
            tokio::time::sleep(retention.pause).await;
        }
    }

    /// Runs until [`WorkerHandle::shutdown`].
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(self.run(stopped));
        WorkerHandle {
            stop,
            done: tokio::sync::Mutex::new(Some(join)),
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let inner = &self.inner;
        let o = &inner.options;
        let permits = Arc::new(Semaphore::new(o.concurrency));
        // Never full: each message holds one of the `concurrency` permits.
        let (tx, rx) = mpsc::channel::<Done<Q>>(o.concurrency + 1);
        let recorder = tokio::spawn(Arc::clone(inner).record_loop(rx));
        let purger = o
            .retention
            .filter(|r| !r.cutoffs(0).none())
            .map(|r| tokio::spawn(self.clone().purge_loop(r, stop.clone())));
        let mut backoff = Duration::from_millis(100);
        let mut sampled: Option<Instant> = None;
        // Claim in chunks: one row per round trip would make the database the bottleneck.
        let chunk = (o.concurrency / 4).clamp(1, usize::try_from(o.batch).unwrap_or(usize::MAX));
        loop {
            if *stop.borrow() {
                break;
            }
            if let Some(every) = o.sample_every
                && sampled.is_none_or(|at| at.elapsed() >= every)
            {
                sampled = Some(Instant::now());
                // Off the loop: a large backlog makes the sample slow, not the worker.
                let q = Arc::clone(&inner.queue);
                tokio::spawn(async move { q.sample().await });
            }
            // With fewer than a chunk of slots free, wait for one, then (2 ms at most) more.
            if permits.available_permits() < chunk {
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => drop(p),
                    _ = stopped(&mut stop) => break,
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
            let want = u32::try_from(free).unwrap_or(u32::MAX).min(o.batch);
            let token = inner.token();
            let busy = inner.busy();
            let jobs = match inner.claim(&token, want, &busy).await {
                Ok(jobs) => {
                    backoff = Duration::from_millis(100);
                    jobs
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{}: claiming failed; retrying", o.name);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut stop) => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let got = jobs.len();
            let mut released = Vec::new();
            for job in jobs {
                let slot = match inner.slot(&job) {
                    Ok(slot) => slot,
                    Err(id) => {
                        released.push(id);
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    released.push(job.id());
                    continue;
                };
                tokio::spawn(run_one(
                    Arc::clone(&inner.queue),
                    job,
                    slot,
                    permit,
                    tx.clone(),
                    token.clone(),
                ));
            }
            if !released.is_empty()
                && let Err(e) = inner.release(&token, &released).await
            {
                tracing::warn!(error = %e, "{}: giving jobs back failed; their leases will expire", o.name);
            }
            // Idle (or everything claimed was given back): wait for a job, or the poll.
            let idle = got == 0
                || (got < usize::try_from(want).unwrap_or(usize::MAX) && released.len() == got);
            if idle {
                let wake = async {
                    match inner.queue.wake() {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = wake => {}
                    _ = inner.freed.notified() => {}
                    _ = tokio::time::sleep(o.poll) => {}
                    _ = stopped(&mut stop) => break,
                }
            }
        }
        // Wait for the jobs running, then for their outcomes to be recorded.
        let _ = permits
            .acquire_many(u32::try_from(o.concurrency).unwrap_or(u32::MAX))
            .await;
        drop(tx);
        let _ = recorder.await;
        if let Some(purger) = purger {
            let _ = purger.await;
        }
    }

    /// Purges every [`Retention::every`] (the first time at once) until stopped; a stop
    /// between two batches ends it there (the next run goes on).
    async fn purge_loop(self, retention: Retention, mut stop: watch::Receiver<bool>) {
        let name = self.inner.options.name;
        loop {
            let mut total = 0;
            loop {
                if *stop.borrow() {
                    return;
                }
                match self.inner.purge_batch(&retention).await {
                    Ok(done) => {
                        total += done.rows;
                        if !done.more {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "{name}: purging finished jobs failed; trying again later");
                        break;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(retention.pause) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
            if total > 0 {
                tracing::info!(rows = total, "{name}: deleted finished jobs past retention");
            }
            tokio::select! {
                _ = tokio::time::sleep(retention.every) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }
}

/// A job that ran, on its way to the recorder. It keeps its places (the runner's permit, its
/// key's slot) until its outcome is committed: the jobs run but not yet recorded are never
/// more than `concurrency`, nor more than `per_key` for one key, and those are all a crash can
/// make run again (besides the jobs whose leases it leaves: the same places).
struct Done<Q: Queue> {
    token: String,
    outcome: Q::Outcome,
    places: (Option<Slot<Q>>, OwnedSemaphorePermit),
}

/// One job in its task: run, then hand the outcome, with its places, to the recorder.
async fn run_one<Q: Queue>(
    queue: Arc<Q>,
    job: Q::Job,
    slot: Option<Slot<Q>>,
    permit: OwnedSemaphorePermit,
    tx: mpsc::Sender<Done<Q>>,
    token: String,
) {
    let outcome = queue.run(job).await;
    let _ = tx
        .send(Done {
            token,
            outcome,
            places: (slot, permit),
        })
        .await;
}

impl<Q: Queue> Inner<Q> {
    async fn claim(
        &self,
        token: &str,
        limit: u32,
        busy: &[String],
    ) -> Result<Vec<Q::Job>, Q::Error> {
        let _turn = self.background().await;
        self.queue.claim(token, limit, busy).await
    }

    async fn release(&self, token: &str, ids: &[i64]) -> Result<(), Q::Error> {
        let _turn = self.background().await;
        self.queue.release(token, ids).await
    }

    async fn settle(&self, batch: &[(String, Vec<Q::Outcome>)]) -> Result<(), Q::Error> {
        let _turn = self.background().await;
        self.queue.settle(batch).await
    }

    async fn purge_batch(&self, retention: &Retention) -> Result<Purged, Q::Error> {
        let _turn = self.background().await;
        self.queue.purge(retention).await
    }

    /// A turn at the queue's writer, after the urgent writes (none without a gate).
    async fn background(&self) -> Option<crate::gate::Turn<'_>> {
        match self.queue.gate() {
            Some(gate) => Some(gate.background().await),
            None => None,
        }
    }

    fn token(&self) -> String {
        format!(
            "{}:{}",
            self.id,
            self.claims.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The keys at their cap: left out of the next claim.
    fn busy(&self) -> Vec<String> {
        let Some(cap) = self.options.per_key else {
            return Vec::new();
        };
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A slot for `job` under its key's cap (`None`: no cap applies), or its id when the key
    /// is full (the job is given back).
    fn slot(self: &Arc<Self>, job: &Q::Job) -> Result<Option<Slot<Q>>, i64> {
        let (Some(cap), Some(key)) = (self.options.per_key, job.key()) else {
            return Ok(None);
        };
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let n = keys.entry(key.to_owned()).or_insert(0);
        if *n >= cap {
            return Err(job.id());
        }
        *n += 1;
        Ok(Some(Slot {
            inner: Arc::clone(self),
            key: key.to_owned(),
        }))
    }

    /// Records outcomes as they come, many per transaction; frees their places after.
    async fn record_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Done<Q>>) {
        let mut batch: Vec<Done<Q>> = Vec::new();
        while rx.recv_many(&mut batch, self.options.record_batch).await > 0 {
            let mut groups: Vec<(String, Vec<Q::Outcome>)> = Vec::new();
            let mut places = Vec::with_capacity(batch.len());
            for done in batch.drain(..) {
                let Done {
                    token,
                    outcome,
                    places: held,
                } = done;
                places.push(held);
                match groups.iter_mut().find(|(t, _)| *t == token) {
                    Some((_, list)) => list.push(outcome),
                    None => groups.push((token, vec![outcome])),
                }
            }
            self.record(groups).await;
            drop(places);
        }
    }

    /// Records one batch: retried a while (losing an outcome repeats its job later), then one
    /// outcome at a time, so one the database refuses does not take the others with it; what
    /// still fails is left to its lease.
    async fn record(&self, groups: Vec<(String, Vec<Q::Outcome>)>) {
        let name = self.options.name;
        let mut delay = Duration::from_millis(50);
        for _ in 0..4 {
            match self.settle(&groups).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "{name}: recording outcomes failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        for (token, outcomes) in groups {
            for outcome in outcomes {
                let id = self.queue.outcome_id(&outcome);
                let one = [(token.clone(), vec![outcome])];
                if let Err(e) = self.settle(&one).await {
                    tracing::error!(
                        error = %e,
                        id,
                        "{name}: an outcome could not be recorded; its lease will expire and the job will run again"
                    );
                }
            }
        }
    }
}

/// Resolves once `stop` says to stop. A dropped sender is not a stop: a worker whose handle
/// was dropped runs on (shutting it down is explicit).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// 16 random hex digits; if the system has no randomness to give, the process id and the
/// time in nanoseconds, so runners in different processes still never share a lease token.
fn random_hex() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        b[..4].copy_from_slice(&std::process::id().to_le_bytes());
        b[4..].copy_from_slice(&nanos.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
