//! The [`Emitter`]: what an application holds to send messages and manage endpoints.

use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// The reason an operator's disable stores: only an operator lifts it.
const OPERATOR_DISABLED: &str = "disabled by an operator";

use outworx_hooks_queue::{GroupCommit, GroupError, GroupOptions, WriteGate, on_pool};
use serde::Serialize;
use tokio::sync::Notify;

use super::limits::{DEFAULT_MAX_PAYLOAD, MAX_ENDPOINTS_PER_OWNER};
use super::model::{
    CreatedEndpoint, Delivery, DeliveryStatus, Endpoint, EndpointUpdate, Format, NewEndpoint,
    NewMessage, Sent, validate_endpoint_fields, validate_text,
};
use super::shared::{DeadHook, DeadLetter, DisabledEndpoint, DisabledHook, Shared};
use super::store::messages::{Pending, Sends};
use super::store::{DeliveryFilter, Outbox, Scope};
use super::worker::{Worker, WorkerOptions};
use super::{SendError, TargetPolicy, ids};
use crate::queue::{Clock, RetrySchedule, SystemClock, WorkerHandle};

/// Sends messages and manages endpoints over one [`Outbox`]. Cheap to clone.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use outworx_hooks::send::{Emitter, NewEndpoint, Outbox, Scope, TargetPolicy};
///
/// let emitter = Emitter::builder(Outbox::memory().await?)
///     .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
///     .worker(None) // deliver with `emitter.worker(..).run_once(..)` in this example
///     .build();
/// let ep = emitter
///     .create_endpoint(NewEndpoint::new("http://127.0.0.1:9/hooks").event("order.*"))
///     .await?;
/// let sent = emitter.send("order.created", &serde_json::json!({"id": 1})).await?;
/// assert_eq!(sent.deliveries, 1);
/// assert_eq!(emitter.endpoints(Scope::All).await?[0].id, ep.endpoint.id);
/// # Ok::<(), outworx_hooks::send::SendError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Emitter {
    pub(crate) shared: Arc<Shared>,
    /// The in-process worker, when the builder started one.
    worker: Arc<OnceLock<WorkerHandle>>,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("outbox", &self.shared.outbox.backend())
            .field("policy", &self.shared.policy)
            .field("max_payload", &self.shared.max_payload)
            .finish_non_exhaustive()
    }
}

/// Configures an [`Emitter`].
#[must_use]
pub struct EmitterBuilder {
    outbox: Outbox,
    policy: TargetPolicy,
    max_payload: usize,
    clock: Arc<dyn Clock>,
    schedule: RetrySchedule,
    rotation_grace: Duration,
    commit_timeout: Option<Duration>,
    on_dead: Option<DeadHook>,
    on_disabled: Option<DisabledHook>,
    worker: Option<WorkerOptions>,
    quotas: super::Quotas,
}

impl EmitterBuilder {
    /// Which targets may be reached (default: public `https` only).
    pub fn policy(mut self, policy: TargetPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// What each owner may do per second or minute (default: 10 test calls a minute, sends
    /// not limited); see [`Quotas`](super::Quotas).
    pub fn quotas(mut self, quotas: super::Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// The largest payload `send` accepts (default 256 KiB).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The retry schedule (default: Svix's, eight attempts over about 27.6 hours).
    pub fn schedule(mut self, schedule: RetrySchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// The clock (tests drive a [`crate::queue::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a rotated-out secret keeps signing beside the new one (default 24 hours).
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
        self
    }

    /// How long `#[emit]` and `EmitLayer` wait for the outbox to commit a message before
    /// answering 500 (default `Some(5 s)`): a database that hangs costs a request this, never
    /// more. A commit that lands after it is still sent, so the client's retry may emit the
    /// message twice (give it an idempotency key to make that one message). `None` waits as
    /// long as the database does: for tests on tokio's paused clock, which would otherwise
    /// jump straight to the timeout while the database works.
    pub fn commit_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.commit_timeout = timeout;
        self
    }

    /// Runs when a delivery is dead (after the commit that made it so).
    pub fn on_dead(mut self, hook: impl Fn(&DeadLetter) + Send + Sync + 'static) -> Self {
        self.on_dead = Some(Arc::new(hook));
        self
    }

    /// Runs when the worker disables an endpoint.
    pub fn on_disabled(mut self, hook: impl Fn(&DisabledEndpoint) + Send + Sync + 'static) -> Self {
        self.on_disabled = Some(Arc::new(hook));
        self
    }

    /// The in-process worker's options, or `None` for no worker in this process (another
    /// process runs `outworx worker`, or a test steps [`Worker::run_once`]). Default: a worker
    /// with [`WorkerOptions::default`].
    pub fn worker(mut self, options: Option<WorkerOptions>) -> Self {
        self.worker = options;
        self
    }

    /// The emitter; its worker (if any) starts on the current tokio runtime.
    ///
    /// # Panics
    /// With a worker, when called outside a tokio runtime.
    pub fn build(self) -> Emitter {
        let pool = self.outbox.pool.clone();
        let gate = Arc::new(WriteGate::for_pool(&pool));
        let sends = GroupCommit::new(
            Sends {
                pool: pool.clone(),
                clock: Arc::clone(&self.clock),
            },
            Arc::clone(&gate),
            GroupOptions::for_pool(&pool),
        );
        let emitter = Emitter {
            shared: Arc::new(Shared {
                gate,
                sends,
                outbox: self.outbox,
                policy: Arc::new(self.policy),
                max_payload: self.max_payload,
                clock: self.clock,
                schedule: self.schedule,
                rotation_grace: self.rotation_grace,
                commit_timeout: self.commit_timeout,
                wake: Notify::new(),
                on_dead: self.on_dead,
                on_disabled: self.on_disabled,
                messages_quota: self.quotas.messages.map(super::quota::Buckets::new),
                tests_quota: self.quotas.test_calls.map(super::quota::Buckets::new),
            }),
            worker: Arc::new(OnceLock::new()),
        };
        if let Some(options) = self.worker {
            let handle = Worker::new(Arc::clone(&emitter.shared), options).spawn();
            let _ = emitter.worker.set(handle);
        }
        emitter
    }
}

static GLOBAL: RwLock<Option<Emitter>> = RwLock::new(None);

impl Emitter {
    /// Configures an emitter over `outbox`.
    pub fn builder(outbox: Outbox) -> EmitterBuilder {
        EmitterBuilder {
            outbox,
            policy: TargetPolicy::default(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            clock: Arc::new(SystemClock),
            schedule: RetrySchedule::default(),
            rotation_grace: Duration::from_secs(24 * 3600),
            commit_timeout: Some(Duration::from_secs(5)),
            on_dead: None,
            on_disabled: None,
            worker: Some(WorkerOptions::default()),
            quotas: super::Quotas::default(),
        }
    }

    /// Zero configuration: the outbox at `url` (a SQLite file path, or a `postgres://` URL),
    /// the target policy from `OUTWORX_ALLOW_TARGETS`, and a worker in this process.
    pub async fn open(url: &str) -> Result<Emitter, SendError> {
        let outbox = Outbox::open(url).await?;
        Ok(Emitter::builder(outbox)
            .policy(TargetPolicy::from_env()?)
            .build())
    }

    /// Makes this the emitter `#[emit]` handlers and [`super::EmitLayer`]s use when the
    /// request carries no `Extension<Emitter>`.
    ///
    /// [`init`](crate::init) refuses to start when `#[emit]` routes are compiled in and no
    /// emitter is installed: install it before `init`.
    pub fn install(&self) {
        crate::runtime::emitter_installed();
        *GLOBAL.write().unwrap_or_else(|p| p.into_inner()) = Some(self.clone());
    }

    /// The installed emitter, if any.
    pub fn installed() -> Option<Emitter> {
        GLOBAL.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.shared.outbox
    }

    /// The target policy.
    pub fn policy(&self) -> &TargetPolicy {
        &self.shared.policy
    }

    /// A worker over this emitter's outbox, to step by hand ([`Worker::run_once`]).
    pub fn worker(&self, options: WorkerOptions) -> Worker {
        Worker::new(Arc::clone(&self.shared), options)
    }

    /// Stops the in-process worker (if any) after its in-flight attempts are recorded.
    pub async fn shutdown(&self) {
        if let Some(w) = self.worker.get() {
            w.shutdown().await;
        }
    }

    pub(crate) fn now(&self) -> i64 {
        self.shared.now()
    }

    /// Commits a message for every endpoint subscribed to `event_type`.
    pub async fn send(
        &self,
        event_type: &str,
        payload: &impl Serialize,
    ) -> Result<Sent, SendError> {
        self.send_message(NewMessage::new(event_type, payload)?)
            .await
    }

    /// Commits a message built with [`NewMessage`] (an idempotency key, an owner).
    ///
    /// Concurrent sends share a transaction (group commit): each is answered once the
    /// transaction holding it committed, with its own result.
    pub async fn send_message(&self, message: NewMessage) -> Result<Sent, SendError> {
        self.send_message_with(message, true).await
    }

    /// [`Emitter::send_message`]; with `refuse` false, a message over its owner's quota is
    /// counted and sent (`#[emit]`, whose handler has already run).
    pub(crate) async fn send_message_with(
        &self,
        message: NewMessage,
        refuse: bool,
    ) -> Result<Sent, SendError> {
        message.validate(self.shared.max_payload)?;
        let admitted = self.shared.admit_message(&message.owner);
        if refuse {
            admitted?;
        }
        let id = ids::new_id("msg_", self.now())?;
        let pending = Pending {
            message,
            id,
            // The span it was emitted in: each attempt's span is that span's child.
            traceparent: crate::otel::traceparent(&tracing::Span::current()),
        };
        let sent = self
            .shared
            .sends
            .submit(pending)
            .await
            .map_err(|e| match e {
                GroupError::Failed(e) => e,
                GroupError::Overloaded => {
                    SendError::Store("too many sends are waiting for the database".into())
                }
                // Lost (and whatever a later version adds): it may have been committed.
                _ => SendError::Uncertain,
            })?;
        if sent.deliveries > 0 {
            self.shared.wake.notify_one();
        }
        Ok(sent)
    }

    /// Commits a message inside the caller's transaction: it is sent if and only if the
    /// transaction commits. The outbox must live in the same database.
    ///
    /// ```no_run
    /// use outworx_hooks::send::{Emitter, sqlx};
    ///
    /// # async fn run(emitter: Emitter, pool: sqlx::SqlitePool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("UPDATE orders SET status = 'shipped' WHERE id = 7").execute(&mut *tx).await?;
    /// emitter.send_in(&mut tx, "order.shipped", &serde_json::json!({"id": 7})).await?;
    /// tx.commit().await?; // the message exists only now
    /// # Ok(()) }
    /// ```
    pub async fn send_in<T: OutboxTx + ?Sized>(
        &self,
        tx: &mut T,
        event_type: &str,
        payload: &impl Serialize,
    ) -> Result<Sent, SendError> {
        self.send_message_in(tx, NewMessage::new(event_type, payload)?)
            .await
    }

    /// [`Emitter::send_in`] with a [`NewMessage`].
    pub async fn send_message_in<T: OutboxTx + ?Sized>(
        &self,
        tx: &mut T,
        message: NewMessage,
    ) -> Result<Sent, SendError> {
        message.validate(self.shared.max_payload)?;
        self.shared.admit_message(&message.owner)?;
        let now = self.now();
        let id = ids::new_id("msg_", now)?;
        let sent = tx.insert_message(&message, &id, now).await?;
        // The caller commits later; a worker polling finds it then.
        self.shared.wake.notify_one();
        Ok(sent)
    }

    /// Creates an endpoint; the answer holds its secret, which is never answered again.
    pub async fn create_endpoint(&self, new: NewEndpoint) -> Result<CreatedEndpoint, SendError> {
        self.shared.policy.check_new_url(&new.url)?;
        validate_endpoint_fields(&new.events, &new.auth, &new.metadata)?;
        validate_text("owner", &new.owner, true)?;
        super::model::validate_endpoint_extras(
            new.uid.as_deref(),
            &new.description,
            new.channels.as_deref(),
            &new.headers,
        )?;
        let secret = match new.secret {
            Some(s) => check_secret(&s, new.format)?,
            None => ids::new_hmac_secret()?,
        };
        let now = self.now();
        let endpoint = Endpoint {
            id: ids::new_id("ep_", now)?,
            owner: new.owner,
            url: new.url,
            events: new.events,
            auth: new.auth.kind().to_owned(),
            format: new.format,
            metadata: new.metadata,
            enabled: !new.disabled,
            disabled_reason: new.disabled.then(|| "disabled by its owner".to_owned()),
            failing_since: None,
            public_key: crate::security::scheme::standard_public_key(&secret),
            created_at: now,
            updated_at: now,
            uid: new.uid,
            description: new.description,
            channels: new.channels,
            rate_limit: new.rate_limit,
        };
        // Counted, not listed, and in the insert's transaction: the cap holds under
        // concurrent creates (it did not: 300 at once all succeeded).
        let created = on_pool!(
            &self.shared.outbox.pool,
            tx,
            crate::send::store::endpoints,
            |c, db| db::insert_endpoint_capped(
                c,
                &endpoint,
                &new.auth,
                &secret,
                &new.headers,
                now,
                MAX_ENDPOINTS_PER_OWNER as u64
            )
            .await?
        );
        if !created {
            return Err(SendError::invalid(
                "endpoints",
                format!("an owner has at most {MAX_ENDPOINTS_PER_OWNER} endpoints"),
            ));
        }
        let secret = endpoint.public_key.clone().unwrap_or(secret);
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// An endpoint, if `scope` may see it.
    pub async fn endpoint(
        &self,
        scope: Scope<'_>,
        id: &str,
    ) -> Result<Option<Endpoint>, SendError> {
        let row = on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::endpoints,
            |c, db| db::endpoint(c, scope, id).await?
        );
        Ok(row.map(|r| r.endpoint))
    }

    /// The endpoints `scope` may see (at most 1,000).
    pub async fn endpoints(&self, scope: Scope<'_>) -> Result<Vec<Endpoint>, SendError> {
        on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::endpoints,
            |c, db| db::endpoints(c, scope).await
        )
    }

    /// Changes an endpoint: only the fields given are written, so a change made meanwhile
    /// by the worker (a 410, a long failure) is not undone by an unrelated edit.
    pub async fn update_endpoint(
        &self,
        scope: Scope<'_>,
        id: &str,
        update: EndpointUpdate,
    ) -> Result<Endpoint, SendError> {
        let row = on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::endpoints,
            |c, db| db::endpoint(c, scope, id).await?
        );
        let row = row.ok_or(SendError::NotFound)?;
        if let Some(url) = &update.url {
            self.shared.policy.check_new_url(url)?;
        }
        let events = update.events.as_ref().unwrap_or(&row.endpoint.events);
        let metadata = update.metadata.as_ref().unwrap_or(&row.endpoint.metadata);
        validate_endpoint_fields(
            events,
            update.auth.as_ref().unwrap_or(&Default::default()),
            metadata,
        )?;
        if let Some(format) = update.format {
            // The stored secret must suit the new format (a plain one cannot sign Standard).
            check_secret(&row.secret, format)?;
        }
        let now = self.now();
        let done = on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::endpoints,
            |c, db| db::update_endpoint(
                c,
                &row.endpoint.id,
                &row.endpoint.owner,
                &update,
                now,
                matches!(scope, Scope::All)
            )
            .await?
        );
        if !done {
            // Gone meanwhile, or an operator's disable that its owner may not lift.
            return match self.endpoint(scope, id).await? {
                Some(e)
                    if !e.enabled && e.disabled_reason.as_deref() == Some(OPERATOR_DISABLED) =>
                {
                    Err(SendError::Forbidden(
                        "an operator disabled this endpoint: only an operator can enable it".into(),
                    ))
                }
                _ => Err(SendError::NotFound),
            };
        }
        self.endpoint(scope, id).await?.ok_or(SendError::NotFound)
    }

    /// Enables or disables an endpoint. With [`Scope::All`] (an operator: the CLI, the
    /// dashboard) a disable says `disabled by an operator`, and its owner
    /// ([`Scope::Owner`], the management API) cannot enable it again
    /// ([`SendError::Forbidden`]); an owner's own disable, or the worker's (a 410, a long
    /// failure), the owner can.
    pub async fn set_enabled(
        &self,
        scope: Scope<'_>,
        id: &str,
        enabled: bool,
    ) -> Result<Endpoint, SendError> {
        let update = EndpointUpdate {
            enabled: Some(enabled),
            ..EndpointUpdate::default()
        };
        self.update_endpoint(scope, id, update).await
    }

    /// Deletes an endpoint; its pending deliveries end `dead` ("endpoint deleted").
    pub async fn delete_endpoint(&self, scope: Scope<'_>, id: &str) -> Result<bool, SendError> {
        on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::endpoints,
            |c, db| db::delete_endpoint(c, scope, id).await
        )
    }

    /// Replaces an endpoint's secret with a new one of the same kind. The old one keeps
    /// signing beside it for the rotation grace, so receivers can switch without a gap. The
    /// answer holds the new secret (for `v1a`, the new public key), shown this once.
    pub async fn rotate_secret(
        &self,
        scope: Scope<'_>,
        id: &str,
    ) -> Result<CreatedEndpoint, SendError> {
        self.rotate_secret_to(scope, id, None, self.shared.rotation_grace)
            .await
    }

    /// [`Emitter::rotate_secret`] to `secret` (checked as a new endpoint's; generated when
    /// `None`), the old one signing beside it for `grace` instead of the emitter's rotation
    /// grace. The outbox keeps one previous secret: a rotation within the grace of the one
    /// before ends that one's grace.
    pub async fn rotate_secret_to(
        &self,
        scope: Scope<'_>,
        id: &str,
        secret: Option<String>,
        grace: Duration,
    ) -> Result<CreatedEndpoint, SendError> {
        let row = on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::endpoints,
            |c, db| db::endpoint(c, scope, id).await?
        );
        let row = row.ok_or(SendError::NotFound)?;
        let secret = match secret {
            Some(s) => check_secret(&s, row.endpoint.format)?,
            None if row.endpoint.format.is_standard() && row.secret.starts_with("whsk_") => {
                ids::new_ed25519_key()?
            }
            None => ids::new_hmac_secret()?,
        };
        let now = self.now();
        let grace = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let done = on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::endpoints,
            |c, db| db::rotate(c, scope, id, &secret, now.saturating_add(grace), now).await?
        );
        if !done {
            return Err(SendError::NotFound);
        }
        let mut endpoint = row.endpoint;
        endpoint.public_key = crate::security::scheme::standard_public_key(&secret);
        let secret = endpoint.public_key.clone().unwrap_or(secret);
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// Sends a `webhook.test` message to one endpoint only.
    pub async fn send_test(&self, scope: Scope<'_>, id: &str) -> Result<Sent, SendError> {
        let ep = self.endpoint(scope, id).await?.ok_or(SendError::NotFound)?;
        self.shared.admit_test(&ep.owner)?;
        let mut message = NewMessage::new(
            "webhook.test",
            &serde_json::json!({"endpoint_id": ep.id, "test": true}),
        )?
        .owner(ep.owner);
        message.only_endpoint = Some(ep.id);
        self.send_message(message).await
    }

    /// Deliveries `scope` may see, newest first.
    pub async fn deliveries(
        &self,
        scope: Scope<'_>,
        filter: &DeliveryFilter,
    ) -> Result<Vec<Delivery>, SendError> {
        on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::views,
            |c, db| db::deliveries(c, scope, filter).await
        )
    }

    /// Attempts `scope` may see, newest first, of one endpoint and/or one message.
    pub async fn attempts(
        &self,
        scope: Scope<'_>,
        endpoint_id: Option<&str>,
        message_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<super::Attempt>, SendError> {
        on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::views,
            |c, db| db::attempts(c, scope, endpoint_id, message_id, limit).await
        )
    }

    /// Puts the matching finished deliveries (dead, or delivered) back in the queue, due now,
    /// with a new round of attempts. Returns how many.
    ///
    /// One message: `DeliveryFilter { message_id: Some(id), .. }`; an endpoint's failures in a
    /// window: `endpoint_id`, `status: Some(Dead)`, `since`, `until`.
    pub async fn replay(
        &self,
        scope: Scope<'_>,
        filter: &DeliveryFilter,
    ) -> Result<u64, SendError> {
        if filter.message_id.is_none() && filter.endpoint_id.is_none() && filter.status.is_none() {
            // An empty filter would send every message ever delivered again.
            return Err(SendError::invalid(
                "replay",
                "name a message, an endpoint or a status (dead)",
            ));
        }
        let now = self.now();
        let n = on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::deliveries,
            |c, db| db::replay(c, scope, filter, now).await?
        );
        if n > 0 {
            self.shared.wake.notify_one();
        }
        Ok(n)
    }

    /// Deletes the messages finished before `retention`'s cut-offs (every delivery
    /// delivered before [`Retention::done`] ago or dead before [`Retention::dead`] ago), with
    /// their deliveries and attempts, a batch per short transaction; returns how many
    /// messages it deleted. A spawned worker does this by itself
    /// ([`WorkerOptions::retention`](super::WorkerOptions::retention)); this is for an
    /// outbox without one, and `outworx messages purge`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use outworx_hooks::queue::Retention;
    /// use outworx_hooks::send::{Emitter, Outbox};
    ///
    /// let emitter = Emitter::builder(Outbox::memory().await?).worker(None).build();
    /// emitter.send("order.created", &serde_json::json!({"id": 1})).await?; // to nobody
    /// let month = Retention::older_than(Duration::from_secs(30 * 86_400));
    /// assert_eq!(emitter.purge(&month).await?, 0, "sent just now: kept");
    /// tokio::time::sleep(Duration::from_millis(5)).await;
    /// assert_eq!(emitter.purge(&Retention::older_than(Duration::ZERO)).await?, 1);
    /// # Ok::<(), outworx_hooks::send::SendError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// [`Retention::done`]: crate::queue::Retention::done
    /// [`Retention::dead`]: crate::queue::Retention::dead
    pub async fn purge(&self, retention: &crate::queue::Retention) -> Result<u64, SendError> {
        self.worker(WorkerOptions::default().retention(None))
            .purge(retention)
            .await
    }

    /// Forgets one message's content now, for an erasure request: its payload (answered as
    /// `{}` from then on) and the answers its attempts recorded. Its id, type, times,
    /// deliveries and attempts are kept; its deliveries still waiting end dead, and it can no
    /// longer be replayed. `Ok(false)` when `scope` has no such message. An attempt in
    /// flight at that moment still records its answer: expunge again once it has.
    pub async fn expunge(&self, scope: Scope<'_>, message_id: &str) -> Result<bool, SendError> {
        let now = self.now();
        on_pool!(
            &self.shared.outbox.pool,
            tx,
            crate::send::store::retention,
            |c, db| db::expunge(c, scope, message_id, now).await
        )
    }

    /// The health of the first `endpoints` endpoints `scope` may see (oldest first, 1 to
    /// [`MAX_LIST`](super::limits::MAX_LIST)): the success rate of each one's last `recent` attempts
    /// (1 to 1,000), its last attempt, and its waiting and dead deliveries, each counted up to
    /// `cap` (a count equal to it means at least that many). Every figure is read by index
    /// and bounded, whatever the outbox's history: for an operator's overview, such as
    /// `outworx serve --outbox-db`'s dashboard.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use outworx_hooks::send::{Emitter, NewEndpoint, Outbox, Scope, TargetPolicy};
    ///
    /// let emitter = Emitter::builder(Outbox::memory().await?)
    ///     .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
    ///     .worker(None)
    ///     .build();
    /// emitter.create_endpoint(NewEndpoint::new("http://127.0.0.1:9/hooks")).await?;
    /// emitter.send("order.created", &serde_json::json!({"id": 1})).await?;
    /// let health = emitter.endpoint_health(Scope::All, 100, 200, 10_000).await?;
    /// assert_eq!((health[0].recent_attempts, health[0].waiting), (0, 1), "one waits, none tried");
    /// # Ok::<(), outworx_hooks::send::SendError>(())
    /// # }).unwrap();
    /// ```
    pub async fn endpoint_health(
        &self,
        scope: Scope<'_>,
        recent: u32,
        endpoints: u32,
        cap: u32,
    ) -> Result<Vec<super::EndpointHealth>, SendError> {
        let cap = i64::from(cap.max(1));
        on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::views,
            |c, db| db::endpoint_health(c, scope, recent, endpoints, cap).await
        )
    }

    /// Deliveries per status, each counted by the status index up to `cap` (a count equal to
    /// it means at least that many): [`counts`](Emitter::counts) with a bounded cost.
    pub async fn counts_capped(
        &self,
        scope: Scope<'_>,
        cap: u32,
    ) -> Result<Vec<(DeliveryStatus, u64)>, SendError> {
        let cap = i64::from(cap.max(1));
        on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::views,
            |c, db| db::capped_counts(c, scope, cap).await
        )
    }

    /// How many deliveries are in each status.
    pub async fn counts(&self, scope: Scope<'_>) -> Result<Vec<(DeliveryStatus, u64)>, SendError> {
        on_pool!(
            &self.shared.outbox.pool,
            conn,
            crate::send::store::views,
            |c, db| db::counts(c, scope).await
        )
    }
}

/// A secret given by the caller: `whsec_`/`whsk_` for Standard Webhooks (checked to decode),
/// any 8 to 256 bytes for `fastapihooks`.
fn check_secret(s: &str, format: Format) -> Result<String, SendError> {
    let bad = |why: &str| SendError::invalid("secret", why.to_owned());
    if s.len() < 8 || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(bad("it is 8 to 256 bytes with no control characters"));
    }
    if format.is_standard() {
        let probe = crate::security::scheme::standard_signature(
            crate::Provider::Standard,
            s,
            "msg_probe",
            "0",
            b"{}",
        );
        if !(s.starts_with("whsec_") || s.starts_with("whsk_")) || probe.is_err() {
            return Err(bad(
                "a Standard Webhooks secret is `whsec_<base64>` (HMAC) or `whsk_<base64 32-byte seed>` (Ed25519)",
            ));
        }
    }
    Ok(s.to_owned())
}

/// A connection or transaction of the application's own database that a message can be
/// committed in: `sqlx::Transaction` (or connection) of SQLite or PostgreSQL.
pub trait OutboxTx: Send {
    #[doc(hidden)]
    fn insert_message<'a>(
        &'a mut self,
        message: &'a NewMessage,
        id: &'a str,
        now: i64,
    ) -> crate::util::BoxFuture<'a, Result<Sent, SendError>>;
}

macro_rules! outbox_tx {
    ($conn:ty, $db:ident) => {
        impl OutboxTx for $conn {
            fn insert_message<'a>(
                &'a mut self,
                message: &'a NewMessage,
                id: &'a str,
                now: i64,
            ) -> crate::util::BoxFuture<'a, Result<Sent, SendError>> {
                Box::pin(super::store::messages::$db::insert_message(
                    self, message, id, now,
                ))
            }
        }
    };
}

outbox_tx!(sqlx::SqliteConnection, sqlite);
outbox_tx!(sqlx::PgConnection, postgres);

impl<DB> OutboxTx for sqlx::Transaction<'_, DB>
where
    DB: sqlx::Database,
    DB::Connection: OutboxTx,
{
    fn insert_message<'a>(
        &'a mut self,
        message: &'a NewMessage,
        id: &'a str,
        now: i64,
    ) -> crate::util::BoxFuture<'a, Result<Sent, SendError>> {
        let conn: &mut DB::Connection = self;
        conn.insert_message(message, id, now)
    }
}

impl<DB> OutboxTx for sqlx::pool::PoolConnection<DB>
where
    DB: sqlx::Database,
    DB::Connection: OutboxTx,
{
    fn insert_message<'a>(
        &'a mut self,
        message: &'a NewMessage,
        id: &'a str,
        now: i64,
    ) -> crate::util::BoxFuture<'a, Result<Sent, SendError>> {
        let conn: &mut DB::Connection = self;
        conn.insert_message(message, id, now)
    }
}
