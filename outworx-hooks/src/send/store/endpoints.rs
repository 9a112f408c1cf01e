//! Endpoints: create, read, change, delete, rotate, and the per-owner count.

use std::str::FromStr as _;

use super::{Scope, bool_i};
use crate::send::SendError;
use crate::send::limits::MAX_LIST;
use crate::send::model::{Auth, Endpoint, EndpointUpdate, Format};

/// A stored endpoint's columns, before the secret is split off.
pub(crate) struct EndpointRow {
    pub(crate) endpoint: Endpoint,
    pub(crate) secret: String,
}

/// An endpoint's custom headers.
pub(crate) type Headers = std::collections::BTreeMap<String, String>;

/// The fields of an endpoint a change writes (`None`: kept as they are; for the nullable
/// ones, `Some(None)` clears). No `Debug`: the headers may hold credentials.
#[derive(Default)]
pub(crate) struct EndpointChange {
    pub(crate) url: Option<String>,
    pub(crate) events: Option<Vec<String>>,
    pub(crate) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) uid: Option<Option<String>>,
    pub(crate) description: Option<String>,
    pub(crate) channels: Option<Option<Vec<String>>>,
    pub(crate) rate_limit: Option<Option<u16>>,
    pub(crate) headers: Option<Headers>,
    pub(crate) enabled: Option<bool>,
}

/// A unique index refusing a row (an endpoint's uid taken by another of its owner's) is the
/// caller's conflict, not the store's failure.
pub(crate) fn uid_conflict(e: sqlx::Error) -> SendError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => SendError::Conflict,
        _ => SendError::from(e),
    }
}

/// The kind of a stored auth (`none` if unreadable); its values stay in the database.
fn auth_kind(stored: &str) -> String {
    serde_json::from_str::<Auth>(stored)
        .map(|a| a.kind().to_owned())
        .unwrap_or_else(|_| "none".to_owned())
}

outworx_hooks_queue::dialects! {
    pub(crate),
    use sqlx::Row as _;

    use super::*;


    const ENDPOINT_COLUMNS: &str = "id, owner, url, events, auth, format, secret, metadata, \
         enabled, disabled_reason, failing_since, created_at, updated_at, uid, description, \
         channels, rate_limit";

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
            updated_at: r.try_get("updated_at")?,
            uid: r.try_get("uid")?,
            description: r.try_get::<Option<String>, _>("description")?.unwrap_or_default(),
            channels: r
                .try_get::<Option<String>, _>("channels")?
                .and_then(|c| serde_json::from_str(&c).ok()),
            rate_limit: r
                .try_get::<Option<i64>, _>("rate_limit")?
                .and_then(|n| u16::try_from(n).ok()),
        };
        Ok(EndpointRow { endpoint, secret })
    }

    pub(crate) async fn insert_endpoint(
        c: &mut Conn,
        e: &Endpoint,
        auth: &Auth,
        secret: &str,
        headers: &Headers,
        now: i64,
    ) -> Result<(), SendError> {
        sqlx::query(
            "INSERT INTO outworx_endpoints (id, owner, url, events, auth, format, secret, \
             metadata, enabled, created_at, updated_at, uid, description, channels, headers, \
             rate_limit) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15)",
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
        .bind(&e.uid)
        .bind(&e.description)
        .bind(e.channels.as_ref().map(serde_json::to_string).transpose()?)
        .bind(serde_json::to_string(headers)?)
        .bind(e.rate_limit.map(i64::from))
        .execute(&mut *c)
        .await
        .map_err(uid_conflict)?;
        Ok(())
    }

    /// An endpoint's custom headers (names and values).
    pub(crate) async fn headers(
        c: &mut Conn,
        owner: &str,
        id: &str,
    ) -> Result<Option<Headers>, SendError> {
        let row = sqlx::query("SELECT headers FROM outworx_endpoints WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .fetch_optional(&mut *c)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("headers"))
            .transpose()?
            .map(|h| h.and_then(|h| serde_json::from_str(&h).ok()).unwrap_or_default()))
    }

    /// Writes the fields `ch` gives (a Svix PUT or PATCH, or a headers change), each on its
    /// own, so concurrent changes of other fields, and the worker's disabling, are kept.
    /// `enabled` changes only when given, and an endpoint an operator disabled is not enabled
    /// by its owner (nothing is written). `Ok(false)`: no such endpoint, or refused.
    pub(crate) async fn change_endpoint(
        c: &mut Conn,
        owner: &str,
        id: &str,
        ch: &EndpointChange,
        now: i64,
    ) -> Result<bool, SendError> {
        let json = |v: Option<String>| v;
        let done = sqlx::query(
            "UPDATE outworx_endpoints SET url = COALESCE($1, url), events = COALESCE($2, events), \
             metadata = COALESCE($3, metadata), \
             uid = CASE WHEN $4 = 1 THEN $5 ELSE uid END, \
             description = COALESCE($6, description), \
             channels = CASE WHEN $7 = 1 THEN $8 ELSE channels END, \
             rate_limit = CASE WHEN $9 = 1 THEN $10 ELSE rate_limit END, \
             headers = COALESCE($11, headers), \
             enabled = COALESCE($12, enabled), \
             disabled_reason = CASE WHEN $12 IS NULL THEN disabled_reason WHEN $12 = 1 THEN NULL \
               WHEN enabled = 0 THEN disabled_reason ELSE 'disabled by its owner' END, \
             failing_since = CASE WHEN $12 = 1 THEN NULL ELSE failing_since END, \
             updated_at = $13 WHERE id = $14 AND owner = $15 \
             AND ($12 IS NULL OR $12 = 0 OR enabled = 1 OR disabled_reason IS NULL \
               OR disabled_reason <> 'disabled by an operator')",
        )
        .bind(ch.url.as_deref())
        .bind(json(ch.events.as_ref().map(serde_json::to_string).transpose()?))
        .bind(json(ch.metadata.as_ref().map(serde_json::to_string).transpose()?))
        .bind(i64::from(ch.uid.is_some()))
        .bind(ch.uid.clone().flatten())
        .bind(ch.description.as_deref())
        .bind(i64::from(ch.channels.is_some()))
        .bind(
            ch.channels
                .as_ref()
                .and_then(Option::as_ref)
                .map(serde_json::to_string)
                .transpose()?,
        )
        .bind(i64::from(ch.rate_limit.is_some()))
        .bind(ch.rate_limit.flatten().map(i64::from))
        .bind(json(ch.headers.as_ref().map(serde_json::to_string).transpose()?))
        .bind(ch.enabled.map(bool_i))
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&mut *c)
        .await
        .map_err(uid_conflict)?;
        Ok(done.rows_affected() == 1)
    }

    /// An owner's endpoint by id or uid.
    pub(crate) async fn endpoint_by_id_or_uid(
        c: &mut Conn,
        owner: &str,
        id_or_uid: &str,
    ) -> Result<Option<EndpointRow>, SendError> {
        let column = if id_or_uid.starts_with("ep_") { "id" } else { "uid" };
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM outworx_endpoints WHERE owner = $1 AND {column} = $2"
        );
        let row = sqlx::query(&sql)
            .bind(owner)
            .bind(id_or_uid)
            .fetch_optional(&mut *c)
            .await?;
        Ok(row.as_ref().map(endpoint_row).transpose()?)
    }

    /// A page of an owner's endpoints by id, from the `(owner, id)` index: `limit + 1` rows
    /// after (or, `back`, before) `from`, newest first unless `ascending`.
    pub(crate) fn endpoint_page_query<'a>(
        prefix: &str,
        owner: &'a str,
        from: Option<&'a str>,
        back: bool,
        ascending: bool,
        limit: u32,
    ) -> sqlx::QueryBuilder<'a, Db> {
        // Reading forward in the list's order, or backward from a previous page's start.
        let up = ascending != back;
        let mut q = sqlx::QueryBuilder::<Db>::new(format!(
            "{prefix}SELECT {ENDPOINT_COLUMNS} FROM outworx_endpoints WHERE owner = "
        ));
        q.push_bind(owner);
        if let Some(from) = from {
            q.push(if up { " AND id > " } else { " AND id < " }).push_bind(from);
        }
        q.push(if up { " ORDER BY id ASC" } else { " ORDER BY id DESC" });
        q.push(" LIMIT ").push_bind(i64::from(limit) + 1);
        q
    }

    pub(crate) async fn endpoint_page(
        c: &mut Conn,
        owner: &str,
        from: Option<&str>,
        back: bool,
        ascending: bool,
        limit: u32,
    ) -> Result<Vec<Endpoint>, SendError> {
        let rows = endpoint_page_query("", owner, from, back, ascending, limit)
            .build()
            .fetch_all(&mut *c)
            .await?;
        rows.iter()
            .map(|r| endpoint_row(r).map(|e| e.endpoint).map_err(SendError::from))
            .collect()
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

    /// The endpoints `scope` may see, oldest first (the first [`MAX_LIST`]), read in order
    /// from the `(created_at, id)` or `(owner, created_at, id)` index.
    pub(crate) fn endpoints_query<'a>(prefix: &str, scope: Scope<'a>) -> sqlx::QueryBuilder<'a, Db> {
        let mut q = sqlx::QueryBuilder::new(prefix);
        q.push(format!("SELECT {ENDPOINT_COLUMNS} FROM outworx_endpoints"));
        if let Scope::Owner(owner) = scope {
            q.push(" WHERE owner = ").push_bind(owner);
        }
        q.push(format!(" ORDER BY created_at, id LIMIT {MAX_LIST}"));
        q
    }

    pub(crate) async fn endpoints(
        c: &mut Conn,
        scope: Scope<'_>,
    ) -> Result<Vec<Endpoint>, SendError> {
        let rows = endpoints_query("", scope).build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| endpoint_row(r).map(|e| e.endpoint).map_err(SendError::from))
            .collect()
    }

    /// Inserts `e` unless its owner has `cap` endpoints already (`Ok(false)`), in the
    /// caller's write transaction, so no two creates both count below the cap: SQLite's
    /// write transaction (`BEGIN IMMEDIATE`) serializes them, and on PostgreSQL, where each
    /// statement of READ COMMITTED counts without the other's uncommitted row, an advisory
    /// lock on the owner does, until the commit.
    pub(crate) async fn insert_endpoint_capped(
        c: &mut Conn,
        e: &Endpoint,
        auth: &Auth,
        secret: &str,
        headers: &Headers,
        now: i64,
        cap: u64,
    ) -> Result<bool, SendError> {
        if POSTGRES {
            // The count must see the previous holder's committed row: a snapshot taken before
            // the lock (a server defaulting to REPEATABLE READ) would not.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                .execute(&mut *c)
                .await?;
            sqlx::query("SELECT pg_advisory_xact_lock(737201, hashtext($1))")
                .bind(&e.owner)
                .execute(&mut *c)
                .await?;
        }
        if count_endpoints(c, &e.owner).await? >= cap {
            return Ok(false);
        }
        insert_endpoint(c, e, auth, secret, headers, now).await?;
        Ok(true)
    }

    /// How many endpoints an owner has (for the per-owner cap).
    pub(crate) async fn count_endpoints(c: &mut Conn, owner: &str) -> Result<u64, SendError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outworx_endpoints WHERE owner = $1")
            .bind(owner)
            .fetch_one(&mut *c)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Writes only the fields `u` gives; `enabled` (and its reason, and the failure
    /// clock) only when `u` says so. An endpoint an operator disabled is enabled only by an
    /// operator (`by_operator`): for its owner nothing is written, in the same statement, so
    /// no disable that lands meanwhile is undone.
    pub(crate) async fn update_endpoint(
        c: &mut Conn,
        id: &str,
        owner: &str,
        u: &EndpointUpdate,
        now: i64,
        by_operator: bool,
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
               WHEN $6 = 1 THEN NULL WHEN $10 = 1 THEN 'disabled by an operator' \
               WHEN enabled = 0 AND disabled_reason = 'disabled by an operator' \
                 THEN disabled_reason \
               ELSE 'disabled by its owner' END, \
             failing_since = CASE WHEN $6 = 1 THEN NULL ELSE failing_since END, \
             updated_at = $7 WHERE id = $8 AND owner = $9 \
             AND ($10 = 1 OR $6 IS NULL OR $6 = 0 OR enabled = 1 \
               OR disabled_reason IS NULL OR disabled_reason <> 'disabled by an operator')",
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
        .bind(i64::from(by_operator))
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
}
