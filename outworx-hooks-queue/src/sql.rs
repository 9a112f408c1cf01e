//! The queue mechanics every queue table shares, written once: claim due rows with a lease
//! (the claim also takes back leases that expired: it is the reaper), give rows back, and
//! finish them (done, retry at a time, dead) only while the lease is still the caller's.
//!
//! A queue table has these columns besides its own: `id, status, attempts, max_attempts?,
//! next_attempt_at, lease_until, lease_token, last_status, last_error, updated_at`, and an
//! index on `(status, next_attempt_at)`. [`QueueTable`] names it and its status words.
//!
//! Each query is compiled for both drivers by one macro: [`sqlite`] and [`postgres`] hold
//! the same functions over `SqliteConnection` and `PgConnection`, so a queue's own dialect
//! module calls `outworx_hooks_queue::sql::$driver::claim(..)` and the caller's transaction
//! runs the same code as the pool's.

/// A table that is a queue: its name and the words its `status` column uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTable {
    /// The table's name.
    pub name: &'static str,
    /// The status of a leased row (`sending`, `processing`).
    pub leased: &'static str,
    /// The status of a finished row (`delivered`, `done`).
    pub done: &'static str,
}

/// Which due rows a claim takes first.
///
/// Every policy takes only due rows (pending and due, or leased past their lease) and skips
/// the rows other workers hold; a policy decides the order among them. New policies (fair by
/// owner, strictly ordered per key) are new variants with their own candidate query, so the
/// queues that use them and the runner above them do not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClaimPolicy {
    /// The earliest due first (`ORDER BY next_attempt_at`).
    #[default]
    Due,
}

/// One claim: which rows, for whom, for how long.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// Now, in ms since 1970.
    pub now: i64,
    /// The lease's end, in ms since 1970.
    pub lease_until: i64,
    /// The lease token the claimed rows get (finishing needs it).
    pub token: &'a str,
    /// At most this many rows.
    pub limit: u32,
    /// Leaves out rows whose `column` is in the list (at most 200 of it): the keys the
    /// worker is already at its per-key cap for.
    pub exclude: Option<(&'static str, &'a [String])>,
    /// The order among the due rows.
    pub policy: ClaimPolicy,
    /// Takes the due rows of these groups only (values of the column), about as many of
    /// each, earliest due first within a group: a claim shared fairly between the groups
    /// [`groups_pending`](sqlite::groups_pending) found, instead of one whose backlog is due
    /// first filling every claim.
    pub fair: Option<(&'static str, &'a [String])>,
}

impl<'a> Claim<'a> {
    /// Up to `limit` due rows, leased under `token` from `now` (ms since 1970) for `lease`,
    /// earliest due first, none left out.
    pub fn new(token: &'a str, limit: u32, now: i64, lease: std::time::Duration) -> Self {
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        Claim {
            now,
            lease_until: now.saturating_add(lease),
            token,
            limit,
            exclude: None,
            policy: ClaimPolicy::Due,
            fair: None,
        }
    }

    /// Takes the due rows of `groups` (values of `column`) only, shared between them.
    pub fn fair(mut self, column: &'static str, groups: &'a [String]) -> Self {
        self.fair = Some((column, groups));
        self
    }

    /// Leaves out the rows whose `column` is one of `keys`.
    pub fn excluding(mut self, column: &'static str, keys: &'a [String]) -> Self {
        self.exclude = Some((column, keys));
        self
    }
}

crate::dialects! {
    pub,
    use sqlx::Row as _;

    use super::{Claim, ClaimPolicy, QueueTable};

    /// Leases the due rows `claim` asks for, counting the attempt they start. Returns
    /// their ids.
    pub async fn claim(
        c: &mut Conn,
        table: QueueTable,
        claim: Claim<'_>,
    ) -> Result<Vec<i64>, sqlx::Error> {
        let rows = claim_query(table, claim, "").build().fetch_all(&mut *c).await?;
        rows.iter().map(|r| r.try_get::<i64, _>("id")).collect()
    }

    /// What a query's text starts with to be planned instead of run: `EXPLAIN QUERY PLAN `
    /// on SQLite, `EXPLAIN ` on PostgreSQL.
    pub const EXPLAIN: &str = if POSTGRES { "EXPLAIN " } else { "EXPLAIN QUERY PLAN " };

    /// The lines of the plan of `q`, a query whose text starts with [`EXPLAIN`]: each
    /// `detail` of SQLite's plan, each line of PostgreSQL's.
    #[doc(hidden)]
    pub async fn explain(
        c: &mut Conn,
        q: &mut sqlx::QueryBuilder<'_, Db>,
    ) -> Result<Vec<String>, sqlx::Error> {
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(if POSTGRES { 0 } else { 3 }))
            .collect()
    }

    /// The plan the database makes for [`claim`] (each line of `EXPLAIN QUERY PLAN` on
    /// SQLite, of `EXPLAIN` on PostgreSQL): for tests that check it reads an index, never
    /// the whole table, whatever the backlog.
    #[doc(hidden)]
    pub async fn claim_plan(
        c: &mut Conn,
        table: QueueTable,
        claim: Claim<'_>,
    ) -> Result<Vec<String>, sqlx::Error> {
        let explain = if SKIP_LOCKED.is_empty() { "EXPLAIN QUERY PLAN " } else { "EXPLAIN " };
        let rows = claim_query(table, claim, explain).build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(if SKIP_LOCKED.is_empty() { 3 } else { 0 }))
            .collect()
    }

    fn claim_query<'a>(
        table: QueueTable,
        claim: Claim<'a>,
        prefix: &str,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let t = table.name;
        let mut q = sqlx::QueryBuilder::<Db>::new(format!("{prefix}UPDATE {t} SET status = '"));
        q.push(table.leased)
            .push("', attempts = attempts + 1, lease_until = ")
            .push_bind(claim.lease_until)
            .push(", lease_token = ")
            .push_bind(claim.token)
            .push(", updated_at = ")
            .push_bind(claim.now)
            .push(" WHERE id IN (");
        // Two range scans of the `(status, next_attempt_at)` index, each stopping after
        // `limit` rows: the rows whose lease ran out (their worker died; a few, at most what
        // was in flight), first, so that they never wait behind a backlog; then the due rows,
        // earliest first. One `OR` of both would read, and sort, every due row to keep
        // `limit` of them: a claim's cost would grow with the backlog.
        let order = match claim.policy {
            ClaimPolicy::Due => "next_attempt_at",
        };
        // The parts: the expired leases; then the due rows, of each group in a fair claim
        // (a range of the `(status, group, next_attempt_at)` index each, a share of the
        // limit), or of all.
        let mut parts: Vec<(&str, &str, Option<&String>, i64)> =
            vec![(table.leased, "lease_until", None, i64::from(claim.limit))];
        match claim.fair {
            Some((_, groups)) => {
                let n = i64::try_from(groups.len().max(1)).unwrap_or(i64::MAX);
                let share = (i64::from(claim.limit) + n - 1) / n;
                parts.extend(groups.iter().map(|g| ("pending", "next_attempt_at", Some(g), share)));
            }
            None => parts.push(("pending", "next_attempt_at", None, i64::from(claim.limit))),
        }
        for (i, (status, due_column, group, limit)) in parts.into_iter().enumerate() {
            if i > 0 {
                q.push(" UNION ALL ");
            }
            q.push(format!("SELECT id FROM (SELECT id FROM {t} WHERE status = '{status}'"));
            if let (Some(value), Some((column, _))) = (group, claim.fair) {
                q.push(format!(" AND {column} = ")).push_bind(value);
            }
            q.push(format!(" AND {due_column} <= ")).push_bind(claim.now);
            if let Some((column, list)) = claim.exclude.filter(|(_, l)| !l.is_empty()) {
                q.push(format!(" AND {column} NOT IN ("));
                let mut items = q.separated(", ");
                for v in list.iter().take(200) {
                    items.push_bind(v);
                }
                q.push(")");
            }
            q.push(format!(" ORDER BY {order} LIMIT "))
                .push_bind(limit)
                .push(SKIP_LOCKED)
                .push(format!(") AS due{i}"));
        }
        q.push(" LIMIT ")
            .push_bind(i64::from(claim.limit))
            .push(") RETURNING id");
        q
    }

    /// The groups (values of `column`) with rows due at `now`, in the column's order, among
    /// the next `max` that have pending rows after `after` (from the first with `None`): a
    /// loose scan of the `(status, column, next_attempt_at)` index, a seek or two per group,
    /// whatever each one's backlog. A group whose rows all wait for a later retry is passed
    /// over.
    pub async fn groups_pending(
        c: &mut Conn,
        table: QueueTable,
        column: &'static str,
        after: Option<&str>,
        max: u32,
        now: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        groups_query("", table, column, after, max, now)
            .build()
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect()
    }

    /// The query of [`groups_pending`], planned or run.
    #[doc(hidden)]
    pub fn groups_query<'a>(
        prefix: &str,
        table: QueueTable,
        column: &'static str,
        after: Option<&'a str>,
        max: u32,
        now: i64,
    ) -> sqlx::QueryBuilder<'a, Db> {
        let t = table.name;
        let mut q = sqlx::QueryBuilder::<Db>::new(format!(
            "{prefix}WITH RECURSIVE g(v, n) AS (SELECT (SELECT {column} FROM {t} \
             WHERE status = 'pending'"
        ));
        if let Some(after) = after {
            q.push(format!(" AND {column} > ")).push_bind(after);
        }
        q.push(format!(
            " ORDER BY {column} LIMIT 1), 1 UNION ALL SELECT (SELECT {column} FROM {t} \
             WHERE status = 'pending' AND {column} > g.v ORDER BY {column} LIMIT 1), n + 1 \
             FROM g WHERE g.v IS NOT NULL AND n < "
        ))
        .push_bind(i64::from(max.max(1)))
        .push(format!(
            ") SELECT v FROM g WHERE v IS NOT NULL AND EXISTS (SELECT 1 FROM {t} \
             WHERE status = 'pending' AND {column} = g.v AND next_attempt_at <= "
        ))
        .push_bind(now)
        .push(")");
        q
    }

    /// The plan of a claim built by [`claim`]'s query (for the plan tests).
    #[doc(hidden)]
    pub fn claim_query_for_plan<'a>(table: QueueTable, claim: Claim<'a>) -> sqlx::QueryBuilder<'a, Db> {
        claim_query(table, claim, EXPLAIN)
    }

    /// Marks dead the rows whose lease expired on their last attempt (their process
    /// died with them, every time): `max` attempts, or the table's `max_attempts`.
    pub async fn bury(
        c: &mut Conn,
        table: QueueTable,
        now: i64,
        max: Option<i64>,
    ) -> Result<u64, sqlx::Error> {
        let limit = match max {
            Some(_) => "$2",
            None => "max_attempts",
        };
        let sql = format!(
            "UPDATE {t} SET status = 'dead', lease_until = NULL, lease_token = NULL, \
             last_error = 'every attempt ended with its worker (crashed or killed while running)', \
             updated_at = $1 WHERE status = '{leased}' AND lease_until <= $1 AND attempts >= {limit}",
            t = table.name,
            leased = table.leased,
        );
        let mut q = sqlx::query(&sql).bind(now);
        if let Some(m) = max {
            q = q.bind(m);
        }
        Ok(q.execute(&mut *c).await?.rows_affected())
    }

    /// Gives leased rows back untried: the attempt the claim counted is taken back.
    pub async fn release(
        c: &mut Conn,
        table: QueueTable,
        ids: &[i64],
        token: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        for chunk in ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                "UPDATE {} SET status = 'pending', attempts = attempts - 1, \
                 lease_until = NULL, lease_token = NULL, next_attempt_at = ",
                table.name
            ));
            q.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE lease_token = ")
                .push_bind(token)
                .push(" AND id IN (");
            push_ids(&mut q, chunk);
            q.build().execute(&mut *c).await?;
        }
        Ok(())
    }

    /// Finishes one row (`status`: pending with `next_attempt_at`, done, or dead) if
    /// its lease is still `token`'s. Returns whether it was.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        c: &mut Conn,
        table: QueueTable,
        id: i64,
        token: &str,
        status: &str,
        next_attempt_at: i64,
        last_status: Option<i64>,
        last_error: Option<&str>,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(&format!(
            "UPDATE {} SET status = $1, next_attempt_at = $2, lease_until = NULL, \
             lease_token = NULL, last_status = $3, last_error = $4, updated_at = $5 \
             WHERE id = $6 AND lease_token = $7",
            table.name
        ))
        .bind(status)
        .bind(next_attempt_at)
        .bind(last_status)
        .bind(last_error)
        .bind(now)
        .bind(id)
        .bind(token)
        .execute(&mut *c)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks many rows done in one statement (the common case of a batch); returns
    /// how many were still `token`'s.
    pub async fn finish_done(
        c: &mut Conn,
        table: QueueTable,
        ids: &[i64],
        token: &str,
        last_status: Option<i64>,
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        let mut hit = 0;
        for chunk in ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                "UPDATE {} SET status = '{}', lease_until = NULL, lease_token = NULL, \
                 last_error = NULL, last_status = ",
                table.name, table.done
            ));
            q.push_bind(last_status)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE lease_token = ")
                .push_bind(token)
                .push(" AND id IN (");
            push_ids(&mut q, chunk);
            hit += q.build().execute(&mut *c).await?.rows_affected();
        }
        Ok(hit)
    }

    /// `ids` as bound values, and the list's closing parenthesis.
    fn push_ids(q: &mut sqlx::QueryBuilder<'_, Db>, ids: &[i64]) {
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(")");
    }
}
