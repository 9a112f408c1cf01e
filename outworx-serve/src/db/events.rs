//! Events: stored per project with their indexed columns and their text as received, then
//! queried page by page, counted for the dashboard and pruned past the retention.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::rollups::{self, Counted, Grid, Tally};
use super::{Db, DbError, now_ms};

/// Most bytes of stored events one `/api/events` answer carries; it stops early and its
/// `next_before_id` continues from there.
pub const MAX_EVENTS_BYTES: usize = 8 << 20;

/// Old events are deleted this many at a time, with what they take from the rollups, so a
/// large backlog never holds the database (SQLite has one writer) for long: 18 ms a batch at
/// 1M events, 14 ms at 10M (`cargo bench -p outworx-hooks-bench --bench dashboard`).
const PRUNE_BATCH: i64 = 500;

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

/// The query of [`Db::events_of_inbox`]: by the partial `(project, inbox_id)` index.
pub(crate) const EVENTS_OF_INBOX: &str = "SELECT id, received_at, event FROM events \
     WHERE project = $1 AND inbox_id = $2 ORDER BY id DESC LIMIT 200";

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
    /// `project`'s events over `grid`: counts per outcome and latency percentiles per
    /// bucket, read from the rollups (a few rows per unit of the grid, however many events
    /// it holds). Every bucket of the grid is returned, empty ones included. The percentiles
    /// are by nearest rank over the latency bins: exact below 64 ms, at most 1/16 above.
    pub async fn series(&self, project: &str, grid: &Grid) -> Result<Vec<Bucket>, DbError> {
        // One snapshot for both reads (a prune or an ingest between them changes neither).
        let mut tx = self.read_snapshot().await?;
        // The window widened to its unit adds at most two buckets to the ones asked for.
        let mut out: Vec<Bucket> = (0..grid.len().min(MAX_BUCKETS + 2))
            .map(|i| Bucket {
                start_ms: grid.since_ms + i * grid.bucket_ms,
                ..Bucket::default()
            })
            .collect();
        let grid_query = |sql| {
            sqlx::query(sql)
                .bind(project)
                .bind(grid.since_ms)
                .bind(grid.until_ms)
                .bind(grid.bucket_ms)
                .bind(grid.span_ms)
        };
        for row in &grid_query(rollups::SERIES_COUNTS)
            .fetch_all(&mut *tx)
            .await?
        {
            let i: i64 = row.try_get(0)?;
            let outcome: String = row.try_get(1)?;
            let count: i64 = row.try_get(2)?;
            if let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                *b.counts.entry(outcome).or_default() += count;
            }
        }
        let mut bins: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        for row in &grid_query(rollups::SERIES_LATENCY)
            .fetch_all(&mut *tx)
            .await?
        {
            *bins.entry((row.try_get(0)?, row.try_get(1)?)).or_default() +=
                row.try_get::<i64, _>(2)?;
        }
        for (i, b) in out.iter_mut().enumerate() {
            let i = i64::try_from(i).unwrap_or(i64::MAX);
            let of: Vec<(i64, i64)> = bins
                .range((i, i64::MIN)..=(i, i64::MAX))
                .map(|(&(_, bin), &n)| (bin, n))
                .collect();
            b.p50_ms = rollups::percentile(&of, 50);
            b.p95_ms = rollups::percentile(&of, 95);
        }
        tx.rollback().await?;
        Ok(out)
    }

    /// A read-only transaction whose statements all see one snapshot: SQLite's in WAL mode
    /// from its first read; PostgreSQL's at `REPEATABLE READ` (its default, `READ
    /// COMMITTED`, takes a new snapshot per statement).
    async fn read_snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        let mut tx = self.reads.begin().await?;
        if self.backend == super::Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
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
        let mut tally = Tally::default();
        // Many rows a statement (one round trip to SQLite's thread or PostgreSQL each), their
        // ids given in the order of the batch.
        for chunk in rows.chunks(rollups::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO events (project, received_at, occurred_at, provider, status_code, \
                 processing_status, signature_valid, event_type, event, duration_ms, outcome, \
                 inbox_id) VALUES {}",
                rollups::values_sql(12, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
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
                    .bind(r.inbox_id);
                tally.add(
                    &Counted {
                        project,
                        occurred_at: r.occurred_at,
                        provider: &r.provider,
                        status_code: r.status_code,
                        processing_status: r.processing_status.as_deref(),
                        signature_valid: r.signature_valid,
                        outcome: Some(r.outcome),
                        duration_ms: r.duration_ms,
                    },
                    1,
                );
            }
            q.execute(&mut *tx).await?;
        }
        // The rollups count what this transaction stores, or nothing if it fails.
        tally.apply(&mut tx).await?;
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
        let query = sqlx::query(EVENTS_OF_INBOX).bind(project).bind(inbox_id);
        let mut out = within_budget(query.fetch(&self.reads)).await?;
        out.reverse();
        Ok(out)
    }

    /// Counts of `project`'s events whose `timestamp` is in `[since_ms, until_ms)`, exactly:
    /// whole days, hours, ten minutes and minutes from the rollups, and the partial minutes at either end
    /// from the events (at most 9 index ranges, whatever the window holds).
    pub async fn stats(
        &self,
        project: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Stats, DbError> {
        let mut stats = Stats::default();
        let (from, to) = (since_ms.unwrap_or(i64::MIN), until_ms.unwrap_or(i64::MAX));
        // One snapshot for every piece: a prune or an ingest meanwhile changes none of them.
        let mut tx = self.read_snapshot().await?;
        for piece in rollups::cover(from, to) {
            let query = if piece.span == 0 {
                sqlx::query(rollups::STATS_EVENTS)
                    .bind(project)
                    .bind(piece.from)
                    .bind(piece.to)
            } else {
                sqlx::query(rollups::STATS_COUNTS)
                    .bind(project)
                    .bind(piece.span)
                    .bind(piece.from)
                    .bind(piece.to)
            };
            for row in &query.fetch_all(&mut *tx).await? {
                rollups::fold(&mut stats, row)?;
            }
        }
        tx.rollback().await?;
        Ok(stats)
    }

    /// Deletes the events received before `before_ms` (milliseconds since 1970), in batches,
    /// each taking its events out of the rollups in its own transaction; returns how many.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, DbError> {
        self.prune_events_by(before_ms, PRUNE_BATCH).await
    }

    async fn prune_events_by(&self, before_ms: i64, batch: i64) -> Result<u64, DbError> {
        let mut total = 0;
        loop {
            // A batch and what it takes from the rollups, in one transaction.
            let mut tx = self.pool.begin().await?;
            let gone = sqlx::query(
                "DELETE FROM events WHERE id IN \
                 (SELECT id FROM events WHERE received_at < $1 LIMIT $2) \
                 RETURNING project, occurred_at, provider, status_code, processing_status, \
                 signature_valid, outcome, duration_ms",
            )
            .bind(before_ms)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            let mut tally = Tally::default();
            for row in &gone {
                let project: String = row.try_get(0)?;
                let provider: String = row.try_get(2)?;
                let processing: Option<String> = row.try_get(4)?;
                let outcome: Option<String> = row.try_get(6)?;
                tally.add(
                    &Counted {
                        project: &project,
                        occurred_at: row.try_get(1)?,
                        provider: &provider,
                        status_code: row.try_get(3)?,
                        processing_status: processing.as_deref(),
                        signature_valid: row.try_get(5)?,
                        outcome: outcome.as_deref(),
                        duration_ms: row.try_get(7)?,
                    },
                    -1,
                );
            }
            tally.apply(&mut tx).await?;
            tx.commit().await?;
            let n = u64::try_from(gone.len()).unwrap_or(u64::MAX);
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
    async fn the_series_counts_outcomes_and_latency_per_bucket() {
        use serde_json::json;
        let (db, dir) = temp_db("series").await;
        // On a minute's edge.
        let t0 = 1_700_000_040_000i64;
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

        let s = db
            .series("p", &Grid::new(t0, t0 + 240_000, 60_000))
            .await
            .unwrap();
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
    /// history, and the summary and the series read ranges of their keys, at 100,000 events
    /// of two projects on SQLite (the plans as opened, never analyzed); the same checker as
    /// the outbox's and inbox's listed queries. On PostgreSQL in the test below.
    #[tokio::test]
    async fn the_event_list_reads_index_ranges() {
        let (db, dir) = temp_db("event-plans").await;
        serve_queries_read_index_ranges(&db).await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// Every query of the dashboard and the query API, planned over 100,000 events of two
    /// projects: this list is the one place they are checked, on either backend.
    /// Whether a plan reads an index range that starts with the project: SQLite's
    /// `SEARCH .. (project=? ..)`, PostgreSQL's `Index Cond: ((project = ..) ..)`. A walk of
    /// every project's rows that filters them (an id order read whole) is not.
    fn by_project(plan: &[String]) -> bool {
        plan.iter().any(|l| {
            (l.starts_with("SEARCH") && l.contains("(project=?"))
                || (l.contains("Index Cond: ((project = ") || l.contains("Cond: ((project = "))
        })
    }

    async fn serve_queries_read_index_ranges(db: &Db) {
        let postgres = db.backend == crate::db::Backend::Postgres;
        let (prefix, column) = if postgres {
            ("EXPLAIN ", 0)
        } else {
            ("EXPLAIN QUERY PLAN ", 3)
        };
        // One event each 15 s: 17 days, 25,000 minutes of rollups; `p` holds one in 20, so
        // a plan that walks every project's events and filters is costly on PostgreSQL too.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
             INSERT INTO events (project, received_at, occurred_at, provider, status_code, \
             processing_status, signature_valid, event_type, event, duration_ms, outcome) \
             SELECT CASE WHEN i % 20 = 0 THEN 'p' ELSE 'q' END, i, i * 15000, \
             CASE (i / 20) % 5 WHEN 0 THEN 'stripe' WHEN 1 THEN 'github' ELSE 'shopify' END, \
             CASE WHEN (i / 20) % 10 = 0 THEN 500 ELSE 200 END, 'completed', 1, 'a.b', '{}', 3, \
             'completed' FROM n",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        // The summary's and the series' rollups, built by the migration's backfill (as for an
        // upgraded database); PostgreSQL plans by statistics, as autovacuum would leave them.
        for statement in rollups::backfill_sql() {
            sqlx::query(&statement).execute(&db.pool).await.unwrap();
        }
        if postgres {
            sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
        }
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
                Some((1_000, 90_000_000)),
            ),
        ];
        for (name, filter, window) in &filters {
            let (since, until) = window.map_or((None, None), |(a, b)| (Some(a), Some(b)));
            let (sql, args) = events_query(prefix, "p", filter, since, until);
            let plan: Vec<String> = bound(&sql, args)
                .fetch_all(&db.reads)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String, _>(column).unwrap())
                .collect();
            let planned = outworx_hooks::plans::Planned {
                name,
                plan,
                // PostgreSQL may read a window's range by time and sort it, when it
                // costs that below walking the ids.
                bounded: (postgres && window.is_some()).then_some("the window's range"),
                reads_by: Some("project"),
            };
            assert!(planned.problems().is_empty(), "{name}: {:?}", planned.plan);
            // SQLite picks its index by rule: it must be the project's. PostgreSQL picks by
            // cost: a walk in id order (the project's index, or the ids when the project holds
            // many of them) that stops at the list's limit, or with a window its time range.
            let read = if postgres {
                let walk = planned
                    .plan
                    .get(1)
                    .is_some_and(|l| l.contains("Index Scan Backward"));
                walk || (window.is_some() && by_project(&planned.plan))
            } else {
                by_project(&planned.plan)
            };
            assert!(read, "{name}: {:?}", planned.plan);
            // And it answers: newest first, the filter applied.
            let got = db.events("p", filter, since, until).await.unwrap();
            assert!(!got.is_empty(), "{name}");
            assert!(got.windows(2).all(|w| w[0].id > w[1].id), "{name}");
        }
        // The summary and the series: ranges of the rollups' keys and of the events' time
        // index.
        let explain = |sql: &str, binds: &[i64]| {
            let sql = format!("{prefix}{sql}");
            let db = db.clone();
            let binds = binds.to_vec();
            async move {
                let mut q = sqlx::query(&sql).bind("p");
                for b in binds {
                    q = q.bind(b);
                }
                q.fetch_all(&db.reads)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.try_get::<String, _>(column).unwrap())
                    .collect::<Vec<String>>()
            }
        };
        let plan = explain(EVENTS_OF_INBOX, &[7]).await;
        let planned = outworx_hooks::plans::Planned {
            name: "one inbox row's events",
            plan: plan.clone(),
            // The events of one inbox row (its receipt and its runs), sorted by id.
            bounded: Some("one inbox row's events"),
            reads_by: Some("project"),
        };
        assert!(planned.problems().is_empty(), "{plan:?}");
        assert!(by_project(&plan), "{plan:?}");
        assert!(
            plan.iter().any(|l| l.contains("events_by_inbox")),
            "{plan:?}"
        );
        let rollup_reads = [
            (
                "the summary's whole units",
                rollups::STATS_COUNTS,
                vec![rollups::MINUTE, 0, 3_600_000],
            ),
            (
                "the summary's partial minutes",
                rollups::STATS_EVENTS,
                vec![1_000, 59_000],
            ),
            (
                "the series' counts",
                rollups::SERIES_COUNTS,
                vec![0, 3_600_000, 600_000, rollups::TEN_MINUTES],
            ),
            (
                "the series' latencies",
                rollups::SERIES_LATENCY,
                vec![0, 3_600_000, 600_000, rollups::TEN_MINUTES],
            ),
        ];
        for (name, sql, binds) in rollup_reads {
            let plan = explain(sql, &binds).await;
            let planned = outworx_hooks::plans::Planned {
                name,
                plan: plan.clone(),
                // A GROUP BY sorts the rows of the range it read, which the range bounds.
                bounded: Some("the range of one window"),
                reads_by: Some("project"),
            };
            assert!(planned.problems().is_empty(), "{name}: {plan:?}");
            assert!(by_project(&plan), "{name}: {plan:?}");
            let ranged = plan.iter().any(|l| {
                (l.starts_with("SEARCH")
                    && (l.contains("start_ms>? AND start_ms<?")
                        || l.contains("occurred_at>? AND occurred_at<?")))
                    || (l.contains("Cond:")
                        && (l.contains("(start_ms >= ") || l.contains("(occurred_at >= ")))
            });
            assert!(ranged, "{name} reads a range of its key: {plan:?}");
        }
    }

    /// A small deterministic generator for the rollup tests (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, below: i64) -> i64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            i64::try_from(self.0 % u64::try_from(below).unwrap()).unwrap()
        }
    }

    /// Random events over three days around `t0`, some before 1970, with every kind of
    /// column the rollups key on.
    fn random_events(rng: &mut Rng, t0: i64, n: usize) -> Vec<(i64, serde_json::Value)> {
        use serde_json::json;
        (0..n)
            .map(|_| {
                let provider = ["stripe", "github", "shopify"][rng.next(3) as usize];
                let status = [200, 202, 401, 500, 503][rng.next(5) as usize];
                let mut e = json!({"provider": provider, "status_code": status});
                match rng.next(5) {
                    0 => e["processing_status"] = json!("completed"),
                    1 => e["processing_status"] = json!("failed"),
                    2 => e["processing_status"] = json!("silent_drop"),
                    _ => {}
                }
                match rng.next(3) {
                    0 => e["signature_valid"] = json!(false),
                    1 => e["signature_valid"] = json!(true),
                    _ => {}
                }
                if rng.next(4) > 0 {
                    // Mostly small, some far into the binned range.
                    e["duration_ms"] = json!(match rng.next(4) {
                        0 => rng.next(5_000_000),
                        _ => rng.next(200),
                    });
                }
                if rng.next(10) == 0 {
                    e["metadata"] = json!({"duplicate": true});
                }
                (t0 + rng.next(3 * rollups::DAY) - rollups::HOUR, e)
            })
            .collect()
    }

    /// The summary and the series, read from the rollups (and the partial minutes from the
    /// events), equal a count of the events themselves, for windows on and off the units'
    /// edges, after stores and after prunes; and prunes leave no rows at zero behind.
    #[tokio::test]
    async fn the_rollups_count_exactly_what_the_events_hold() {
        let (db, dir) = temp_db("rollups").await;
        rollups_agree_with_the_events(&db).await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// The same on PostgreSQL, whose pool of 8 runs the prune and the ingests at once; then
    /// the plans of every query of the dashboard there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rollups_count_exactly_what_the_events_hold_on_postgres() {
        let pg = outworx_test_support::postgres::Postgres::start();
        let mut db = None;
        for _ in 0..100 {
            match Db::open(&pg.url()).await {
                Ok(d) => {
                    db = Some(d);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        let db = db.expect("PostgreSQL did not start");
        assert_eq!(db.backend(), crate::db::Backend::Postgres);
        rollups_agree_with_the_events(&db).await;
        serve_queries_read_index_ranges(&db).await;
    }

    async fn rollups_agree_with_the_events(db: &Db) {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let t0 = 1_000 * rollups::DAY + 12_345; // off every edge
        let old = random_events(&mut rng, t0, 600);
        for chunk in old.chunks(150) {
            db.insert_events("p", chunk).await.unwrap();
        }
        db.insert_events("q", &random_events(&mut rng, t0, 200))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let cutoff = now_ms();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let kept = random_events(&mut rng, t0, 700);
        // The first 600 of `p` and all of `q` go, in batches of 64, while the rest are
        // stored, in batches on connections of their own (on PostgreSQL).
        let ingest = futures_util::future::try_join_all(
            kept.chunks(99).map(|chunk| db.insert_events("p", chunk)),
        );
        let (pruned, _) = tokio::join!(db.prune_events_by(cutoff, 64), ingest);
        assert_eq!(pruned.unwrap(), 800);
        let zeros: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM event_counts WHERE n <= 0) + \
             (SELECT COUNT(*) FROM event_latency WHERE n <= 0) + \
             (SELECT COUNT(*) FROM event_counts WHERE project = 'q') + \
             (SELECT COUNT(*) FROM event_latency WHERE project = 'q')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(zeros, 0, "rows at zero, or a pruned project's rows, remain");

        let expect = |from: i64, to: i64| {
            let mut want = Stats::default();
            for (at, e) in &kept {
                if (from..to).contains(at) {
                    let row = EventRow::new(*at, e, String::new());
                    want.total += 1;
                    *want.by_provider.entry(row.provider).or_default() += 1;
                    *want
                        .by_status_class
                        .entry(format!("{}xx", row.status_code / 100))
                        .or_default() += 1;
                    if let Some(p) = row.processing_status {
                        *want.by_processing_status.entry(p).or_default() += 1;
                    }
                    want.signature_invalid += i64::from(row.signature_valid == Some(0));
                }
            }
            want
        };
        let mut windows = vec![
            (i64::MIN, i64::MAX),
            (t0, t0 + rollups::DAY),
            (rollups::unit_start(t0, rollups::DAY), i64::MAX),
            (i64::MIN, t0 + 7 * rollups::HOUR + 59_999),
        ];
        for _ in 0..40 {
            let a = t0 - rollups::HOUR + rng.next(3 * rollups::DAY);
            let longest = if rng.next(2) == 0 {
                90_000
            } else {
                rollups::DAY
            };
            let b = a + rng.next(longest);
            windows.push((a, b));
        }
        for (from, to) in windows {
            let open = |v: i64, end: i64| (v != end).then_some(v);
            let got = db
                .stats("p", open(from, i64::MIN), open(to, i64::MAX))
                .await
                .unwrap();
            assert_eq!(got, expect(from, to), "[{from}, {to})");
        }

        for bucket in [
            1_000,
            rollups::MINUTE * 7,
            rollups::MINUTE * 24,
            rollups::HOUR,
            5 * rollups::HOUR,
            rollups::DAY,
        ] {
            let since = t0 + rng.next(rollups::DAY);
            let grid = Grid::new(since, since + 400 * bucket.max(rollups::MINUTE), bucket);
            let got = db.series("p", &grid).await.unwrap();
            assert_eq!(
                i64::try_from(got.len()).unwrap(),
                grid.len().min(MAX_BUCKETS)
            );
            for (i, b) in got.iter().enumerate() {
                let end = (b.start_ms + grid.bucket_ms).min(grid.until_ms);
                let inside: Vec<_> = kept
                    .iter()
                    .filter(|(at, _)| (b.start_ms..end).contains(at))
                    .map(|(at, e)| EventRow::new(*at, e, String::new()))
                    .collect();
                let mut counts = BTreeMap::new();
                for row in &inside {
                    *counts.entry(row.outcome.to_owned()).or_default() += 1;
                }
                assert_eq!(b.counts, counts, "bucket {i} of {grid:?}");
                let mut bins: Vec<i64> = inside
                    .iter()
                    .filter_map(|r| r.duration_ms.map(rollups::latency_bin))
                    .collect();
                bins.sort_unstable();
                let rank = |p: usize| {
                    (!bins.is_empty()).then(|| bins[(bins.len() * p).div_ceil(100).max(1) - 1])
                };
                assert_eq!((b.p50_ms, b.p95_ms), (rank(50), rank(95)), "bucket {i}");
            }
        }

        // Everything pruned: nothing left in the rollups either.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        db.prune_events(now_ms()).await.unwrap();
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM event_counts) + (SELECT COUNT(*) FROM event_latency)",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(left, 0);
    }

    /// A row of `event_counts`, as the backfill test reads it.
    type CountRow = (String, i64, i64, String, i64, String, i64, String, i64);

    /// The migration's backfill (in SQL) builds exactly the rows the stores build (in Rust):
    /// the same units before and after 1970 and the same latency bins, far ones included.
    #[tokio::test]
    async fn the_backfill_builds_the_rollups_the_stores_build() {
        let (db, dir) = temp_db("backfill").await;
        let mut rng = Rng(42);
        let mut events = random_events(&mut rng, -rollups::HOUR, 300);
        events.extend(random_events(&mut rng, 1_000 * rollups::DAY, 300));
        for (i, d) in [64, 127, 128, 1_000, 123_456_789, 1 << 40, i64::MAX / 3]
            .into_iter()
            .enumerate()
        {
            events[i].1["duration_ms"] = serde_json::json!(d);
        }
        db.insert_events("p", &events).await.unwrap();
        db.insert_events("q", &events[..50]).await.unwrap();
        let snapshot = || async {
            let counts: Vec<CountRow> = sqlx::query_as(
                "SELECT project, span_ms, start_ms, provider, status_class, \
                     processing_status, signature_valid, outcome, n FROM event_counts \
                     ORDER BY project, span_ms, start_ms, provider, status_class, \
                     processing_status, signature_valid, outcome",
            )
            .fetch_all(&db.pool)
            .await
            .unwrap();
            let latency: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT project, span_ms, start_ms, le_ms, n FROM event_latency \
                 ORDER BY project, span_ms, start_ms, le_ms",
            )
            .fetch_all(&db.pool)
            .await
            .unwrap();
            (counts, latency)
        };
        let live = snapshot().await;
        assert!(live.0.len() > 100 && live.1.len() > 100);
        sqlx::query("DELETE FROM event_counts")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM event_latency")
            .execute(&db.pool)
            .await
            .unwrap();
        for statement in rollups::backfill_sql() {
            sqlx::query(&statement).execute(&db.pool).await.unwrap();
        }
        assert_eq!(snapshot().await, live);
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
