//! Idempotency keys: a reservation per project and key, completed with the first response
//! (replayed to duplicates), released, renewed, or expired.

use sqlx::Row;

use super::{Db, DbError, now_ms};

/// A reservation older than this without a completion is taken over (its owner died).
pub const STALE_RESERVATION_MS: i64 = 30_000;

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

impl Db {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::temp_db;

    #[tokio::test]
    async fn idempotency_on_sqlite() {
        let (db, dir) = temp_db("db").await;
        exercise(&db).await;
        // Reopening applies no migration twice.
        drop(db);
        Db::open(dir.join("t.db").to_str().unwrap()).await.unwrap();
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
