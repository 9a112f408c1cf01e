//! What operators and tenants read: deliveries, attempts, each endpoint's health, and counts
//! (capped, or whole). Nothing here writes.

use super::{DeliveryFilter, Scope, u16_opt, u32_of};
use crate::send::SendError;
use crate::send::limits::MAX_LIST;
use crate::send::model::{Attempt, Delivery, DeliveryStatus, EndpointHealth};

outworx_hooks_queue::dialects! {
    pub(crate),
    use sqlx::Row as _;

    use super::*;


    pub(crate) async fn deliveries(
        c: &mut Conn,
        scope: Scope<'_>,
        f: &DeliveryFilter,
    ) -> Result<Vec<Delivery>, SendError> {
        let limit = i64::from(f.limit.unwrap_or(MAX_LIST).min(MAX_LIST));
        let rows = sqlx::query(
            "SELECT d.id, d.message_id, d.endpoint_id, m.event_type, d.status, d.attempts, \
             d.next_attempt_at, d.last_status, d.last_error, d.updated_at \
             FROM outworx_deliveries d JOIN outworx_messages m ON m.id = d.message_id \
             WHERE ($1 = 1 OR d.owner = $2) \
             AND ($3 IS NULL OR d.status = $3) AND ($4 IS NULL OR d.endpoint_id = $4) \
             AND ($5 IS NULL OR d.message_id = $5) AND ($6 IS NULL OR d.updated_at >= $6) \
             AND ($7 IS NULL OR d.updated_at < $7) \
             ORDER BY d.id DESC LIMIT $8",
        )
        .bind(scope.all())
        .bind(scope.owner_text())
        .bind(f.status.map(DeliveryStatus::as_str))
        .bind(&f.endpoint_id)
        .bind(&f.message_id)
        .bind(f.since)
        .bind(f.until)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                Ok(Delivery {
                    id: r.try_get("id")?,
                    message_id: r.try_get("message_id")?,
                    endpoint_id: r.try_get("endpoint_id")?,
                    event_type: r.try_get("event_type")?,
                    status: DeliveryStatus::parse(&status),
                    attempts: u32_of(r.try_get("attempts")?),
                    next_attempt_at: r.try_get("next_attempt_at")?,
                    last_status: u16_opt(r.try_get("last_status")?),
                    last_error: r.try_get("last_error")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(SendError::from)
    }

    pub(crate) async fn attempts(
        c: &mut Conn,
        scope: Scope<'_>,
        endpoint_id: Option<&str>,
        message_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Attempt>, SendError> {
        let rows = sqlx::query(
            "SELECT a.delivery_id, a.message_id, a.endpoint_id, a.attempt, a.at, a.status_code, \
             a.duration_ms, a.error, a.response FROM outworx_attempts a \
             JOIN outworx_deliveries d ON d.id = a.delivery_id \
             WHERE ($1 = 1 OR d.owner = $2) AND ($3 IS NULL OR a.endpoint_id = $3) \
             AND ($4 IS NULL OR a.message_id = $4) ORDER BY a.id DESC LIMIT $5",
        )
        .bind(scope.all())
        .bind(scope.owner_text())
        .bind(endpoint_id)
        .bind(message_id)
        .bind(i64::from(limit.min(MAX_LIST)))
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                let duration: i64 = r.try_get("duration_ms")?;
                Ok(Attempt {
                    delivery_id: r.try_get("delivery_id")?,
                    message_id: r.try_get("message_id")?,
                    endpoint_id: r.try_get("endpoint_id")?,
                    attempt: u32_of(r.try_get("attempt")?),
                    at: r.try_get("at")?,
                    status_code: u16_opt(r.try_get("status_code")?),
                    duration_ms: u64::try_from(duration).unwrap_or(0),
                    error: r.try_get("error")?,
                    response: r.try_get("response")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(SendError::from)
    }

    /// Each endpoint's health: its last `recent` attempts and its last one, read by
    /// the `(endpoint_id, id)` index, and its waiting and dead deliveries, by the
    /// `(endpoint_id, status, ..)` one.
    pub(crate) async fn endpoint_health(
        c: &mut Conn,
        scope: Scope<'_>,
        recent: u32,
        endpoints: u32,
        cap: i64,
    ) -> Result<Vec<EndpointHealth>, SendError> {
        let sql = "SELECT e.id, \
         (SELECT COUNT(*) FROM (SELECT a.status_code FROM outworx_attempts a \
          WHERE a.endpoint_id = e.id ORDER BY a.id DESC LIMIT $3) r) AS recent, \
         (SELECT COUNT(*) FROM (SELECT a.status_code FROM outworx_attempts a \
          WHERE a.endpoint_id = e.id ORDER BY a.id DESC LIMIT $3) r \
          WHERE r.status_code BETWEEN 200 AND 299) AS succeeded, \
         (SELECT a.status_code FROM outworx_attempts a WHERE a.endpoint_id = e.id \
          ORDER BY a.id DESC LIMIT 1) AS last_status, \
         (SELECT a.error FROM outworx_attempts a WHERE a.endpoint_id = e.id \
          ORDER BY a.id DESC LIMIT 1) AS last_error, \
         (SELECT a.at FROM outworx_attempts a WHERE a.endpoint_id = e.id \
          ORDER BY a.id DESC LIMIT 1) AS last_at, \
         (SELECT COUNT(*) FROM (SELECT 1 FROM outworx_deliveries d \
          WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'sending') \
          LIMIT $4) w) AS waiting, \
         (SELECT COUNT(*) FROM (SELECT 1 FROM outworx_deliveries d \
          WHERE d.endpoint_id = e.id AND d.status = 'dead' LIMIT $4) x) AS dead \
         FROM outworx_endpoints e WHERE ($1 = 1 OR e.owner = $2) \
         ORDER BY e.created_at, e.id LIMIT $5";
        let rows = sqlx::query(sql)
            .bind(scope.all())
            .bind(scope.owner_text())
            .bind(i64::from(recent.clamp(1, MAX_LIST)))
            .bind(cap)
            .bind(i64::from(endpoints.clamp(1, MAX_LIST)))
            .fetch_all(&mut *c)
            .await?;
        let count = |r: &<Db as sqlx::Database>::Row, k: &str| -> Result<u64, sqlx::Error> {
            let n: i64 = r.try_get(k)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        rows.iter()
            .map(|r| {
                Ok(EndpointHealth {
                    endpoint_id: r.try_get("id")?,
                    recent_attempts: u32::try_from(count(r, "recent")?).unwrap_or(u32::MAX),
                    recent_succeeded: u32::try_from(count(r, "succeeded")?)
                        .unwrap_or(u32::MAX),
                    last_status: u16_opt(r.try_get("last_status")?),
                    last_error: r.try_get("last_error")?,
                    last_attempt_at: r.try_get("last_at")?,
                    waiting: count(r, "waiting")?,
                    dead: count(r, "dead")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(SendError::from)
    }

    /// Deliveries per status, each counted by the status index and capped at `cap`.
    pub(crate) async fn capped_counts(
        c: &mut Conn,
        scope: Scope<'_>,
        cap: i64,
    ) -> Result<Vec<(DeliveryStatus, u64)>, SendError> {
        let mut out = Vec::with_capacity(4);
        for status in [
            DeliveryStatus::Pending,
            DeliveryStatus::Sending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
        ] {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM outworx_deliveries WHERE status = $1 \
                 AND ($2 = 1 OR owner = $3) LIMIT $4) AS capped",
            )
            .bind(status.as_str())
            .bind(scope.all())
            .bind(scope.owner_text())
            .bind(cap)
            .fetch_one(&mut *c)
            .await?;
            out.push((status, u64::try_from(n).unwrap_or(0)));
        }
        Ok(out)
    }

    /// How many deliveries wait (by the status index, for the pending gauge).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) async fn pending_count(c: &mut Conn) -> Result<u64, SendError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM outworx_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&mut *c)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How many deliveries are in each status.
    pub(crate) async fn counts(
        c: &mut Conn,
        scope: Scope<'_>,
    ) -> Result<Vec<(DeliveryStatus, u64)>, SendError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM outworx_deliveries \
             WHERE ($1 = 1 OR owner = $2) GROUP BY status",
        )
        .bind(scope.all())
        .bind(scope.owner_text())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let n: i64 = r.try_get("n")?;
                Ok((DeliveryStatus::parse(&status), u64::try_from(n).unwrap_or(0)))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(SendError::from)
    }
}
