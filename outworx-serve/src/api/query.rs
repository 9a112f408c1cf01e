//! The query API: the project's stored events, newest first and filtered, and their counts
//! for the dashboard.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::Project;
use super::{ApiError, App, StrictQuery};
use crate::db::EventFilter;

pub(super) async fn events(
    State(app): State<Arc<App>>,
    Project(project): Project,
    StrictQuery(filter): StrictQuery<EventFilter>,
) -> Result<Response, ApiError> {
    let (since, until) = window(&filter.since, &filter.until)?;
    let rows = app.db.events(&project, &filter, since, until).await?;
    let next = rows.last().map(|r| r.id);
    let events: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({ "id": r.id, "received_at": r.received_at, "event": r.event }))
        .collect();
    Ok(Json(json!({ "events": events, "next_before_id": next })).into_response())
}

/// A time window, `since` and `until` in RFC 3339, and nothing else: the query of
/// `/api/stats` and of an endpoint's replay.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WindowQuery {
    pub(super) since: Option<String>,
    pub(super) until: Option<String>,
}

/// Counts of the project's events in a time window, for the dashboard's summary.
pub(super) async fn stats(
    State(app): State<Arc<App>>,
    Project(project): Project,
    StrictQuery(q): StrictQuery<WindowQuery>,
) -> Result<Response, ApiError> {
    let (since, until) = window(&q.since, &q.until)?;
    Ok(Json(app.db.stats(&project, since, until).await?).into_response())
}

/// The window and bucket of `/api/stats/series`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeriesQuery {
    since: Option<String>,
    until: Option<String>,
    /// Seconds per bucket.
    bucket: Option<String>,
}

/// The most units (minutes, ten minutes, hours or days) one series reads: its cost, whatever
/// the window holds. The dashboard's windows read at most 366 (a year of days); hour buckets
/// reach it at about 83 days.
const MAX_SERIES_UNITS: i64 = 2_000;

/// The longest window of one series: a year and a day.
const MAX_SERIES_WINDOW_MS: i64 = 366 * 86_400_000;

/// The project's events over time, in buckets: counts per outcome and p50/p95 latency, for
/// the dashboard's charts. The window defaults to the last 24 hours (its start aligned to
/// the bucket, so refreshes keep their edges), the bucket to a sixtieth of the window in
/// whole seconds; at most 1,000 buckets and 366 days. The bucket is then rounded up to whole
/// minutes, ten minutes, hours or days ([`Grid`](crate::db::Grid)), the window widened to that
/// unit, and the answer says which grid it used.
pub(super) async fn series(
    State(app): State<Arc<App>>,
    Project(project): Project,
    StrictQuery(q): StrictQuery<SeriesQuery>,
) -> Result<Response, ApiError> {
    let (since, until) = window(&q.since, &q.until)?;
    let until = until.unwrap_or_else(crate::db::now_ms);
    let span = since.map_or(86_400_000, |s| until - s);
    if span <= 0 {
        return Err(ApiError::bad_request("`since` must be before `until`"));
    }
    if span > MAX_SERIES_WINDOW_MS {
        return Err(ApiError::bad_request("the window is longer than 366 days"));
    }
    let bucket_ms = match q.bucket.as_deref() {
        None => (span / 60).max(1000).div_euclid(1000) * 1000,
        Some(b) => match b.parse::<i64>() {
            Ok(s) if (1..=31_536_000).contains(&s) => s * 1000,
            _ => {
                return Err(ApiError::bad_request(
                    "`bucket` is a whole number of seconds, 1 to 31536000",
                ));
            }
        },
    };
    // Buckets of whole minutes, ten minutes, hours or days: the units the counts are kept in.
    let bucket_ms = crate::db::Grid::bucket(bucket_ms);
    // A default start is aligned down to the bucket: the same edges on every refresh.
    let since = since.unwrap_or_else(|| (until - span).div_euclid(bucket_ms) * bucket_ms);
    if (until - since + bucket_ms - 1) / bucket_ms > crate::db::MAX_BUCKETS {
        return Err(ApiError::bad_request(
            "more than 1000 buckets: widen `bucket` or narrow the window",
        ));
    }
    // The window widened to its unit; what it reads follows its units, which stay bounded.
    let grid = crate::db::Grid::new(since, until, bucket_ms);
    if grid.units() > MAX_SERIES_UNITS {
        return Err(ApiError::bad_request(
            "the window holds more than 2000 of its buckets' units (minutes for buckets under \
             10 minutes, ten minutes under an hour, hours under a day): widen `bucket` (a day's \
             buckets read days), or narrow the window",
        ));
    }
    let buckets = app.db.series(&project, &grid).await?;
    Ok(Json(json!({
        "since_ms": grid.since_ms,
        "until_ms": grid.until_ms,
        "bucket_ms": grid.bucket_ms,
        "buckets": buckets,
    }))
    .into_response())
}

/// `since` / `until` (RFC 3339) as milliseconds since 1970; a 400 names the bad one.
pub(super) fn window(
    since: &Option<String>,
    until: &Option<String>,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let ms = |s: &Option<String>, name: &str| {
        s.as_deref()
            .map(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map(|t| {
                        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
                    })
                    .map_err(|_| ApiError::bad_request(format!("`{name}` is not RFC 3339")))
            })
            .transpose()
    };
    Ok((ms(since, "since")?, ms(until, "until")?))
}
