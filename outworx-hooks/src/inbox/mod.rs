#![doc = include_str!("../../docs/inbox.md")]

mod error;
pub(crate) mod store;
mod worker;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use outworx_hooks_queue::{GroupCommit, GroupError, GroupOptions, Pool, WriteGate, on_pool};

use crate::queue::Durability;

pub use crate::queue::WorkerHandle;
pub use error::InboxError;
pub use store::{Delivery, DeliveryFilter, DeliveryStatus, InboxSummary};
pub(crate) use store::{NewEntry, headers_json};
pub use worker::{Worker, WorkerOptions};

use crate::queue::{Clock, SystemClock};

/// The `sqlx` this crate is built with (for handlers that write their side effects in the
/// same database).
pub use sqlx;

/// The longest a `queue` route waits for its commit before answering 503 (the provider
/// retries): a database that hangs costs a delivery this, never more.
pub const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A `queue` route's retry settings, stored with each delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Attempts in all before the delivery is dead (default 10).
    pub attempts: u32,
    /// The first retry's delay; each next one doubles, with ± 20 % jitter (default 5 s).
    pub backoff: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            attempts: 10,
            backoff: Duration::from_secs(5),
        }
    }
}

/// A delivery the worker gave up on, for [`Inbox::on_dead`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The inbox row.
    pub id: i64,
    /// The route.
    pub route: String,
    /// The idempotency key.
    pub key: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
}

type DeadHook = Arc<dyn Fn(&DeadLetter) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_dead: RwLock<Option<DeadHook>>,
    /// SQLite's one writer in this process: receipts first, the worker after.
    pub(crate) gate: Arc<WriteGate>,
    /// Concurrent receipts, committed together.
    receipts: GroupCommit<store::Receipts>,
}

impl Inner {
    fn new(
        pool: Pool,
        clock: Arc<dyn Clock>,
        on_dead: Option<DeadHook>,
        gate: Arc<WriteGate>,
    ) -> Inner {
        let receipts = GroupCommit::new(
            store::Receipts {
                pool: pool.clone(),
                clock: Arc::clone(&clock),
            },
            Arc::clone(&gate),
            GroupOptions::for_pool(&pool),
        );
        Inner {
            pool,
            clock,
            on_dead: RwLock::new(on_dead),
            gate,
            receipts,
        }
    }
}

/// The durable inbox: SQLite (a file next to the app, the embedded default), PostgreSQL
/// (many instances share one), or memory (**tests only: nothing survives the process**).
/// Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

static INSTALLED: RwLock<Option<Inbox>> = RwLock::new(None);

impl Inbox {
    /// Opens `url`: a `postgres://` URL, a `sqlite:` URL, `:memory:`, or a file path.
    ///
    /// A receipt answered 200 survives the application's crash (`kill -9`) on either backend
    /// (see [`Durability`]; [`Inbox::open_with`] to choose).
    pub async fn open(url: &str) -> Result<Inbox, InboxError> {
        Ok(Inbox::with_pool(store::open(url, None).await?))
    }

    /// Opens `url` with a receipt's durability chosen: [`Durability::Process`] (SQLite's
    /// default: a 200 survives the application's crash, a power loss may take the last
    /// ones) or [`Durability::Disk`] (every 200 is on disk first; SQLite `synchronous=FULL`,
    /// PostgreSQL `synchronous_commit=on`).
    pub async fn open_with(url: &str, durability: Durability) -> Result<Inbox, InboxError> {
        Ok(Inbox::with_pool(store::open(url, Some(durability)).await?))
    }

    /// An inbox in memory. **Not durable**: a crash loses every queued delivery. For tests.
    pub async fn memory() -> Result<Inbox, InboxError> {
        Ok(Inbox::with_pool(store::open(":memory:", None).await?))
    }

    fn with_pool(pool: Pool) -> Inbox {
        let gate = Arc::new(WriteGate::for_pool(&pool));
        Inbox {
            inner: Arc::new(Inner::new(pool, Arc::new(SystemClock), None, gate)),
        }
    }

    /// The same inbox on another clock (tests drive a [`crate::queue::ManualClock`]).
    pub fn with_clock(self, clock: impl Clock) -> Inbox {
        let on_dead = self
            .inner
            .on_dead
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Inbox {
            inner: Arc::new(Inner::new(
                self.inner.pool.clone(),
                Arc::new(clock),
                on_dead,
                Arc::clone(&self.inner.gate),
            )),
        }
    }

    /// Runs `hook` when a delivery is dead (after the commit that made it so).
    pub fn on_dead(&self, hook: impl Fn(&DeadLetter) + Send + Sync + 'static) {
        *self
            .inner
            .on_dead
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(hook));
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.inner.pool.backend()
    }

    /// Makes this the inbox `queue` routes commit to.
    pub fn install(&self) {
        *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some(self.clone());
    }

    /// The installed inbox, if any.
    pub fn installed() -> Option<Inbox> {
        INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts a worker that processes this inbox by re-dispatching each delivery through
    /// `router` (the application's own, with its state), with the default options.
    #[must_use = "keep the handle to shut the worker down"]
    pub fn start(&self, router: axum::Router) -> WorkerHandle {
        Worker::new(self.clone(), router, WorkerOptions::default()).spawn()
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }
}

/// The request extension that marks a worker's re-dispatch. Only this crate makes one, and
/// a request from the network cannot carry an extension: it cannot be forged.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub(crate) id: i64,
    pub(crate) attempt: u32,
    pub(crate) signature_valid: Option<bool>,
    /// The route it was queued by (its namespace): another route at the path refuses it.
    pub(crate) route: String,
}

/// What the pipeline tells the worker about a re-dispatched delivery (a response
/// extension).
#[derive(Debug, Clone)]
pub(crate) enum Processed {
    /// 2xx, and marked processed (or no mark was required).
    Done,
    /// Anything else: the reason, for `last_error`.
    Retry(String),
    /// The route does not take it any more: dead at once, with the reason (replay it after
    /// the fix).
    Dead(String),
}

impl Inbox {
    /// Queued deliveries, newest first (at most 1,000).
    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, InboxError> {
        on_pool!(&self.inner.pool, conn, crate::inbox::store, |c, db| {
            db::list(c, filter).await
        })
    }

    /// One queued delivery, with its stored body.
    pub async fn delivery(&self, id: i64) -> Result<Option<(Delivery, Vec<u8>)>, InboxError> {
        let entry = self
            .deliveries(&DeliveryFilter::default().id(id))
            .await?
            .into_iter()
            .next();
        let Some(entry) = entry else { return Ok(None) };
        let body = on_pool!(&self.inner.pool, conn, crate::inbox::store, |c, db| {
            db::body(c, id).await?
        });
        Ok(Some((entry, body.unwrap_or_default())))
    }

    /// Puts deliveries not in flight (dead, done, or pending a far-off retry) matching
    /// `filter` back in the queue, due now, with a new round of attempts. A filter must name an
    /// id, a status or a route.
    pub async fn replay(&self, filter: &DeliveryFilter) -> Result<u64, InboxError> {
        if filter.id.is_none() && filter.status.is_none() && filter.route.is_none() {
            return Err(InboxError::Invalid(
                "replay: name a delivery, a status (dead) or a route".into(),
            ));
        }
        let now = self.now();
        on_pool!(&self.inner.pool, tx, crate::inbox::store, |c, db| {
            db::replay(c, filter, now).await
        })
    }

    /// Deletes finished deliveries (done, dead) last changed more than `older_than` ago, a
    /// batch per short transaction (so receipts keep their turn at the writer); returns how
    /// many. A spawned worker purges by itself ([`WorkerOptions::retention`]).
    pub async fn purge(&self, older_than: Duration) -> Result<u64, InboxError> {
        let retention = crate::queue::Retention::older_than(older_than);
        let keep = &retention;
        retention
            .purge_all(|| async move {
                // After the receipts waiting for the writer, as the worker's writes.
                let _turn = self.inner.gate.background().await;
                self.purge_batch(keep).await
            })
            .await
    }

    /// One batch of [`Inbox::purge`], by `retention`'s cut-offs.
    pub(crate) async fn purge_batch(
        &self,
        retention: &crate::queue::Retention,
    ) -> Result<outworx_hooks_queue::Purged, InboxError> {
        let cut = retention.cutoffs(self.now());
        let batch = retention.batch_size();
        on_pool!(&self.inner.pool, tx, crate::inbox::store, |c, db| {
            db::purge(c, cut, batch).await
        })
    }

    /// How many deliveries are in each state (each count capped at `cap`: a count equal to it
    /// means at least that many), the retries among the pending ones, and when the oldest
    /// pending one arrived: an operator's overview (`outworx serve --inbox-db`), read from an
    /// index, so its cost is bounded by `cap` whatever the inbox's history.
    pub async fn summary(&self, cap: u32) -> Result<InboxSummary, InboxError> {
        let cap = i64::from(cap.max(1));
        on_pool!(&self.inner.pool, read, crate::inbox::store, |c, db| {
            db::summary(c, cap).await
        })
    }

    /// How many deliveries are in each status.
    pub async fn counts(&self) -> Result<Vec<(DeliveryStatus, u64)>, InboxError> {
        on_pool!(&self.inner.pool, conn, crate::inbox::store, |c, db| {
            db::counts(c).await
        })
    }

    /// A worker over this inbox and `router`, to spawn or step by hand.
    pub fn worker(&self, router: axum::Router, options: WorkerOptions) -> Worker {
        Worker::new(self.clone(), router, options)
    }

    /// Commits one verified delivery (the receive path of a `queue` route), in one
    /// transaction with the receipts arriving meanwhile; answers once it is committed.
    pub(crate) async fn enqueue(&self, e: store::NewEntry) -> Result<store::Enqueued, InboxError> {
        self.inner.receipts.submit(e).await.map_err(|e| match e {
            GroupError::Failed(e) => e,
            other => InboxError::Store(other.to_string()),
        })
    }
}
