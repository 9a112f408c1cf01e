//! Events: stored per project with their indexed columns and their text as received, then
//! queried page by page, counted for the dashboard and pruned past the retention.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, now_ms};

/// Most bytes of stored events one `/api/events` answer carries; it stops early and its
/// `next_before_id` continues from there.
pub const MAX_EVENTS_BYTES: usize = 8 << 20;

/// Old events are deleted this many at a time, so a large backlog never holds the database
/// (SQLite has one writer) for long.
const PRUNE_BATCH: i64 = 5_000;

/// An event ready to store: its indexed columns and its JSON text exactly as received.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub(crate) occurred_at: i64,
    pub(crate) provider: String,
    pub(crate) status_code: i64,
    pub(crate) processing_status: Option<String>,
    pub(crate) signature_valid: Option<i64>,
    pub(crate) event_type: Option<String>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) outcome: &'static str,
    /// The inbox row of a queued delivery (`metadata.inbox_id`).
    pub(crate) inbox_id: Option<i64>,
    pub(crate) text: String,
}

/// What became of a delivery, as the dashboard's charts stack it; one name per event.
pub(crate) fn outcome(event: &serde_json::Value) -> &'static str {
    let processing = event.get("processing_status").and_then(|v| v.as_str());
    // A replayed first response, or a 409 while the first delivery still runs: a retry.
    let flag = |k: &str| {
        event
            .get("metadata")
            .and_then(|m| m.get(k))
            .and_then(serde_json::Value::as_bool)
            == Some(true)
    };
    let duplicate = flag("duplicate") || flag("in_flight");
    let status = event
        .get("status_code")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    if event
        .get("signature_valid")
        .and_then(serde_json::Value::as_bool)
        == Some(false)
    {
        return "signature_failure";
    }
    if duplicate {
        return "duplicate";
    }
    match processing {
        Some("ignored") => "ignored",
        Some("silent_drop") => "silent_drop",
        Some("failed") => "failed",
        Some("queued") => "queued",
        // Marked completed, or not marked: what the answer says.
        _ if (200..300).contains(&status) => "completed",
        _ => "failed",
    }
}

impl EventRow {
    /// The columns of `event` (already validated), stored with its `text`.
    pub(crate) fn new(occurred_at: i64, event: &serde_json::Value, text: String) -> Self {
        let s = |k: &str| event.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        EventRow {
            occurred_at,
            provider: s("provider").unwrap_or_default(),
            status_code: event
                .get("status_code")
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            processing_status: s("processing_status"),
            signature_valid: event
                .get("signature_valid")
                .and_then(|v| v.as_bool())
                .map(i64::from),
            event_type: s("event_type"),
            duration_ms: event
                .get("duration_ms")
                .and_then(serde_json::Value::as_i64)
                .filter(|d| *d >= 0),
            outcome: outcome(event),
            inbox_id: event
                .get("metadata")
                .and_then(|m| m.get("inbox_id"))
                .and_then(serde_json::Value::as_i64),
            text,
        }
    }
}

/// A stored event row, for the query API.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// Milliseconds since 1970 when the ingest received it.
    pub received_at: i64,
    /// The event as reported.
    pub event: serde_json::Value,
    /// Its stored size in bytes.
    pub size: usize,
}

/// Filters of the event query API; all optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Provider name.
    pub provider: Option<String>,
    /// HTTP status the receiver answered.
    pub status: Option<i64>,
    /// `completed`, `failed` or `silent_drop`.
    pub processing_status: Option<String>,
    /// Only events whose `timestamp` is at or after this (RFC 3339).
    pub since: Option<String>,
    /// Only events whose `timestamp` is before this (RFC 3339).
    pub until: Option<String>,
    /// `true` or `false`: the signature verdict.
    pub signature_valid: Option<bool>,
    /// At most this many, newest first (default 100, at most 1,000).
    pub limit: Option<i64>,
    /// Only events with a row id below this (for paging).
    pub before_id: Option<i64>,
}

/// Counts of a project's events in a time window: the dashboard's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// All events.
    pub total: i64,
    /// Per provider name.
    pub by_provider: BTreeMap<String, i64>,
    /// Per HTTP status class: `"2xx"`, `"4xx"`, `"5xx"`, ...
    pub by_status_class: BTreeMap<String, i64>,
    /// Per processing status (`completed`, `failed`, `silent_drop`); unmarked events are not
    /// counted here.
    pub by_processing_status: BTreeMap<String, i64>,
    /// Events whose signature did not verify.
    pub signature_invalid: i64,
}

/// One bucket of `/api/stats/series`: `[start_ms, start_ms + bucket)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// Where the bucket starts, milliseconds since 1970.
    pub start_ms: i64,
    /// Events per outcome (`completed`, `failed`, `silent_drop`, `signature_failure`,
    /// `duplicate`, `ignored`, `queued`; `unknown` for rows stored before outcomes were).
    pub counts: BTreeMap<String, i64>,
    /// Median latency in milliseconds (nearest rank), when any event reported one.
    pub p50_ms: Option<i64>,
    /// 95th percentile latency in milliseconds (nearest rank).
    pub p95_ms: Option<i64>,
}

/// At most this many buckets in one series.
pub(crate) const MAX_BUCKETS: i64 = 1_000;

/// A value bound to [`events_query`]'s text.
pub(crate) enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// The query of [`Db::events`], run or planned (`prefix`): only the filters given, each a
/// plain comparison, newest first below `before_id`; read by the `(project, id)` index, or
/// `(project, provider, id)` with a provider, which the list stops reading at its limit.
/// The other filters (status, processing, verdict, time) are checked on the rows it walks.
/// Numbered placeholders (`$1`): the `Any` driver's query builder writes `?`, which
/// PostgreSQL does not read.
pub(crate) fn events_query<'a>(
    prefix: &str,
    project: &'a str,
    filter: &'a EventFilter,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> (String, Vec<Arg<'a>>) {
    let mut sql =
        format!("{prefix}SELECT id, received_at, event FROM events WHERE project = $1 AND id < $2");
    let mut args = vec![
        Arg::Text(project),
        Arg::Int(filter.before_id.unwrap_or(i64::MAX)),
    ];
    let mut push = |cond: &str, arg: Arg<'a>| {
        args.push(arg);
        sql.push_str(&format!(" AND {cond} ${}", args.len()));
    };
    if let Some(p) = &filter.provider {
        push("provider =", Arg::Text(p));
    }
    if let Some(s) = filter.status {
        push("status_code =", Arg::Int(s));
    }
    if let Some(p) = &filter.processing_status {
        push("processing_status =", Arg::Text(p));
    }
    if let Some(t) = since_ms {
        push("occurred_at >=", Arg::Int(t));
    }
    if let Some(t) = until_ms {
        push("occurred_at <", Arg::Int(t));
    }
    if let Some(v) = filter.signature_valid {
        push("signature_valid =", Arg::Int(i64::from(v)));
    }
    args.push(Arg::Int(filter.limit.unwrap_or(100).clamp(1, 1000)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
    (sql, args)
}

/// `sql` with `args` bound in order.
pub(crate) fn bound<'q>(
    sql: &'q str,
    args: Vec<Arg<'q>>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Text(t) => q.bind(t),
            Arg::Int(i) => q.bind(i),
        };
    }
    q
}

impl Db {
    /// `project`'s events in `[since_ms, until_ms)`, in buckets of `bucket_ms` from `since_ms`:
    /// counts per outcome and latency percentiles, computed in SQL (the same statements on
    /// SQLite and PostgreSQL). Every bucket of the window is returned, empty ones included.
    pub async fn series(
        &self,
        project: &str,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Bucket>, DbError> {
        let bucket_ms = bucket_ms.max(1);
        let n = ((until_ms - since_ms).max(0) + bucket_ms - 1) / bucket_ms;
        let mut out: Vec<Bucket> = (0..n.min(MAX_BUCKETS))
            .map(|i| Bucket {
                start_ms: since_ms + i * bucket_ms,
                ..Bucket::default()
            })
            .collect();
        let counts = sqlx::query(
            "SELECT (occurred_at - $2) / $4, COALESCE(outcome, 'unknown'), COUNT(*) \
             FROM events WHERE project = $1 AND occurred_at >= $2 AND occurred_at < $3 \
             GROUP BY (occurred_at - $2) / $4, COALESCE(outcome, 'unknown')",
        )
        .bind(project)
        .bind(since_ms)
        .bind(until_ms)
        .bind(bucket_ms)
        .fetch_all(&self.reads)
        .await?;
        for row in &counts {
            let i: i64 = row.try_get(0)?;
            let outcome: String = row.try_get(1)?;
            let count: i64 = row.try_get(2)?;
            if let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                *b.counts.entry(outcome).or_default() += count;
            }
        }
        // Nearest-rank percentiles: the row at rank ceil(p * n) of each bucket, by latency.
        let percentiles = sqlx::query(
            "SELECT i, MIN(CASE WHEN r * 100 >= n * 50 THEN duration_ms END), \
             MIN(CASE WHEN r * 100 >= n * 95 THEN duration_ms END) FROM ( \
             SELECT (occurred_at - $2) / $4 AS i, duration_ms, \
             ROW_NUMBER() OVER (PARTITION BY (occurred_at - $2) / $4 ORDER BY duration_ms) AS r, \
             COUNT(*) OVER (PARTITION BY (occurred_at - $2) / $4) AS n \
             FROM events WHERE project = $1 AND occurred_at >= $2 AND occurred_at < $3 \
             AND duration_ms IS NOT NULL) ranked GROUP BY i",
        )
        .bind(project)
        .bind(since_ms)
        .bind(until_ms)
        .bind(bucket_ms)
        .fetch_all(&self.reads)
        .await?;
        for row in &percentiles {
            let i: i64 = row.try_get(0)?;
            if let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                b.p50_ms = row.try_get(1)?;
                b.p95_ms = row.try_get(2)?;
            }
        }
        Ok(out)
    }

    /// Stores validated events of one batch in one transaction.
    pub async fn insert_events(
        &self,
        project: &str,
        events: &[(i64, serde_json::Value)],
    ) -> Result<(), DbError> {
        let rows: Vec<EventRow> = events
            .iter()
            .map(|(at, e)| EventRow::new(*at, e, e.to_string()))
            .collect();
        self.insert_rows(project, &rows).await
    }

    /// Stores rows of one batch in one transaction.
    pub(crate) async fn insert_rows(
        &self,
        project: &str,
        rows: &[EventRow],
    ) -> Result<(), DbError> {
        let received_at = now_ms();
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO events (project, received_at, occurred_at, provider, status_code, \
                 processing_status, signature_valid, event_type, event, duration_ms, outcome, \
                 inbox_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(project)
            .bind(received_at)
            .bind(r.occurred_at)
            .bind(r.provider.as_str())
            .bind(r.status_code)
            .bind(r.processing_status.as_deref())
            .bind(r.signature_valid)
            .bind(r.event_type.as_deref())
            .bind(r.text.as_str())
            .bind(r.duration_ms)
            .bind(r.outcome)
            .bind(r.inbox_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events of `project` matching `filter`, newest first: at most `limit` (default 100,
    /// at most 1,000), and no more than [`MAX_EVENTS_BYTES`] of them (at least one).
    pub async fn events(
        &self,
        project: &str,
        filter: &EventFilter,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<StoredEvent>, DbError> {
        let (sql, args) = events_query("", project, filter, since_ms, until_ms);
        within_budget(bound(&sql, args).fetch(&self.reads)).await
    }

    /// The events of `project` reported for one inbox row (its receipt and each worker run):
    /// the newest 200 at most, and at most [`MAX_EVENTS_BYTES`] of them (at least one), by
    /// the partial `(project, inbox_id)` index, answered oldest first.
    pub async fn events_of_inbox(
        &self,
        project: &str,
        inbox_id: i64,
    ) -> Result<Vec<StoredEvent>, DbError> {
        let query = sqlx::query(
            "SELECT id, received_at, event FROM events WHERE project = $1 AND inbox_id = $2 \
             ORDER BY id DESC LIMIT 200",
        )
        .bind(project)
        .bind(inbox_id);
        let mut out = within_budget(query.fetch(&self.reads)).await?;
        out.reverse();
        Ok(out)
    }

    /// Counts of `project`'s events whose `timestamp` is in `[since_ms, until_ms)`.
    pub async fn stats(
        &self,
        project: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Stats, DbError> {
        // One grouped scan; the few groups are folded here.
        let rows = sqlx::query(
            "SELECT provider, status_code / 100, processing_status, signature_valid, COUNT(*) \
             FROM events WHERE project = $1 \
             AND ($2 IS NULL OR occurred_at >= $2) \
             AND ($3 IS NULL OR occurred_at < $3) \
             GROUP BY provider, status_code / 100, processing_status, signature_valid",
        )
        .bind(project)
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.reads)
        .await?;
        let mut stats = Stats::default();
        for row in &rows {
            let provider: String = row.try_get(0)?;
            let class: i64 = row.try_get(1)?;
            let processing: Option<String> = row.try_get(2)?;
            let signature_valid: Option<i64> = row.try_get(3)?;
            let n: i64 = row.try_get(4)?;
            stats.total += n;
            *stats.by_provider.entry(provider).or_default() += n;
            *stats
                .by_status_class
                .entry(format!("{class}xx"))
                .or_default() += n;
            if let Some(p) = processing {
                *stats.by_processing_status.entry(p).or_default() += n;
            }
            if signature_valid == Some(0) {
                stats.signature_invalid += n;
            }
        }
        Ok(stats)
    }

    /// Deletes the events received before `before_ms` (milliseconds since 1970), in batches;
    /// returns how many.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, DbError> {
        self.prune_events_by(before_ms, PRUNE_BATCH).await
    }

    async fn prune_events_by(&self, before_ms: i64, batch: i64) -> Result<u64, DbError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM events WHERE id IN \
                 (SELECT id FROM events WHERE received_at < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += n;
            if n < u64::try_from(batch).unwrap_or(u64::MAX) {
                return Ok(total);
            }
            // Let the ingest in between batches.
            tokio::task::yield_now().await;
        }
    }
}

/// The rows of `rows`, read one at a time so that large events stop at [`MAX_EVENTS_BYTES`]
/// instead of arriving whole (at least one is answered).
async fn within_budget(
    mut rows: impl futures_util::Stream<Item = Result<AnyRow, sqlx::Error>> + Unpin,
) -> Result<Vec<StoredEvent>, DbError> {
    use futures_util::TryStreamExt as _;
    let (mut out, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = rows.try_next().await? {
        let event = stored_event(&row)?;
        bytes += event.size;
        if !out.is_empty() && bytes > MAX_EVENTS_BYTES {
            break;
        }
        out.push(event);
    }
    Ok(out)
}

fn stored_event(row: &AnyRow) -> Result<StoredEvent, DbError> {
    let text: String = row.try_get(2)?;
    Ok(StoredEvent {
        id: row.try_get(0)?,
        received_at: row.try_get(1)?,
        size: text.len(),
        event: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::temp_db;

    #[test]
    fn every_event_has_one_outcome() {
        use serde_json::json;
        let cases = [
            (
                json!({"status_code": 200, "processing_status": "completed"}),
                "completed",
            ),
            (json!({"status_code": 200}), "completed"),
            (json!({"status_code": 500}), "failed"),
            (
                json!({"status_code": 200, "processing_status": "failed"}),
                "failed",
            ),
            (
                json!({"status_code": 500, "processing_status": "completed"}),
                "failed",
            ),
            (
                json!({"status_code": 200, "processing_status": "silent_drop"}),
                "silent_drop",
            ),
            (
                json!({"status_code": 200, "processing_status": "ignored"}),
                "ignored",
            ),
            (
                json!({"status_code": 200, "processing_status": "queued"}),
                "queued",
            ),
            (
                json!({"status_code": 401, "signature_valid": false}),
                "signature_failure",
            ),
            (
                json!({"status_code": 200, "metadata": {"duplicate": true}}),
                "duplicate",
            ),
            (
                json!({"status_code": 409, "metadata": {"in_flight": true}}),
                "duplicate",
            ),
        ];
        for (event, want) in cases {
            assert_eq!(outcome(&event), want, "{event}");
        }
    }

    #[tokio::test]
    async fn the_series_counts_outcomes_and_latency_per_bucket_in_sql() {
        use serde_json::json;
        let (db, dir) = temp_db("series").await;
        let t0 = 1_700_000_000_000i64;
        let mut events = vec![
            (
                t0 + 1_000,
                json!({"provider": "stripe", "status_code": 200, "processing_status": "completed", "duration_ms": 10}),
            ),
            (
                t0 + 2_000,
                json!({"provider": "stripe", "status_code": 500, "duration_ms": 30}),
            ),
            (
                t0 + 59_999,
                json!({"provider": "stripe", "status_code": 401, "signature_valid": false, "duration_ms": 1}),
            ),
            (
                t0 + 60_000,
                json!({"provider": "github", "status_code": 200, "metadata": {"duplicate": true}, "duration_ms": 2}),
            ),
            (
                t0 + 70_000,
                json!({"provider": "github", "status_code": 200, "processing_status": "ignored"}),
            ),
            (
                t0 + 80_000,
                json!({"provider": "github", "status_code": 200, "processing_status": "silent_drop", "duration_ms": 50}),
            ),
            // Outside the window, and another project's.
            (t0 - 1, json!({"provider": "stripe", "status_code": 200})),
            (
                t0 + 240_000,
                json!({"provider": "stripe", "status_code": 200}),
            ),
        ];
        for d in 1..=20 {
            events.push((
                t0 + 180_000 + d,
                json!({"provider": "stripe", "status_code": 200, "duration_ms": d}),
            ));
        }
        db.insert_events("p", &events).await.unwrap();
        db.insert_events(
            "other",
            &[(
                t0 + 1_000,
                json!({"provider": "stripe", "status_code": 500}),
            )],
        )
        .await
        .unwrap();

        let s = db.series("p", t0, t0 + 240_000, 60_000).await.unwrap();
        let counts = |i: usize| -> Vec<(&str, i64)> {
            s[i].counts.iter().map(|(k, v)| (k.as_str(), *v)).collect()
        };
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].start_ms, t0 + 60_000);
        assert_eq!(
            counts(0),
            [("completed", 1), ("failed", 1), ("signature_failure", 1)]
        );
        assert_eq!((s[0].p50_ms, s[0].p95_ms), (Some(10), Some(30)));
        assert_eq!(
            counts(1),
            [("duplicate", 1), ("ignored", 1), ("silent_drop", 1)]
        );
        assert_eq!(
            (s[1].p50_ms, s[1].p95_ms),
            (Some(2), Some(50)),
            "the ignored one has no latency"
        );
        assert!(counts(2).is_empty());
        assert_eq!((s[2].p50_ms, s[2].p95_ms), (None, None));
        assert_eq!(counts(3), [("completed", 20)]);
        assert_eq!((s[3].p50_ms, s[3].p95_ms), (Some(10), Some(19)));
        // The window's total is the summary's total.
        let stats = db.stats("p", Some(t0), Some(t0 + 240_000)).await.unwrap();
        let sum: i64 = s.iter().flat_map(|b| b.counts.values()).sum();
        assert_eq!(sum, stats.total);
        drop(db);
        std::fs::remove_dir_all(dir).ok();
    }

    /// The event list reads a range of an index in its own order, never sorting a project's
    /// history, at 100,000 events of two projects on SQLite (the plans as opened, never
    /// analyzed); the same checker as the outbox's and inbox's listed queries.
    #[tokio::test]
    async fn the_event_list_reads_index_ranges() {
        let (db, dir) = temp_db("event-plans").await;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
             INSERT INTO events (project, received_at, occurred_at, provider, status_code, \
             processing_status, signature_valid, event_type, event, duration_ms, outcome) \
             SELECT CASE WHEN i % 2 = 0 THEN 'p' ELSE 'q' END, i, i, \
             CASE i % 5 WHEN 0 THEN 'stripe' WHEN 1 THEN 'github' ELSE 'shopify' END, \
             CASE WHEN i % 10 = 0 THEN 500 ELSE 200 END, 'completed', 1, 'a.b', '{}', 3, \
             'completed' FROM n",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let filters = [
            ("every event of a project", EventFilter::default(), None),
            (
                "one provider's",
                EventFilter {
                    provider: Some("stripe".into()),
                    ..EventFilter::default()
                },
                None,
            ),
            (
                "a page below an id",
                EventFilter {
                    before_id: Some(50_000),
                    ..EventFilter::default()
                },
                None,
            ),
            (
                "failures in a window",
                EventFilter {
                    status: Some(500),
                    ..EventFilter::default()
                },
                Some((1_000, 90_000)),
            ),
        ];
        for (name, filter, window) in &filters {
            let (since, until) = window.map_or((None, None), |(a, b)| (Some(a), Some(b)));
            let (sql, args) = events_query("EXPLAIN QUERY PLAN ", "p", filter, since, until);
            let plan: Vec<String> = bound(&sql, args)
                .fetch_all(&db.reads)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String, _>(3).unwrap())
                .collect();
            let planned = outworx_hooks::plans::Planned {
                name,
                plan,
                bounded: None,
                reads_by: Some("project"),
            };
            assert!(planned.problems().is_empty(), "{name}: {:?}", planned.plan);
            // And it answers: newest first, the filter applied.
            let got = db.events("p", filter, since, until).await.unwrap();
            assert!(!got.is_empty(), "{name}");
            assert!(got.windows(2).all(|w| w[0].id > w[1].id), "{name}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn old_events_are_pruned_in_batches() {
        let (db, dir) = temp_db("prune").await;
        let events: Vec<_> = (0..7)
            .map(|i| {
                (
                    i,
                    serde_json::json!({"provider": "stripe", "status_code": 200}),
                )
            })
            .collect();
        db.insert_events("p", &events).await.unwrap();
        assert_eq!(db.prune_events_by(0, 3).await.unwrap(), 0);
        // 7 rows in batches of 3: 3 + 3 + 1.
        assert_eq!(db.prune_events_by(now_ms() + 1, 3).await.unwrap(), 7);
        assert_eq!(db.stats("p", None, None).await.unwrap().total, 0);
        // The sweep keeps what is inside the retention, and everything without one.
        db.insert_events("p", &events).await.unwrap();
        db.sweep(None).await;
        db.sweep(Some(std::time::Duration::from_secs(3600))).await;
        assert_eq!(db.stats("p", None, None).await.unwrap().total, 7);
        // received_at is in milliseconds: let one pass so "now minus zero" covers them.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        db.sweep(Some(std::time::Duration::ZERO)).await;
        assert_eq!(db.stats("p", None, None).await.unwrap().total, 0);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn stats_fold_the_groups() {
        let (db, dir) = temp_db("stats").await;
        let ev = |provider: &str, status: i64, extra: serde_json::Value| {
            let mut e = serde_json::json!({"provider": provider, "status_code": status});
            for (k, v) in extra.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        };
        db.insert_events(
            "p",
            &[
                (1_000, ev("stripe", 200, serde_json::json!({"processing_status": "completed", "signature_valid": true}))),
                (2_000, ev("stripe", 200, serde_json::json!({"processing_status": "silent_drop", "signature_valid": true}))),
                (3_000, ev("stripe", 401, serde_json::json!({"signature_valid": false}))),
                (4_000, ev("github", 500, serde_json::json!({"processing_status": "failed"}))),
                (5_000, ev("github", 200, serde_json::json!({}))),
            ],
        )
        .await
        .unwrap();
        db.insert_events(
            "other",
            &[(1_000, ev("stripe", 200, serde_json::json!({})))],
        )
        .await
        .unwrap();

        let all = db.stats("p", None, None).await.unwrap();
        let map = |v: &[(&str, i64)]| v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
        assert_eq!(
            all,
            Stats {
                total: 5,
                by_provider: map(&[("github", 2), ("stripe", 3)]),
                by_status_class: map(&[("2xx", 3), ("4xx", 1), ("5xx", 1)]),
                by_processing_status: map(&[("completed", 1), ("failed", 1), ("silent_drop", 1)]),
                signature_invalid: 1,
            }
        );
        let window = db.stats("p", Some(2_000), Some(4_000)).await.unwrap();
        assert_eq!((window.total, window.signature_invalid), (2, 1));
        assert_eq!(
            db.stats("nobody", None, None).await.unwrap(),
            Stats::default()
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
