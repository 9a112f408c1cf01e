//! What operators and tenants read: deliveries, attempts, each endpoint's health, and counts
//! (capped, or whole). Nothing here writes.

use super::{DeliveryFilter, Scope, push_delivery_filter, push_owned, u16_opt, u32_of};
use crate::send::SendError;
use crate::send::limits::MAX_LIST;
use crate::send::model::{Attempt, Delivery, DeliveryStatus, EndpointHealth};

outworx_hooks_queue::dialects! {
    pub(crate),
    use sqlx::Row as _;

    use super::*;


    /// Deliveries `scope` may see matching `f`, newest first (in a time window, the latest
    /// changed first; one message's, by endpoint): below `before` (an id; `i64::MAX` for the
    /// newest), so even the unfiltered list is a range read of the primary key.
    pub(crate) fn deliveries_query<'a>(
        prefix: &str,
        scope: Scope<'a>,
        f: &'a DeliveryFilter,
        before: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let limit = i64::from(f.limit.unwrap_or(MAX_LIST).min(MAX_LIST));
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push(
            // The message's type is looked up by its key for each row kept (a join may
            // read the whole messages table to match a page of deliveries).
            "SELECT d.id, d.message_id, d.endpoint_id, \
             (SELECT m.event_type FROM outworx_messages m WHERE m.id = d.message_id) AS event_type, \
             d.status, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.updated_at \
             FROM outworx_deliveries d WHERE d.id < ",
        );
        q.push_bind(before);
        push_delivery_filter(&mut q, scope, f);
        // The order an index of the filter gives, so the list stops at its limit: one
        // message's deliveries by endpoint (its at most 100 rows, from the key); in a time
        // window, the latest changed first (the `(endpoint_id, status, updated_at)` range);
        // else the newest first.
        let order = if f.message_id.is_some() {
            " ORDER BY d.endpoint_id LIMIT "
        } else if f.since.is_some() || f.until.is_some() {
            " ORDER BY d.updated_at DESC, d.id DESC LIMIT "
        } else {
            " ORDER BY d.id DESC LIMIT "
        };
        q.push(order).push_bind(limit);
        q
    }

    pub(crate) async fn deliveries(
        c: &mut Conn,
        scope: Scope<'_>,
        f: &DeliveryFilter,
    ) -> Result<Vec<Delivery>, SendError> {
        let rows = deliveries_query("", scope, f, i64::MAX).build().fetch_all(&mut *c).await?;
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

    /// Attempts of one endpoint and/or one message (for an operator, any), newest first,
    /// read by the `(endpoint_id, id, ..)` or `(message_id, id)` index; a tenant must name
    /// its own endpoint or message.
    pub(crate) fn attempts_query<'a>(
        prefix: &str,
        scope: Scope<'a>,
        endpoint_id: Option<&'a str>,
        message_id: Option<&'a str>,
        limit: u32,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push(
            "SELECT a.delivery_id, a.message_id, a.endpoint_id, a.attempt, a.at, a.status_code, \
             a.duration_ms, a.error, a.response FROM outworx_attempts a",
        );
        // A tenant names an endpoint or a message, checked to be its own (once, before any
        // row): their attempts are all its own.
        q.push(" WHERE a.id < ").push_bind(i64::MAX);
        push_owned(&mut q, scope, endpoint_id, message_id);
        if let Some(id) = endpoint_id {
            q.push(" AND a.endpoint_id = ").push_bind(id);
        }
        if let Some(id) = message_id {
            q.push(" AND a.message_id = ").push_bind(id);
        }
        q.push(" ORDER BY a.id DESC LIMIT ").push_bind(i64::from(limit.min(MAX_LIST)));
        q
    }

    pub(crate) async fn attempts(
        c: &mut Conn,
        scope: Scope<'_>,
        endpoint_id: Option<&str>,
        message_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Attempt>, SendError> {
        if matches!(scope, Scope::Owner(_)) && endpoint_id.is_none() && message_id.is_none() {
            // A tenant's attempts are read by endpoint or by message (as Svix's API does):
            // across all of them, the only index would be every tenant's.
            return Err(SendError::invalid("attempts", "name an endpoint or a message"));
        }
        let rows = attempts_query("", scope, endpoint_id, message_id, limit)
            .build()
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
    /// `(endpoint_id, status, ..)` one; the endpoints in order from theirs.
    pub(crate) fn endpoint_health_query<'a>(
        prefix: &str,
        scope: Scope<'a>,
        recent: u32,
        endpoints: u32,
        cap: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        let recent = i64::from(recent.clamp(1, MAX_LIST));
        // Per endpoint: its last `recent` attempts counted in one pass (total and 2xx,
        // answered as `total:succeeded`), its last attempt joined by its key, and its waiting
        // and dead deliveries counted to `cap`: each a range of one index.
        q.push(format!("SELECT e.id, \
         (SELECT COUNT(*) || ':' || COALESCE(SUM(CASE WHEN r.status_code BETWEEN 200 AND 299 \
          THEN 1 ELSE 0 END), 0) FROM (SELECT a.status_code FROM outworx_attempts a \
          WHERE a.endpoint_id = e.id ORDER BY a.id DESC LIMIT {recent}) r) AS recent, \
         la.status_code AS last_status, la.error AS last_error, la.at AS last_at, \
         (SELECT COUNT(*) FROM (SELECT 1 FROM outworx_deliveries d \
          WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'sending') \
          LIMIT {cap}) w) AS waiting, \
         (SELECT COUNT(*) FROM (SELECT 1 FROM outworx_deliveries d \
          WHERE d.endpoint_id = e.id AND d.status = 'dead' LIMIT {cap}) x) AS dead \
         FROM outworx_endpoints e LEFT JOIN outworx_attempts la ON la.id = \
         (SELECT MAX(a.id) FROM outworx_attempts a WHERE a.endpoint_id = e.id)"));
        if let Scope::Owner(owner) = scope {
            q.push(" WHERE e.owner = ").push_bind(owner);
        }
        q.push(" ORDER BY e.created_at, e.id LIMIT ")
            .push_bind(i64::from(endpoints.clamp(1, MAX_LIST)));
        q
    }

    pub(crate) async fn endpoint_health(
        c: &mut Conn,
        scope: Scope<'_>,
        recent: u32,
        endpoints: u32,
        cap: i64,
    ) -> Result<Vec<EndpointHealth>, SendError> {
        let rows = endpoint_health_query("", scope, recent, endpoints, cap)
            .build()
            .fetch_all(&mut *c)
            .await?;
        let count = |r: &<Db as sqlx::Database>::Row, k: &str| -> Result<u64, sqlx::Error> {
            let n: i64 = r.try_get(k)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        rows.iter()
            .map(|r| {
                let recent: String = r.try_get("recent")?;
                let (total, ok) = recent.split_once(':').unwrap_or(("0", "0"));
                let number = |v: &str| v.parse::<u32>().unwrap_or(0);
                Ok(EndpointHealth {
                    endpoint_id: r.try_get("id")?,
                    recent_attempts: number(total),
                    recent_succeeded: number(ok),
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

    /// One status's deliveries `scope` may see, counted up to `cap` by the `(status, id)`
    /// index, or for a tenant the `(status, owner, next_attempt_at)` one.
    pub(crate) fn capped_count_query<'a>(
        prefix: &str,
        scope: Scope<'a>,
        status: DeliveryStatus,
        cap: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("SELECT COUNT(*) FROM (SELECT 1 FROM outworx_deliveries WHERE status = ")
            .push_bind(status.as_str());
        if let Scope::Owner(owner) = scope {
            q.push(" AND owner = ").push_bind(owner);
        }
        q.push(" LIMIT ").push_bind(cap).push(") AS capped");
        q
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
            let n: i64 = capped_count_query("", scope, status, cap)
                .build_query_scalar()
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
