//! Ingest: each event of a batch is validated field by field against the wire format and its
//! size caps; the valid ones are stored, the others rejected by index.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::auth::Project;
use super::{ApiError, App};
use crate::db::EventRow;
use outworx_hooks::wire::{EVENT_FIELDS, IngestAnswer, PROCESSING_STATUSES, Rejected, json_size};

/// Checks one event; its timestamp in milliseconds since 1970, or why it is refused.
pub(crate) fn validate(e: &Value) -> Result<i64, String> {
    let obj = e.as_object().ok_or("an event must be a JSON object")?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !EVENT_FIELDS.iter().any(|(name, _)| name == k))
    {
        return Err(format!("unknown field `{unknown}`"));
    }
    let need = |k: &str| {
        obj.get(k)
            .filter(|v| !v.is_null())
            .ok_or(format!("missing field `{k}`"))
    };
    let string = |k: &str| -> Result<(), String> {
        match obj.get(k) {
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    };
    if need("provider")?.as_str().is_none_or(str::is_empty) {
        return Err("`provider` must be a non-empty string".into());
    }
    if !need("status_code")?
        .as_u64()
        .is_some_and(|s| (100..=599).contains(&s))
    {
        return Err("`status_code` must be an HTTP status (100..=599)".into());
    }
    if !need("success")?.is_boolean() {
        return Err("`success` must be a boolean".into());
    }
    for k in ["duration_ms", "payload_size"] {
        if !need(k)?.is_u64() {
            return Err(format!("`{k}` must be a non-negative integer"));
        }
    }
    let ts = need("timestamp")?
        .as_str()
        .ok_or("`timestamp` must be a string")?;
    let at = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`timestamp` is not RFC 3339: {ts:?}"))?;
    for k in [
        "event_type",
        "signature_failure_reason",
        "error_message",
        "source_url",
        "processing_status",
        "processing_marked_at",
        "processing_failure_reason",
    ] {
        string(k)?;
    }
    if let Some(p) = obj.get("processing_status").and_then(Value::as_str)
        && !PROCESSING_STATUSES.contains(&p)
    {
        return Err(format!("unknown `processing_status` {p:?}"));
    }
    match obj.get("signature_valid") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => return Err("`signature_valid` must be a boolean".into()),
    }
    for k in ["request_headers", "metadata"] {
        match obj.get(k) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => return Err(format!("`{k}` must be an object")),
        }
    }
    caps(obj)?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| "`timestamp` out of range".into())
}

/// The largest an event may be, serialized (the SDK's own limit, shared through the wire
/// module).
pub(crate) const MAX_EVENT_BYTES: usize = outworx_hooks::wire::limits::EVENT;

fn caps(obj: &serde_json::Map<String, Value>) -> Result<(), String> {
    let mut total = 0;
    for (k, v) in obj {
        let size = json_size(v);
        if let Some((_, Some(cap))) = EVENT_FIELDS.iter().find(|(name, _)| name == k)
            && size > *cap
        {
            return Err(format!("`{k}` is {size} bytes; at most {cap}"));
        }
        total += k.len() + size;
    }
    if total > MAX_EVENT_BYTES {
        return Err(format!(
            "the event is {total} bytes; at most {MAX_EVENT_BYTES}"
        ));
    }
    Ok(())
}

pub(super) async fn ingest(
    State(app): State<Arc<App>>,
    Project(project): Project,
    body: Bytes,
) -> Result<Response, ApiError> {
    /// The batch with each event left as its raw text: one event at a time is parsed, and
    /// what is stored is the text as sent.
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    let batch: Batch<'_> = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("the body must be {\"events\": [...]} in JSON"))?;
    let events = batch.events;
    if events.len() > app.config.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} events in one batch; at most {}",
                events.len(),
                app.config.max_batch
            ),
        ));
    }
    let mut valid = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for (index, raw) in events.iter().enumerate() {
        let text = raw.get();
        let checked = if text.len() > MAX_EVENT_BYTES {
            Err(format!(
                "the event is {} bytes; at most {MAX_EVENT_BYTES}",
                text.len()
            ))
        } else {
            serde_json::from_str::<Value>(text)
                .map_err(|e| e.to_string())
                .and_then(|v| validate(&v).map(|at| EventRow::new(at, &v, text.to_owned())))
        };
        match checked {
            Ok(row) => valid.push(row),
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    app.db.insert_rows(&project, &valid).await?;
    let all_valid = rejected.is_empty();
    metrics::counter!("outworx_serve_ingest_events_total", "result" => "accepted")
        .increment(valid.len() as u64);
    metrics::counter!("outworx_serve_ingest_events_total", "result" => "rejected")
        .increment(rejected.len() as u64);
    let answer = IngestAnswer {
        accepted: valid.len() as u64,
        rejected,
    };
    Ok(if all_valid {
        Json(answer).into_response()
    } else {
        // The valid ones are stored; a retry of the batch would duplicate them.
        (StatusCode::UNPROCESSABLE_ENTITY, Json(answer)).into_response()
    })
}
