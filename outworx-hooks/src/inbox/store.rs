//! The inbox table: one row per verified delivery (route + key, once), its request as
//! received, and the queue columns `crate::queue::sql` claims and finishes.

use base64::Engine as _;
use serde::Serialize;

use outworx_hooks_queue::{Claim, Pool, QueueTable};

use super::{InboxError, QueueOptions};

/// The inbox's queue table.
pub(crate) const TABLE: QueueTable = QueueTable {
    name: "outworx_inbox",
    leased: "processing",
    done: "done",
};

const SQLITE_SCHEMA: &str = include_str!("../../migrations/inbox/0001_inbox.sqlite.sql");
const POSTGRES_SCHEMA: &str = include_str!("../../migrations/inbox/0001_inbox.postgres.sql");
/// Columns added after the first schema: `traceparent`, the W3C trace context of the span
/// that received the delivery (feature `otel`; `NULL` without it).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("outworx_inbox", "traceparent", "TEXT")];

pub(crate) async fn open(
    url: &str,
    durability: Option<outworx_hooks_queue::Durability>,
) -> Result<Pool, InboxError> {
    let pool = Pool::open_with(url, durability).await?;
    pool.migrate(SQLITE_SCHEMA, POSTGRES_SCHEMA, ADDED_COLUMNS)
        .await?;
    Ok(pool)
}

/// Where a queued delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// A worker is running its handler.
    Processing,
    /// The handler answered 2xx (and marked it processed, when required).
    Done,
    /// Every attempt failed: see `last_error`; replay it once fixed.
    Dead,
}

impl DeliveryStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Processing => "processing",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> DeliveryStatus {
        match s {
            "processing" => DeliveryStatus::Processing,
            "done" => DeliveryStatus::Done,
            "dead" => DeliveryStatus::Dead,
            _ => DeliveryStatus::Pending,
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = InboxError;
    fn from_str(s: &str) -> Result<Self, InboxError> {
        match s {
            "pending" | "processing" | "done" | "dead" => Ok(DeliveryStatus::parse(s)),
            _ => Err(InboxError::Invalid(
                "status: expected pending, processing, done or dead".into(),
            )),
        }
    }
}

/// One queued delivery, as listed (its headers and body are not: see [`super::Inbox::delivery`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// The route (its idempotency namespace).
    pub route: String,
    /// The idempotency key.
    pub key: String,
    /// The request's method.
    pub method: String,
    /// The request's path and query, the query's values `[REDACTED]` as in delivery events
    /// (a provider may sign or authenticate with a token there); the run gets them as sent.
    pub uri: String,
    /// The event type, when known.
    pub event_type: Option<String>,
    /// The signature verdict when it arrived.
    pub signature_valid: Option<bool>,
    /// When it arrived, in ms since 1970.
    pub received_at: i64,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made in this round.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When the next attempt is due, in ms since 1970.
    pub next_attempt_at: i64,
    /// The last attempt's HTTP status.
    pub last_status: Option<u16>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The body's size in bytes.
    pub body_bytes: u64,
}

/// A filter for listing, replaying and purging.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DeliveryFilter {
    /// One row.
    pub id: Option<i64>,
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this route.
    pub route: Option<String>,
    /// Changed at or after (ms since 1970).
    pub since: Option<i64>,
    /// Changed before (ms since 1970).
    pub until: Option<i64>,
    /// At most this many (default and cap 1,000), newest first.
    pub limit: Option<u32>,
    /// Only deliveries whose handler has failed at least once this round (with
    /// [`DeliveryStatus::Pending`]: the ones waiting for a retry).
    pub retrying: bool,
}

impl DeliveryFilter {
    /// One row.
    pub fn id(mut self, id: i64) -> Self {
        self.id = Some(id);
        self
    }
    /// Only this status.
    pub fn status(mut self, s: DeliveryStatus) -> Self {
        self.status = Some(s);
        self
    }
    /// Only this route.
    pub fn route(mut self, r: impl Into<String>) -> Self {
        self.route = Some(r.into());
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
    /// Only pending deliveries whose handler has failed at least once: the retries.
    pub fn retrying(mut self) -> Self {
        self.status = Some(DeliveryStatus::Pending);
        self.retrying = true;
        self
    }
}

/// Where an inbox stands, for an operator's overview: how many deliveries are in each state,
/// and how long the oldest pending one has waited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct InboxSummary {
    /// Waiting for an attempt (first or next).
    pub pending: u64,
    /// Of those, waiting for a retry: the handler failed at least once.
    pub retrying: u64,
    /// A worker is running their handler.
    pub processing: u64,
    /// Processed.
    pub done: u64,
    /// Every attempt failed: replay them once fixed.
    pub dead: u64,
    /// When the oldest pending delivery arrived, in ms since 1970.
    pub oldest_pending_at: Option<i64>,
}

/// A delivery to commit: a `queue` route's receipt, owned, so that it can wait for the
/// transaction it joins (see [`Receipts`]).
pub(crate) struct NewEntry {
    pub(crate) route: String,
    pub(crate) key: String,
    pub(crate) method: String,
    pub(crate) uri: String,
    /// JSON `[[name, base64 value], ..]` (see [`headers_json`]).
    pub(crate) headers: String,
    pub(crate) body: bytes::Bytes,
    pub(crate) signature_valid: Option<bool>,
    pub(crate) event_type: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) options: QueueOptions,
}

impl NewEntry {
    /// What it weighs in a batch: its bytes, and a row's overhead.
    fn weight(&self) -> usize {
        self.body.len()
            + self.headers.len()
            + self.key.len()
            + self.uri.len()
            + self.route.len()
            + self.traceparent.as_ref().map_or(0, String::len)
            + 128
    }
}

/// The inbox's group commit: concurrent receipts join one transaction
/// (see [`outworx_hooks_queue::GroupCommit`]).
pub(crate) struct Receipts {
    pub(crate) pool: Pool,
    pub(crate) clock: std::sync::Arc<dyn outworx_hooks_queue::Clock>,
}

impl outworx_hooks_queue::Commit for Receipts {
    type Item = NewEntry;
    type Output = Enqueued;
    type Error = InboxError;

    fn bytes(item: &NewEntry) -> usize {
        item.weight()
    }

    fn commit<'a>(
        &'a self,
        items: &'a [NewEntry],
    ) -> outworx_hooks_queue::BoxFuture<
        'a,
        Result<Vec<Enqueued>, outworx_hooks_queue::Refusal<InboxError>>,
    > {
        Box::pin(async move {
            let now = self.clock.now_ms();
            // One statement, committed on its own (no BEGIN, no COMMIT: each is a round trip
            // to the database while SQLite's write lock is held).
            Ok(outworx_hooks_queue::on_pool!(
                &self.pool,
                conn,
                crate::inbox::store,
                |c, db| db::enqueue(c, items, now).await?
            ))
        })
    }
}

/// A claimed delivery, with what the worker needs to run it again.
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) attempt: u32,
    pub(crate) route: String,
    pub(crate) key: String,
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
    pub(crate) signature_valid: Option<bool>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_ms: i64,
    /// The receive span's W3C trace context (feature `otel`).
    pub(crate) traceparent: Option<String>,
}

/// What one enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Enqueued {
    pub(crate) id: i64,
    pub(crate) duplicate: bool,
}

const MAX_LIST: u32 = 1000;

/// The most bytes of bodies one purge batch deletes (a row's body may be megabytes).
const PURGE_BYTES: u64 = 8 << 20;

pub(crate) fn headers_json(h: &http::HeaderMap) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let list: Vec<(&str, String)> = h
        .iter()
        .map(|(k, v)| (k.as_str(), b64.encode(v.as_bytes())))
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned())
}

fn headers_of(text: &str) -> Vec<(String, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::from_str::<Vec<(String, String)>>(text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((k, b64.decode(v).ok()?)))
        .collect()
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// Adds `f`'s conditions (`AND ..`, only the ones given): each a plain comparison the
/// planner can take an index for.
fn push_filter<'a, DB>(q: &mut sqlx::QueryBuilder<'a, DB>, f: &'a DeliveryFilter)
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(id) = f.id {
        q.push(" AND id = ").push_bind(id);
    }
    if let Some(status) = f.status {
        q.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(route) = &f.route {
        q.push(" AND route = ").push_bind(route.as_str());
    }
    if let Some(t) = f.since {
        q.push(" AND updated_at >= ").push_bind(t);
    }
    if let Some(t) = f.until {
        q.push(" AND updated_at < ").push_bind(t);
    }
    if f.retrying {
        q.push(" AND attempts > 0");
    }
}

outworx_hooks_queue::dialects! {
    pub(crate),
    use sqlx::Row as _;

    use super::*;

    /// Commits deliveries, each once per route and key, in one statement (atomic on its
    /// own: run it outside a transaction, and it is its own): a repeat (of a stored one, or
    /// of one earlier in `entries`) answers the first's id, read after.
    pub(crate) async fn enqueue(
        c: &mut Conn,
        entries: &[NewEntry],
        now: i64,
    ) -> Result<Vec<Enqueued>, sqlx::Error> {
        // The first entry of each (route, key); the others repeat it.
        let mut first: std::collections::HashMap<(&str, &str), usize> =
            std::collections::HashMap::with_capacity(entries.len());
        let mut fresh = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(v) =
                first.entry((e.route.as_str(), e.key.as_str()))
            {
                v.insert(i);
                fresh.push(e);
            }
        }
        // In one order, so that concurrent committers (PostgreSQL) inserting the same keys
        // wait for each other instead of deadlocking.
        fresh.sort_unstable_by(|a, b| (&a.route, &a.key).cmp(&(&b.route, &b.key)));
        // Row ids by (route, key): the rows inserted now, then the ones stored before.
        let mut ids: std::collections::HashMap<(String, String), (i64, bool)> =
            std::collections::HashMap::with_capacity(fresh.len());
        for (route, key, id) in insert(c, &fresh, now).await? {
            ids.insert((route, key), (id, false));
        }
        let mut gone = Vec::new();
        for e in &fresh {
            if ids.contains_key(&(e.route.clone(), e.key.clone())) {
                continue;
            }
            let r = sqlx::query("SELECT id FROM outworx_inbox WHERE route = $1 AND key = $2")
                .bind(&e.route)
                .bind(&e.key)
                .fetch_optional(&mut *c)
                .await?;
            match r {
                Some(r) => {
                    ids.insert((e.route.clone(), e.key.clone()), (r.try_get("id")?, true));
                }
                // Purged between the insert and the read: stored again, as new.
                None => gone.push(*e),
            }
        }
        if !gone.is_empty() {
            for (route, key, id) in insert(c, &gone, now).await? {
                ids.insert((route, key), (id, false));
            }
        }
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (id, stored_before) = ids
                    .get(&(e.route.clone(), e.key.clone()))
                    .copied()
                    .ok_or_else(|| sqlx::Error::RowNotFound)?;
                let repeat = first.get(&(e.route.as_str(), e.key.as_str())) != Some(&i);
                Ok(Enqueued { id, duplicate: stored_before || repeat })
            })
            .collect()
    }

    /// One statement for `entries`: the (route, key, id) of the rows it inserted (not the
    /// ones whose key was stored).
    async fn insert(
        c: &mut Conn,
        entries: &[&NewEntry],
        now: i64,
    ) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO outworx_inbox (route, key, method, uri, headers, body, signature_valid, \
             event_type, received_at, max_attempts, backoff_ms, status, attempts, next_attempt_at, \
             updated_at, traceparent) ",
        );
        q.push_values(entries, |mut row, e| {
            let backoff = i64::try_from(e.options.backoff.as_millis()).unwrap_or(i64::MAX);
            row.push_bind(&e.route)
                .push_bind(&e.key)
                .push_bind(&e.method)
                .push_bind(&e.uri)
                .push_bind(&e.headers)
                .push_bind(e.body.as_ref())
                .push_bind(e.signature_valid.map(i64::from))
                .push_bind(&e.event_type)
                .push_bind(now)
                .push_bind(i64::from(e.options.attempts.max(1)))
                .push_bind(backoff)
                .push("'pending'")
                .push("0")
                .push_bind(now)
                .push_bind(now)
                .push_bind(&e.traceparent);
        });
        q.push(" ON CONFLICT (route, key) DO NOTHING RETURNING id, route, key");
        q.build()
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("route")?, r.try_get("key")?, r.try_get("id")?)))
            .collect()
    }

    /// Leases the due deliveries `claim` asks for and reads each as it was received.
    pub(crate) async fn claim(c: &mut Conn, claim: Claim<'_>) -> Result<Vec<Claimed>, InboxError> {
        let ids = queue_sql::claim(c, TABLE, claim).await?;
        let token = claim.token;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, attempts, route, key, method, uri, headers, body, signature_valid, \
             max_attempts, backoff_ms, traceparent FROM outworx_inbox WHERE lease_token = $1",
        )
        .bind(token)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                let headers: String = r.try_get("headers")?;
                let valid: Option<i64> = r.try_get("signature_valid")?;
                Ok(Claimed {
                    id: r.try_get("id")?,
                    attempt: u32_of(r.try_get("attempts")?),
                    route: r.try_get("route")?,
                    key: r.try_get("key")?,
                    method: r.try_get("method")?,
                    uri: r.try_get("uri")?,
                    headers: headers_of(&headers),
                    body: r.try_get("body")?,
                    signature_valid: valid.map(|v| v != 0),
                    max_attempts: u32_of(r.try_get("max_attempts")?),
                    backoff_ms: r.try_get("backoff_ms")?,
                    traceparent: r.try_get("traceparent")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(InboxError::from)
    }

    /// Deliveries matching `f`, newest first, below `before` (an id; `i64::MAX` for the
    /// newest): a range of the primary key, or of the index of the filter given.
    pub(crate) fn list_query<'a>(
        prefix: &str,
        f: &'a DeliveryFilter,
        before: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let limit = i64::from(f.limit.unwrap_or(MAX_LIST).min(MAX_LIST));
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push(
            "SELECT id, route, key, method, uri, event_type, signature_valid, received_at, status, \
             attempts, max_attempts, next_attempt_at, last_status, last_error, \
             CAST(LENGTH(body) AS BIGINT) AS body_bytes FROM outworx_inbox WHERE id < ",
        );
        q.push_bind(before);
        push_filter(&mut q, f);
        // In a window of one status, the latest changed first: the `(status, updated_at)`
        // range, which the list stops reading at its limit.
        let order = if f.status.is_some() && (f.since.is_some() || f.until.is_some()) {
            " ORDER BY updated_at DESC, id DESC LIMIT "
        } else {
            " ORDER BY id DESC LIMIT "
        };
        q.push(order).push_bind(limit);
        q
    }

    pub(crate) async fn list(
        c: &mut Conn,
        f: &DeliveryFilter,
    ) -> Result<Vec<Delivery>, InboxError> {
        let rows = list_query("", f, i64::MAX).build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let valid: Option<i64> = r.try_get("signature_valid")?;
                let last: Option<i64> = r.try_get("last_status")?;
                let bytes: i64 = r.try_get("body_bytes")?;
                let uri: String = r.try_get("uri")?;
                let (path, query) = match uri.split_once('?') {
                    Some((path, query)) => (path, Some(query)),
                    None => (uri.as_str(), None),
                };
                Ok(Delivery {
                    id: r.try_get("id")?,
                    route: r.try_get("route")?,
                    key: r.try_get("key")?,
                    method: r.try_get("method")?,
                    uri: crate::util::query_redacted(path, query),
                    event_type: r.try_get("event_type")?,
                    signature_valid: valid.map(|v| v != 0),
                    received_at: r.try_get("received_at")?,
                    status: DeliveryStatus::parse(&status),
                    attempts: u32_of(r.try_get("attempts")?),
                    max_attempts: u32_of(r.try_get("max_attempts")?),
                    next_attempt_at: r.try_get("next_attempt_at")?,
                    last_status: last.and_then(|v| u16::try_from(v).ok()),
                    last_error: r.try_get("last_error")?,
                    body_bytes: u64::try_from(bytes).unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(InboxError::from)
    }

    /// The stored body of one row.
    pub(crate) async fn body(c: &mut Conn, id: i64) -> Result<Option<Vec<u8>>, InboxError> {
        let row = sqlx::query("SELECT body FROM outworx_inbox WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        Ok(row.map(|r| r.try_get("body")).transpose()?)
    }

    /// Rows not in flight (done, dead, or pending: a far-off retry) matching `f` back to
    /// pending, due now, a new round.
    pub(crate) fn replay_query<'a>(
        prefix: &str,
        f: &'a DeliveryFilter,
        now: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("UPDATE outworx_inbox SET status = 'pending', attempts = 0, next_attempt_at = ")
            .push_bind(now)
            .push(", last_error = NULL, updated_at = ")
            .push_bind(now)
            .push(" WHERE status IN ('dead', 'done', 'pending')");
        push_filter(&mut q, f);
        q
    }

    pub(crate) async fn replay(
        c: &mut Conn,
        f: &DeliveryFilter,
        now: i64,
    ) -> Result<u64, InboxError> {
        let done = replay_query("", f, now).build().execute(&mut *c).await?;
        Ok(done.rows_affected())
    }

    /// Deletes the rows `ids` that are still `status` and last changed before `before`:
    /// by their keys (the status test is one `CASE`, which no index serves; a range of the
    /// `(status, updated_at)` index would read every old row).
    pub(crate) fn purge_delete_query<'a>(
        prefix: &str,
        ids: &'a [i64],
        status: &'a str,
        before: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("DELETE FROM outworx_inbox WHERE id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(") AND (CASE status WHEN ")
            .push_bind(status)
            .push(" THEN updated_at < ")
            .push_bind(before)
            .push(" ELSE 1 = 0 END)");
        q
    }

    /// Deletes one batch of finished rows: done ones last changed before the done cut-off,
    /// then (in what is left of the batch) dead ones before the dead cut-off, oldest first,
    /// at most `batch` rows and [`PURGE_BYTES`] of bodies (at least one row). The `DELETE`
    /// checks each row's status and time again, so a row replayed meanwhile stays.
    pub(crate) async fn purge(
        c: &mut Conn,
        cut: outworx_hooks_queue::Cutoffs,
        batch: u32,
    ) -> Result<outworx_hooks_queue::Purged, InboxError> {
        let (mut left, mut bytes) = (i64::from(batch), 0u64);
        let (mut rows, mut more) = (0u64, false);
        for (status, before) in [("done", cut.done_before), ("dead", cut.dead_before)] {
            let Some(before) = before else { continue };
            if left == 0 || bytes >= PURGE_BYTES {
                more = true;
                break;
            }
            let found = purge_query("", status, before, left).build().fetch_all(&mut *c).await?;
            let mut ids = Vec::with_capacity(found.len());
            for r in &found {
                let size: Option<i64> = r.try_get("bytes")?;
                if !ids.is_empty() && bytes >= PURGE_BYTES {
                    more = true;
                    break;
                }
                bytes += u64::try_from(size.unwrap_or(0)).unwrap_or(0);
                ids.push(r.try_get::<i64, _>("id")?);
            }
            if i64::try_from(found.len()).unwrap_or(i64::MAX) == left {
                more = true;
            }
            left -= i64::try_from(ids.len()).unwrap_or(left);
            if ids.is_empty() {
                continue;
            }
            rows += purge_delete_query("", &ids, status, before)
                .build()
                .execute(&mut *c)
                .await?
                .rows_affected();
        }
        Ok(outworx_hooks_queue::Purged { rows, more })
    }

    /// Pending and processing deliveries per route, and the oldest pending one's
    /// arrival (for the metrics' gauges).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) async fn depth(
        c: &mut Conn,
    ) -> Result<(Vec<(String, &'static str, u64)>, Option<i64>), InboxError> {
        let rows = sqlx::query(
            "SELECT route, status, COUNT(*) AS n FROM outworx_inbox \
             WHERE status IN ('pending', 'processing') GROUP BY route, status",
        )
        .fetch_all(&mut *c)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            let status = DeliveryStatus::parse(&status).as_str();
            out.push((r.try_get("route")?, status, u64::try_from(n).unwrap_or(0)));
        }
        let oldest = sqlx::query(
            "SELECT MIN(received_at) AS oldest FROM outworx_inbox WHERE status = 'pending'",
        )
        .fetch_one(&mut *c)
        .await?;
        Ok((out, oldest.try_get("oldest")?))
    }

    /// One status's rows (with `retrying`, only those that failed at least once), counted
    /// by the `(status, attempts, ..)` index up to `cap`.
    pub(crate) fn summary_count_query<'a>(
        prefix: &str,
        status: &'a str,
        retrying: bool,
        cap: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("SELECT COUNT(*) FROM (SELECT 1 FROM outworx_inbox WHERE status = ")
            .push_bind(status);
        if retrying {
            q.push(" AND attempts > 0");
        }
        q.push(" LIMIT ").push_bind(cap).push(") AS capped");
        q
    }

    /// A status's rows last changed before `before`, oldest first, by the
    /// `(status, updated_at)` index, with their bodies' sizes (read from the row's header,
    /// not the body).
    pub(crate) fn purge_query<'a>(
        prefix: &str,
        status: &'a str,
        before: i64,
        batch: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("SELECT id, CAST(LENGTH(body) AS BIGINT) AS bytes FROM outworx_inbox WHERE status = ")
            .push_bind(status)
            .push(" AND updated_at < ")
            .push_bind(before)
            .push(" ORDER BY updated_at LIMIT ")
            .push_bind(batch);
        q
    }

    pub(crate) async fn summary(c: &mut Conn, cap: i64) -> Result<InboxSummary, InboxError> {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let mut counts = [0u64; 5];
        for (slot, (status, retrying)) in [
            ("pending", false),
            ("pending", true),
            ("processing", false),
            ("done", false),
            ("dead", false),
        ]
        .into_iter()
        .enumerate()
        {
            let v: i64 = summary_count_query("", status, retrying, cap)
                .build_query_scalar()
                .fetch_one(&mut *c)
                .await?;
            counts[slot] = n(v);
        }
        let [pending, retrying, processing, done, dead] = counts;
        let mut out = InboxSummary {
            pending,
            retrying,
            processing,
            done,
            dead,
            oldest_pending_at: None,
        };
        out.oldest_pending_at = sqlx::query_scalar(
            "SELECT MIN(received_at) FROM outworx_inbox WHERE status = 'pending'",
        )
        .fetch_one(&mut *c)
        .await?;
        Ok(out)
    }

    pub(crate) async fn counts(c: &mut Conn) -> Result<Vec<(DeliveryStatus, u64)>, InboxError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM outworx_inbox GROUP BY status")
            .fetch_all(&mut *c)
            .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("status")?;
                let n: i64 = r.try_get("n")?;
                Ok((DeliveryStatus::parse(&s), u64::try_from(n).unwrap_or(0)))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(InboxError::from)
    }

    /// Marks dead the deliveries whose every attempt ended with its worker.
    pub(crate) async fn bury(c: &mut Conn, now: i64) -> Result<u64, InboxError> {
        Ok(queue_sql::bury(c, TABLE, now, None).await?)
    }

    /// Gives leased deliveries back untried.
    pub(crate) async fn release(
        c: &mut Conn,
        ids: &[i64],
        token: &str,
        now: i64,
    ) -> Result<(), InboxError> {
        Ok(queue_sql::release(c, TABLE, ids, token, now).await?)
    }

    /// Finishes one run's row if its lease is still `token`'s; returns whether it was.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish(
        c: &mut Conn,
        id: i64,
        token: &str,
        status: DeliveryStatus,
        next_attempt_at: i64,
        last_status: Option<u16>,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool, InboxError> {
        Ok(queue_sql::finish(
            c,
            TABLE,
            id,
            token,
            status.as_str(),
            next_attempt_at,
            last_status.map(i64::from),
            error,
            now,
        )
        .await?)
    }
}
