//! Storage: SQLite (a file, the default) or PostgreSQL, through `sqlx`'s `Any` driver with
//! the same SQL for both; schema migrations are embedded and applied at start.

// The items and the methods of `Db` live by concern, in private modules (re-exported here):
// - `migrate`: the embedded migrations, applied by `Db::open`;
// - `events`: storing, querying, counting and pruning events;
// - `rollups`: the per-minute, ten-minute, hour and day counts the summary and the series
//   read;
// - `idempotency`: reserving, completing, releasing and expiring idempotency keys.
mod events;
mod idempotency;
mod migrate;
mod rollups;

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub(crate) use events::EventRow;
pub(crate) use events::MAX_BUCKETS;
pub use events::{Bucket, EventFilter, MAX_EVENTS_BYTES, Stats, StoredEvent};
pub use idempotency::{Check, STALE_RESERVATION_MS};
pub use rollups::Grid;

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
/// # drop(db);
/// # for end in ["", "-wal", "-shm"] { std::fs::remove_file(format!("{}{end}", path.display())).ok(); }
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
}

/// Helpers shared by the tests of the submodules.
#[cfg(test)]
mod testing {
    use super::Db;

    /// A fresh SQLite database in a directory of its own (removed by the test).
    pub(super) async fn temp_db(tag: &str) -> (Db, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("outworx-serve-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(dir.join("t.db").to_str().unwrap()).await.unwrap();
        (db, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::temp_db;
    use super::*;

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
}
