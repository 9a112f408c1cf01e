//! Messages: one committed with a delivery per subscribed endpoint, once per idempotency
//! key. `send_in` runs this on the caller's own transaction.

use crate::send::SendError;
use crate::send::limits::MAX_ENDPOINTS_PER_OWNER;
use crate::send::model::{NewMessage, Sent};

outworx_hooks_queue::dialects! {
    pub(crate),
    use sqlx::Row as _;

    use super::*;


    /// Stores a message and one pending delivery per subscribed endpoint; a message
    /// whose idempotency key was seen answers the first one's id.
    pub(crate) async fn insert_message(
        c: &mut Conn,
        m: &NewMessage,
        id: &str,
        now: i64,
    ) -> Result<Sent, SendError> {
        if let Some(key) = &m.idempotency_key
            && let Some(first) = message_with_key(c, &m.owner, key).await?
        {
            return Ok(Sent { message_id: first, deliveries: 0, duplicate: true });
        }
        let done = sqlx::query(
            "INSERT INTO outworx_messages (id, owner, event_type, payload, idempotency_key, created_at, \
             traceparent) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(&m.owner)
        .bind(&m.event_type)
        .bind(&m.payload)
        .bind(&m.idempotency_key)
        .bind(now)
        // The span it was emitted in: each attempt's span is that span's child.
        .bind(crate::otel::traceparent(&tracing::Span::current()))
        .execute(&mut *c)
        .await?;
        if done.rows_affected() == 0 {
            // Another sender committed the same key between our read and write.
            let first = match &m.idempotency_key {
                Some(key) => message_with_key(c, &m.owner, key).await?,
                None => None,
            };
            return match first {
                Some(first) => Ok(Sent { message_id: first, deliveries: 0, duplicate: true }),
                None => Err(SendError::invalid("message", "its id is already taken")),
            };
        }
        let rows = sqlx::query(
            "SELECT id, events FROM outworx_endpoints WHERE owner = $1 AND enabled = 1 \
             ORDER BY id LIMIT $2",
        )
        .bind(&m.owner)
        .bind(i64::try_from(MAX_ENDPOINTS_PER_OWNER).unwrap_or(i64::MAX))
        .fetch_all(&mut *c)
        .await?;
        let mut targets = Vec::new();
        for r in &rows {
            let ep: String = r.try_get("id")?;
            if let Some(only) = &m.only_endpoint && *only != ep {
                continue;
            }
            let events: String = r.try_get("events")?;
            let events: Vec<String> = serde_json::from_str(&events).unwrap_or_default();
            if m.only_endpoint.is_some() || crate::send::filter::matches_any(&events, &m.event_type) {
                targets.push(ep);
            }
        }
        // One statement for all the deliveries (chunked to stay under bind limits).
        for chunk in targets.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO outworx_deliveries (message_id, endpoint_id, owner, status, attempts, \
                 next_attempt_at, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut row, ep| {
                row.push_bind(id)
                    .push_bind(ep)
                    .push_bind(&m.owner)
                    .push("'pending'")
                    .push("0")
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build().execute(&mut *c).await?;
        }
        Ok(Sent { message_id: id.to_owned(), deliveries: targets.len(), duplicate: false })
    }

    async fn message_with_key(
        c: &mut Conn,
        owner: &str,
        key: &str,
    ) -> Result<Option<String>, SendError> {
        let row = sqlx::query(
            "SELECT id FROM outworx_messages WHERE owner = $1 AND idempotency_key = $2",
        )
        .bind(owner)
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }
}
