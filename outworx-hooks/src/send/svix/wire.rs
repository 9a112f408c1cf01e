//! Svix's request and response shapes (camelCase on the wire), and the checks on what
//! comes in that Svix makes.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::SvixError;
use super::store::{AppRow, AttemptRow, DeliveryRow, EventTypeRow, MessageRow};
use crate::send::Endpoint;

/// `Some(None)` for an explicit `null` (clear it), `None` when absent (keep it).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A field name as Svix writes it (`event_types` is `eventTypes`).
pub(crate) fn camel(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut up = false;
    for c in field.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// RFC 3339 in UTC, as Svix answers times.
pub(crate) fn time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// An RFC 3339 time in ms since 1970; one without an offset is UTC (Python's naive
/// datetimes are sent so).
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| {
            let fmt = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
            );
            time::PrimitiveDateTime::parse(s, &fmt).map(time::PrimitiveDateTime::assume_utc)
        })
        .ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A time in a body: RFC 3339, checked.
pub(crate) fn body_time(field: &str, s: &str) -> Result<i64, SvixError> {
    parse_time(s).ok_or_else(|| {
        SvixError::invalid(&["body", field], "input is not a valid RFC 3339 datetime")
    })
}

/// Svix's metadata: string values, at most 4 KiB as JSON.
pub(crate) type Metadata = BTreeMap<String, String>;

pub(crate) fn check_metadata(m: &Metadata) -> Result<(), SvixError> {
    if serde_json::to_vec(m).map_or(usize::MAX, |v| v.len()) > 4096 {
        return Err(SvixError::invalid(
            &["body", "metadata"],
            "metadata must be less than or equal to 4096 bytes",
        ));
    }
    Ok(())
}

/// A uid: 1 to 256 bytes of `[A-Za-z0-9-_.]`, not starting with the id prefix.
pub(crate) fn check_uid(uid: &str, prefix: &str) -> Result<(), SvixError> {
    if !crate::send::filter::is_name(uid, 256) {
        return Err(SvixError::invalid(
            &["body", "uid", "__all__"],
            "String must match the following pattern: [a-zA-Z0-9\\-_.].",
        ));
    }
    if uid.starts_with(prefix) {
        return Err(SvixError::Validation {
            loc: vec!["body".into(), "uid".into(), "__all__".into()],
            msg: "Uids are not allowed to have the same prefix as the ID. Prefix with _?".into(),
            kind: "invalid_uid_prefix",
        });
    }
    Ok(())
}

/// A rate limit: at least 1.
fn check_rate(rate: Option<u16>) -> Result<(), SvixError> {
    if rate == Some(0) {
        return Err(SvixError::invalid(
            &["body", "rateLimit"],
            "rate limits are at least 1",
        ));
    }
    Ok(())
}

/// Free text: no control characters 0x00-0x08.
pub(crate) fn check_text(field: &str, s: &str, max: usize) -> Result<(), SvixError> {
    if s.chars().any(|c| c < '\u{9}') {
        return Err(SvixError::invalid(
            &["body", field],
            "Control characters 0x00-0x08 not allowed.",
        ));
    }
    if s.len() > max {
        return Err(SvixError::invalid(
            &["body", field],
            format!("at most {max} bytes"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApplicationIn {
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) rate_limit: Option<u16>,
    pub(crate) throttle_rate: Option<u16>,
    #[serde(default)]
    pub(crate) metadata: Option<Metadata>,
    /// Not Svix's: the header names this application's endpoints are signed under, `svix`
    /// (`svix-id`, ...) or `webhook` (`webhook-id`, ...); absent: as they are (or the default).
    pub(crate) signature_headers: Option<String>,
}

impl ApplicationIn {
    pub(crate) fn check(&self) -> Result<(), SvixError> {
        if self.name.is_empty() {
            return Err(SvixError::invalid(
                &["body", "name"],
                "Application names must be at least one character",
            ));
        }
        check_text("name", &self.name, 256)?;
        if let Some(uid) = &self.uid {
            check_uid(uid, "app_")?;
        }
        check_rate(self.rate())?;
        check_signature_headers(self.signature_headers.as_deref())?;
        check_metadata(self.metadata.as_ref().unwrap_or(&Metadata::new()))
    }

    pub(crate) fn rate(&self) -> Option<u16> {
        self.throttle_rate.or(self.rate_limit)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApplicationPatch {
    pub(crate) name: Option<String>,
    pub(crate) signature_headers: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) uid: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) rate_limit: Option<Option<u16>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) throttle_rate: Option<Option<u16>>,
    pub(crate) metadata: Option<Metadata>,
}

/// `svix` or `webhook`.
pub(crate) fn check_signature_headers(h: Option<&str>) -> Result<(), SvixError> {
    match h {
        None | Some("svix" | "webhook") => Ok(()),
        Some(_) => Err(SvixError::invalid(
            &["body", "signatureHeaders"],
            "signatureHeaders is `svix` (svix-id, ...) or `webhook` (webhook-id, ...)",
        )),
    }
}

pub(crate) fn app_out(a: &AppRow) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(uid) = &a.uid {
        out.insert("uid".into(), json!(uid));
    }
    out.insert("name".into(), json!(a.name));
    if let Some(r) = a.rate_limit {
        out.insert("rateLimit".into(), json!(r));
    }
    out.insert("throttleRate".into(), json!(a.rate_limit));
    out.insert("id".into(), json!(a.id));
    out.insert("createdAt".into(), json!(time(a.created_at)));
    out.insert("updatedAt".into(), json!(time(a.updated_at)));
    out.insert("metadata".into(), json!(a.metadata));
    if let Some(h) = &a.signature_headers {
        out.insert("signatureHeaders".into(), json!(h));
    }
    Value::Object(out)
}

/// An endpoint, as created (POST) or replaced (PUT, without `secret`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointIn {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) description: String,
    pub(crate) uid: Option<String>,
    pub(crate) rate_limit: Option<u16>,
    pub(crate) throttle_rate: Option<u16>,
    /// `None` on a PUT leaves it as it is (an endpoint an operator or the worker disabled
    /// stays disabled); a create takes it as `false`.
    pub(crate) disabled: Option<bool>,
    #[serde(alias = "filterTypes")]
    pub(crate) event_types: Option<Vec<String>>,
    pub(crate) channels: Option<Vec<String>>,
    pub(crate) secret: Option<String>,
    #[serde(default)]
    pub(crate) metadata: Option<Metadata>,
    /// Sent by Svix's 2.x clients; the open-source server ignores it, this one keeps it.
    pub(crate) headers: Option<BTreeMap<String, String>>,
}

impl EndpointIn {
    pub(crate) fn rate(&self) -> Option<u16> {
        self.throttle_rate.or(self.rate_limit)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointPatch {
    pub(crate) url: Option<String>,
    pub(crate) description: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) uid: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) rate_limit: Option<Option<u16>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) throttle_rate: Option<Option<u16>>,
    pub(crate) disabled: Option<bool>,
    #[serde(default, alias = "filterTypes", deserialize_with = "nullable")]
    pub(crate) event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) channels: Option<Option<Vec<String>>>,
    pub(crate) metadata: Option<Metadata>,
}

/// Checks what Svix checks of an endpoint's own fields (the URL's target is the emitter's
/// policy's, the event types' existence the handler's).
pub(crate) fn check_endpoint(
    url: &str,
    uid: Option<&str>,
    rate: Option<u16>,
    event_types: Option<&[String]>,
    metadata: &Metadata,
) -> Result<(), SvixError> {
    match url.split_once("://") {
        Some(("http" | "https", _)) => {}
        _ => {
            return Err(SvixError::invalid(
                &["body", "url"],
                "Endpoint URL schemes must be http or https",
            ));
        }
    }
    if let Some(uid) = uid {
        check_uid(uid, "ep_")?;
    }
    check_rate(rate)?;
    if event_types.is_some_and(<[String]>::is_empty) {
        return Err(SvixError::invalid(
            &["body", "eventTypes"],
            "eventTypes can't be empty, it must have at least one item.",
        ));
    }
    for t in event_types.unwrap_or_default() {
        if !crate::send::filter::is_name(t, 256) {
            return Err(SvixError::invalid(
                &["body", "eventTypes"],
                "String must match the following pattern: [a-zA-Z0-9\\-_.].",
            ));
        }
    }
    check_metadata(metadata)
}

/// Svix's metadata, as stored in the endpoint's JSON object.
pub(crate) fn metadata_json(m: Metadata) -> serde_json::Map<String, Value> {
    m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

fn metadata_out(m: &serde_json::Map<String, Value>) -> Value {
    // Written by this API as strings; an endpoint made elsewhere may hold other JSON, which
    // is answered as its text so Svix's clients (string maps) read it.
    Value::Object(
        m.iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => Value::String(s.clone()),
                    other => Value::String(other.to_string()),
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

pub(crate) fn endpoint_out(e: &Endpoint) -> Value {
    let types = (!e.events.is_empty()).then(|| e.events.clone());
    json!({
        "id": e.id,
        "description": e.description,
        "rateLimit": e.rate_limit,
        "throttleRate": e.rate_limit,
        "uid": e.uid,
        "url": e.url,
        "version": 1,
        "disabled": !e.enabled,
        "eventTypes": types,
        "filterTypes": types,
        "channels": e.channels,
        "createdAt": time(e.created_at),
        "updatedAt": time(e.updated_at),
        "metadata": metadata_out(&e.metadata),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventTypeIn {
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) archived: bool,
    #[serde(default)]
    pub(crate) deprecated: bool,
    pub(crate) schemas: Option<serde_json::Map<String, Value>>,
    pub(crate) feature_flag: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventTypePatch {
    pub(crate) description: Option<String>,
    pub(crate) archived: Option<bool>,
    pub(crate) deprecated: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) schemas: Option<Option<serde_json::Map<String, Value>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) feature_flag: Option<Option<String>>,
}

/// An event type's name, description, schemas (an object of objects, at most 64 KiB) and
/// feature flag, checked.
pub(crate) fn check_event_type(e: &EventTypeRow) -> Result<(), SvixError> {
    if !crate::send::filter::is_name(&e.name, 256) {
        return Err(SvixError::invalid(
            &["body", "name", "__all__"],
            "String must match the following pattern: [a-zA-Z0-9\\-_.].",
        ));
    }
    check_text("description", &e.description, 4096)?;
    if let Some(schemas) = &e.schemas {
        let ok = schemas
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_object));
        if !ok {
            return Err(SvixError::invalid(
                &["body", "schemas"],
                "schemas is an object of JSON Schemas by version",
            ));
        }
        if schemas.to_string().len() > 64 * 1024 {
            return Err(SvixError::invalid(
                &["body", "schemas"],
                "at most 64 KiB of schemas",
            ));
        }
    }
    if let Some(f) = &e.feature_flag
        && !crate::send::filter::is_name(f, 256)
    {
        return Err(SvixError::invalid(
            &["body", "featureFlag"],
            "String must match the following pattern: [a-zA-Z0-9\\-_.].",
        ));
    }
    Ok(())
}

pub(crate) fn event_type_out(e: &EventTypeRow, with_schemas: bool) -> Value {
    json!({
        "name": e.name,
        "description": e.description,
        "archived": e.archived,
        "deprecated": e.deprecated,
        "schemas": if with_schemas { e.schemas.clone() } else { None },
        "createdAt": time(e.created_at),
        "updatedAt": time(e.updated_at),
        "featureFlag": e.feature_flag,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageIn {
    pub(crate) event_type: String,
    #[serde(alias = "data")]
    pub(crate) payload: Box<serde_json::value::RawValue>,
    pub(crate) event_id: Option<String>,
    pub(crate) channels: Option<Vec<String>>,
    pub(crate) application: Option<ApplicationIn>,
}

/// A message as answered (`MessageOut`, and `EndpointMessageOut` with its status). The
/// payload is the stored JSON text, passed through as it is (never expanded into a tree).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageOut {
    event_id: Option<String>,
    event_type: String,
    payload: Box<serde_json::value::RawValue>,
    channels: Option<Vec<String>>,
    id: String,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status_text: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_attempt: Option<Option<String>>,
}

fn raw(json: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(json.to_owned()).unwrap_or_else(|_| raw_static("{}"))
}

fn raw_static(json: &'static str) -> Box<serde_json::value::RawValue> {
    // Valid JSON by construction; `{}` if it ever were not.
    serde_json::value::RawValue::from_string(json.to_owned()).unwrap_or_else(|_| {
        serde_json::value::to_raw_value(&serde_json::Map::new()).unwrap_or_default()
    })
}

/// A message's payload as answered: `{}` without content, `{"expired": true}` once
/// expunged, the stored JSON otherwise.
pub(crate) fn message_out(m: &MessageRow, with_content: bool) -> MessageOut {
    let payload = if m.expunged {
        raw_static(r#"{"expired":true}"#)
    } else if with_content {
        m.payload.as_deref().map_or_else(|| raw_static("{}"), raw)
    } else {
        raw_static("{}")
    };
    MessageOut {
        event_id: m.event_id.clone(),
        event_type: m.event_type.clone(),
        payload,
        channels: m.channels.clone(),
        id: m.id.clone(),
        timestamp: time(m.created_at),
        status: None,
        status_text: None,
        next_attempt: None,
    }
}

/// A delivery's status as Svix numbers it (`Success` 0, `Pending` 1, `Fail` 2, `Sending`
/// 3) and names it.
pub(crate) fn delivery_status(d: &DeliveryRow) -> (u8, &'static str) {
    match d.status.as_str() {
        "delivered" => (0, "success"),
        "dead" => (2, "fail"),
        "pending" if d.attempts == 0 => (1, "pending"),
        _ => (3, "sending"),
    }
}

pub(crate) fn next_attempt(d: &DeliveryRow) -> Option<String> {
    matches!(delivery_status(d).0, 1 | 3).then(|| time(d.next_attempt_at))
}

/// An attempt's id on the wire.
pub(crate) fn attempt_id(id: i64) -> String {
    format!("atmpt_{id}")
}

/// An attempt's id from the wire.
pub(crate) fn parse_attempt_id(s: &str) -> Option<i64> {
    s.strip_prefix("atmpt_")?.parse().ok().filter(|n| *n > 0)
}

pub(crate) fn attempt_out(a: &AttemptRow, with_content: bool) -> Value {
    let ok = a.status_code.is_some_and(|s| (200..300).contains(&s));
    let response = if !with_content {
        "{}".to_owned()
    } else if a.response.is_empty() {
        a.error.clone().unwrap_or_default()
    } else {
        a.response.clone()
    };
    json!({
        "url": a.url,
        "response": response,
        "responseStatusCode": a.status_code.unwrap_or(0),
        "responseDurationMs": a.duration_ms,
        "status": if ok { 0 } else { 2 },
        "statusText": if ok { "success" } else { "fail" },
        "triggerType": 0,
        "msgId": a.message_id,
        "endpointId": a.endpoint_id,
        "id": attempt_id(a.id),
        "timestamp": time(a.at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_and_write_as_svix_and_its_clients_send_them() {
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000)
        );
        // Python's naive datetime: UTC.
        assert_eq!(parse_time("2023-11-14T22:13:20"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20.5"), Some(1_700_000_000_500));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn fields_are_named_as_svix_names_them() {
        assert_eq!(camel("event_types"), "eventTypes");
        assert_eq!(camel("url"), "url");
        assert_eq!(parse_attempt_id("atmpt_42"), Some(42));
        assert_eq!(parse_attempt_id("atmpt_-1"), None);
        assert_eq!(parse_attempt_id("42"), None);
    }

    #[test]
    fn uids_follow_svix_rules() {
        assert!(check_uid("acme-1.x_y", "app_").is_ok());
        assert!(check_uid("app_acme", "app_").is_err());
        assert!(check_uid("", "app_").is_err());
        assert!(check_uid("a b", "app_").is_err());
        assert!(check_uid(&"a".repeat(257), "app_").is_err());
    }
}
