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

    /// The group whose jobs share [`RunnerOptions::per_group`] (the sending side's tenant);
    /// `None` for none.
    fn group(&self) -> Option<&str> {
        None
    }
}

/// What a runner is at its caps for when it claims: the keys at [`RunnerOptions::per_key`]
/// (their jobs must be left out of the claim); the groups at [`RunnerOptions::per_group`] (a
/// queue leaves their jobs out while other groups have due jobs, and may take them when none
/// has); and the groups at their whole share, the concurrency less `per_group` (left out
/// always: those places stay free for a group that comes next, so it never waits for a slow
/// group's jobs to end).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Busy {
    /// Keys at their cap.
    pub keys: Vec<String>,
    /// Groups at their cap while others wait.
    pub groups: Vec<String>,
    /// Groups at the most one group may run.
    pub full_groups: Vec<String>,
    /// For each group in `groups`, the places it has left before it is full: a claim for
    /// busy groups alone takes no more (the rest would be given back at once).
    pub room: Vec<(String, usize)>,
}

impl Busy {
    /// The places `group` has left before it is full (`usize::MAX` when it is not busy).
    pub fn room_for(&self, group: &str) -> usize {
        self.room
            .iter()
            .find(|(g, _)| g == group)
            .map_or(usize::MAX, |(_, n)| *n)
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
    /// `busy.keys` (and, while other groups have due jobs, those of `busy.groups`).
    fn claim<'a>(
        &'a self,
        token: &'a str,
        limit: u32,
        busy: &'a Busy,
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
    /// Jobs of one group running at once while other groups wait (see [`Job::group`] and
    /// [`Busy`]); `None` for no cap.
    pub per_group: Option<usize>,
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
            per_group: None,
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

    /// Caps the jobs of one group running at once while other groups wait.
    pub fn per_group(mut self, n: Option<usize>) -> Self {
        self.per_group = n;
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

    /// The most one group may run at once: the concurrency less its share while others wait
    /// (at least that share), so that places stay free for another group.
    fn group_limit(&self) -> Option<usize> {
        self.per_group
            .map(|share| self.concurrency.saturating_sub(share).max(share))
    }

    /// The values a runner can work with: public fields are brought into range.
    fn clamped(mut self) -> Self {
        self.concurrency = self.concurrency.clamp(1, 10_000);
        self.per_key = self.per_key.map(|n| n.clamp(1, self.concurrency));
        self.per_group = self.per_group.map(|n| n.clamp(1, self.concurrency));
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
    /// Jobs running per key and per group, for their caps.
    running: Mutex<Running>,
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

/// Jobs running per key and per group.
#[derive(Default)]
struct Running {
    keys: HashMap<String, usize>,
    groups: HashMap<String, usize>,
}

/// One less running in `map` under `name`; whether it was at `cap`.
fn leave(map: &mut HashMap<String, usize>, name: &str, cap: usize) -> bool {
    let Some(n) = map.get_mut(name) else {
        return false;
    };
    let was_full = *n >= cap;
    *n = n.saturating_sub(1);
    if *n == 0 {
        map.remove(name);
    }
    was_full
}

/// Counts a running job against its key's and its group's caps, until dropped.
struct Slot<Q: Queue> {
    inner: Arc<Inner<Q>>,
    key: Option<String>,
    group: Option<String>,
}

impl<Q: Queue> Drop for Slot<Q> {
    fn drop(&mut self) {
        let o = &self.inner.options;
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut freed = false;
        if let Some(key) = &self.key {
            freed |= leave(&mut running.keys, key, o.per_key.unwrap_or(usize::MAX));
        }
        if let Some(group) = &self.group {
            freed |= leave(
                &mut running.groups,
                group,
                o.per_group.unwrap_or(usize::MAX),
            );
        }
        if freed {
            self.inner.freed.notify_one();
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
                running: Mutex::new(Running::default()),
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
        retention
            .purge_all(|| self.inner.purge_batch(retention))
            .await
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
    async fn claim(&self, token: &str, limit: u32, busy: &Busy) -> Result<Vec<Q::Job>, Q::Error> {
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

    /// The keys and groups at their caps, for the next claim.
    fn busy(&self) -> Busy {
        let o = &self.options;
        if o.per_key.is_none() && o.per_group.is_none() {
            return Busy::default();
        }
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let full = |map: &HashMap<String, usize>, cap: Option<usize>| -> Vec<String> {
            let Some(cap) = cap else { return Vec::new() };
            map.iter()
                .filter(|(_, n)| **n >= cap)
                .map(|(k, _)| k.clone())
                .collect()
        };
        let groups = full(&running.groups, o.per_group);
        let limit = o.group_limit().unwrap_or(usize::MAX);
        let room = groups
            .iter()
            .map(|g| {
                (
                    g.clone(),
                    limit.saturating_sub(running.groups.get(g).copied().unwrap_or(0)),
                )
            })
            .collect();
        Busy {
            keys: full(&running.keys, o.per_key),
            full_groups: full(&running.groups, o.group_limit()),
            groups,
            room,
        }
    }

    /// A slot for `job`, counted under its key's and its group's caps (`None`: no cap
    /// applies), or its id when its key, or its group's whole share, is full (the job is
    /// given back). The group's cap while others wait is the queue's to apply in its claims
    /// ([`Busy`]).
    fn slot(self: &Arc<Self>, job: &Q::Job) -> Result<Option<Slot<Q>>, i64> {
        let o = &self.options;
        let key = job.key().filter(|_| o.per_key.is_some());
        let group = job.group().filter(|_| o.per_group.is_some());
        if key.is_none() && group.is_none() {
            return Ok(None);
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(cap), Some(key)) = (o.per_key, key)
            && running.keys.get(key).is_some_and(|n| *n >= cap)
        {
            return Err(job.id());
        }
        if let (Some(cap), Some(group)) = (o.group_limit(), group)
            && running.groups.get(group).is_some_and(|n| *n >= cap)
        {
            return Err(job.id());
        }
        if let Some(key) = key {
            *running.keys.entry(key.to_owned()).or_insert(0) += 1;
        }
        if let Some(group) = group {
            *running.groups.entry(group.to_owned()).or_insert(0) += 1;
        }
        Ok(Some(Slot {
            inner: Arc::clone(self),
            key: key.map(str::to_owned),
            group: group.map(str::to_owned),
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
