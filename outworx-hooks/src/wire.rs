//! The Outworx HTTP API as types: what the SDK's reporter and idempotency store send, what
//! `outworx serve` accepts, and what `outworx forward` and the relay exchange. One definition
//! each, used on both sides, so no schema is copied by hand.
//!
//! The names are those the Python package `outworx-hooks` 1.5 speaks; fields marked "ours"
//! are additions its clients ignore. The protocol is described in `docs/wire-protocol.md`.
//!
//! ```
//! use outworx_hooks::wire::{CheckAnswer, CheckRequest};
//!
//! let req = CheckRequest { key: "evt_1".into(), ttl: Some(86_400), token: None };
//! assert_eq!(serde_json::to_string(&req).unwrap(), r#"{"key":"evt_1","ttl":86400}"#);
//! let answer: CheckAnswer = serde_json::from_str(r#"{"status": "new"}"#).unwrap();
//! assert_eq!(answer.status, "new");
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Every field a delivery event may carry, and the most bytes (as JSON) it may take. The
/// SDK cuts its events to these ([`crate::event::DeliveryEvent`]); the ingest refuses an
/// event past them, or with a field not listed (`None`: no cap of its own).
pub const EVENT_FIELDS: &[(&str, Option<usize>)] = &[
    ("provider", Some(64)),
    ("status_code", None),
    ("success", None),
    ("duration_ms", None),
    ("payload_size", None),
    ("timestamp", Some(64)),
    ("event_type", Some(limits::EVENT_TYPE)),
    ("request_headers", Some(limits::REQUEST_HEADERS)),
    ("request_body", Some(limits::BODY)),
    ("response_body", Some(limits::BODY)),
    ("signature_valid", None),
    ("signature_failure_reason", Some(64)),
    ("error_message", Some(limits::ERROR_MESSAGE)),
    ("metadata", Some(limits::METADATA)),
    ("source_url", Some(limits::SOURCE_URL)),
    ("processing_status", Some(32)),
    ("processing_marked_at", Some(64)),
    ("processing_failure_reason", Some(limits::FAILURE_REASON)),
    ("direction", Some(16)),
];

/// The length of `v` as JSON, in bytes, counted without building the text: the measure of
/// [`EVENT_FIELDS`] and [`limits`], on the side that cuts events and the side that checks them.
///
/// ```
/// assert_eq!(outworx_hooks::wire::json_size(&serde_json::json!({"a": "é"})), 10);
/// ```
pub fn json_size(v: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The values of `processing_status`: the Outworx API's three, then the two this SDK adds
/// (`queued`: a `queue` route's receipt; `ignored`: a type outside the route's `events`),
/// which `outworx serve` must accept from it.
pub const PROCESSING_STATUSES: &[&str] =
    &["completed", "failed", "silent_drop", "queued", "ignored"];

/// The most bytes (as JSON) each field of an event may take; see [`EVENT_FIELDS`].
pub mod limits {
    /// `event_type`.
    pub const EVENT_TYPE: usize = 256;
    /// `error_message`.
    pub const ERROR_MESSAGE: usize = 8 * 1024;
    /// `source_url`.
    pub const SOURCE_URL: usize = 8 * 1024;
    /// `processing_failure_reason`.
    pub const FAILURE_REASON: usize = 4 * 1024;
    /// `request_headers`, all of them.
    pub const REQUEST_HEADERS: usize = 32 * 1024;
    /// `metadata`, all of it.
    pub const METADATA: usize = 32 * 1024;
    /// `request_body` and `response_body` each: 64 KiB of text and room for its escaping.
    pub const BODY: usize = 96 * 1024;
    /// A whole event.
    pub const EVENT: usize = 320 * 1024;
}

/// The answer of `POST /api/ingest` (`{"events": [..]}` in): how many were stored, and why
/// each refused one was (a 422 when any was).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAnswer {
    /// Events stored.
    pub accepted: u64,
    /// Events refused, by their index in the batch.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// One refused event of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Its index in the batch.
    pub index: usize,
    /// Why, in words.
    pub reason: String,
}

/// `POST /api/sdk/idempotency/check`: reserve a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The key (1..=512 bytes).
    pub key: String,
    /// Seconds a completed key is kept (60 ..= 7 days; default 1 day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// The reservation's token (ours): only its holder may complete, release or renew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The answer to a [`CheckRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// `"new"` (reserved for the caller) or `"duplicate"`.
    pub status: String,
    /// A duplicate's first response status; absent while the first delivery is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_status_code: Option<i64>,
    /// A duplicate's first response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_body: Option<String>,
    /// A duplicate's first response content type (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_content_type: Option<String>,
    /// Set when the key is held by a delivery in flight (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<bool>,
}

/// `POST /api/sdk/idempotency/complete`: store the first response, or (ours) release or
/// renew the reservation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteRequest {
    /// The key.
    pub key: String,
    /// The reservation's token (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The response status to replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status_code: Option<i64>,
    /// The response body to replay, as text (at most 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Its content type (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Seconds to keep it (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Free the key instead, after a failure (ours).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub release: bool,
    /// Restart the reservation's stale clock instead (ours).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renew: bool,
}

/// `POST /api/forward/sessions`: open a tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Where the CLI forwards to (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_url: Option<String>,
}

/// The answer to a [`SessionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAnswer {
    /// The session, for poll and delete.
    pub session_id: String,
    /// The public URL requests are sent to (empty when the relay sent none).
    #[serde(default, deserialize_with = "lenient::string")]
    pub ingress_url: String,
    /// When the session ends (RFC 3339; empty when the relay sent none).
    #[serde(default, deserialize_with = "lenient::string")]
    pub expires_at: String,
}

/// `GET /api/forward/poll?session=`: the public requests waiting for the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polled {
    /// The requests, oldest first. Read one by one: an entry that is not an object is
    /// skipped, never the batch (its requests were handed out and must be answered).
    #[serde(default, deserialize_with = "lenient::events")]
    pub events: Vec<HeldRequest>,
}

/// One public request waiting for the CLI. Every field is read leniently, as the Python CLI
/// reads it: an absent, `null` or mistyped value is its default (the CLI takes an empty
/// method as `POST` and an empty path as `/`), a header whose value is not a string is
/// skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRequest {
    /// Its id, echoed back as `eventId` with the response.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// HTTP method.
    #[serde(default, deserialize_with = "lenient::string")]
    pub method: String,
    /// Path below the session's ingress (`/` at least), exactly as received: still
    /// percent-encoded.
    #[serde(default, deserialize_with = "lenient::string")]
    pub path: String,
    /// Query string without `?`, when any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub query_string: Option<String>,
    /// Request headers, one value per name (repeated ones joined with `, `), as the Python
    /// CLI reads them.
    #[serde(default, deserialize_with = "lenient::headers")]
    pub request_headers: HashMap<String, String>,
    /// Request headers in order, repeated ones repeated (ours).
    #[serde(default, deserialize_with = "lenient::header_list")]
    pub request_headers_list: Vec<(String, String)>,
    /// The body as text (lossy when it is not UTF-8: see `request_body_base64`).
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_body: String,
    /// The exact body bytes, base64, when they are not UTF-8 (ours).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub request_body_base64: Option<String>,
}

/// `POST /api/forward/responses`: the local server's answer to a held request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalResponse {
    /// The held request's id.
    pub event_id: String,
    /// Status to answer the public caller with (200..=599).
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Body text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Exact body bytes, base64 (ours; wins over `body`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// How long the local server took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Readers for what a relay sends, as lenient as the Python CLI: `null` or a value of another
/// type becomes the default instead of failing the whole answer.
mod lenient {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::HeldRequest;

    pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(opt_string(d)?.unwrap_or_default())
    }

    pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            _ => None,
        })
    }

    pub(super) fn headers<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<String, String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Object(m) => m
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    _ => None,
                })
                .collect(),
            _ => HashMap::new(),
        })
    }

    pub(super) fn header_list<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|i| serde_json::from_value(i).ok())
                .collect(),
            _ => Vec::new(),
        })
    }

    pub(super) fn events<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HeldRequest>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|i| serde_json::from_value(i).ok())
                .collect(),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_fields_are_the_delivery_events() {
        let mut e = crate::event::sample();
        e.event_type = Some("t".into());
        e.request_headers = Some(Default::default());
        e.request_body = Some(String::new());
        e.response_body = Some(String::new());
        e.signature_failure_reason = Some(crate::security::FailureReason::HmacMismatch);
        e.error_message = Some(String::new());
        e.metadata = Some(Default::default());
        e.source_url = Some(String::new());
        e.processing_status = Some(crate::event::ProcessingStatus::Failed);
        e.processing_marked_at = Some(String::new());
        e.processing_failure_reason = Some(String::new());
        e.direction = Some(crate::event::Direction::Outbound);
        let v = serde_json::to_value(&e).unwrap();
        let mut serialized: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut listed: Vec<_> = EVENT_FIELDS.iter().map(|(k, _)| (*k).to_owned()).collect();
        serialized.sort();
        listed.sort();
        assert_eq!(serialized, listed);
    }

    #[test]
    fn a_relays_odd_values_are_read_not_refused() {
        let polled: Polled = serde_json::from_str(
            r#"{"events": [
                {"id": "e1", "method": null, "path": 7, "request_body": null,
                 "request_headers": {"a": "1", "b": 2}, "request_headers_list": [["a", "1"], 3]},
                "not an event",
                {"id": "e2"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            polled.events.len(),
            2,
            "the stray entry is skipped, not the batch"
        );
        let e = &polled.events[0];
        assert_eq!(
            (e.id.as_str(), e.method.as_str(), e.path.as_str()),
            ("e1", "", "")
        );
        assert_eq!(e.request_body, "");
        assert_eq!(e.request_headers.len(), 1);
        assert_eq!(
            e.request_headers_list,
            vec![("a".to_owned(), "1".to_owned())]
        );
        assert_eq!(polled.events[1].id, "e2");
        let s: SessionAnswer = serde_json::from_str(r#"{"sessionId": "s"}"#).unwrap();
        assert_eq!((s.ingress_url.as_str(), s.expires_at.as_str()), ("", ""));
    }

    #[test]
    fn the_python_packages_names_on_the_wire() {
        let r: LocalResponse =
            serde_json::from_str(r#"{"eventId": "e1", "status": 201, "body": "x"}"#).unwrap();
        assert_eq!((r.event_id.as_str(), r.status), ("e1", 201));
        let a = SessionAnswer {
            session_id: "s".into(),
            ingress_url: "u".into(),
            expires_at: "t".into(),
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"sessionId":"s","ingressUrl":"u","expiresAt":"t"}"#
        );
        let c = CompleteRequest {
            key: "k".into(),
            release: true,
            ..CompleteRequest::default()
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"key":"k","release":true}"#
        );
    }
}
