//! Deliveries as a queue: claimed with their message and endpoint, given back, settled
//! (with their attempts and their endpoint's health), replayed. The lease, the reaper and
//! finishing are the engine's ([`outworx_hooks_queue::sql`]).

use outworx_hooks_queue::{Claim, QueueTable};

use super::{DeliveryFilter, Scope, push_delivery_filter, u32_of};
use crate::send::SendError;
use crate::send::model::{Attempt, Auth, DeliveryStatus, Format};

/// The outbox's queue table.
pub(crate) const TABLE: QueueTable = QueueTable {
    name: "outworx_deliveries",
    leased: "sending",
    done: "delivered",
};

/// An endpoint row as the worker needs it: where, how, and with which secrets.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) auth: Auth,
    pub(crate) format: Format,
    pub(crate) secret: String,
    pub(crate) previous_secret: Option<String>,
    pub(crate) previous_until: Option<i64>,
    pub(crate) enabled: bool,
    pub(crate) disabled_reason: Option<String>,
    /// Custom headers added to each request (JSON object, as stored).
    pub(crate) headers: super::endpoints::Headers,
}

/// One claimed delivery with its message and endpoint.
pub(crate) struct Job {
    pub(crate) delivery_id: i64,
    pub(crate) attempt: u32,
    pub(crate) message_id: String,
    pub(crate) endpoint_id: String,
    pub(crate) owner: String,
    pub(crate) event_type: String,
    pub(crate) payload: String,
    pub(crate) message_created_at: i64,
    /// The W3C trace context the message was emitted in (feature `otel`).
    pub(crate) traceparent: Option<String>,
    /// The message's content was expunged: there is nothing to send.
    pub(crate) expunged: bool,
    /// `None` when the endpoint was deleted.
    pub(crate) target: Option<Target>,
}

/// What became of one claimed delivery.
pub(crate) struct Settle {
    pub(crate) delivery_id: i64,
    pub(crate) endpoint_id: String,
    pub(crate) message_id: String,
    pub(crate) owner: String,
    pub(crate) event_type: String,
    /// The attempt this result ends (1-based, in its round).
    pub(crate) attempts: u32,
    pub(crate) status: DeliveryStatus,
    pub(crate) next_attempt_at: i64,
    pub(crate) last_status: Option<u16>,
    pub(crate) last_error: Option<String>,
    /// The attempt to record, when a request was made (or refused at connect).
    pub(crate) attempt: Option<Attempt>,
    /// `Some(true)` after a 2xx, `Some(false)` after a failed request; `None` without one.
    pub(crate) endpoint_ok: Option<bool>,
    /// Disable the endpoint now, with this reason (410 Gone).
    pub(crate) disable: Option<String>,
}

/// What settling changed beyond the delivery.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// Endpoints disabled by these results, with the reason.
    pub(crate) disabled: Vec<(String, String)>,
    /// Deliveries whose lease had expired and been taken by another worker.
    pub(crate) lost_leases: usize,
    /// Of those, the ones this result would have made dead (their hook must not run).
    pub(crate) lost_dead: Vec<i64>,
}

outworx_hooks_queue::dialects! {
    pub(crate),
    use std::str::FromStr as _;

    use sqlx::Row as _;

    use super::*;


    /// The owners with deliveries due at `now`, among the next `max` with deliveries
    /// waiting after `after` (wrapping around to the first): a seek or two each.
    pub(crate) async fn owners_waiting(
        c: &mut Conn,
        after: Option<&str>,
        max: u32,
        now: i64,
    ) -> Result<Vec<String>, SendError> {
        let mut owners = queue_sql::groups_pending(c, TABLE, "owner", after, max, now).await?;
        let short = u32::try_from(owners.len()).unwrap_or(u32::MAX) < max;
        if let Some(after) = after.filter(|_| short) {
            // Past the last one: on from the first, up to where this walk began (in the
            // database's order, which its collation decides).
            let room = max - u32::try_from(owners.len()).unwrap_or(max);
            // The owner the walk began after is the last one (it may be the only one).
            for o in queue_sql::groups_pending(c, TABLE, "owner", None, room, now).await? {
                if owners.contains(&o) {
                    break;
                }
                let last = o == after;
                owners.push(o);
                if last {
                    break;
                }
            }
        }
        Ok(owners)
    }

    /// Leases the due deliveries `claim` asks for (pending and due, or leased past their
    /// lease: the reaper is this same query), counting the attempt they start, and reads
    /// each with its message and endpoint.
    pub(crate) async fn claim(c: &mut Conn, claim: Claim<'_>) -> Result<Vec<Job>, SendError> {
        let claimed = queue_sql::claim(c, TABLE, claim).await?;
        let token = claim.token;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT d.id AS delivery_id, d.attempts, d.message_id, d.endpoint_id, d.owner, \
             m.event_type, m.payload, m.created_at AS message_created_at, \
             m.traceparent, m.expunged_at, e.id AS ep_id, e.url, e.auth, e.format, e.secret, e.previous_secret, \
             e.previous_until, e.enabled, e.disabled_reason, e.headers \
             FROM outworx_deliveries d \
             JOIN outworx_messages m ON m.id = d.message_id \
             LEFT JOIN outworx_endpoints e ON e.id = d.endpoint_id \
             WHERE d.lease_token = $1",
        )
        .bind(token)
        .fetch_all(&mut *c)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for r in &rows {
            let ep_id: Option<String> = r.try_get("ep_id")?;
            let target = match ep_id {
                None => None,
                Some(_) => {
                    let auth: String = r.try_get("auth")?;
                    let format: String = r.try_get("format")?;
                    let enabled: i64 = r.try_get("enabled")?;
                    Some(Target {
                        url: r.try_get("url")?,
                        auth: serde_json::from_str(&auth).unwrap_or_default(),
                        format: Format::from_str(&format).unwrap_or_default(),
                        secret: r.try_get("secret")?,
                        previous_secret: r.try_get("previous_secret")?,
                        previous_until: r.try_get("previous_until")?,
                        headers: r
                            .try_get::<Option<String>, _>("headers")?
                            .and_then(|h| serde_json::from_str(&h).ok())
                            .unwrap_or_default(),
                        enabled: enabled != 0,
                        disabled_reason: r.try_get("disabled_reason")?,
                    })
                }
            };
            jobs.push(Job {
                delivery_id: r.try_get("delivery_id")?,
                attempt: u32_of(r.try_get("attempts")?),
                message_id: r.try_get("message_id")?,
                endpoint_id: r.try_get("endpoint_id")?,
                owner: r.try_get("owner")?,
                event_type: r.try_get("event_type")?,
                payload: r.try_get("payload")?,
                message_created_at: r.try_get("message_created_at")?,
                traceparent: r.try_get("traceparent")?,
                expunged: r.try_get::<Option<i64>, _>("expunged_at")?.is_some(),
                target,
            });
        }
        Ok(jobs)
    }

    /// Gives leased deliveries back untried (the worker is at its per-endpoint cap,
    /// or shutting down): the attempt the claim counted is taken back.
    /// Deliveries whose lease expired on their last attempt are dead (a target that
    /// kills its worker every time is not tried forever).
    pub(crate) async fn bury(c: &mut Conn, now: i64, max_attempts: u32) -> Result<u64, SendError> {
        Ok(queue_sql::bury(c, TABLE, now, Some(i64::from(max_attempts))).await?)
    }

    pub(crate) async fn release(
        c: &mut Conn,
        ids: &[i64],
        token: &str,
        now: i64,
    ) -> Result<(), SendError> {
        queue_sql::release(c, TABLE, ids, token, now).await?;
        Ok(())
    }

    /// Records results: each delivery (if its lease is still this worker's), its
    /// attempt, and the endpoint's health; disables endpoints failing for too long.
    /// The common case, a batch of 2xx, is a few statements whatever its size.
    pub(crate) async fn settle(
        c: &mut Conn,
        results: &[Settle],
        token: &str,
        now: i64,
        disable_after_ms: i64,
    ) -> Result<Settled, SendError> {
        let mut out = Settled::default();
        let (ok, other): (Vec<&Settle>, Vec<&Settle>) = results.iter().partition(|s| {
            s.status == DeliveryStatus::Delivered && s.disable.is_none() && s.last_error.is_none()
        });
        // Delivered, grouped by status code: one UPDATE per group.
        let mut codes: Vec<Option<u16>> = ok.iter().map(|s| s.last_status).collect();
        codes.sort_unstable();
        codes.dedup();
        for code in codes {
            let group: Vec<i64> = ok
                .iter()
                .filter(|s| s.last_status == code)
                .map(|s| s.delivery_id)
                .collect();
            let hit = queue_sql::finish_done(c, TABLE,
                &group,
                token,
                code.map(i64::from),
                now,
            )
            .await?;
            out.lost_leases += group.len().saturating_sub(usize::try_from(hit).unwrap_or(0));
        }
        // Their endpoints are healthy again (one statement for all of them).
        let mut healthy: Vec<&str> = ok.iter().map(|s| s.endpoint_id.as_str()).collect();
        healthy.sort_unstable();
        healthy.dedup();
        for ids in healthy.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "UPDATE outworx_endpoints SET failing_since = NULL \
                 WHERE failing_since IS NOT NULL AND id IN (",
            );
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *c).await?;
        }
        // Their attempts, in multi-row inserts.
        let attempts: Vec<&Attempt> = ok.iter().filter_map(|s| s.attempt.as_ref()).collect();
        for chunk in attempts.chunks(200) {
            insert_attempts(c, chunk).await?;
        }
        // Failures, dead letters and disabling: one at a time (the rare path).
        for s in other {
            let held = queue_sql::finish(c, TABLE,
                s.delivery_id,
                token,
                s.status.as_str(),
                s.next_attempt_at,
                s.last_status.map(i64::from),
                s.last_error.as_deref(),
                now,
            )
            .await?;
            if !held {
                // Another worker holds it now: its attempt will speak for the endpoint.
                out.lost_leases += 1;
                if s.status == DeliveryStatus::Dead {
                    out.lost_dead.push(s.delivery_id);
                }
                if let Some(a) = &s.attempt {
                    insert_attempts(c, &[a]).await?;
                }
                continue;
            }
            if let Some(a) = &s.attempt {
                insert_attempts(c, &[a]).await?;
            }
            match s.endpoint_ok {
                Some(true) => {
                    sqlx::query(
                        "UPDATE outworx_endpoints SET failing_since = NULL \
                         WHERE id = $1 AND failing_since IS NOT NULL",
                    )
                    .bind(&s.endpoint_id)
                    .execute(&mut *c)
                    .await?;
                }
                Some(false) => {
                    sqlx::query(
                        "UPDATE outworx_endpoints SET failing_since = COALESCE(failing_since, $1) \
                         WHERE id = $2",
                    )
                    .bind(now)
                    .bind(&s.endpoint_id)
                    .execute(&mut *c)
                    .await?;
                    let reason = format!(
                        "every attempt failed for {} hours",
                        disable_after_ms / 3_600_000
                    );
                    let hit = sqlx::query(
                        "UPDATE outworx_endpoints SET enabled = 0, disabled_reason = $1, updated_at = $2 \
                         WHERE id = $3 AND enabled = 1 AND failing_since <= $4 RETURNING id",
                    )
                    .bind(&reason)
                    .bind(now)
                    .bind(&s.endpoint_id)
                    .bind(now.saturating_sub(disable_after_ms))
                    .fetch_optional(&mut *c)
                    .await?;
                    if hit.is_some() {
                        out.disabled.push((s.endpoint_id.clone(), reason));
                    }
                }
                None => {}
            }
            if let Some(reason) = &s.disable {
                let hit = sqlx::query(
                    "UPDATE outworx_endpoints SET enabled = 0, disabled_reason = $1, updated_at = $2 \
                     WHERE id = $3 AND enabled = 1 RETURNING id",
                )
                .bind(reason)
                .bind(now)
                .bind(&s.endpoint_id)
                .fetch_optional(&mut *c)
                .await?;
                if hit.is_some() {
                    out.disabled.push((s.endpoint_id.clone(), reason.clone()));
                }
            }
        }
        Ok(out)
    }

    async fn insert_attempts(c: &mut Conn, attempts: &[&Attempt]) -> Result<(), SendError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO outworx_attempts (delivery_id, message_id, endpoint_id, attempt, at, \
             status_code, duration_ms, error, response) ",
        );
        q.push_values(attempts, |mut row, a| {
            row.push_bind(a.delivery_id)
                .push_bind(&a.message_id)
                .push_bind(&a.endpoint_id)
                .push_bind(i64::from(a.attempt))
                .push_bind(a.at)
                .push_bind(a.status_code.map(i64::from))
                .push_bind(i64::try_from(a.duration_ms).unwrap_or(i64::MAX))
                .push_bind(&a.error)
                .push_bind(&a.response);
        });
        q.build().execute(&mut *c).await?;
        Ok(())
    }

    /// Puts matching deliveries that are not in flight back to pending, due now, with
    /// a fresh round of attempts; never those of an expunged message.
    pub(crate) fn replay_query<'a>(
        prefix: &str,
        scope: Scope<'a>,
        f: &'a DeliveryFilter,
        now: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push("UPDATE outworx_deliveries AS d SET status = 'pending', attempts = 0, next_attempt_at = ")
            .push_bind(now)
            .push(", last_error = NULL, updated_at = ")
            .push_bind(now)
            .push(
                // Looked up by key for each matching row (`NOT EXISTS` becomes an anti-join
                // that may read every message).
                " WHERE d.status IN ('dead', 'delivered') AND (SELECT m.expunged_at FROM \
                 outworx_messages m WHERE m.id = d.message_id) IS NULL",
            );
        push_delivery_filter(&mut q, scope, f);
        q
    }

    pub(crate) async fn replay(
        c: &mut Conn,
        scope: Scope<'_>,
        f: &DeliveryFilter,
        now: i64,
    ) -> Result<u64, SendError> {
        let done = replay_query("", scope, f, now).build().execute(&mut *c).await?;
        Ok(done.rows_affected())
    }
}
