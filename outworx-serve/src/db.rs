//! Storage: SQLite (a file, the default) or PostgreSQL, through `sqlx`'s `Any` driver with
//! the same SQL for both; schema migrations are embedded and applied at start.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be opened, migrated or queried.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Which server the pool talks to (the SQL differs only in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Embedded migrations, in order, per backend.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../migrations/common/0002_sweep_indexes.sql"),
        include_str!("../migrations/common/0002_sweep_indexes.sql"),
    ),
];

/// Old events are deleted this many at a time, so a large backlog never holds the database
/// (SQLite has one writer) for long.
const PRUNE_BATCH: i64 = 5_000;

/// A reservation older than this without a completion is taken over (its owner died).
pub const STALE_RESERVATION_MS: i64 = 30_000;

/// The store of events and idempotency keys.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), outworx_serve::DbError> {
/// use outworx_serve::db::{Check, Db, EventFilter, now_ms};
/// # let path = std::env::temp_dir().join(format!("outworx-doc-{}.db", std::process::id()));
/// let db = Db::open(path.to_str().unwrap()).await?; // or "postgres://user@host/db"
///
/// // Events are stored per project (the API key's id), then queried and counted.
/// let event = serde_json::json!({"provider": "stripe", "status_code": 200,
///     "processing_status": "silent_drop"});
/// db.insert_events("project", &[(now_ms(), event)]).await?;
/// let silent = EventFilter { processing_status: Some("silent_drop".into()), ..Default::default() };
/// assert_eq!(db.events("project", &silent, None, None).await?.len(), 1);
/// assert_eq!(db.stats("project", None, None).await?.by_processing_status["silent_drop"], 1);
///
/// // Idempotency: the first check reserves the key, a completed key replays its response.
/// assert_eq!(db.check("project", "evt_1", None, 60_000).await?, Check::New);
/// db.complete("project", "evt_1", None, 200, None, Some("ok")).await?;
/// assert!(matches!(db.check("project", "evt_1", None, 60_000).await?, Check::Duplicate { status: 200, .. }));
///
/// // Retention: events received before a time are deleted.
/// assert_eq!(db.prune_events(now_ms() + 1).await?, 1);
/// # drop(db); std::fs::remove_file(path).ok();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Db {
    /// Writes (and the idempotency checks, which write). On SQLite one connection: SQLite
    /// has one writer at a time.
    pool: AnyPool,
    /// Reads of the query API. On SQLite a pool of its own over the same file in WAL mode,
    /// so a slow query never holds up an idempotency check behind it.
    reads: AnyPool,
    backend: Backend,
}

/// Most bytes of stored events one `/api/events` answer carries; it stops early and its
/// `next_before_id` continues from there.
pub const MAX_EVENTS_BYTES: usize = 8 << 20;

/// An event ready to store: its indexed columns and its JSON text exactly as received.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub(crate) occurred_at: i64,
    pub(crate) provider: String,
    pub(crate) status_code: i64,
    pub(crate) processing_status: Option<String>,
    pub(crate) signature_valid: Option<i64>,
    pub(crate) event_type: Option<String>,
    pub(crate) text: String,
}

impl EventRow {
    /// The columns of `event` (already validated), stored with its `text`.
    pub(crate) fn new(occurred_at: i64, event: &serde_json::Value, text: String) -> Self {
        let s = |k: &str| event.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        EventRow {
            occurred_at,
            provider: s("provider").unwrap_or_default(),
            status_code: event
                .get("status_code")
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            processing_status: s("processing_status"),
            signature_valid: event
                .get("signature_valid")
                .and_then(|v| v.as_bool())
                .map(i64::from),
            event_type: s("event_type"),
            text,
        }
    }
}

/// What `/api/sdk/idempotency/check` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The key is now reserved for the caller.
    New,
    /// Another delivery holds the key and has not completed it.
    InFlight,
    /// Completed before: the first response.
    Duplicate {
        /// Its status.
        status: i64,
        /// Its content type, when recorded.
        content_type: Option<String>,
        /// Its body, when recorded.
        body: Option<String>,
    },
}

/// A stored event row, for the query API.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// Milliseconds since 1970 when the ingest received it.
    pub received_at: i64,
    /// The event as reported.
    pub event: serde_json::Value,
    /// Its stored size in bytes.
    pub size: usize,
}

/// Filters of the event query API; all optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Provider name.
    pub provider: Option<String>,
    /// HTTP status the receiver answered.
    pub status: Option<i64>,
    /// `completed`, `failed` or `silent_drop`.
    pub processing_status: Option<String>,
    /// Only events whose `timestamp` is at or after this (RFC 3339).
    pub since: Option<String>,
    /// Only events whose `timestamp` is before this (RFC 3339).
    pub until: Option<String>,
    /// `true` or `false`: the signature verdict.
    pub signature_valid: Option<bool>,
    /// At most this many, newest first (default 100, at most 1,000).
    pub limit: Option<i64>,
    /// Only events with a row id below this (for paging).
    pub before_id: Option<i64>,
}

/// Counts of a project's events in a time window: the dashboard's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// All events.
    pub total: i64,
    /// Per provider name.
    pub by_provider: BTreeMap<String, i64>,
    /// Per HTTP status class: `"2xx"`, `"4xx"`, `"5xx"`, ...
    pub by_status_class: BTreeMap<String, i64>,
    /// Per processing status (`completed`, `failed`, `silent_drop`); unmarked events are not
    /// counted here.
    pub by_processing_status: BTreeMap<String, i64>,
    /// Events whose signature did not verify.
    pub signature_invalid: i64,
}

/// Milliseconds since 1970 now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `url`: `postgres://...` for
    /// PostgreSQL, otherwise a SQLite file path (or `sqlite:` URL).
    pub async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else if url.starts_with("sqlite:") {
            (Backend::Sqlite, url.to_owned())
        } else {
            (Backend::Sqlite, format!("sqlite://{url}?mode=rwc"))
        };
        // SQLite takes one writer at a time: one connection avoids busy errors.
        let max = if backend == Backend::Sqlite { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await?;
        let reads = if backend == Backend::Sqlite && !url.contains(":memory:") {
            // WAL lets readers run beside the writer; the setting stays with the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            let sep = if url.contains('?') { '&' } else { '?' };
            AnyPoolOptions::new()
                .max_connections(4)
                .connect(&format!("{url}{sep}mode=ro"))
                .await?
        } else {
            pool.clone()
        };
        let db = Db {
            pool,
            reads,
            backend,
        };
        db.migrate().await?;
        Ok(db)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<(), DbError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS outworx_migrations (version BIGINT PRIMARY KEY)")
            .execute(&self.pool)
            .await?;
        for (version, sqlite, postgres) in MIGRATIONS {
            let applied: Option<i64> =
                sqlx::query("SELECT version FROM outworx_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            if applied.is_some() {
                continue;
            }
            let sql = if self.backend == Backend::Sqlite {
                sqlite
            } else {
                postgres
            };
            let mut tx = self.pool.begin().await?;
            for statement in statements(sql) {
                sqlx::query(&statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO outworx_migrations (version) VALUES ($1)")
                .bind(*version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, "applied migration");
        }
        Ok(())
    }

    /// Stores validated events of one batch in one transaction.
    pub async fn insert_events(
        &self,
        project: &str,
        events: &[(i64, serde_json::Value)],
    ) -> Result<(), DbError> {
        let rows: Vec<EventRow> = events
            .iter()
            .map(|(at, e)| EventRow::new(*at, e, e.to_string()))
            .collect();
        self.insert_rows(project, &rows).await
    }

    /// Stores rows of one batch in one transaction.
    pub(crate) async fn insert_rows(
        &self,
        project: &str,
        rows: &[EventRow],
    ) -> Result<(), DbError> {
        let received_at = now_ms();
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO events (project, received_at, occurred_at, provider, status_code, \
                 processing_status, signature_valid, event_type, event) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(project)
            .bind(received_at)
            .bind(r.occurred_at)
            .bind(r.provider.as_str())
            .bind(r.status_code)
            .bind(r.processing_status.as_deref())
            .bind(r.signature_valid)
            .bind(r.event_type.as_deref())
            .bind(r.text.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events of `project` matching `filter`, newest first: at most `limit` (default 100,
    /// at most 1,000), and no more than [`MAX_EVENTS_BYTES`] of them (at least one).
    pub async fn events(
        &self,
        project: &str,
        filter: &EventFilter,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<StoredEvent>, DbError> {
        use futures_util::TryStreamExt as _;
        // Every filter is bound; an absent one is a NULL that matches everything.
        let query = sqlx::query(
            "SELECT id, received_at, event FROM events WHERE project = $1 \
             AND ($2 IS NULL OR provider = $2) \
             AND ($3 IS NULL OR status_code = $3) \
             AND ($4 IS NULL OR processing_status = $4) \
             AND ($5 IS NULL OR occurred_at >= $5) \
             AND ($6 IS NULL OR occurred_at < $6) \
             AND ($7 IS NULL OR signature_valid = $7) \
             AND ($8 IS NULL OR id < $8) \
             ORDER BY id DESC LIMIT $9",
        )
        .bind(project)
        .bind(filter.provider.clone())
        .bind(filter.status)
        .bind(filter.processing_status.clone())
        .bind(since_ms)
        .bind(until_ms)
        .bind(filter.signature_valid.map(i64::from))
        .bind(filter.before_id)
        .bind(filter.limit.unwrap_or(100).clamp(1, 1000));
        // Rows are read one at a time, so a page of large events stops at the byte budget
        // instead of arriving whole.
        let mut rows = query.fetch(&self.reads);
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        while let Some(row) = rows.try_next().await? {
            let event = stored_event(&row)?;
            bytes += event.size;
            if !out.is_empty() && bytes > MAX_EVENTS_BYTES {
                break;
            }
            out.push(event);
        }
        Ok(out)
    }

    /// Counts of `project`'s events whose `timestamp` is in `[since_ms, until_ms)`.
    pub async fn stats(
        &self,
        project: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Stats, DbError> {
        // One grouped scan; the few groups are folded here.
        let rows = sqlx::query(
            "SELECT provider, status_code / 100, processing_status, signature_valid, COUNT(*) \
             FROM events WHERE project = $1 \
             AND ($2 IS NULL OR occurred_at >= $2) \
             AND ($3 IS NULL OR occurred_at < $3) \
             GROUP BY provider, status_code / 100, processing_status, signature_valid",
        )
        .bind(project)
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.reads)
        .await?;
        let mut stats = Stats::default();
        for row in &rows {
            let provider: String = row.try_get(0)?;
            let class: i64 = row.try_get(1)?;
            let processing: Option<String> = row.try_get(2)?;
            let signature_valid: Option<i64> = row.try_get(3)?;
            let n: i64 = row.try_get(4)?;
            stats.total += n;
            *stats.by_provider.entry(provider).or_default() += n;
            *stats
                .by_status_class
                .entry(format!("{class}xx"))
                .or_default() += n;
            if let Some(p) = processing {
                *stats.by_processing_status.entry(p).or_default() += n;
            }
            if signature_valid == Some(0) {
                stats.signature_invalid += n;
            }
        }
        Ok(stats)
    }

    /// Reserves `key` for `ttl_ms`, or reports who has it.
    pub async fn check(
        &self,
        project: &str,
        key: &str,
        token: Option<&str>,
        ttl_ms: i64,
    ) -> Result<Check, DbError> {
        let now = now_ms();
        // One statement decides: insert, or take over an expired key or a stale reservation.
        let taken = sqlx::query(
            "INSERT INTO idempotency (project, key, token, done, reserved_at, expires_at) \
             VALUES ($1, $2, $3, 0, $4, $5) \
             ON CONFLICT (project, key) DO UPDATE SET token = excluded.token, done = 0, \
             reserved_at = excluded.reserved_at, expires_at = excluded.expires_at, \
             status_code = NULL, content_type = NULL, body = NULL \
             WHERE idempotency.expires_at <= $6 \
             OR (idempotency.done = 0 AND idempotency.reserved_at <= $7)",
        )
        .bind(project)
        .bind(key)
        .bind(token)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .bind(now - STALE_RESERVATION_MS)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if taken > 0 {
            return Ok(Check::New);
        }
        let row = sqlx::query(
            "SELECT done, status_code, content_type, body FROM idempotency \
             WHERE project = $1 AND key = $2",
        )
        .bind(project)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Released between the two statements: the caller may retry at once.
            return Ok(Check::InFlight);
        };
        let done: i64 = row.try_get(0)?;
        if done == 0 {
            return Ok(Check::InFlight);
        }
        Ok(Check::Duplicate {
            status: row.try_get::<Option<i64>, _>(1)?.unwrap_or(200),
            content_type: row.try_get(2)?,
            body: row.try_get(3)?,
        })
    }

    /// Completes the reservation of `key` with its first response. A reservation taken
    /// with a token is completed only with that token; one taken without (the Python
    /// package's) only without.
    pub async fn complete(
        &self,
        project: &str,
        key: &str,
        token: Option<&str>,
        status: i64,
        content_type: Option<&str>,
        body: Option<&str>,
    ) -> Result<bool, DbError> {
        let n = sqlx::query(
            "UPDATE idempotency SET done = 1, status_code = $1, content_type = $2, body = $3 \
             WHERE project = $4 AND key = $5 AND done = 0 \
             AND ((token IS NULL AND $6 IS NULL) OR token = $6)",
        )
        .bind(status)
        .bind(content_type)
        .bind(body)
        .bind(project)
        .bind(key)
        .bind(token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Frees the reservation of `key` so the next delivery runs, under the same token rule
    /// as [`Db::complete`].
    pub async fn release(
        &self,
        project: &str,
        key: &str,
        token: Option<&str>,
    ) -> Result<bool, DbError> {
        let n = sqlx::query(
            "DELETE FROM idempotency WHERE project = $1 AND key = $2 AND done = 0 \
             AND ((token IS NULL AND $3 IS NULL) OR token = $3)",
        )
        .bind(project)
        .bind(key)
        .bind(token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Restarts the stale clock of the reservation `token` holds (a slow handler keeps its
    /// key), and keeps the key at least as long as a reservation may go unrenewed.
    pub async fn renew(&self, project: &str, key: &str, token: &str) -> Result<bool, DbError> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE idempotency SET reserved_at = $1, \
             expires_at = CASE WHEN expires_at < $2 THEN $2 ELSE expires_at END \
             WHERE project = $3 AND key = $4 AND done = 0 AND token = $5",
        )
        .bind(now)
        .bind(now.saturating_add(STALE_RESERVATION_MS))
        .bind(project)
        .bind(key)
        .bind(token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Drops expired idempotency keys; returns how many.
    pub async fn expire(&self) -> Result<u64, DbError> {
        Ok(
            sqlx::query("DELETE FROM idempotency WHERE expires_at <= $1")
                .bind(now_ms())
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// The periodic clean-up [`serve`](crate::serve) runs once a minute: expired idempotency
    /// keys, and events older than `retention` (`None` keeps them). Failures are logged, and
    /// the next sweep tries again.
    pub async fn sweep(&self, retention: Option<std::time::Duration>) {
        if let Err(e) = self.expire().await {
            tracing::warn!("expiring idempotency keys: {e}");
        }
        if let Some(keep) = retention {
            let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            match self.prune_events(now_ms().saturating_sub(keep)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "deleted events past retention"),
                Err(e) => tracing::warn!("deleting old events: {e}"),
            }
        }
    }

    /// Deletes the events received before `before_ms` (milliseconds since 1970), in batches;
    /// returns how many.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, DbError> {
        self.prune_events_by(before_ms, PRUNE_BATCH).await
    }

    async fn prune_events_by(&self, before_ms: i64, batch: i64) -> Result<u64, DbError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM events WHERE id IN \
                 (SELECT id FROM events WHERE received_at < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += n;
            if n < u64::try_from(batch).unwrap_or(u64::MAX) {
                return Ok(total);
            }
            // Let the ingest in between batches.
            tokio::task::yield_now().await;
        }
    }
}

fn stored_event(row: &AnyRow) -> Result<StoredEvent, DbError> {
    let text: String = row.try_get(2)?;
    Ok(StoredEvent {
        id: row.try_get(0)?,
        received_at: row.try_get(1)?,
        size: text.len(),
        event: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    })
}

/// The statements of a migration file: split on `;` at line ends, comments dropped.
fn statements(sql: &str) -> Vec<String> {
    let body: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements() {
        let s = statements(MIGRATIONS[0].1);
        assert_eq!(s.len(), 4);
        assert!(s[0].starts_with("CREATE TABLE events"));
        assert!(statements(MIGRATIONS[0].2)[0].contains("BIGSERIAL"));
    }

    /// A fresh SQLite database in a directory of its own (removed by the test).
    async fn temp_db(tag: &str) -> (Db, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("outworx-serve-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(dir.join("t.db").to_str().unwrap()).await.unwrap();
        (db, dir)
    }

    #[tokio::test]
    async fn idempotency_on_sqlite() {
        let (db, dir) = temp_db("db").await;
        exercise(&db).await;
        // Reopening applies no migration twice.
        drop(db);
        Db::open(dir.join("t.db").to_str().unwrap()).await.unwrap();
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn old_events_are_pruned_in_batches() {
        let (db, dir) = temp_db("prune").await;
        let events: Vec<_> = (0..7)
            .map(|i| {
                (
                    i,
                    serde_json::json!({"provider": "stripe", "status_code": 200}),
                )
            })
            .collect();
        db.insert_events("p", &events).await.unwrap();
        assert_eq!(db.prune_events_by(0, 3).await.unwrap(), 0);
        // 7 rows in batches of 3: 3 + 3 + 1.
        assert_eq!(db.prune_events_by(now_ms() + 1, 3).await.unwrap(), 7);
        assert_eq!(db.stats("p", None, None).await.unwrap().total, 0);
        // The sweep keeps what is inside the retention, and everything without one.
        db.insert_events("p", &events).await.unwrap();
        db.sweep(None).await;
        db.sweep(Some(std::time::Duration::from_secs(3600))).await;
        assert_eq!(db.stats("p", None, None).await.unwrap().total, 7);
        // received_at is in milliseconds: let one pass so "now minus zero" covers them.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        db.sweep(Some(std::time::Duration::ZERO)).await;
        assert_eq!(db.stats("p", None, None).await.unwrap().total, 0);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn stats_fold_the_groups() {
        let (db, dir) = temp_db("stats").await;
        let ev = |provider: &str, status: i64, extra: serde_json::Value| {
            let mut e = serde_json::json!({"provider": provider, "status_code": status});
            for (k, v) in extra.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        };
        db.insert_events(
            "p",
            &[
                (1_000, ev("stripe", 200, serde_json::json!({"processing_status": "completed", "signature_valid": true}))),
                (2_000, ev("stripe", 200, serde_json::json!({"processing_status": "silent_drop", "signature_valid": true}))),
                (3_000, ev("stripe", 401, serde_json::json!({"signature_valid": false}))),
                (4_000, ev("github", 500, serde_json::json!({"processing_status": "failed"}))),
                (5_000, ev("github", 200, serde_json::json!({}))),
            ],
        )
        .await
        .unwrap();
        db.insert_events(
            "other",
            &[(1_000, ev("stripe", 200, serde_json::json!({})))],
        )
        .await
        .unwrap();

        let all = db.stats("p", None, None).await.unwrap();
        let map = |v: &[(&str, i64)]| v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
        assert_eq!(
            all,
            Stats {
                total: 5,
                by_provider: map(&[("github", 2), ("stripe", 3)]),
                by_status_class: map(&[("2xx", 3), ("4xx", 1), ("5xx", 1)]),
                by_processing_status: map(&[("completed", 1), ("failed", 1), ("silent_drop", 1)]),
                signature_invalid: 1,
            }
        );
        let window = db.stats("p", Some(2_000), Some(4_000)).await.unwrap();
        assert_eq!((window.total, window.signature_invalid), (2, 1));
        assert_eq!(
            db.stats("nobody", None, None).await.unwrap(),
            Stats::default()
        );
        std::fs::remove_dir_all(dir).ok();
    }

    /// A slow read (the query API scanning a large table) runs on the read pool, beside the
    /// writer: an idempotency check is answered while it is still running, instead of
    /// queueing behind it past the SDK's 2 s timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_read_does_not_hold_up_an_idempotency_check() {
        let (db, dir) = temp_db("wal").await;
        let reads = db.reads.clone();
        let slow = tokio::spawn(async move {
            sqlx::query(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) \
                 SELECT count(*) FROM c",
            )
            .fetch_one(&reads)
            .await
            .map(drop)
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            db.check("p", "k", Some("t"), 60_000).await.unwrap(),
            Check::New
        );
        assert!(
            !slow.is_finished(),
            "the check waited for the slow read (or the read was too fast to tell)"
        );
        slow.await.unwrap().unwrap();
        std::fs::remove_dir_all(dir).ok();
    }

    /// The idempotency semantics (the integration tests check the same through the HTTP API
    /// on PostgreSQL).
    pub(crate) async fn exercise(db: &Db) {
        let k = format!("k{}", now_ms());
        assert_eq!(
            db.check("p", &k, Some("t1"), 60_000).await.unwrap(),
            Check::New
        );
        assert_eq!(
            db.check("p", &k, Some("t2"), 60_000).await.unwrap(),
            Check::InFlight
        );
        assert_eq!(
            db.check("other", &k, None, 60_000).await.unwrap(),
            Check::New
        );
        assert!(
            !db.complete("p", &k, Some("t2"), 200, None, None)
                .await
                .unwrap()
        );
        assert!(!db.release("p", &k, Some("t2")).await.unwrap());
        // Without the token, a reservation taken with one can be neither completed nor
        // released (a tokenless client cannot override it), nor renewed by another token.
        assert!(!db.complete("p", &k, None, 200, None, None).await.unwrap());
        assert!(!db.release("p", &k, None).await.unwrap());
        assert!(!db.renew("p", &k, "t2").await.unwrap());
        assert!(db.renew("p", &k, "t1").await.unwrap());
        assert!(
            db.complete(
                "p",
                &k,
                Some("t1"),
                201,
                Some("application/json"),
                Some("{}")
            )
            .await
            .unwrap()
        );
        assert_eq!(
            db.check("p", &k, None, 60_000).await.unwrap(),
            Check::Duplicate {
                status: 201,
                content_type: Some("application/json".into()),
                body: Some("{}".into())
            }
        );
        let r = format!("r{}", now_ms());
        assert_eq!(db.check("p", &r, None, 60_000).await.unwrap(), Check::New);
        assert!(db.release("p", &r, None).await.unwrap());
        assert_eq!(db.check("p", &r, None, 60_000).await.unwrap(), Check::New);
        // A zero TTL expires at once: the next check reserves afresh.
        let e = format!("e{}", now_ms());
        assert_eq!(db.check("p", &e, None, 0).await.unwrap(), Check::New);
        assert!(db.complete("p", &e, None, 200, None, None).await.unwrap());
        assert_eq!(db.check("p", &e, None, 60_000).await.unwrap(), Check::New);
    }
}
