//! Where a queue lives: one SQLite or PostgreSQL pool, opened and migrated here, and the
//! macro that runs the same code on either driver.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Where a queue lives.
#[derive(Debug, Clone)]
pub enum Pool {
    /// A SQLite database (a file, or memory).
    Sqlite(SqlitePool),
    /// A PostgreSQL database.
    Postgres(PgPool),
}

impl Pool {
    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Opens `url`: a `postgres://` URL, a `sqlite:` URL, `:memory:`, or a file path
    /// (created if missing), with the backend's default [`Durability`].
    pub async fn open(url: &str) -> Result<Pool, sqlx::Error> {
        Pool::open_with(url, None).await
    }

    /// Opens `url` with a commit's durability set (`None`: the backend's default, SQLite's
    /// [`Durability::Process`] and the PostgreSQL server's own `synchronous_commit`).
    pub async fn open_with(url: &str, durability: Option<Durability>) -> Result<Pool, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url)?;
            if let Some(d) = durability {
                let on = match d {
                    Durability::Process => "off",
                    Durability::Disk => "on",
                };
                opts = opts.options([("synchronous_commit", on)]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            return Ok(Pool::Postgres(pool));
        }
        if url == ":memory:" || url == "sqlite::memory:" {
            return Pool::memory().await;
        }
        let opts = match url.strip_prefix("sqlite:") {
            Some(_) => SqliteConnectOptions::from_str(url)?,
            None => SqliteConnectOptions::new().filename(url),
        };
        // WAL with NORMAL sync: a commit survives the process being killed (what a durable
        // queue promises); only a power loss may take the last commits, never corrupting it.
        // FULL syncs the WAL at every commit: a power loss takes nothing committed.
        let sync = match durability.unwrap_or(Durability::Process) {
            Durability::Process => SqliteSynchronous::Normal,
            Durability::Disk => SqliteSynchronous::Full,
        };
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        Ok(Pool::Sqlite(pool))
    }

    /// SQLite in memory: one connection that never closes (each SQLite connection has its
    /// own memory). Not durable.
    pub async fn memory() -> Result<Pool, sqlx::Error> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        Ok(Pool::Sqlite(pool))
    }

    /// Creates a queue's tables if they are missing, then adds the `columns` a later
    /// version added to them (`(table, column, type)`, nullable), in one transaction (on
    /// PostgreSQL under an advisory lock, so processes starting together do not race).
    /// A database an older version created is brought up to date in place.
    pub async fn migrate(
        &self,
        sqlite: &str,
        postgres: &str,
        columns: &[(&str, &str, &str)],
    ) -> Result<(), sqlx::Error> {
        match self {
            Pool::Sqlite(p) => {
                // Write-locked from the start: two processes upgrading one file wait for each
                // other instead of one failing its read-then-write upgrade.
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::raw_sql(sqlite).execute(&mut *tx).await?;
                for (table, column, kind) in columns {
                    // SQLite has no `ADD COLUMN IF NOT EXISTS`.
                    let present: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    )
                    .bind(table)
                    .bind(column)
                    .fetch_one(&mut *tx)
                    .await?;
                    if present == 0 {
                        sqlx::raw_sql(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7372011501)")
                    .execute(&mut *tx)
                    .await?;
                sqlx::raw_sql(postgres).execute(&mut *tx).await?;
                for (table, column, kind) in columns {
                    // `ALTER TABLE` takes the table's heaviest lock (and needs its owner) even
                    // when the column is there: only a database that lacks it pays.
                    let present: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = $1 \
                         AND column_name = $2",
                    )
                    .bind(table)
                    .bind(column)
                    .fetch_one(&mut *tx)
                    .await?;
                    if present == 0 {
                        sqlx::raw_sql(&format!(
                            "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}"
                        ))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await
            }
        }
    }
}

/// What a commit survives: how far an acknowledged write (a receipt answered 200, a send
/// answered with its id) is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The application's crash (`kill -9`), not the machine's: a power loss or an OS crash
    /// may take the last commits (never corrupting the database). SQLite: WAL with
    /// `synchronous=NORMAL` (its default here); PostgreSQL: `synchronous_commit=off` (also
    /// a crash of the PostgreSQL server may take the last commits).
    Process,
    /// The machine's crash too: every commit is on disk before it is answered. SQLite:
    /// `synchronous=FULL`; PostgreSQL: `synchronous_commit=on`.
    Disk,
}

/// Whether a database error can be one row's fault rather than the database's: a constraint,
/// a value of the wrong type or too large (an index entry over PostgreSQL's limit). Then a
/// batch is worth retrying a row at a time; an outage (I/O, a full disk, a busy or closed
/// database, the pool) is not.
pub fn row_fault(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // SQLSTATE classes 22 (data exception), 23 (integrity constraint), 54 (program limit).
        return ["22", "23", "54"].iter().any(|c| pg.code().starts_with(c));
    }
    // SQLite: the primary result code of the extended one: TOOBIG, CONSTRAINT, MISMATCH.
    db.code()
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| matches!(c & 0xff, 18..=20))
}

/// Text a queue's database stores as it is: PostgreSQL refuses NUL in `TEXT`, so it becomes
/// U+FFFD (keys, event types, errors, response snippets: whatever a sender chose).
pub fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A constraint is one row's fault; a missing table is the database's.
    #[tokio::test]
    async fn a_constraint_is_a_row_fault_and_a_missing_table_is_not() {
        let pool = Pool::memory().await.unwrap();
        let Pool::Sqlite(p) = &pool else {
            unreachable!("memory is SQLite")
        };
        sqlx::raw_sql("CREATE TABLE u (k TEXT PRIMARY KEY); INSERT INTO u VALUES ('a')")
            .execute(p)
            .await
            .unwrap();
        let dup = sqlx::query("INSERT INTO u VALUES ('a')")
            .execute(p)
            .await
            .unwrap_err();
        assert!(row_fault(&dup), "{dup}");
        let missing = sqlx::query("INSERT INTO nowhere VALUES (1)")
            .execute(p)
            .await
            .unwrap_err();
        assert!(!row_fault(&missing), "{missing}");
        assert!(!row_fault(&sqlx::Error::PoolTimedOut));
    }

    /// The durability asked for is the setting SQLite applies, on every connection.
    #[tokio::test]
    async fn sqlite_applies_the_durability_asked_for() {
        let dir = std::env::temp_dir().join(format!("outworx-durability-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (durability, expected) in [
            (None, 1),
            (Some(Durability::Process), 1),
            (Some(Durability::Disk), 2),
        ] {
            let file = dir.join(format!("{expected}-{}.db", durability.is_some()));
            let pool = Pool::open_with(file.to_str().unwrap(), durability)
                .await
                .unwrap();
            let Pool::Sqlite(p) = &pool else {
                unreachable!("a file is SQLite")
            };
            // Several connections at once: each one has the setting.
            let mut held = Vec::new();
            for _ in 0..3 {
                let mut c = p.acquire().await.unwrap();
                let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&mut *c)
                    .await
                    .unwrap();
                assert_eq!(sync, expected, "{durability:?}: 1 is NORMAL, 2 is FULL");
                let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&mut *c)
                    .await
                    .unwrap();
                assert_eq!(journal, "wal");
                held.push(c);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A table an older version created gains the columns added since, once, in place.
    #[tokio::test]
    async fn added_columns_upgrade_an_older_table_once() {
        let pool = Pool::memory().await.unwrap();
        let Pool::Sqlite(p) = &pool else {
            unreachable!("memory is SQLite")
        };
        sqlx::raw_sql("CREATE TABLE q (id INTEGER PRIMARY KEY); INSERT INTO q (id) VALUES (1)")
            .execute(p)
            .await
            .unwrap();
        let schema = "CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY)";
        for _ in 0..2 {
            pool.migrate(schema, "", &[("q", "traceparent", "TEXT")])
                .await
                .unwrap();
        }
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('q')")
            .fetch_all(p)
            .await
            .unwrap();
        assert_eq!(columns, ["id", "traceparent"]);
        let kept: Option<String> = sqlx::query_scalar("SELECT traceparent FROM q WHERE id = 1")
            .fetch_one(p)
            .await
            .unwrap();
        assert_eq!(kept, None, "the old row is kept, with NULL");
    }
}
