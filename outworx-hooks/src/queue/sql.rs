#![cfg_attr(not(all(feature = "send", feature = "inbox")), allow(dead_code))]

//! The queue mechanics both durable queues share, written once: claim due rows with a lease
//! (the claim also takes back leases that expired: it is the reaper), give rows back, and
//! finish them (done, retry at a time, dead) only while the lease is still the caller's.
//! The outbox's deliveries and the inbox are two tables with these same columns:
//! `id, status, attempts, next_attempt_at, lease_until, lease_token, last_status,
//! last_error, updated_at`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Where a queue lives.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    /// `sqlite` or `postgres`.
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Opens `url`: a `postgres://` URL, a `sqlite:` URL, `:memory:`, or a file path
    /// (created if missing).
    pub(crate) async fn open(url: &str) -> Result<Pool, sqlx::Error> {
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
    pub(crate) async fn memory() -> Result<Pool, sqlx::Error> {
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
    pub(crate) async fn migrate(
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
pub(crate) fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A table that is a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// The sending side's deliveries (one message to one endpoint).
    Deliveries,
    /// The receiving side's inbox (one verified delivery to process).
    Inbox,
}

impl Table {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Deliveries => "outworx_deliveries",
            Table::Inbox => "outworx_inbox",
        }
    }

    /// The status of a leased row.
    pub(crate) fn leased(self) -> &'static str {
        match self {
            Table::Deliveries => "sending",
            Table::Inbox => "processing",
        }
    }

    /// The status of a finished row.
    pub(crate) fn done(self) -> &'static str {
        match self {
            Table::Deliveries => "delivered",
            Table::Inbox => "done",
        }
    }
}

/// The shared queries, compiled for one driver (`$conn`), with what its claim adds to skip
/// rows other workers hold (`$skip`).
macro_rules! queue_dialect {
    ($name:ident, $conn:ty, $skip:literal) => {
        pub(crate) mod $name {
            use sqlx::Row as _;

            use super::Table;

            type Conn = $conn;
            type Db = <Conn as sqlx::Connection>::Database;

            /// Leases up to `limit` due rows (pending and due, or leased past their lease),
            /// counting the attempt they start; `exclude` leaves out rows whose `column` is
            /// in the list. Returns their ids.
            #[allow(clippy::too_many_arguments)]
            pub(crate) async fn claim(
                c: &mut Conn,
                table: Table,
                now: i64,
                lease_until: i64,
                token: &str,
                limit: u32,
                exclude: Option<(&'static str, &[String])>,
            ) -> Result<Vec<i64>, sqlx::Error> {
                let t = table.name();
                let mut q = sqlx::QueryBuilder::<Db>::new(format!("UPDATE {t} SET status = '"));
                q.push(table.leased())
                    .push("', attempts = attempts + 1, lease_until = ")
                    .push_bind(lease_until)
                    .push(", lease_token = ")
                    .push_bind(token)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(format!(" WHERE id IN (SELECT id FROM {t} WHERE ((status = 'pending' AND next_attempt_at <= "))
                    .push_bind(now)
                    .push(format!(") OR (status = '{}' AND lease_until <= ", table.leased()))
                    .push_bind(now)
                    .push("))");
                if let Some((column, list)) = exclude.filter(|(_, l)| !l.is_empty()) {
                    q.push(format!(" AND {column} NOT IN ("));
                    let mut items = q.separated(", ");
                    for v in list.iter().take(500) {
                        items.push_bind(v);
                    }
                    q.push(")");
                }
                q.push(" ORDER BY next_attempt_at LIMIT ")
                    .push_bind(i64::from(limit))
                    .push($skip)
                    .push(") RETURNING id");
                let rows = q.build().fetch_all(&mut *c).await?;
                rows.iter().map(|r| r.try_get::<i64, _>("id")).collect()
            }

            /// Marks dead the rows whose lease expired on their last attempt (their process
            /// died with them, every time): `max` attempts, or the table's `max_attempts`.
            pub(crate) async fn bury(
                c: &mut Conn,
                table: Table,
                now: i64,
                max: Option<i64>,
            ) -> Result<u64, sqlx::Error> {
                let limit = match max {
                    Some(_) => "$2",
                    None => "max_attempts",
                };
                let sql = format!(
                    "UPDATE {t} SET status = 'dead', lease_until = NULL, lease_token = NULL, \
                     last_error = 'every attempt ended with its worker (crashed or killed while running)', \
                     updated_at = $1 WHERE status = '{leased}' AND lease_until <= $1 AND attempts >= {limit}",
                    t = table.name(),
                    leased = table.leased(),
                );
                let mut q = sqlx::query(&sql).bind(now);
                if let Some(m) = max {
                    q = q.bind(m);
                }
                Ok(q.execute(&mut *c).await?.rows_affected())
            }

            /// Gives leased rows back untried: the attempt the claim counted is taken back.
            pub(crate) async fn release(
                c: &mut Conn,
                table: Table,
                ids: &[i64],
                token: &str,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                for chunk in ids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                        "UPDATE {} SET status = 'pending', attempts = attempts - 1, \
                         lease_until = NULL, lease_token = NULL, next_attempt_at = ",
                        table.name()
                    ));
                    q.push_bind(now)
                        .push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE lease_token = ")
                        .push_bind(token)
                        .push(" AND id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    q.build().execute(&mut *c).await?;
                }
                Ok(())
            }

            /// Finishes one row (`status`: pending with `next_attempt_at`, done, or dead) if
            /// its lease is still `token`'s. Returns whether it was.
            #[allow(clippy::too_many_arguments)]
            pub(crate) async fn finish(
                c: &mut Conn,
                table: Table,
                id: i64,
                token: &str,
                status: &str,
                next_attempt_at: i64,
                last_status: Option<i64>,
                last_error: Option<&str>,
                now: i64,
            ) -> Result<bool, sqlx::Error> {
                let done = sqlx::query(&format!(
                    "UPDATE {} SET status = $1, next_attempt_at = $2, lease_until = NULL, \
                     lease_token = NULL, last_status = $3, last_error = $4, updated_at = $5 \
                     WHERE id = $6 AND lease_token = $7",
                    table.name()
                ))
                .bind(status)
                .bind(next_attempt_at)
                .bind(last_status)
                .bind(last_error)
                .bind(now)
                .bind(id)
                .bind(token)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            /// Marks many rows done in one statement (the common case of a batch); returns
            /// how many were still `token`'s.
            pub(crate) async fn finish_done(
                c: &mut Conn,
                table: Table,
                ids: &[i64],
                token: &str,
                last_status: Option<i64>,
                now: i64,
            ) -> Result<u64, sqlx::Error> {
                let mut hit = 0;
                for chunk in ids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                        "UPDATE {} SET status = '{}', lease_until = NULL, lease_token = NULL, \
                         last_error = NULL, last_status = ",
                        table.name(),
                        table.done()
                    ));
                    q.push_bind(last_status)
                        .push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE lease_token = ")
                        .push_bind(token)
                        .push(" AND id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    hit += q.build().execute(&mut *c).await?.rows_affected();
                }
                Ok(hit)
            }
        }
    };
}

queue_dialect!(sqlite, sqlx::SqliteConnection, "");
queue_dialect!(postgres, sqlx::PgConnection, " FOR UPDATE SKIP LOCKED");

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
