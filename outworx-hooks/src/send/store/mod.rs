//! The outbox: endpoints, messages, deliveries and attempts in SQLite or PostgreSQL (memory
//! is SQLite in memory: the same SQL, nothing to drift). Every query is written once, in
//! [`dialect!`], and compiled for each driver's connection type, so a transaction the caller
//! owns (`send_in`) runs the same code as the outbox's own pool.

use std::str::FromStr;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use super::SendError;
use super::model::{Attempt, Auth, DeliveryStatus, Endpoint, Format};

const SQLITE_SCHEMA: &str = include_str!("../../migrations/outbox/0001_outbox.sqlite.sql");
const POSTGRES_SCHEMA: &str = include_str!("../../migrations/outbox/0001_outbox.postgres.sql");
/// Columns added after the first schema: `traceparent`, the W3C trace context a message was
/// emitted in (feature `otel`; `NULL` without it).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("outworx_messages", "traceparent", "TEXT")];

/// Which rows a call may see: one tenant's, or (for operators and the CLI) everyone's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every owner's rows.
    All,
    /// Only this owner's rows.
    Owner(&'a str),
}

impl Scope<'_> {
    fn all(self) -> i64 {
        i64::from(matches!(self, Scope::All))
    }
    fn owner_text(&self) -> String {
        match self {
            Scope::All => String::new(),
            Scope::Owner(o) => (*o).to_owned(),
        }
    }
}

pub(crate) use crate::queue::sql::Pool;

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

/// A stored endpoint's columns, before the secret is split off.
pub(crate) struct EndpointRow {
    pub(crate) endpoint: Endpoint,
    pub(crate) secret: String,
}

/// A filter for deliveries.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DeliveryFilter {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this endpoint.
    pub endpoint_id: Option<String>,
    /// Only this message.
    pub message_id: Option<String>,
    /// Changed at or after (ms since 1970).
    pub since: Option<i64>,
    /// Changed before (ms since 1970).
    pub until: Option<i64>,
    /// At most this many (default and cap 1,000), newest first.
    pub limit: Option<u32>,
}

impl DeliveryFilter {
    /// Only this status.
    pub fn status(mut self, status: DeliveryStatus) -> Self {
        self.status = Some(status);
        self
    }
    /// Only this endpoint.
    pub fn endpoint(mut self, id: impl Into<String>) -> Self {
        self.endpoint_id = Some(id.into());
        self
    }
    /// Only this message.
    pub fn message(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }
    /// Changed at or after (ms since 1970).
    pub fn since(mut self, ms: i64) -> Self {
        self.since = Some(ms);
        self
    }
    /// Changed before (ms since 1970).
    pub fn until(mut self, ms: i64) -> Self {
        self.until = Some(ms);
        self
    }
    /// At most this many.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }
}

/// Most rows one list answers.
pub const MAX_LIST: u32 = 1000;

fn bool_i(b: bool) -> i64 {
    i64::from(b)
}

fn u16_opt(v: Option<i64>) -> Option<u16> {
    v.and_then(|v| u16::try_from(v).ok())
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// The kind of a stored auth (`none` if unreadable); its values stay in the database.
fn auth_kind(stored: &str) -> String {
    serde_json::from_str::<Auth>(stored)
        .map(|a| a.kind().to_owned())
        .unwrap_or_else(|_| "none".to_owned())
}

/// The queries, once, for one driver: `$conn` is its connection type, `$skip` what its claim
/// adds to lock rows without waiting on other workers' locks.
macro_rules! dialect {
    ($name:ident, $conn:ty, $skip:literal) => {
        pub(crate) mod $name {
            use sqlx::Row as _;

            use crate::queue::sql::Table;
            use crate::send::SendError;
            use crate::send::model::*;
            use super::*;

            type Conn = $conn;
            type Db = <Conn as sqlx::Connection>::Database;

            const ENDPOINT_COLUMNS: &str = "id, owner, url, events, auth, format, secret, metadata, \
                 enabled, disabled_reason, failing_since, created_at";

            fn endpoint_row(
                r: &<<Conn as sqlx::Connection>::Database as sqlx::Database>::Row,
            ) -> Result<EndpointRow, sqlx::Error> {
                let secret: String = r.try_get("secret")?;
                let text = |c: &str| -> Result<String, sqlx::Error> { r.try_get(c) };
                let enabled: i64 = r.try_get("enabled")?;
                let endpoint = Endpoint {
                    id: r.try_get("id")?,
                    owner: r.try_get("owner")?,
                    url: r.try_get("url")?,
                    events: serde_json::from_str(&text("events")?).unwrap_or_default(),
                    auth: auth_kind(&text("auth")?),
                    format: Format::from_str(&text("format")?).unwrap_or_default(),
                    metadata: serde_json::from_str(&text("metadata")?).unwrap_or_default(),
                    enabled: enabled != 0,
                    disabled_reason: r.try_get("disabled_reason")?,
                    failing_since: r.try_get("failing_since")?,
                    public_key: crate::security::scheme::standard_public_key(&secret),
                    created_at: r.try_get("created_at")?,
                };
                Ok(EndpointRow { endpoint, secret })
            }

            pub(crate) async fn insert_endpoint(
                c: &mut Conn,
                e: &Endpoint,
                auth: &Auth,
                secret: &str,
                now: i64,
            ) -> Result<(), SendError> {
                sqlx::query(
                    "INSERT INTO outworx_endpoints (id, owner, url, events, auth, format, secret, \
                     metadata, enabled, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                )
                .bind(&e.id)
                .bind(&e.owner)
                .bind(&e.url)
                .bind(serde_json::to_string(&e.events)?)
                .bind(serde_json::to_string(auth)?)
                .bind(e.format.as_str())
                .bind(secret)
                .bind(serde_json::to_string(&e.metadata)?)
                .bind(bool_i(e.enabled))
                .bind(now)
                .execute(&mut *c)
                .await?;
                Ok(())
            }

            pub(crate) async fn endpoint(
                c: &mut Conn,
                scope: Scope<'_>,
                id: &str,
            ) -> Result<Option<EndpointRow>, SendError> {
                let sql = format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM outworx_endpoints \
                     WHERE id = $1 AND ($2 = 1 OR owner = $3)"
                );
                let row = sqlx::query(&sql)
                    .bind(id)
                    .bind(scope.all())
                    .bind(scope.owner_text())
                    .fetch_optional(&mut *c)
                    .await?;
                Ok(row.as_ref().map(endpoint_row).transpose()?)
            }

            pub(crate) async fn endpoints(
                c: &mut Conn,
                scope: Scope<'_>,
            ) -> Result<Vec<Endpoint>, SendError> {
                let sql = format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM outworx_endpoints \
                     WHERE ($1 = 1 OR owner = $2) ORDER BY created_at, id LIMIT {MAX_LIST}"
                );
                let rows = sqlx::query(&sql)
                    .bind(scope.all())
                    .bind(scope.owner_text())
                    .fetch_all(&mut *c)
                    .await?;
                rows.iter()
                    .map(|r| endpoint_row(r).map(|e| e.endpoint).map_err(SendError::from))
                    .collect()
            }

            /// Writes only the fields `u` gives; `enabled` (and its reason, and the failure
            /// clock) only when `u` says so.
            /// How many endpoints an owner has (for the per-owner cap).
            pub(crate) async fn count_endpoints(c: &mut Conn, owner: &str) -> Result<u64, SendError> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM outworx_endpoints WHERE owner = $1")
                    .bind(owner)
                    .fetch_one(&mut *c)
                    .await?;
                let n: i64 = row.try_get("n")?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            pub(crate) async fn update_endpoint(
                c: &mut Conn,
                id: &str,
                owner: &str,
                u: &EndpointUpdate,
                now: i64,
            ) -> Result<bool, SendError> {
                let events = u.events.as_ref().map(serde_json::to_string).transpose()?;
                let auth = u.auth.as_ref().map(serde_json::to_string).transpose()?;
                let metadata = u.metadata.as_ref().map(serde_json::to_string).transpose()?;
                let enabled = u.enabled.map(bool_i);
                let done = sqlx::query(
                    "UPDATE outworx_endpoints SET url = COALESCE($1, url), events = COALESCE($2, events), \
                     auth = COALESCE($3, auth), format = COALESCE($4, format), \
                     metadata = COALESCE($5, metadata), enabled = COALESCE($6, enabled), \
                     disabled_reason = CASE WHEN $6 IS NULL THEN disabled_reason \
                       WHEN $6 = 1 THEN NULL ELSE 'disabled by an operator' END, \
                     failing_since = CASE WHEN $6 = 1 THEN NULL ELSE failing_since END, \
                     updated_at = $7 WHERE id = $8 AND owner = $9",
                )
                .bind(&u.url)
                .bind(events)
                .bind(auth)
                .bind(u.format.map(Format::as_str))
                .bind(metadata)
                .bind(enabled)
                .bind(now)
                .bind(id)
                .bind(owner)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(crate) async fn delete_endpoint(
                c: &mut Conn,
                scope: Scope<'_>,
                id: &str,
            ) -> Result<bool, SendError> {
                let done = sqlx::query(
                    "DELETE FROM outworx_endpoints WHERE id = $1 AND ($2 = 1 OR owner = $3)",
                )
                .bind(id)
                .bind(scope.all())
                .bind(scope.owner_text())
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(crate) async fn rotate(
                c: &mut Conn,
                scope: Scope<'_>,
                id: &str,
                secret: &str,
                previous_until: i64,
                now: i64,
            ) -> Result<bool, SendError> {
                let done = sqlx::query(
                    "UPDATE outworx_endpoints SET previous_secret = secret, previous_until = $1, \
                     secret = $2, updated_at = $3 WHERE id = $4 AND ($5 = 1 OR owner = $6)",
                )
                .bind(previous_until)
                .bind(secret)
                .bind(now)
                .bind(id)
                .bind(scope.all())
                .bind(scope.owner_text())
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() == 1)
            }

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

            /// Leases up to `limit` due deliveries (pending and due, or leased past their
            /// lease: the reaper is this same query), counting the attempt they start.
            pub(crate) async fn claim(
                c: &mut Conn,
                now: i64,
                lease_until: i64,
                token: &str,
                limit: u32,
                busy: &[String],
            ) -> Result<Vec<Job>, SendError> {
                // Endpoints this worker is already at its cap for are left for later, so one
                // endpoint's backlog does not fill every claim.
                let claimed = crate::queue::sql::$name::claim(
                    c,
                    Table::Deliveries,
                    now,
                    lease_until,
                    token,
                    limit,
                    Some(("endpoint_id", busy)),
                )
                .await?;
                if claimed.is_empty() {
                    return Ok(Vec::new());
                }
                let rows = sqlx::query(
                    "SELECT d.id AS delivery_id, d.attempts, d.message_id, d.endpoint_id, d.owner, \
                     m.event_type, m.payload, m.created_at AS message_created_at, \
                     m.traceparent, e.id AS ep_id, e.url, e.auth, e.format, e.secret, e.previous_secret, \
                     e.previous_until, e.enabled, e.disabled_reason \
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
                Ok(crate::queue::sql::$name::bury(c, Table::Deliveries, now, Some(i64::from(max_attempts))).await?)
            }

            pub(crate) async fn release(
                c: &mut Conn,
                ids: &[i64],
                token: &str,
                now: i64,
            ) -> Result<(), SendError> {
                crate::queue::sql::$name::release(c, Table::Deliveries, ids, token, now).await?;
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
                    let hit = crate::queue::sql::$name::finish_done(
                        c,
                        Table::Deliveries,
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
                    let held = crate::queue::sql::$name::finish(
                        c,
                        Table::Deliveries,
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
            /// a fresh round of attempts.
            pub(crate) async fn replay(
                c: &mut Conn,
                scope: Scope<'_>,
                f: &DeliveryFilter,
                now: i64,
            ) -> Result<u64, SendError> {
                let done = sqlx::query(
                    "UPDATE outworx_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                     last_error = NULL, updated_at = $1 \
                     WHERE status IN ('dead', 'delivered') AND ($2 = 1 OR owner = $3) \
                     AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR endpoint_id = $5) \
                     AND ($6 IS NULL OR message_id = $6) AND ($7 IS NULL OR updated_at >= $7) \
                     AND ($8 IS NULL OR updated_at < $8)",
                )
                .bind(now)
                .bind(scope.all())
                .bind(scope.owner_text())
                .bind(f.status.map(DeliveryStatus::as_str))
                .bind(&f.endpoint_id)
                .bind(&f.message_id)
                .bind(f.since)
                .bind(f.until)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected())
            }

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
                let sql = format!(
                    "SELECT e.id, \
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
                     ORDER BY e.created_at, e.id LIMIT $5"
                );
                let rows = sqlx::query(&sql)
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
    };
}

dialect!(sqlite, sqlx::SqliteConnection, "");
dialect!(postgres, sqlx::PgConnection, " FOR UPDATE SKIP LOCKED");

/// Runs `$body` with `$c`, a connection of the pool's driver, in `$m`, the driver's query
/// module.
macro_rules! with_conn {
    ($pool:expr, |$c:ident, $m:ident| $body:expr) => {
        match $pool {
            $crate::queue::sql::Pool::Sqlite(p) => {
                let mut conn = p.acquire().await?;
                let $c: &mut sqlx::SqliteConnection = &mut conn;
                #[allow(unused_imports)]
                use $crate::send::store::sqlite as $m;
                $body
            }
            $crate::queue::sql::Pool::Postgres(p) => {
                let mut conn = p.acquire().await?;
                let $c: &mut sqlx::PgConnection = &mut conn;
                #[allow(unused_imports)]
                use $crate::send::store::postgres as $m;
                $body
            }
        }
    };
}

/// As [`with_conn!`], in a transaction committed when `$body` succeeds.
macro_rules! in_tx {
    ($pool:expr, |$c:ident, $m:ident| $body:expr) => {
        match $pool {
            $crate::queue::sql::Pool::Sqlite(p) => {
                let mut tx = p.begin().await?;
                let out = {
                    let $c: &mut sqlx::SqliteConnection = &mut tx;
                    #[allow(unused_imports)]
                    use $crate::send::store::sqlite as $m;
                    $body
                };
                tx.commit().await?;
                out
            }
            $crate::queue::sql::Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                let out = {
                    let $c: &mut sqlx::PgConnection = &mut tx;
                    #[allow(unused_imports)]
                    use $crate::send::store::postgres as $m;
                    $body
                };
                tx.commit().await?;
                out
            }
        }
    };
}

pub(crate) use {in_tx, with_conn};

/// The durable outbox: SQLite (a file, the embedded default), PostgreSQL (many instances and
/// workers), or memory (SQLite in memory: tests and demos; gone when the process ends).
///
/// ```
/// # tokio_test_block_on(async {
/// use outworx_hooks::send::Outbox;
///
/// let outbox = Outbox::memory().await?;
/// # Ok::<(), outworx_hooks::send::SendError>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    pub(crate) pool: Pool,
}

impl Outbox {
    /// Opens `url`: a `postgres://` URL, a `sqlite:` URL, `:memory:`, or a file path (created
    /// if missing); the tables are created if they are not there.
    pub async fn open(url: &str) -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::open(url).await?).await
    }

    /// An outbox in memory: for tests and demos only; nothing survives the process.
    pub async fn memory() -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::memory().await?).await
    }

    /// An outbox in this SQLite database (its tables are created if missing): pass the
    /// application's own pool to emit inside its transactions with `send_in`.
    pub async fn sqlite(pool: SqlitePool) -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::Sqlite(pool)).await
    }

    /// An outbox in this PostgreSQL database (its tables are created if missing, under an
    /// advisory lock so workers starting together do not race).
    pub async fn postgres(pool: PgPool) -> Result<Outbox, SendError> {
        Outbox::migrated(Pool::Postgres(pool)).await
    }

    async fn migrated(pool: Pool) -> Result<Outbox, SendError> {
        pool.migrate(SQLITE_SCHEMA, POSTGRES_SCHEMA, ADDED_COLUMNS)
            .await?;
        Ok(Outbox { pool })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.pool.backend()
    }
}

impl From<serde_json::Error> for SendError {
    fn from(e: serde_json::Error) -> Self {
        SendError::Store(format!("encoding: {e}"))
    }
}

impl From<sqlx::Error> for SendError {
    fn from(e: sqlx::Error) -> Self {
        SendError::Store(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_binds() {
        assert_eq!(Scope::All.all(), 1);
        assert_eq!(Scope::Owner("a").all(), 0);
        assert_eq!(Scope::Owner("a").owner_text(), "a");
    }
}
