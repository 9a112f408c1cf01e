//! What the outbox forgets: finished deliveries past their retention, with their attempts,
//! and then the messages left without a delivery (a batch per transaction, walked in the
//! order messages were sent); and one message's content on request (expunge).

use outworx_hooks_queue::{Cutoffs, Purged};

use super::Scope;
use crate::send::SendError;

/// Where a purge stopped: the `(created_at, id)` of the last message it looked at. The next
/// batch starts after it, so messages that must still be kept (a delivery waiting) are
/// passed over once per purge instead of read again by every batch.
pub(crate) type Cursor = Option<(i64, String)>;

/// Messages a purge batch takes at a time, before it checks its budget of rows.
const CHUNK: usize = 16;

/// The error an expunged message's waiting deliveries end with.
pub(crate) const EXPUNGED: &str = "its content was expunged";

outworx_hooks_queue::dialects! {
    pub(crate),
    use sqlx::Row as _;

    use super::*;

    /// The next `batch` messages sent before `before`, after `after` (`(created_at, id)`),
    /// oldest first: a range of the `(created_at, id)` index that starts at `after` (a row
    /// value comparison, which both databases read as the range's start).
    pub(crate) fn candidates_query<'a>(
        prefix: &str,
        before: i64,
        after: (i64, &'a str),
        batch: u32,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("SELECT id, created_at FROM outworx_messages WHERE (created_at, id) > (")
            .push_bind(after.0)
            .push(", ")
            .push_bind(after.1)
            .push(") AND created_at < ")
            .push_bind(before)
            .push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(batch));
        q
    }

    /// Deletes the deliveries of `messages` finished before their status's cut-off,
    /// answering their ids: read by the `(message_id, ..)` index.
    pub(crate) fn finished_deliveries_query<'a>(
        prefix: &str,
        cut: Cutoffs,
        messages: &'a [String],
    ) -> sqlx::QueryBuilder<'a, Db> {
        // The status test is one `CASE`, which no index serves: the planner reads the
        // messages' deliveries by `message_id` (an `OR` of status ranges made SQLite read
        // every delivered row instead).
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("DELETE FROM outworx_deliveries WHERE message_id IN (");
        let mut list = q.separated(", ");
        for id in messages {
            list.push_bind(id.as_str());
        }
        q.push(") AND (CASE status WHEN 'delivered' THEN updated_at < ")
            .push_bind(cut.done_bound())
            .push(" WHEN 'dead' THEN updated_at < ")
            .push_bind(cut.dead_bound())
            .push(" ELSE 1 = 0 END) RETURNING id");
        q
    }

    /// Deletes one batch: of the next messages (oldest first, after `cursor`) sent before
    /// the later cut-off, their deliveries that finished before their status's cut-off
    /// (delivered, dead) with those deliveries' attempts, then those of the messages that
    /// have no delivery left. Messages are taken [`CHUNK`] at a time until `batch` rows
    /// (messages, deliveries and attempts) are deleted or `batch` messages looked at: a
    /// message with many deliveries and attempts ends its batch early. A delivery replayed
    /// meanwhile is not finished, so it and its message stay (each `DELETE` checks the
    /// status again, on PostgreSQL after waiting for the row). `rows` counts the messages
    /// deleted.
    pub(crate) async fn purge(
        c: &mut Conn,
        cut: Cutoffs,
        batch: u32,
        cursor: &mut Cursor,
    ) -> Result<Purged, SendError> {
        let Some(latest) = cut.latest() else {
            return Ok(Purged::default());
        };
        let (after_at, after_id) = cursor.clone().unwrap_or((i64::MIN, String::new()));
        let rows = candidates_query("", latest, (after_at, &after_id), batch)
            .build()
            .fetch_all(&mut *c)
            .await?;
        let full = rows.len() == usize::try_from(batch).unwrap_or(usize::MAX);
        let mut candidates: Vec<(i64, String)> = Vec::with_capacity(rows.len());
        for r in &rows {
            candidates.push((r.try_get("created_at")?, r.try_get("id")?));
        }
        let (mut deleted, mut spent) = (0u64, 0u64);
        let mut looked = 0;
        for chunk in candidates.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|(_, id)| id.clone()).collect();
            let gone: Vec<i64> = finished_deliveries_query("", cut, &ids)
                .build()
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("id"))
                .collect::<Result<_, _>>()?;
            spent += u64::try_from(gone.len()).unwrap_or(u64::MAX);
            if !gone.is_empty() {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "DELETE FROM outworx_attempts WHERE delivery_id IN (",
                );
                let mut list = q.separated(", ");
                for id in &gone {
                    list.push_bind(*id);
                }
                q.push(")");
                spent += q.build().execute(&mut *c).await?.rows_affected();
            }
            // A message sent to nobody follows the delivered ones' retention (the dead
            // ones' when delivered ones are kept forever).
            // By their keys (`created_at + 0` is no index's: a range of every old message
            // would be read instead).
            let mut q = sqlx::QueryBuilder::<Db>::new("DELETE FROM outworx_messages WHERE id IN (");
            let mut list = q.separated(", ");
            for id in &ids {
                list.push_bind(id.as_str());
            }
            q.push(") AND created_at + 0 < ")
                .push_bind(cut.done_before.or(cut.dead_before).unwrap_or(i64::MIN))
                .push(" AND NOT EXISTS (SELECT 1 FROM outworx_deliveries d \
                       WHERE d.message_id = outworx_messages.id)");
            let n = q.build().execute(&mut *c).await?.rows_affected();
            deleted += n;
            spent += n;
            looked += chunk.len();
            if let Some(last) = chunk.last() {
                *cursor = Some(last.clone());
            }
            if spent >= u64::from(batch) {
                break;
            }
        }
        let more = full || looked < candidates.len();
        if !more {
            // The walk is through: the next purge starts from the oldest again.
            *cursor = None;
        }
        Ok(Purged { rows: deleted, more })
    }

    /// Blanks the answers recorded for one message's attempts, by the `(message_id, id)`
    /// index.
    pub(crate) fn expunge_answers_query<'a>(prefix: &str, id: &'a str) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("UPDATE outworx_attempts SET response = '' WHERE message_id = ").push_bind(id);
        q
    }

    /// Forgets one message's content now: its payload, and the answers its attempts
    /// recorded. Its id, type, times, deliveries and attempts stay; its deliveries still
    /// waiting end dead (there is nothing left to send), and it can no longer be replayed.
    /// `false` when the scope has no such message.
    pub(crate) async fn expunge(
        c: &mut Conn,
        scope: Scope<'_>,
        id: &str,
        now: i64,
    ) -> Result<bool, SendError> {
        let done = sqlx::query(
            "UPDATE outworx_messages SET payload = '{}', expunged_at = COALESCE(expunged_at, $1) \
             WHERE id = $2 AND ($3 = 1 OR owner = $4)",
        )
        .bind(now)
        .bind(id)
        .bind(scope.all())
        .bind(scope.owner_text())
        .execute(&mut *c)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        expunge_answers_query("", id).build().execute(&mut *c).await?;
        sqlx::query(
            "UPDATE outworx_deliveries SET status = 'dead', last_error = $1, lease_until = NULL, \
             lease_token = NULL, updated_at = $2 WHERE message_id = $3 AND status = 'pending'",
        )
        .bind(EXPUNGED)
        .bind(now)
        .bind(id)
        .execute(&mut *c)
        .await?;
        Ok(true)
    }
}
