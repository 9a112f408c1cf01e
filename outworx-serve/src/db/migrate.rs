//! Schema migrations: embedded per backend, applied in order at start, each in one
//! transaction and recorded in `outworx_migrations`.

use sqlx::Row;

use super::{Backend, Db, DbError};

/// Embedded migrations, in order, per backend.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../migrations/common/0002_sweep_indexes.sql"),
        include_str!("../../migrations/common/0002_sweep_indexes.sql"),
    ),
    (
        3,
        include_str!("../../migrations/common/0003_series_columns.sql"),
        include_str!("../../migrations/common/0003_series_columns.sql"),
    ),
    (
        4,
        include_str!("../../migrations/common/0004_inbox_link.sql"),
        include_str!("../../migrations/common/0004_inbox_link.sql"),
    ),
    (
        5,
        include_str!("../../migrations/common/0005_event_lists.sql"),
        include_str!("../../migrations/common/0005_event_lists.sql"),
    ),
    (
        6,
        include_str!("../../migrations/sqlite/0006_event_rollups.sql"),
        include_str!("../../migrations/postgres/0006_event_rollups.sql"),
    ),
];

/// The migration that adds the rollups, which then counts the events already stored.
const ROLLUPS: i64 = 6;

impl Db {
    pub(super) async fn migrate(&self) -> Result<(), DbError> {
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
            if *version == ROLLUPS {
                // Every statement of the backfill counts the same events: on PostgreSQL no
                // write lands between them (SQLite's one writer is this transaction).
                if self.backend == Backend::Postgres {
                    sqlx::query("LOCK TABLE events IN SHARE MODE")
                        .execute(&mut *tx)
                        .await?;
                }
                for statement in super::rollups::backfill_sql() {
                    sqlx::query(&statement).execute(&mut *tx).await?;
                }
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
}
