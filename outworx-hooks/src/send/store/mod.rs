//! The outbox: endpoints, messages, deliveries and attempts in SQLite or PostgreSQL (memory
//! is SQLite in memory: the same SQL, nothing to drift). One file per kind of row, each
//! query written once (`outworx_hooks_queue::dialects!`) and compiled for each driver's
//! connection type, so a transaction the caller owns (`send_in`) runs the same code as the
//! outbox's own pool.

pub(crate) mod deliveries;
pub(crate) mod endpoints;
pub(crate) mod messages;
pub(crate) mod retention;
pub(crate) mod views;

use outworx_hooks_queue::Pool;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use super::SendError;
use super::model::DeliveryStatus;

const SQLITE_SCHEMA: &str = include_str!("../../../migrations/outbox/0001_outbox.sqlite.sql");
const POSTGRES_SCHEMA: &str = include_str!("../../../migrations/outbox/0001_outbox.postgres.sql");
/// Applications, event types, and the indexes of the added columns (after them).
const SQLITE_APPS: &str = include_str!("../../../migrations/outbox/0002_apps.sqlite.sql");
const POSTGRES_APPS: &str = include_str!("../../../migrations/outbox/0002_apps.postgres.sql");
/// Columns added after the first schema: `traceparent`, the W3C trace context a message was
/// emitted in (feature `otel`; `NULL` without it); `expunged_at`, when a message's content
/// was deleted on request; an endpoint's `uid`, `description`, `channels` (JSON array, `NULL`
/// for every channel), custom `headers` (JSON object) and `rate_limit`; a message's
/// `channels` (JSON array or `NULL`).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("outworx_messages", "traceparent", "TEXT"),
    ("outworx_messages", "expunged_at", "BIGINT"),
    ("outworx_endpoints", "uid", "TEXT"),
    ("outworx_endpoints", "description", "TEXT"),
    ("outworx_endpoints", "channels", "TEXT"),
    ("outworx_endpoints", "headers", "TEXT"),
    ("outworx_endpoints", "rate_limit", "BIGINT"),
    ("outworx_messages", "channels", "TEXT"),
];

/// Which rows a call may see: one tenant's, or (for operators and the CLI) everyone's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every owner's rows.
    All,
    /// Only this owner's rows.
    Owner(&'a str),
}

impl Scope<'_> {
    fn all(self) -> i64 {
        i64::from(matches!(self, Scope::All))
    }
    fn owner_text(&self) -> String {
        match self {
            Scope::All => String::new(),
            Scope::Owner(o) => (*o).to_owned(),
        }
    }
}

/// A filter for deliveries.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DeliveryFilter {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this endpoint.
    pub endpoint_id: Option<String>,
    /// Only this message.
    pub message_id: Option<String>,
    /// Changed at or after (ms since 1970).
    pub since: Option<i64>,
    /// Changed before (ms since 1970).
    pub until: Option<i64>,
    /// At most this many (default and cap 1,000), newest first.
    pub limit: Option<u32>,
}

impl DeliveryFilter {
    /// Only this status.
    pub fn status(mut self, status: DeliveryStatus) -> Self {
        self.status = Some(status);
        self
    }
    /// Only this endpoint.
    pub fn endpoint(mut self, id: impl Into<String>) -> Self {
        self.endpoint_id = Some(id.into());
        self
    }
    /// Only this message.
    pub fn message(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }
    /// Changed at or after (ms since 1970).
    pub fn since(mut self, ms: i64) -> Self {
        self.since = Some(ms);
        self
    }
    /// Changed before (ms since 1970).
    pub fn until(mut self, ms: i64) -> Self {
        self.until = Some(ms);
        self
    }
    /// At most this many.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }
}

/// Adds `scope` and `f`'s conditions on the deliveries aliased `d` (`AND ..`, only the ones
/// given): each is a plain comparison the planner can take an index for, where
/// `($n IS NULL OR col = $n)` kept SQLite off every index.
pub(crate) fn push_delivery_filter<'a, DB>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    scope: Scope<'a>,
    f: &'a DeliveryFilter,
) where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    // A tenant naming its endpoint or message is checked to own it (once, before any row):
    // their deliveries are all its own, and read by their index, not by the owner's.
    if let Scope::Owner(owner) = scope
        && f.endpoint_id.is_none()
        && f.message_id.is_none()
    {
        q.push(" AND d.owner = ").push_bind(owner);
    }
    push_owned(q, scope, f.endpoint_id.as_deref(), f.message_id.as_deref());
    if let Some(status) = f.status {
        q.push(" AND d.status = ").push_bind(status.as_str());
    }
    if let Some(id) = &f.endpoint_id {
        q.push(" AND d.endpoint_id = ").push_bind(id.as_str());
    }
    if let Some(id) = &f.message_id {
        q.push(" AND d.message_id = ").push_bind(id.as_str());
    }
    if let Some(t) = f.since {
        q.push(" AND d.updated_at >= ").push_bind(t);
    }
    if let Some(t) = f.until {
        q.push(" AND d.updated_at < ").push_bind(t);
    }
}

/// For a tenant naming an endpoint or a message, a condition that it is its own: a key
/// lookup the database makes once, before reading any row (a constant condition), so a
/// tenant naming another's endpoint never walks that endpoint's rows to find none of its own.
pub(crate) fn push_owned<'a, DB>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    scope: Scope<'a>,
    endpoint_id: Option<&'a str>,
    message_id: Option<&'a str>,
) where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let Scope::Owner(owner) = scope else { return };
    for (table, id) in [
        ("outworx_endpoints", endpoint_id),
        ("outworx_messages", message_id),
    ] {
        if let Some(id) = id {
            q.push(format!(" AND EXISTS (SELECT 1 FROM {table} WHERE id = "))
                .push_bind(id)
                .push(" AND owner = ")
                .push_bind(owner)
                .push(")");
        }
    }
}

pub(crate) fn bool_i(b: bool) -> i64 {
    i64::from(b)
}

pub(crate) fn u16_opt(v: Option<i64>) -> Option<u16> {
    v.and_then(|v| u16::try_from(v).ok())
}

pub(crate) fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// The durable outbox: SQLite (a file, the embedded default), PostgreSQL (many instances and
/// workers), or memory (SQLite in memory: tests and demos; gone when the process ends).
///
/// ```
/// # tokio_test_block_on(async {
/// use outworx_hooks::send::Outbox;
///
/// let outbox = Outbox::memory().await?;
/// # Ok::<(), outworx_hooks::send::SendError>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    pub(crate) pool: Pool,
}

impl Outbox {
    /// Opens `url`: a `postgres://` URL, a `sqlite:` URL, `:memory:`, or a file path (created
    /// if missing); the tables are created if they are not there.
    pub async fn open(url: &str) -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::open(url).await?).await
    }

    /// Opens `url` with a commit's durability chosen: [`Durability::Process`] (SQLite's
    /// default: a committed send survives the application's crash, a power loss may take the
    /// last ones) or [`Durability::Disk`] (on disk before `send` answers).
    ///
    /// [`Durability::Process`]: crate::queue::Durability::Process
    /// [`Durability::Disk`]: crate::queue::Durability::Disk
    pub async fn open_with(
        url: &str,
        durability: crate::queue::Durability,
    ) -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::open_with(url, Some(durability)).await?).await
    }

    /// An outbox in memory: for tests and demos only; nothing survives the process.
    pub async fn memory() -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::memory().await?).await
    }

    /// An outbox in this SQLite database (its tables are created if missing): pass the
    /// application's own pool to emit inside its transactions with `send_in`.
    pub async fn sqlite(pool: SqlitePool) -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::Sqlite(pool)).await
    }

    /// An outbox in this PostgreSQL database (its tables are created if missing, under an
    /// advisory lock so workers starting together do not race).
    pub async fn postgres(pool: PgPool) -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::Postgres(pool)).await
    }

    async fn migrated(pool: Pool) -> Result<Outbox, SendError> {
        pool.migrate(SQLITE_SCHEMA, POSTGRES_SCHEMA, ADDED_COLUMNS)
            .await?;
        // Columns added to the applications after their first schema.
        pool.migrate(
            SQLITE_APPS,
            POSTGRES_APPS,
            &[
                ("outworx_apps", "tokens_after", "BIGINT"),
                ("outworx_apps", "signature_headers", "TEXT"),
            ],
        )
        .await?;
        Ok(Outbox { pool })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.pool.backend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_binds() {
        assert_eq!(Scope::All.all(), 1);
        assert_eq!(Scope::Owner("a").all(), 0);
        assert_eq!(Scope::Owner("a").owner_text(), "a");
    }
}
