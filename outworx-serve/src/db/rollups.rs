//! Rollups: each project's events counted per minute, per ten minutes, per hour and per UTC
//! day, with a histogram of their latencies, kept in the transaction that stores or prunes
//! the events they count. The dashboard's summary and chart read a few rows per unit of time from them,
//! so their cost follows the window's length, never the number of events in it.
//!
//! - `event_counts`: one row per unit, provider, status class, processing status, signature
//!   verdict and outcome, with how many events it holds.
//! - `event_latency`: one row per unit and latency bin ([`latency_bin`]).
//!
//! A window that does not start or end on a minute counts its partial minutes from the
//! events themselves (by the `(project, occurred_at)` index): at most a minute at each end.

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use sqlx::Row;

use super::DbError;

/// A minute, ten minutes, an hour and a day in milliseconds: the units of the rollups.
pub(crate) const MINUTE: i64 = 60_000;
pub(crate) const TEN_MINUTES: i64 = 600_000;
pub(crate) const HOUR: i64 = 3_600_000;
pub(crate) const DAY: i64 = 86_400_000;
/// Coarsest first: how a window is cut into pieces.
const SPANS: [i64; 4] = [DAY, HOUR, TEN_MINUTES, MINUTE];

/// Rows per multi-row statement: at most 12 values each, well below SQLite's limit of bound
/// values (32,766) and PostgreSQL's (65,535).
pub(crate) const ROWS_PER_STATEMENT: usize = 100;

/// The latency bin of `ms`: the largest latency it holds. Exact below 64 ms, then 16 bins per
/// doubling, so a percentile read from the bins is at most 1/16 (6.25%) above the true one.
///
/// ```text
/// 0..=63 -> itself, 64..=67 -> 67, 68..=71 -> 71, .., 1000 -> 1023, 1024 -> 1087
/// ```
pub(crate) fn latency_bin(ms: i64) -> i64 {
    let ms = ms.max(0);
    if ms < 64 {
        return ms;
    }
    let width = 1i64 << (63 - i64::from(ms.leading_zeros()) - 4);
    ms - ms % width + (width - 1)
}

/// [`latency_bin`] in SQL, of the column `col` (the backfill of existing events).
fn latency_bin_sql(col: &str) -> String {
    let mut sql = format!("CASE WHEN {col} < 64 THEN {col}");
    for k in 6..62 {
        let width = 1i64 << (k - 4);
        sql.push_str(&format!(
            " WHEN {col} < {} THEN {col} - {col} % {width} + {}",
            1i64 << (k + 1),
            width - 1
        ));
    }
    let width = 1i64 << 58;
    sql.push_str(&format!(
        " ELSE {col} - {col} % {width} + {} END",
        width - 1
    ));
    sql
}

/// The start of the unit of `span` that holds `at` (floored; saturating at the ends).
pub(crate) fn unit_start(at: i64, span: i64) -> i64 {
    at.saturating_sub(at.rem_euclid(span))
}

/// `at` rounded up to a multiple of `span` (saturating).
fn unit_ceil(at: i64, span: i64) -> i64 {
    match at.rem_euclid(span) {
        0 => at,
        r => at.saturating_add(span - r),
    }
}

/// A piece of a window and what answers it: the rollups of `span`, or the events (`span`
/// 0). The rollup pieces hold whole units; `i64::MIN` and `i64::MAX` are open ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) span: i64,
    pub(crate) from: i64,
    pub(crate) to: i64,
}

/// `[from, to)` cut into whole days, then whole hours, ten minutes and minutes at its ends,
/// then the partial minutes at its very ends: at most 9 pieces, each a range of an index.
pub(crate) fn cover(from: i64, to: i64) -> Vec<Piece> {
    let mut out = Vec::new();
    split(from, to, 0, &mut out);
    out
}

fn split(from: i64, to: i64, level: usize, out: &mut Vec<Piece>) {
    if from >= to {
        return;
    }
    let Some(&span) = SPANS.get(level) else {
        out.push(Piece { span: 0, from, to });
        return;
    };
    let a = if from == i64::MIN {
        from
    } else {
        unit_ceil(from, span)
    };
    let b = if to == i64::MAX {
        to
    } else {
        unit_start(to, span)
    };
    if a >= b {
        return split(from, to, level + 1, out);
    }
    split(from, a, level + 1, out);
    out.push(Piece {
        span,
        from: a,
        to: b,
    });
    split(b, to, level + 1, out);
}

/// The buckets of a series, on the rollups' units: a bucket of a day or more is whole days
/// (UTC), of an hour or more whole hours, of ten minutes or more whole ten minutes, otherwise
/// whole minutes; the window starts and ends on that unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// The first bucket's start, milliseconds since 1970.
    pub since_ms: i64,
    /// The window's end (exclusive): the last bucket may be shorter than the others.
    pub until_ms: i64,
    /// The length of a bucket.
    pub bucket_ms: i64,
    /// The rollup unit the buckets are made of.
    pub(crate) span_ms: i64,
}

/// The furthest from 1970 a grid reaches, either way: about 35,000 years, far past what an
/// RFC 3339 timestamp can say, and far from overflowing the arithmetic of its buckets.
const FURTHEST: i64 = 1 << 50;

impl Grid {
    /// The bucket `bucket_ms` rounds up to, and the unit it is made of: whole minutes; from
    /// ten minutes, whole ten minutes; from an hour, whole hours; from a day, whole days.
    ///
    /// ```
    /// use outworx_serve::db::Grid;
    /// assert_eq!(Grid::bucket(90_000), 120_000);
    /// assert_eq!(Grid::bucket(1_440_000), 1_800_000);
    /// assert_eq!(Grid::bucket(3_599_000), 3_600_000);
    /// assert_eq!(Grid::bucket(5_400_000), 7_200_000);
    /// ```
    pub fn bucket(bucket_ms: i64) -> i64 {
        Self::bucket_and_unit(bucket_ms).0
    }

    fn bucket_and_unit(bucket_ms: i64) -> (i64, i64) {
        let mut bucket = unit_ceil(bucket_ms.clamp(1, FURTHEST), MINUTE);
        let mut unit = MINUTE;
        for span in [TEN_MINUTES, HOUR, DAY] {
            if bucket >= span {
                bucket = unit_ceil(bucket, span);
                unit = span;
            }
        }
        (bucket, unit)
    }

    /// The grid for the window `[since_ms, until_ms)` in buckets of about `bucket_ms`: the
    /// bucket rounded up as [`Grid::bucket`] says, the window widened to its unit.
    ///
    /// ```
    /// use outworx_serve::db::Grid;
    /// let g = Grid::new(1_000, 3_599_000, 90_000);
    /// assert_eq!((g.since_ms, g.until_ms, g.bucket_ms), (0, 3_600_000, 120_000));
    /// assert_eq!(g.len(), 30);
    /// ```
    pub fn new(since_ms: i64, until_ms: i64, bucket_ms: i64) -> Grid {
        let (bucket_ms, span_ms) = Self::bucket_and_unit(bucket_ms);
        let since_ms = unit_start(since_ms.clamp(-FURTHEST, FURTHEST), span_ms);
        Grid {
            since_ms,
            until_ms: unit_ceil(until_ms.clamp(-FURTHEST, FURTHEST), span_ms).max(since_ms),
            bucket_ms,
            span_ms,
        }
    }

    /// How many buckets (the last one may be partial).
    pub fn len(&self) -> i64 {
        (self.until_ms - self.since_ms + self.bucket_ms - 1) / self.bucket_ms
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many units (minutes, ten minutes, hours or days) the grid reads: what its cost
    /// follows.
    pub fn units(&self) -> i64 {
        (self.until_ms - self.since_ms) / self.span_ms
    }
}

/// The nearest-rank percentile `p` (of 100) of a histogram of `(bin, count)`, ascending.
pub(crate) fn percentile(bins: &[(i64, i64)], p: i64) -> Option<i64> {
    let total: i64 = bins.iter().map(|(_, n)| n).sum();
    if total <= 0 {
        return None;
    }
    // The smallest rank r with r * 100 >= total * p.
    let rank = (total * p + 99) / 100;
    let mut seen = 0;
    for (bin, n) in bins {
        seen += n;
        if seen >= rank.max(1) {
            return Some(*bin);
        }
    }
    bins.last().map(|(bin, _)| *bin)
}

/// The key of an `event_counts` row: project, span, start, provider, status class,
/// processing status (`""`: not marked), signature verdict (-1: not reported), outcome.
type CountKey = (String, i64, i64, String, i64, String, i64, String);
/// The key of an `event_latency` row: project, span, start, bin.
type LatencyKey = (String, i64, i64, i64);

/// What a batch of stored (+1) or deleted (-1) events changes in the rollups, summed per row
/// before anything is written.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: BTreeMap<CountKey, i64>,
    latency: BTreeMap<LatencyKey, i64>,
}

/// The columns of one event that the rollups count.
pub(crate) struct Counted<'a> {
    pub(crate) project: &'a str,
    pub(crate) occurred_at: i64,
    pub(crate) provider: &'a str,
    pub(crate) status_code: i64,
    pub(crate) processing_status: Option<&'a str>,
    pub(crate) signature_valid: Option<i64>,
    pub(crate) outcome: Option<&'a str>,
    pub(crate) duration_ms: Option<i64>,
}

impl Tally {
    /// Counts `e` `delta` times (+1 stored, -1 deleted) in each unit it falls in.
    pub(crate) fn add(&mut self, e: &Counted<'_>, delta: i64) {
        for span in SPANS {
            let start = unit_start(e.occurred_at, span);
            let key = (
                e.project.to_owned(),
                span,
                start,
                e.provider.to_owned(),
                e.status_code / 100,
                e.processing_status.unwrap_or_default().to_owned(),
                e.signature_valid.unwrap_or(-1),
                e.outcome.unwrap_or("unknown").to_owned(),
            );
            *self.counts.entry(key).or_default() += delta;
            if let Some(ms) = e.duration_ms {
                let key = (e.project.to_owned(), span, start, latency_bin(ms));
                *self.latency.entry(key).or_default() += delta;
            }
        }
    }

    /// Writes the tally in the caller's transaction: multi-row upserts that add to the
    /// counts, then (after a deletion) the rows left at zero are deleted.
    pub(crate) async fn apply(self, tx: &mut AnyConnection) -> Result<(), DbError> {
        let counts: Vec<_> = self.counts.into_iter().filter(|(_, n)| *n != 0).collect();
        let latency: Vec<_> = self.latency.into_iter().filter(|(_, n)| *n != 0).collect();
        // Per project and unit length, the units a deletion took from: their rows at zero
        // are deleted below, by key.
        let mut emptied: BTreeMap<(&str, i64), std::collections::BTreeSet<i64>> = BTreeMap::new();
        for chunk in counts.chunks(ROWS_PER_STATEMENT) {
            let sql = upsert_sql(
                "event_counts (project, span_ms, start_ms, provider, status_class, \
                 processing_status, signature_valid, outcome, n)",
                9,
                chunk.len(),
                "project, span_ms, start_ms, provider, status_class, processing_status, \
                 signature_valid, outcome",
                "event_counts",
            );
            let mut q = sqlx::query(&sql);
            for ((project, span, start, provider, class, processing, signature, outcome), n) in
                chunk
            {
                if *n < 0 {
                    emptied
                        .entry((project.as_str(), *span))
                        .or_default()
                        .insert(*start);
                }
                q = q
                    .bind(project.as_str())
                    .bind(*span)
                    .bind(*start)
                    .bind(provider.as_str())
                    .bind(*class)
                    .bind(processing.as_str())
                    .bind(*signature)
                    .bind(outcome.as_str())
                    .bind(*n);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in latency.chunks(ROWS_PER_STATEMENT) {
            let sql = upsert_sql(
                "event_latency (project, span_ms, start_ms, le_ms, n)",
                5,
                chunk.len(),
                "project, span_ms, start_ms, le_ms",
                "event_latency",
            );
            let mut q = sqlx::query(&sql);
            for ((project, span, start, bin), n) in chunk {
                q = q
                    .bind(project.as_str())
                    .bind(*span)
                    .bind(*start)
                    .bind(*bin)
                    .bind(*n);
            }
            q.execute(&mut *tx).await?;
        }
        // A deletion may leave rows at zero: remove them, by the units it took from (a list
        // of keys of the primary key, read by seeks). Below zero only if the counts had
        // drifted from the events; those rows go too, so a summary never shows a negative.
        for ((project, span), starts) in emptied {
            let starts: Vec<i64> = starts.into_iter().collect();
            for chunk in starts.chunks(ROWS_PER_STATEMENT) {
                let list = (0..chunk.len())
                    .map(|i| format!("${}", i + 3))
                    .collect::<Vec<_>>()
                    .join(", ");
                for table in ["event_counts", "event_latency"] {
                    let sql = format!(
                        "DELETE FROM {table} WHERE project = $1 AND span_ms = $2 \
                         AND start_ms IN ({list}) AND n <= 0"
                    );
                    let mut q = sqlx::query(&sql).bind(project).bind(span);
                    for start in chunk {
                        q = q.bind(*start);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
        }
        Ok(())
    }
}

/// `INSERT INTO {into} VALUES (..), .. ON CONFLICT ({key}) DO UPDATE SET n = n + new n`,
/// with numbered placeholders (the `Any` driver passes them through to both backends).
fn upsert_sql(into: &str, columns: usize, rows: usize, key: &str, table: &str) -> String {
    format!(
        "INSERT INTO {into} VALUES {} ON CONFLICT ({key}) DO UPDATE SET n = {table}.n + excluded.n",
        values_sql(columns, rows)
    )
}

/// `($1, .., $columns), ($columns + 1, ..), ..`: `rows` rows of numbered placeholders.
pub(crate) fn values_sql(columns: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * columns + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// The statements that build the rollups of the events already stored (the migration that
/// adds them), with the same units, keys and bins as [`Tally::add`].
pub(crate) fn backfill_sql() -> Vec<String> {
    let mut out = Vec::new();
    for span in SPANS {
        let start = format!("occurred_at - ((occurred_at % {span}) + {span}) % {span}");
        out.push(format!(
            "INSERT INTO event_counts (project, span_ms, start_ms, provider, status_class, \
             processing_status, signature_valid, outcome, n) \
             SELECT project, {span}, {start}, provider, status_code / 100, \
             COALESCE(processing_status, ''), COALESCE(signature_valid, -1), \
             COALESCE(outcome, 'unknown'), COUNT(*) FROM events \
             GROUP BY project, {start}, provider, status_code / 100, \
             COALESCE(processing_status, ''), COALESCE(signature_valid, -1), \
             COALESCE(outcome, 'unknown')"
        ));
        let bin = latency_bin_sql("duration_ms");
        out.push(format!(
            "INSERT INTO event_latency (project, span_ms, start_ms, le_ms, n) \
             SELECT project, {span}, {start}, {bin}, COUNT(*) FROM events \
             WHERE duration_ms IS NOT NULL GROUP BY project, {start}, {bin}"
        ));
    }
    out
}

/// Reads `(bucket index, outcome, n)` of a grid from the counts.
pub(crate) const SERIES_COUNTS: &str = "SELECT (start_ms - $2) / $4, outcome, \
     CAST(SUM(n) AS BIGINT) FROM event_counts WHERE project = $1 AND span_ms = $5 \
     AND start_ms >= $2 AND start_ms < $3 GROUP BY (start_ms - $2) / $4, outcome";

/// Reads `(bucket index, bin, n)` of a grid from the latency histogram.
pub(crate) const SERIES_LATENCY: &str = "SELECT (start_ms - $2) / $4, le_ms, \
     CAST(SUM(n) AS BIGINT) FROM event_latency WHERE project = $1 AND span_ms = $5 \
     AND start_ms >= $2 AND start_ms < $3 GROUP BY (start_ms - $2) / $4, le_ms";

/// Reads a piece of a window's summary from the counts: `(provider, status class,
/// processing status, signature verdict, n)`.
pub(crate) const STATS_COUNTS: &str = "SELECT provider, status_class, processing_status, \
     signature_valid, CAST(SUM(n) AS BIGINT) FROM event_counts WHERE project = $1 \
     AND span_ms = $2 AND start_ms >= $3 AND start_ms < $4 \
     GROUP BY provider, status_class, processing_status, signature_valid";

/// The same from the events of a partial minute.
pub(crate) const STATS_EVENTS: &str = "SELECT provider, status_code / 100, \
     COALESCE(processing_status, ''), COALESCE(signature_valid, -1), COUNT(*) FROM events \
     WHERE project = $1 AND occurred_at >= $2 AND occurred_at < $3 \
     GROUP BY provider, status_code / 100, COALESCE(processing_status, ''), \
     COALESCE(signature_valid, -1)";

/// One summary row folded into `stats`.
pub(crate) fn fold(stats: &mut super::Stats, row: &sqlx::any::AnyRow) -> Result<(), DbError> {
    let provider: String = row.try_get(0)?;
    let class: i64 = row.try_get(1)?;
    let processing: String = row.try_get(2)?;
    let signature: i64 = row.try_get(3)?;
    let n: i64 = row.try_get(4)?;
    stats.total += n;
    *stats.by_provider.entry(provider).or_default() += n;
    *stats
        .by_status_class
        .entry(format!("{class}xx"))
        .or_default() += n;
    if !processing.is_empty() {
        *stats.by_processing_status.entry(processing).or_default() += n;
    }
    if signature == 0 {
        stats.signature_invalid += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_bins_are_exact_low_and_within_a_sixteenth_above() {
        for ms in 0..64 {
            assert_eq!(latency_bin(ms), ms);
        }
        assert_eq!(latency_bin(-5), 0);
        assert_eq!(
            (latency_bin(64), latency_bin(67), latency_bin(68)),
            (67, 67, 71)
        );
        assert_eq!((latency_bin(1000), latency_bin(1024)), (1023, 1087));
        let mut previous = -1;
        for ms in (0..5_000_000).step_by(7).chain([i64::MAX / 2, i64::MAX]) {
            let bin = latency_bin(ms);
            assert!(bin >= ms && bin - ms <= ms / 16, "{ms} -> {bin}");
            assert!(bin >= previous, "bins ascend");
            assert_eq!(latency_bin(bin), bin, "a bin is its own bin");
            previous = bin;
        }
    }

    #[test]
    fn a_window_is_cut_into_whole_units_and_partial_minutes() {
        let p = |span, from, to| Piece { span, from, to };
        // 00:00:30 on day 1 to 01:02:10 on day 3.
        let from = DAY + 30_000;
        let to = 3 * DAY + HOUR + 2 * MINUTE + 10_000;
        assert_eq!(
            cover(from, to),
            [
                p(0, from, DAY + MINUTE),
                p(MINUTE, DAY + MINUTE, DAY + TEN_MINUTES),
                p(TEN_MINUTES, DAY + TEN_MINUTES, DAY + HOUR),
                p(HOUR, DAY + HOUR, 2 * DAY),
                p(DAY, 2 * DAY, 3 * DAY),
                p(HOUR, 3 * DAY, 3 * DAY + HOUR),
                p(MINUTE, 3 * DAY + HOUR, 3 * DAY + HOUR + 2 * MINUTE),
                p(0, 3 * DAY + HOUR + 2 * MINUTE, to),
            ]
        );
        // Within a minute: the events alone; aligned: one piece; open ends: no partial end.
        assert_eq!(cover(10, 20), [p(0, 10, 20)]);
        assert_eq!(cover(HOUR, 2 * HOUR), [p(HOUR, HOUR, 2 * HOUR)]);
        assert_eq!(cover(i64::MIN, i64::MAX), [p(DAY, i64::MIN, i64::MAX)]);
        assert_eq!(
            cover(i64::MIN, DAY + 5),
            [p(DAY, i64::MIN, DAY), p(0, DAY, DAY + 5)]
        );
        assert!(cover(5, 5).is_empty() && cover(6, 5).is_empty());
        // Extreme ends never overflow, and the pieces tile the window.
        for (from, to) in [
            (i64::MIN + 1, i64::MAX - 1),
            (-DAY - 1, DAY + 1),
            (-5, 7 * DAY - 3),
        ] {
            let pieces = cover(from, to);
            assert_eq!(pieces.first().map(|p| p.from), Some(from));
            assert_eq!(pieces.last().map(|p| p.to), Some(to));
            assert!(pieces.windows(2).all(|w| w[0].to == w[1].from));
            assert!(pieces.len() <= 9);
        }
    }

    #[test]
    fn a_grid_is_made_of_whole_units() {
        let g = Grid::new(DAY + 1, 2 * DAY - 1, 1_000);
        assert_eq!(
            (g.since_ms, g.until_ms, g.bucket_ms),
            (DAY, 2 * DAY, MINUTE)
        );
        assert_eq!(g.len(), 1440);
        let g = Grid::new(DAY + HOUR + 5, 2 * DAY, 90 * MINUTE);
        assert_eq!((g.since_ms, g.bucket_ms), (DAY + HOUR, 2 * HOUR));
        // The unit is chosen after rounding: just under an hour is an hour of hour units.
        let g = Grid::new(0, DAY, HOUR - 1_000);
        assert_eq!((g.bucket_ms, g.span_ms, g.units()), (HOUR, HOUR, 24));
        let g = Grid::new(0, 2 * DAY, DAY - 1_000);
        assert_eq!((g.bucket_ms, g.span_ms, g.units()), (DAY, DAY, 2));
        assert_eq!(
            Grid::new(0, DAY, 59 * MINUTE).units(),
            24,
            "59 minutes: an hour"
        );
        let g = Grid::new(0, DAY, 24 * MINUTE);
        assert_eq!(
            (g.bucket_ms, g.span_ms, g.units()),
            (30 * MINUTE, TEN_MINUTES, 144)
        );
        assert_eq!(Grid::new(0, DAY, 9 * MINUTE).units(), 1_440);
        let g = Grid::new(5, 366 * DAY, 6 * DAY + 1);
        assert_eq!((g.since_ms, g.bucket_ms, g.len()), (0, 7 * DAY, 53));
        assert!(Grid::new(MINUTE, MINUTE, MINUTE).is_empty());
        assert_eq!(Grid::new(10, 10, MINUTE).len(), 1, "widened to its minute");
        // Hostile values neither overflow nor divide by zero.
        let g = Grid::new(i64::MIN, i64::MAX, 0);
        assert!(!g.is_empty() && g.bucket_ms == MINUTE && g.since_ms > -FURTHEST - MINUTE);
        let g = Grid::new(i64::MAX, i64::MIN, i64::MAX);
        assert!(g.is_empty() && g.bucket_ms % DAY == 0);
    }

    #[test]
    fn percentiles_by_nearest_rank_over_bins() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[(5, 1)], 95), Some(5));
        assert_eq!(percentile(&[(1, 1), (2, 1)], 50), Some(1));
        assert_eq!(percentile(&[(1, 1), (2, 1)], 95), Some(2));
        let bins: Vec<(i64, i64)> = (1..=20).map(|d| (d, 1)).collect();
        assert_eq!(
            (percentile(&bins, 50), percentile(&bins, 95)),
            (Some(10), Some(19))
        );
    }
}
