//! Group commit: concurrent writes a client waits for (a `queue` route's receipts, sends)
//! join one transaction. Each caller is answered after the commit that holds its row, with
//! its own result.
//!
//! There is no timer. The first caller starts a committer task; while one transaction
//! commits, the next callers queue; the committer then takes them all (up to
//! [`GroupOptions::max_items`] and [`GroupOptions::max_bytes`]) into the next. Alone, a caller
//! pays one transaction, as before; under load, a transaction's cost is shared by everyone
//! waiting for it. When the queue is empty the committer ends: nothing runs while idle.
//!
//! A batch the database refuses is tried again one item per transaction, when the error can
//! be one item's fault ([`Refusal::one_item`]), so a poisoned row fails only its own caller.
//! Waiting writes are bounded in bytes ([`GroupOptions::max_queued_bytes`]): past it, a
//! caller is refused at once ([`GroupError::Overloaded`]) rather than queued. A caller that
//! stopped waiting (its request timed out) before its batch began is left out of it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::gate::WriteGate;
use crate::runner::BoxFuture;

/// What a [`GroupCommit`] writes: many items in one transaction.
pub trait Commit: Send + Sync + 'static {
    /// One caller's write.
    type Item: Send + Sync + 'static;
    /// What the caller learns once it is committed.
    type Output: Send + 'static;
    /// Why a transaction failed (cloned to each caller of a failed batch).
    type Error: fmt::Display + Clone + Send + 'static;

    /// The item's size, for the byte budgets.
    fn bytes(item: &Self::Item) -> usize;

    /// Writes `items` in one transaction and commits it: one output per item, in order, or
    /// why the transaction failed (nothing of it committed).
    fn commit<'a>(&'a self, items: &'a [Self::Item]) -> Committed<'a, Self::Output, Self::Error>;
}

/// What [`Commit::commit`] returns: a future of one output per item, or why none was
/// committed.
pub type Committed<'a, O, E> = BoxFuture<'a, Result<Vec<O>, Refusal<E>>>;

/// Why a [`Commit`] failed, and whether it may be one item's fault (a constraint, a value the
/// database refuses): then each item is tried alone. Otherwise (the database is down, the
/// pool timed out) the whole batch fails at once.
#[derive(Debug, Clone)]
pub struct Refusal<E> {
    /// The error each caller gets.
    pub error: E,
    /// Whether one item may be the cause.
    pub one_item: bool,
}

/// A database error, classified by [`row_fault`](crate::row_fault): `?` on `sqlx` in a
/// [`Commit::commit`] gives this.
impl<E: From<sqlx::Error>> From<sqlx::Error> for Refusal<E> {
    fn from(e: sqlx::Error) -> Self {
        Refusal {
            one_item: crate::row_fault(&e),
            error: e.into(),
        }
    }
}

/// Why a caller's write was not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError<E> {
    /// Its transaction failed.
    Failed(E),
    /// Too many bytes are already waiting: refused without queueing.
    Overloaded,
    /// The committer stopped before answering (it panicked, or its runtime shut down).
    Lost,
}

impl<E: fmt::Display> fmt::Display for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::Failed(e) => e.fmt(f),
            GroupError::Overloaded => f.write_str("too many writes are waiting for the database"),
            GroupError::Lost => f.write_str("the committer stopped before answering"),
        }
    }
}

impl<E: fmt::Display + fmt::Debug> std::error::Error for GroupError<E> {}

/// The bounds of a [`GroupCommit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupOptions {
    /// Most items per transaction (default 256).
    pub max_items: usize,
    /// Most bytes per transaction (default 4 MiB; a larger item goes alone).
    pub max_bytes: usize,
    /// Most bytes waiting for a transaction (default 64 MiB); past it, callers are refused.
    pub max_queued_bytes: usize,
    /// Most transactions committing at once: 1 for SQLite (one writer), more for PostgreSQL.
    /// A second (and each further) one starts only while more than a full batch per running
    /// committer is waiting, in items or in bytes.
    pub committers: usize,
}

impl GroupOptions {
    /// The defaults for a pool: one committer on SQLite, up to four on PostgreSQL.
    pub fn for_pool(pool: &crate::Pool) -> Self {
        GroupOptions {
            max_items: 256,
            max_bytes: 4 << 20,
            max_queued_bytes: 64 << 20,
            committers: match pool {
                crate::Pool::Sqlite(_) => 1,
                crate::Pool::Postgres(_) => 4,
            },
        }
    }

    /// Sets the most items per transaction (at least 1).
    pub fn max_items(mut self, n: usize) -> Self {
        self.max_items = n.max(1);
        self
    }

    /// Sets the most bytes waiting.
    pub fn max_queued_bytes(mut self, n: usize) -> Self {
        self.max_queued_bytes = n;
        self
    }
}

type Reply<C> = oneshot::Sender<Result<<C as Commit>::Output, GroupError<<C as Commit>::Error>>>;

struct Waiting<C: Commit> {
    item: C::Item,
    bytes: usize,
    reply: Reply<C>,
}

struct State<C: Commit> {
    queue: VecDeque<Waiting<C>>,
    queued_bytes: usize,
    running: usize,
}

struct Inner<C: Commit> {
    commit: C,
    gate: Arc<WriteGate>,
    options: GroupOptions,
    state: Mutex<State<C>>,
}

/// Commits concurrent writes together (see the module docs). Cheap to clone.
pub struct GroupCommit<C: Commit> {
    inner: Arc<Inner<C>>,
}

impl<C: Commit> Clone for GroupCommit<C> {
    fn clone(&self) -> Self {
        GroupCommit {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Commit> fmt::Debug for GroupCommit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl<C: Commit> GroupCommit<C> {
    /// Commits through `commit`, taking turns at `gate` as urgent writes.
    pub fn new(commit: C, gate: Arc<WriteGate>, options: GroupOptions) -> Self {
        GroupCommit {
            inner: Arc::new(Inner {
                commit,
                gate,
                options: GroupOptions {
                    max_items: options.max_items.max(1),
                    committers: options.committers.max(1),
                    ..options
                },
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    queued_bytes: 0,
                    running: 0,
                }),
            }),
        }
    }

    /// Writes `item` with whatever else is waiting; answers once its transaction committed
    /// (or failed). Dropping the future does not take the item back: it is committed unless
    /// its batch had not begun.
    pub async fn submit(&self, item: C::Item) -> Result<C::Output, GroupError<C::Error>> {
        let bytes = C::bytes(&item);
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.inner.lock();
            if state.queued_bytes > 0
                && state.queued_bytes.saturating_add(bytes) > self.inner.options.max_queued_bytes
            {
                return Err(GroupError::Overloaded);
            }
            state.queued_bytes += bytes;
            state.queue.push_back(Waiting { item, bytes, reply });
            // A first committer for the first caller; another only while more than a full
            // batch per running committer waits. Extra committers split what one would have
            // committed together into smaller transactions, each paying its own round trip
            // and commit: on a loaded host that cost a third of PostgreSQL's receipts
            // (9.8k/s with four started at once, 13.0k/s with one, in the load bench).
            let running = state.running;
            let options = &self.inner.options;
            let start = running == 0
                || (running < options.committers
                    && (state.queue.len() > options.max_items.saturating_mul(running)
                        || state.queued_bytes > options.max_bytes.saturating_mul(running)));
            if start {
                state.running += 1;
            }
            start
        };
        if start {
            // The place is taken before the task exists: a task the runtime drops unpolled
            // (it is shutting down), or no runtime at all, still frees it (and answers what
            // waits, if no committer is left), never leaving the count stuck.
            let place = Running {
                inner: Arc::clone(&self.inner),
                ended: false,
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(Inner::run(place))),
                Err(_) => drop(place),
            }
        }
        answer.await.unwrap_or(Err(GroupError::Lost))
    }
}

/// The committer's place, freed when its task ends however it ends: by finding the queue
/// empty ([`Inner::next`]), or by a panic or the runtime dropping it, when what waits is
/// answered (`Lost`) rather than left to time out, if no other committer is left to take it.
struct Running<C: Commit> {
    inner: Arc<Inner<C>>,
    ended: bool,
}

impl<C: Commit> Drop for Running<C> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut state = self.inner.lock();
        state.running = state.running.saturating_sub(1);
        if state.running == 0 {
            state.queue.clear();
            state.queued_bytes = 0;
        }
    }
}

impl<C: Commit> Inner<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next batch: callers still waiting, within the bounds; `None` (and this committer
    /// ends) when there are none.
    fn next(&self, place: &mut Running<C>) -> Option<Vec<Waiting<C>>> {
        let mut state = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while let Some(w) = state.queue.front() {
            if !batch.is_empty()
                && (batch.len() >= self.options.max_items
                    || bytes.saturating_add(w.bytes) > self.options.max_bytes)
            {
                break;
            }
            let Some(w) = state.queue.pop_front() else {
                break;
            };
            state.queued_bytes -= w.bytes;
            if w.reply.is_closed() {
                continue; // its caller gave up: not written
            }
            bytes += w.bytes;
            batch.push(w);
        }
        if batch.is_empty() && state.queue.is_empty() {
            state.running = state.running.saturating_sub(1);
            place.ended = true;
            return None;
        }
        Some(batch)
    }

    async fn run(mut place: Running<C>) {
        let this = Arc::clone(&place.inner);
        // Receipts are pending from now until the last batch is committed: a worker's write
        // waits (a while) rather than slipping in between two batches.
        let _urgent = this.gate.urgent();
        while let Some(batch) = this.next(&mut place) {
            if batch.is_empty() {
                continue;
            }
            let mut items = Vec::with_capacity(batch.len());
            let mut replies = Vec::with_capacity(batch.len());
            for w in batch {
                items.push(w.item);
                replies.push(w.reply);
            }
            this.commit_batch(&items, replies).await;
        }
    }

    /// One transaction for `items`, answering each caller; if it fails and the error can be
    /// one item's, each alone (skipping the callers that stopped waiting meanwhile: a batch
    /// the database keeps refusing costs its callers' patience, never more).
    async fn commit_batch(&self, items: &[C::Item], replies: Vec<Reply<C>>) {
        let first = {
            let _turn = self.gate.turn().await;
            self.commit.commit(items).await
        };
        match first {
            Ok(out) if out.len() == items.len() => {
                for (reply, out) in replies.into_iter().zip(out) {
                    let _ = reply.send(Ok(out));
                }
            }
            Ok(_) => {
                // A commit that answers for fewer items than it was given is a bug of its
                // own; the callers are told nothing was committed for them.
                for reply in replies {
                    let _ = reply.send(Err(GroupError::Lost));
                }
            }
            Err(refused) if items.len() > 1 && refused.one_item => {
                for (item, reply) in items.iter().zip(replies) {
                    if reply.is_closed() {
                        continue;
                    }
                    let _turn = self.gate.turn().await;
                    let one = std::slice::from_ref(item);
                    let _ = reply.send(match self.commit.commit(one).await {
                        Ok(mut out) if out.len() == 1 => out.pop().ok_or(GroupError::Lost),
                        Ok(_) => Err(GroupError::Lost),
                        Err(refused) => Err(GroupError::Failed(refused.error)),
                    });
                }
            }
            Err(refused) => {
                for reply in replies {
                    let _ = reply.send(Err(GroupError::Failed(refused.error.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Sums numbers per transaction; refuses any batch holding a 13 (a poisoned item).
    #[derive(Default)]
    struct Sums {
        transactions: AtomicUsize,
        largest: AtomicUsize,
        /// Transactions committing now, and the most at once.
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl Commit for Sums {
        type Item = u32;
        type Output = (u32, usize);
        type Error = String;

        fn bytes(_: &u32) -> usize {
            100
        }

        fn commit<'a>(&'a self, items: &'a [u32]) -> Committed<'a, (u32, usize), String> {
            Box::pin(async move {
                let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                if items.contains(&13) {
                    return Err(Refusal {
                        error: "13 is refused".into(),
                        one_item: true,
                    });
                }
                if items.contains(&666) {
                    return Err(Refusal {
                        error: "the database is down".into(),
                        one_item: false,
                    });
                }
                let n = self.transactions.fetch_add(1, Ordering::SeqCst);
                self.largest.fetch_max(items.len(), Ordering::SeqCst);
                Ok(items.iter().map(|i| (*i, n)).collect())
            })
        }
    }

    fn group(committers: usize, max_items: usize) -> GroupCommit<Sums> {
        group_with(GroupOptions {
            max_items,
            max_bytes: 1 << 20,
            max_queued_bytes: 1 << 20,
            committers,
        })
    }

    fn group_with(options: GroupOptions) -> GroupCommit<Sums> {
        // Several committers are PostgreSQL's: its gate lets their transactions overlap.
        let gate = if options.committers > 1 {
            WriteGate::open()
        } else {
            WriteGate::new()
        };
        GroupCommit::new(Sums::default(), Arc::new(gate), options)
    }

    async fn submit_all(
        g: &GroupCommit<Sums>,
        items: impl Iterator<Item = u32>,
    ) -> Vec<Result<(u32, usize), GroupError<String>>> {
        let tasks: Vec<_> = items
            .map(|i| {
                let g = g.clone();
                tokio::spawn(async move { g.submit(i).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    /// Concurrent callers share transactions, each answered with its own item's result, and
    /// no transaction is larger than the bound.
    #[tokio::test]
    async fn concurrent_callers_share_transactions() {
        let g = group(1, 64);
        let results = submit_all(&g, 1000..1500).await;
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.as_ref().unwrap().0, 1000 + i as u32);
        }
        let transactions = g.inner.commit.transactions.load(Ordering::SeqCst);
        assert!(
            transactions < 100,
            "{transactions} transactions for 500 items"
        );
        assert!(g.inner.commit.largest.load(Ordering::SeqCst) <= 64);
        assert_eq!(g.inner.lock().running, 0, "the committer ends when idle");
    }

    /// A poisoned item fails alone; its neighbours commit.
    #[tokio::test]
    async fn a_poisoned_item_fails_only_itself() {
        let g = group(1, 64);
        let results = submit_all(&g, 0..40).await;
        for (i, r) in results.iter().enumerate() {
            match i {
                13 => {
                    assert!(matches!(r, Err(GroupError::Failed(e)) if e.contains("13 is refused")))
                }
                _ => assert_eq!(r.as_ref().unwrap().0, i as u32),
            }
        }
    }

    /// An error that is not one item's fails the batch at once, without trying each.
    #[tokio::test]
    async fn a_database_failure_fails_the_batch_without_retrying_each() {
        let g = group(1, 64);
        let results = submit_all(&g, (0..10).map(|i| if i == 0 { 666 } else { i })).await;
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(GroupError::Failed(e)) if e.contains("down")))
        );
        assert_eq!(g.inner.lock().running, 0);
    }

    /// Past the byte budget, a caller is refused at once.
    #[tokio::test]
    async fn past_the_byte_budget_a_caller_is_refused() {
        let options = GroupOptions {
            max_items: 1,
            max_bytes: 1 << 20,
            max_queued_bytes: 250,
            committers: 1,
        };
        let g = group_with(options);
        let results = submit_all(&g, 0..10).await;
        assert!(results.contains(&Err(GroupError::Overloaded)));
        assert!(results.iter().any(|r| r.is_ok()));
    }

    /// A committer dropped with its runtime (mid-commit) frees its place: the next caller,
    /// on another runtime, starts one again and is answered.
    #[test]
    fn a_committer_dropped_with_its_runtime_frees_its_place() {
        let g = group(1, 64);
        let first = tokio::runtime::Runtime::new().unwrap();
        let g2 = g.clone();
        first.spawn(async move { g2.submit(1000).await });
        std::thread::sleep(std::time::Duration::from_millis(2));
        drop(first);
        assert_eq!(g.inner.lock().running, 0);
        let second = tokio::runtime::Runtime::new().unwrap();
        assert_eq!(second.block_on(g.submit(1001)).unwrap().0, 1001);
    }

    /// Several committers (PostgreSQL) run transactions at once and still answer everyone.
    #[tokio::test]
    async fn several_committers_answer_everyone() {
        let g = group(4, 8);
        let results = submit_all(&g, 1000..1200).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(g.inner.lock().running, 0);
        let peak = g.inner.commit.peak.load(Ordering::SeqCst);
        assert!(
            (2..=4).contains(&peak),
            "a backlog of 25 batches: {peak} at once"
        );
    }

    /// Large items fill a batch by bytes long before by count: a backlog of bytes starts
    /// more committers too.
    #[tokio::test]
    async fn a_backlog_of_bytes_starts_more_committers() {
        let options = GroupOptions {
            max_items: 256,
            max_bytes: 250,
            max_queued_bytes: 1 << 20,
            committers: 4,
        };
        let g = group_with(options);
        let results = submit_all(&g, 1000..1040).await;
        assert!(results.iter().all(|r| r.is_ok()));
        let peak = g.inner.commit.peak.load(Ordering::SeqCst);
        assert!(
            peak >= 2,
            "40 items of 100 bytes, 2 a batch: {peak} at once"
        );
    }

    /// While one committer keeps up (no more than a batch waits), no second one starts: its
    /// transactions would only be smaller.
    #[tokio::test]
    async fn one_batch_waiting_keeps_one_committer() {
        let g = group(4, 64);
        let results = submit_all(&g, 1000..1040).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(g.inner.commit.peak.load(Ordering::SeqCst), 1);
    }
}
