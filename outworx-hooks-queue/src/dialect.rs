//! The two macros that let every query be written once for both drivers: [`dialects!`]
//! compiles a module body for SQLite and for PostgreSQL, and [`on_pool!`] runs code on the
//! one a [`Pool`](crate::Pool) holds.

/// Compiles the items given once per driver, as `mod sqlite` and `mod postgres`. Inside
/// each: `Conn` (its connection type), `Db` (its database), `SKIP_LOCKED` (what a claim
/// adds to skip rows other workers hold: nothing on SQLite, which has one writer) and
/// `queue_sql` (this crate's [`sql`](crate::sql) queries for the same driver). The items
/// reach the enclosing module's with `use super::*;`.
///
/// The visibility before the `,` is the modules' own (`pub`, `pub(crate)`).
#[macro_export]
macro_rules! dialects {
    ($vis:vis, $($body:tt)*) => {
        /// The queries on SQLite.
        $vis mod sqlite {
            #[allow(dead_code)]
            type Conn = $crate::sqlx::SqliteConnection;
            #[allow(dead_code)]
            type Db = $crate::sqlx::Sqlite;
            #[allow(dead_code)]
            const SKIP_LOCKED: &str = "";
            #[allow(dead_code)]
            const POSTGRES: bool = false;
            #[allow(unused_imports)]
            use $crate::sql::sqlite as queue_sql;
            $($body)*
        }
        /// The queries on PostgreSQL.
        $vis mod postgres {
            #[allow(dead_code)]
            type Conn = $crate::sqlx::PgConnection;
            #[allow(dead_code)]
            type Db = $crate::sqlx::Postgres;
            #[allow(dead_code)]
            const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
            #[allow(dead_code)]
            const POSTGRES: bool = true;
            #[allow(unused_imports)]
            use $crate::sql::postgres as queue_sql;
            $($body)*
        }
    };
}

/// Runs `$body` on the pool's driver, with `$c` its connection (`&mut SqliteConnection` or
/// `&mut PgConnection`) and `$m` the driver's module of the query modules named by the path
/// (`crate::send::store::endpoints` gives `...::endpoints::sqlite` or `...::postgres`): every
/// query is written once, in a dialect macro compiled for each driver, and this picks one.
///
/// `on_pool!(&pool, tx, path, |c, m| body)` runs it in a transaction committed when `body`
/// succeeds (on SQLite, write-locked from its `BEGIN IMMEDIATE`); `read` in a transaction
/// that only reads (one snapshot, no write lock); `conn` on one connection.
/// `?` in `$body` (and on the pool) needs `From<sqlx::Error>` for the enclosing error type.
#[macro_export]
macro_rules! on_pool {
    // Write-locked from the start on SQLite: a transaction that reads, then writes, never
    // fails on a snapshot another writer made stale (SQLITE_BUSY_SNAPSHOT, which the busy
    // timeout does not cover); it waits for its turn instead.
    ($pool:expr, tx, $($path:ident)::+, |$c:ident, $m:ident| $body:expr) => {
        $crate::on_pool!(@begin "BEGIN IMMEDIATE", $pool, $($path)::+, |$c, $m| $body)
    };
    // Deferred: one snapshot for several reads, and no write lock.
    ($pool:expr, read, $($path:ident)::+, |$c:ident, $m:ident| $body:expr) => {
        $crate::on_pool!(@begin "BEGIN", $pool, $($path)::+, |$c, $m| $body)
    };
    (@begin $begin:literal, $pool:expr, $($path:ident)::+, |$c:ident, $m:ident| $body:expr) => {
        match $pool {
            $crate::Pool::Sqlite(p) => {
                let mut tx = p.begin_with($begin).await?;
                let out = {
                    let $c: &mut $crate::sqlx::SqliteConnection = &mut tx;
                    #[allow(unused_imports)]
                    use $($path)::+::sqlite as $m;
                    $body
                };
                tx.commit().await?;
                out
            }
            $crate::Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                let out = {
                    let $c: &mut $crate::sqlx::PgConnection = &mut tx;
                    #[allow(unused_imports)]
                    use $($path)::+::postgres as $m;
                    $body
                };
                tx.commit().await?;
                out
            }
        }
    };
    ($pool:expr, conn, $($path:ident)::+, |$c:ident, $m:ident| $body:expr) => {
        match $pool {
            $crate::Pool::Sqlite(p) => {
                let mut conn = p.acquire().await?;
                let $c: &mut $crate::sqlx::SqliteConnection = &mut conn;
                #[allow(unused_imports)]
                use $($path)::+::sqlite as $m;
                $body
            }
            $crate::Pool::Postgres(p) => {
                let mut conn = p.acquire().await?;
                let $c: &mut $crate::sqlx::PgConnection = &mut conn;
                #[allow(unused_imports)]
                use $($path)::+::postgres as $m;
                $body
            }
        }
    };
}
