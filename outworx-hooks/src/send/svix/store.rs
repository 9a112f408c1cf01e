//! The Svix-compatible API's own rows and reads: applications, event types, and pages of
//! messages, attempts and deliveries in Svix's orders. Every read is a range of one index,
//! bounded by the page's size (and, for a filtered page, by [`SCAN`] index entries).

use std::collections::BTreeMap;

use crate::send::SendError;

/// Most index entries one filtered page examines; a page that runs out of them before it
/// is full answers what it found with `done: false`, and the next one goes on from there.
pub(crate) const SCAN: i64 = 5_000;

/// An application: an owner of endpoints and messages (its id is their `owner`), in a
/// namespace (the API's tenant).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AppRow {
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) uid: Option<String>,
    pub(crate) name: String,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) rate_limit: Option<u16>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    /// Portal tokens issued at or before this time (ms) are refused (`expire-all`).
    pub(crate) tokens_after: Option<i64>,
    /// The header names its endpoints are signed under (`svix` or `webhook`); `None`: the
    /// API's default.
    pub(crate) signature_headers: Option<String>,
}

/// An event type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventTypeRow {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) schemas: Option<serde_json::Value>,
    pub(crate) deprecated: bool,
    pub(crate) archived: bool,
    pub(crate) feature_flag: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A message as listed.
#[derive(Debug, Clone)]
pub(crate) struct MessageRow {
    pub(crate) id: String,
    pub(crate) event_id: Option<String>,
    pub(crate) event_type: String,
    /// `None` when it was not read (`with_content=false`).
    pub(crate) payload: Option<String>,
    pub(crate) channels: Option<Vec<String>>,
    pub(crate) created_at: i64,
    pub(crate) expunged: bool,
}

/// An attempt as listed.
#[derive(Debug, Clone)]
pub(crate) struct AttemptRow {
    pub(crate) id: i64,
    pub(crate) message_id: String,
    pub(crate) endpoint_id: String,
    pub(crate) url: String,
    pub(crate) at: i64,
    pub(crate) status_code: Option<i64>,
    pub(crate) duration_ms: i64,
    pub(crate) error: Option<String>,
    pub(crate) response: String,
}

/// A delivery of a message to an endpoint, as listed.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryRow {
    pub(crate) id: i64,
    pub(crate) message_id: String,
    pub(crate) endpoint_id: String,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: i64,
}

fn conflict(e: sqlx::Error) -> SendError {
    crate::send::store::endpoints::uid_conflict(e)
}

/// Where a page reads from: after (or, going back, before) `from`, in the list's order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page<'a> {
    pub(crate) from: Option<&'a str>,
    /// A previous page: read the other way from `from`.
    pub(crate) back: bool,
    /// The list's order is ascending.
    pub(crate) ascending: bool,
    /// Rows to read (the page's size and one more, or the scan's budget).
    pub(crate) rows: i64,
}

impl Page<'_> {
    /// Whether this read goes up the index.
    pub(crate) fn up(&self) -> bool {
        self.ascending != self.back
    }
}

/// Appends ` AND <column> > from ORDER BY <column> ASC LIMIT n` (or the other way).
fn push_page<'a, DB>(q: &mut sqlx::QueryBuilder<'a, DB>, column: &str, page: Page<'a>)
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let up = page.up();
    if let Some(from) = page.from {
        q.push(format!(" AND {column} {} ", if up { ">" } else { "<" }))
            .push_bind(from);
    }
    q.push(format!(
        " ORDER BY {column} {} LIMIT ",
        if up { "ASC" } else { "DESC" }
    ))
    .push_bind(page.rows);
}

outworx_hooks_queue::dialects! {
    pub(crate),
    use sqlx::Row as _;

    use super::*;

    const APP_COLUMNS: &str =
        "id, namespace, uid, name, metadata, rate_limit, created_at, updated_at, tokens_after, \
         signature_headers";

    fn app_row(r: &<<Conn as sqlx::Connection>::Database as sqlx::Database>::Row) -> Result<AppRow, sqlx::Error> {
        let metadata: String = r.try_get("metadata")?;
        Ok(AppRow {
            id: r.try_get("id")?,
            namespace: r.try_get("namespace")?,
            uid: r.try_get("uid")?,
            name: r.try_get("name")?,
            metadata: serde_json::from_str(&metadata).unwrap_or_default(),
            rate_limit: r.try_get::<Option<i64>, _>("rate_limit")?.and_then(|n| u16::try_from(n).ok()),
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            tokens_after: r.try_get("tokens_after")?,
            signature_headers: r.try_get("signature_headers")?,
        })
    }

    /// Refuses every portal token of an application issued until `now`.
    pub(crate) async fn expire_tokens(c: &mut Conn, namespace: &str, id: &str, now: i64) -> Result<bool, SendError> {
        let done = sqlx::query("UPDATE outworx_apps SET tokens_after = $1 WHERE id = $2 AND namespace = $3")
            .bind(now)
            .bind(id)
            .bind(namespace)
            .execute(&mut *c)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A namespace's application by id (`app_...`) or uid.
    pub(crate) async fn app(c: &mut Conn, namespace: &str, id_or_uid: &str) -> Result<Option<AppRow>, SendError> {
        let column = if id_or_uid.starts_with("app_") { "id" } else { "uid" };
        let sql = format!("SELECT {APP_COLUMNS} FROM outworx_apps WHERE namespace = $1 AND {column} = $2");
        let row = sqlx::query(&sql).bind(namespace).bind(id_or_uid).fetch_optional(&mut *c).await?;
        Ok(row.as_ref().map(app_row).transpose()?)
    }

    pub(crate) async fn insert_app(c: &mut Conn, a: &AppRow) -> Result<(), SendError> {
        sqlx::query(
            "INSERT INTO outworx_apps (id, namespace, uid, name, metadata, rate_limit, created_at, \
             updated_at, signature_headers) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.id)
        .bind(&a.namespace)
        .bind(&a.uid)
        .bind(&a.name)
        .bind(serde_json::to_string(&a.metadata)?)
        .bind(a.rate_limit.map(i64::from))
        .bind(a.created_at)
        .bind(a.updated_at)
        .bind(&a.signature_headers)
        .execute(&mut *c)
        .await
        .map_err(conflict)?;
        Ok(())
    }

    /// Writes an application's fields; its endpoints made by this API take its signature
    /// header names (in the same transaction, when the caller runs it in one).
    pub(crate) async fn update_app(c: &mut Conn, a: &AppRow) -> Result<bool, SendError> {
        let done = sqlx::query(
            "UPDATE outworx_apps SET uid = $1, name = $2, metadata = $3, rate_limit = $4, \
             updated_at = $5, signature_headers = $6 WHERE id = $7 AND namespace = $8",
        )
        .bind(&a.uid)
        .bind(&a.name)
        .bind(serde_json::to_string(&a.metadata)?)
        .bind(a.rate_limit.map(i64::from))
        .bind(a.updated_at)
        .bind(&a.signature_headers)
        .bind(&a.id)
        .bind(&a.namespace)
        .execute(&mut *c)
        .await
        .map_err(conflict)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(h) = &a.signature_headers {
            let format = if h == "svix" { "svix-headers" } else { "svix" };
            sqlx::query(
                "UPDATE outworx_endpoints SET format = $1 WHERE owner = $2 \
                 AND format IN ('svix', 'svix-headers')",
            )
            .bind(format)
            .bind(&a.id)
            .execute(&mut *c)
            .await?;
        }
        Ok(true)
    }

    /// Deletes an application and its endpoints (their waiting deliveries end dead when a
    /// worker claims them: their endpoint is gone). Its messages stay until retention.
    pub(crate) async fn delete_app(c: &mut Conn, namespace: &str, id: &str) -> Result<bool, SendError> {
        let done = sqlx::query("DELETE FROM outworx_apps WHERE id = $1 AND namespace = $2")
            .bind(id)
            .bind(namespace)
            .execute(&mut *c)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM outworx_endpoints WHERE owner = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        Ok(true)
    }

    /// A page of a namespace's applications by id (`(namespace, id)`).
    pub(crate) fn app_page_query<'a>(prefix: &str, namespace: &'a str, page: Page<'a>) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::<Db>::new(format!(
            "{prefix}SELECT {APP_COLUMNS} FROM outworx_apps WHERE namespace = "
        ));
        q.push_bind(namespace);
        push_page(&mut q, "id", page);
        q
    }

    pub(crate) async fn app_page(c: &mut Conn, namespace: &str, page: Page<'_>) -> Result<Vec<AppRow>, SendError> {
        let rows = app_page_query("", namespace, page).build().fetch_all(&mut *c).await?;
        Ok(rows.iter().map(app_row).collect::<Result<_, _>>()?)
    }

    const EVENT_TYPE_COLUMNS: &str =
        "name, description, schemas, deprecated, archived, feature_flag, created_at, updated_at";

    fn event_type_row(r: &<<Conn as sqlx::Connection>::Database as sqlx::Database>::Row) -> Result<EventTypeRow, sqlx::Error> {
        let schemas: Option<String> = r.try_get("schemas")?;
        Ok(EventTypeRow {
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            schemas: schemas.and_then(|s| serde_json::from_str(&s).ok()),
            deprecated: r.try_get::<i64, _>("deprecated")? != 0,
            archived: r.try_get::<i64, _>("archived")? != 0,
            feature_flag: r.try_get("feature_flag")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    pub(crate) async fn event_type(c: &mut Conn, namespace: &str, name: &str) -> Result<Option<EventTypeRow>, SendError> {
        let sql = format!("SELECT {EVENT_TYPE_COLUMNS} FROM outworx_event_types WHERE namespace = $1 AND name = $2");
        let row = sqlx::query(&sql).bind(namespace).bind(name).fetch_optional(&mut *c).await?;
        Ok(row.as_ref().map(event_type_row).transpose()?)
    }

    /// Inserts or replaces an event type (its creation time kept).
    pub(crate) async fn put_event_type(c: &mut Conn, namespace: &str, e: &EventTypeRow) -> Result<(), SendError> {
        sqlx::query(
            "INSERT INTO outworx_event_types (namespace, name, description, schemas, deprecated, \
             archived, feature_flag, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (namespace, name) DO UPDATE SET description = excluded.description, \
             schemas = excluded.schemas, deprecated = excluded.deprecated, \
             archived = excluded.archived, feature_flag = excluded.feature_flag, \
             updated_at = excluded.updated_at",
        )
        .bind(namespace)
        .bind(&e.name)
        .bind(&e.description)
        .bind(e.schemas.as_ref().map(serde_json::to_string).transpose()?)
        .bind(i64::from(e.deprecated))
        .bind(i64::from(e.archived))
        .bind(&e.feature_flag)
        .bind(e.created_at)
        .bind(e.updated_at)
        .execute(&mut *c)
        .await?;
        Ok(())
    }

    pub(crate) async fn delete_event_type(c: &mut Conn, namespace: &str, name: &str) -> Result<bool, SendError> {
        let done = sqlx::query("DELETE FROM outworx_event_types WHERE namespace = $1 AND name = $2")
            .bind(namespace)
            .bind(name)
            .execute(&mut *c)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A page of a namespace's event types by name (archived ones only when asked): the
    /// primary key `(namespace, name)`.
    pub(crate) fn event_type_page_query<'a>(
        prefix: &str,
        namespace: &'a str,
        include_archived: bool,
        page: Page<'a>,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::<Db>::new(format!(
            "{prefix}SELECT {EVENT_TYPE_COLUMNS} FROM outworx_event_types WHERE namespace = "
        ));
        q.push_bind(namespace);
        if !include_archived {
            q.push(" AND archived = 0");
        }
        push_page(&mut q, "name", page);
        q
    }

    pub(crate) async fn event_type_page(
        c: &mut Conn,
        namespace: &str,
        include_archived: bool,
        page: Page<'_>,
    ) -> Result<Vec<EventTypeRow>, SendError> {
        let rows = event_type_page_query("", namespace, include_archived, page)
            .build()
            .fetch_all(&mut *c)
            .await?;
        Ok(rows.iter().map(event_type_row).collect::<Result<_, _>>()?)
    }

    fn message_row(
        r: &<<Conn as sqlx::Connection>::Database as sqlx::Database>::Row,
        with_payload: bool,
    ) -> Result<MessageRow, sqlx::Error> {
        let channels: Option<String> = r.try_get("channels")?;
        Ok(MessageRow {
            id: r.try_get("id")?,
            event_id: r.try_get("idempotency_key")?,
            event_type: r.try_get("event_type")?,
            payload: if with_payload { Some(r.try_get("payload")?) } else { None },
            channels: channels.and_then(|c| serde_json::from_str(&c).ok()),
            created_at: r.try_get("created_at")?,
            expunged: r.try_get::<Option<i64>, _>("expunged_at")?.is_some(),
        })
    }

    /// An application's message by id (`msg_...`) or event id.
    pub(crate) async fn message(
        c: &mut Conn,
        owner: &str,
        id_or_uid: &str,
        with_payload: bool,
    ) -> Result<Option<MessageRow>, SendError> {
        let column = if id_or_uid.starts_with("msg_") { "id" } else { "idempotency_key" };
        let payload = if with_payload { ", payload" } else { "" };
        let sql = format!(
            "SELECT id, idempotency_key, event_type, channels, created_at, expunged_at{payload} \
             FROM outworx_messages WHERE owner = $1 AND {column} = $2"
        );
        let row = sqlx::query(&sql).bind(owner).bind(id_or_uid).fetch_optional(&mut *c).await?;
        Ok(row.as_ref().map(|r| message_row(r, with_payload)).transpose()?)
    }

    /// An application's messages by id (newest first), from the `(owner, id)` index, between
    /// the id bounds `after` and `before` (exclusive).
    pub(crate) fn message_page_query<'a>(
        prefix: &str,
        owner: &'a str,
        after: Option<&'a str>,
        before: Option<&'a str>,
        with_payload: bool,
        page: Page<'a>,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let payload = if with_payload { ", payload" } else { "" };
        let mut q = sqlx::QueryBuilder::<Db>::new(format!(
            "{prefix}SELECT id, idempotency_key, event_type, channels, created_at, expunged_at{payload} \
             FROM outworx_messages WHERE owner = "
        ));
        q.push_bind(owner);
        if let Some(after) = after {
            q.push(" AND id > ").push_bind(after);
        }
        if let Some(before) = before {
            q.push(" AND id < ").push_bind(before);
        }
        push_page(&mut q, "id", page);
        q
    }

    pub(crate) async fn message_page(
        c: &mut Conn,
        owner: &str,
        after: Option<&str>,
        before: Option<&str>,
        with_payload: bool,
        page: Page<'_>,
    ) -> Result<Vec<MessageRow>, SendError> {
        let rows = message_page_query("", owner, after, before, with_payload, page)
            .build()
            .fetch_all(&mut *c)
            .await?;
        Ok(rows.iter().map(|r| message_row(r, with_payload)).collect::<Result<_, _>>()?)
    }

    fn attempt_row(r: &<<Conn as sqlx::Connection>::Database as sqlx::Database>::Row) -> Result<AttemptRow, sqlx::Error> {
        Ok(AttemptRow {
            id: r.try_get("id")?,
            message_id: r.try_get("message_id")?,
            endpoint_id: r.try_get("endpoint_id")?,
            url: r.try_get::<Option<String>, _>("url")?.unwrap_or_default(),
            at: r.try_get("at")?,
            status_code: r.try_get("status_code")?,
            duration_ms: r.try_get("duration_ms")?,
            error: r.try_get("error")?,
            response: r.try_get("response")?,
        })
    }

    const ATTEMPT_SELECT: &str = "SELECT a.id, a.message_id, a.endpoint_id, e.url, a.at, \
        a.status_code, a.duration_ms, a.error, a.response FROM outworx_attempts a \
        LEFT JOIN outworx_endpoints e ON e.id = a.endpoint_id WHERE ";

    /// Attempts of one endpoint or one message (the caller checked it is the application's),
    /// by id, newest first: the `(endpoint_id, id, ..)` or `(message_id, id)` index.
    pub(crate) fn attempt_page_query<'a>(
        prefix: &str,
        endpoint_id: Option<&'a str>,
        message_id: Option<&'a str>,
        from: Option<i64>,
        back: bool,
        rows: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::<Db>::new(format!("{prefix}{ATTEMPT_SELECT}"));
        match (message_id, endpoint_id) {
            (Some(m), e) => {
                q.push("a.message_id = ").push_bind(m);
                if let Some(e) = e {
                    q.push(" AND a.endpoint_id = ").push_bind(e);
                }
            }
            (None, Some(e)) => {
                q.push("a.endpoint_id = ").push_bind(e);
            }
            // Never asked (the handlers name one); nothing matches.
            (None, None) => {
                q.push("1 = 0");
            }
        }
        if let Some(from) = from {
            q.push(if back { " AND a.id > " } else { " AND a.id < " }).push_bind(from);
        }
        q.push(if back { " ORDER BY a.id ASC LIMIT " } else { " ORDER BY a.id DESC LIMIT " })
            .push_bind(rows);
        q
    }

    pub(crate) async fn attempt_page(
        c: &mut Conn,
        endpoint_id: Option<&str>,
        message_id: Option<&str>,
        from: Option<i64>,
        back: bool,
        rows: i64,
    ) -> Result<Vec<AttemptRow>, SendError> {
        let rows = attempt_page_query("", endpoint_id, message_id, from, back, rows)
            .build()
            .fetch_all(&mut *c)
            .await?;
        Ok(rows.iter().map(attempt_row).collect::<Result<_, _>>()?)
    }

    /// One attempt of a message.
    pub(crate) async fn attempt(c: &mut Conn, message_id: &str, id: i64) -> Result<Option<AttemptRow>, SendError> {
        let mut q = sqlx::QueryBuilder::<Db>::new(ATTEMPT_SELECT);
        q.push("a.id = ").push_bind(id).push(" AND a.message_id = ").push_bind(message_id);
        let row = q.build().fetch_optional(&mut *c).await?;
        Ok(row.as_ref().map(attempt_row).transpose()?)
    }

    /// Replaces one attempt's recorded answer with `EXPUNGED` (as Svix).
    pub(crate) async fn expunge_attempt(c: &mut Conn, message_id: &str, id: i64) -> Result<bool, SendError> {
        let done = sqlx::query("UPDATE outworx_attempts SET response = 'EXPUNGED' WHERE id = $1 AND message_id = $2")
            .bind(id)
            .bind(message_id)
            .execute(&mut *c)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    fn delivery_row(r: &<<Conn as sqlx::Connection>::Database as sqlx::Database>::Row) -> Result<DeliveryRow, sqlx::Error> {
        Ok(DeliveryRow {
            id: r.try_get("id")?,
            message_id: r.try_get("message_id")?,
            endpoint_id: r.try_get("endpoint_id")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
        })
    }

    const DELIVERY_SELECT: &str = "SELECT id, message_id, endpoint_id, status, attempts, \
        next_attempt_at FROM outworx_deliveries WHERE ";

    /// One endpoint's deliveries by id, newest first (`(endpoint_id, id)`).
    pub(crate) fn endpoint_deliveries_query<'a>(
        prefix: &str,
        endpoint_id: &'a str,
        from: Option<i64>,
        back: bool,
        rows: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::<Db>::new(format!("{prefix}{DELIVERY_SELECT}endpoint_id = "));
        q.push_bind(endpoint_id);
        if let Some(from) = from {
            q.push(if back { " AND id > " } else { " AND id < " }).push_bind(from);
        }
        q.push(if back { " ORDER BY id ASC LIMIT " } else { " ORDER BY id DESC LIMIT " })
            .push_bind(rows);
        q
    }

    pub(crate) async fn endpoint_deliveries(
        c: &mut Conn,
        endpoint_id: &str,
        from: Option<i64>,
        back: bool,
        rows: i64,
    ) -> Result<Vec<DeliveryRow>, SendError> {
        let rows = endpoint_deliveries_query("", endpoint_id, from, back, rows)
            .build()
            .fetch_all(&mut *c)
            .await?;
        Ok(rows.iter().map(delivery_row).collect::<Result<_, _>>()?)
    }

    /// One message's deliveries, by endpoint (the `(message_id, endpoint_id)` key).
    pub(crate) fn message_deliveries_query<'a>(
        prefix: &str,
        message_id: &'a str,
        from: Option<&'a str>,
        rows: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::<Db>::new(format!("{prefix}{DELIVERY_SELECT}message_id = "));
        q.push_bind(message_id);
        if let Some(from) = from {
            q.push(" AND endpoint_id > ").push_bind(from);
        }
        q.push(" ORDER BY endpoint_id ASC LIMIT ").push_bind(rows);
        q
    }

    pub(crate) async fn message_deliveries(
        c: &mut Conn,
        message_id: &str,
        from: Option<&str>,
        rows: i64,
    ) -> Result<Vec<DeliveryRow>, SendError> {
        let rows = message_deliveries_query("", message_id, from, rows)
            .build()
            .fetch_all(&mut *c)
            .await?;
        Ok(rows.iter().map(delivery_row).collect::<Result<_, _>>()?)
    }

    /// Queues `message` for `endpoint` again (both the owner's), now: a finished delivery
    /// starts a new round; a waiting one is left as it is; a missing one is created (Svix's
    /// manual resend reaches an endpoint the filters skipped).
    pub(crate) async fn resend(
        c: &mut Conn,
        owner: &str,
        message_id: &str,
        endpoint_id: &str,
        now: i64,
    ) -> Result<(), SendError> {
        sqlx::query(
            "INSERT INTO outworx_deliveries (message_id, endpoint_id, owner, status, attempts, \
             next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4) \
             ON CONFLICT (message_id, endpoint_id) DO UPDATE SET status = 'pending', attempts = 0, \
             next_attempt_at = $4, last_error = NULL, updated_at = $4 \
             WHERE outworx_deliveries.status IN ('dead', 'delivered')",
        )
        .bind(message_id)
        .bind(endpoint_id)
        .bind(owner)
        .bind(now)
        .execute(&mut *c)
        .await?;
        Ok(())
    }

    /// An endpoint's deliveries of one status changed in `[since, until)`, counted up to
    /// `cap` (the `(endpoint_id, status, updated_at)` index).
    pub(crate) fn endpoint_stat_query<'a>(
        prefix: &str,
        endpoint_id: &'a str,
        status: &'a str,
        since: i64,
        until: i64,
        cap: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::<Db>::new(format!(
            "{prefix}SELECT COUNT(*) AS n FROM (SELECT 1 FROM outworx_deliveries WHERE endpoint_id = "
        ));
        q.push_bind(endpoint_id)
            .push(" AND status = ")
            .push_bind(status)
            .push(" AND updated_at >= ")
            .push_bind(since)
            .push(" AND updated_at < ")
            .push_bind(until)
            .push(" LIMIT ")
            .push_bind(cap)
            .push(") AS capped");
        q
    }

    /// An endpoint's deliveries per status (delivered, pending, sending, dead) changed in
    /// `[since, until)`, each counted up to `cap`.
    pub(crate) async fn endpoint_stats(
        c: &mut Conn,
        endpoint_id: &str,
        since: i64,
        until: i64,
        cap: i64,
    ) -> Result<[i64; 4], SendError> {
        let mut out = [0i64; 4];
        for (i, status) in ["delivered", "pending", "sending", "dead"].iter().enumerate() {
            let row = endpoint_stat_query("", endpoint_id, status, since, until, cap)
                .build()
                .fetch_one(&mut *c)
                .await?;
            out[i] = row.try_get("n")?;
        }
        Ok(out)
    }

    /// Checks the database answers.
    pub(crate) async fn ping(c: &mut Conn) -> Result<(), SendError> {
        sqlx::query("SELECT 1").execute(&mut *c).await?;
        Ok(())
    }
}
