//! Where a queue lives: one SQLite or PostgreSQL pool, opened and migrated here, and the
//! macro that runs the same code on either driver.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
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
    /// (created if missing).
    pub async fn open(url: &str) -> Result<Pool, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
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
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
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

/// Text a queue's database stores as it is: PostgreSQL refuses NUL in `TEXT`, so it becomes
/// U+FFFD (keys, event types, errors, response snippets: whatever a sender chose).
pub fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
