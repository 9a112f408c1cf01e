//! The delivery event, in the wire format of the Outworx ingest API.

use std::collections::BTreeMap;
use std::time::SystemTime;

use http::HeaderMap;
use serde::Serialize;

use crate::security::FailureReason;
use crate::wire::json_size;

/// What became of the event after the handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProcessingStatus {
    /// The handler called `Track::processed`.
    Completed,
    /// The handler called `Track::failed`.
    Failed,
    /// The route requires a mark, the handler answered 2xx and never marked.
    SilentDrop,
    /// Committed to the inbox and answered; the worker's run reports the processing.
    Queued,
    /// Of a type outside the route's `events`: answered 200, the handler not run.
    Ignored,
}

/// Which way a reported delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Direction {
    /// Sent by this service to an endpoint.
    Outbound,
}

/// A processing status's wire name (`completed`, `silent_drop`, ...).
pub(crate) fn processing_name(p: ProcessingStatus) -> &'static str {
    match p {
        ProcessingStatus::Completed => "completed",
        ProcessingStatus::Failed => "failed",
        ProcessingStatus::SilentDrop => "silent_drop",
        ProcessingStatus::Queued => "queued",
        ProcessingStatus::Ignored => "ignored",
    }
}

/// One delivery, as reported: the field names are those of the Outworx ingest API, and
/// absent values are omitted from the JSON, never `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeliveryEvent {
    /// Provider name (`"stripe"`), or `"custom"` for a custom verifier.
    pub provider: String,
    /// The HTTP status answered.
    pub status_code: u16,
    /// Whether the status is 2xx.
    pub success: bool,
    /// Time from the first byte read to the response, in milliseconds.
    pub duration_ms: u64,
    /// The raw body length in bytes.
    pub payload_size: usize,
    /// When the delivery arrived, ISO 8601 UTC.
    pub timestamp: String,
    /// The provider's event type (`charge.succeeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Request headers, sensitive ones as `[REDACTED]`. `None` when the route does not capture
    /// them, or when nothing reads them: no sink says it does
    /// ([`Sink::wants_request_headers`](crate::Sink::wants_request_headers)) and no
    /// [`subscribe`](crate::subscribe)r was alive when the delivery arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<BTreeMap<String, String>>,
    /// The request body (only with `capture_body`), cut at 64 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// The response body (only with `capture_body`), cut at 64 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// The signature verdict, when one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_valid: Option<bool>,
    /// Why the signature failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_failure_reason: Option<FailureReason>,
    /// A configuration fault, a panic or a body the handler could not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Route metadata, the mark's metadata, `duplicate`, `idempotency_error`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The request path (and query).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// What the handler said about the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_status: Option<ProcessingStatus>,
    /// When the handler marked it, ISO 8601 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_marked_at: Option<String>,
    /// The reason given to `Track::failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_failure_reason: Option<String>,
    /// `outbound` for a message this service sent (an attempt of the sending side); absent
    /// for a received delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The handler (function name) that received it: for in-process subscribers and logs.
    #[serde(skip)]
    pub handler: &'static str,
    /// The signature hint, for logs; not sent (it can be long), reason codes are.
    #[serde(skip)]
    pub signature_hint: Option<String>,
}

impl DeliveryEvent {
    /// One attempt of the sending side, reported to the same sinks as received deliveries.
    #[cfg(feature = "send")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn outbound(
        format: &str,
        status_code: u16,
        success: bool,
        duration_ms: u64,
        payload_size: usize,
        event_type: String,
        error_message: Option<String>,
        metadata: serde_json::Map<String, serde_json::Value>,
        target: Option<String>,
    ) -> DeliveryEvent {
        DeliveryEvent {
            provider: format.to_owned(),
            status_code,
            success,
            duration_ms,
            payload_size,
            timestamp: iso8601(SystemTime::now()),
            event_type: Some(event_type),
            request_headers: None,
            request_body: None,
            response_body: None,
            signature_valid: None,
            signature_failure_reason: None,
            error_message,
            metadata: Some(metadata),
            source_url: target,
            processing_status: None,
            processing_marked_at: None,
            processing_failure_reason: None,
            direction: Some(Direction::Outbound),
            handler: "outbox",
            signature_hint: None,
        }
    }

    /// The `metadata` value under `key`, if any.
    pub fn meta(&self, key: &str) -> Option<&serde_json::Value> {
        self.metadata.as_ref()?.get(key)
    }

    /// Cuts every field to its [`limits`], so no delivery (a forged one with a huge header,
    /// or a handler's long failure reason) makes its own report too large to store.
    pub(crate) fn enforce_limits(&mut self) {
        for (field, cap) in [
            (&mut self.event_type, limits::EVENT_TYPE),
            (&mut self.error_message, limits::ERROR_MESSAGE),
            (&mut self.source_url, limits::SOURCE_URL),
            (&mut self.processing_failure_reason, limits::FAILURE_REASON),
            (&mut self.request_body, limits::BODY),
            (&mut self.response_body, limits::BODY),
        ] {
            if let Some(text) = field {
                cut_json(text, cap);
            }
        }
        if let Some(headers) = &mut self.request_headers {
            limit_headers(headers);
        }
        if let Some(meta) = &mut self.metadata {
            limit_metadata(meta);
        }
    }

    /// About how many bytes the event holds: for queues bounded in bytes.
    #[cfg_attr(not(feature = "outworx-api"), allow(dead_code))]
    pub(crate) fn approx_size(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let headers = self
            .request_headers
            .as_ref()
            .map_or(0, |h| h.iter().map(|(k, v)| k.len() + v.len() + 48).sum());
        let meta = self.metadata.as_ref().map_or(0, json_size);
        256 + self.provider.len()
            + self.timestamp.len()
            + text(&self.event_type)
            + text(&self.request_body)
            + text(&self.response_body)
            + text(&self.error_message)
            + text(&self.source_url)
            + text(&self.processing_failure_reason)
            + text(&self.signature_hint)
            + headers
            + meta
    }
}

/// The most bytes (as JSON) each field of an event may take, shared with the ingest: the SDK
/// cuts its events to them (with `...[truncated]`), so a delivery can never make its own
/// report unstorable.
pub use crate::wire::limits;

const CUT: &str = "...[truncated]";

/// The length of `s` as a JSON string, quotes included.
fn json_len(s: &str) -> usize {
    2 + s.chars().map(json_char_len).sum::<usize>()
}

fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Cuts `s` so that, as JSON, it takes at most `cap` bytes, marking the cut.
fn cut_json(s: &mut String, cap: usize) {
    // Every character takes at most 6 bytes as JSON: short text needs no count.
    if s.len() * 6 + 2 <= cap || json_len(s) <= cap {
        return;
    }
    let budget = cap.saturating_sub(json_len(CUT));
    let mut used = 2;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        used += json_char_len(c);
        if used > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    s.truncate(end);
    s.push_str(CUT);
}

/// Header values over 1 KiB are cut, and past [`limits::REQUEST_HEADERS`] the remaining
/// headers are dropped, counted under `[truncated]`.
fn limit_headers(headers: &mut BTreeMap<String, String>) {
    let size = |h: &BTreeMap<String, String>| -> usize {
        2 + h
            .iter()
            .map(|(k, v)| json_len(k) + json_len(v) + 2)
            .sum::<usize>()
    };
    let raw: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if raw * 6 + 4 * headers.len() + 2 <= limits::REQUEST_HEADERS
        || size(headers) <= limits::REQUEST_HEADERS
    {
        return;
    }
    let mut kept = BTreeMap::new();
    let mut used = 2 + 64; // room for the `[truncated]` entry
    let mut dropped = 0usize;
    for (mut k, mut v) in std::mem::take(headers) {
        cut_json(&mut k, 256);
        cut_json(&mut v, 1024);
        let cost = json_len(&k) + json_len(&v) + 2;
        if used + cost <= limits::REQUEST_HEADERS {
            used += cost;
            kept.insert(k, v);
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        kept.insert("[truncated]".into(), format!("{dropped} more headers"));
    }
    *headers = kept;
}

/// Past [`limits::METADATA`], entries are kept in order while they fit, and
/// `metadata_truncated` says some were left out.
fn limit_metadata(meta: &mut serde_json::Map<String, serde_json::Value>) {
    if json_size(meta) <= limits::METADATA {
        return;
    }
    let mut kept = serde_json::Map::new();
    let mut used = 2 + 32;
    for (k, v) in std::mem::take(meta) {
        let cost = json_len(&k) + 2 + json_size(&v);
        if used + cost <= limits::METADATA {
            used += cost;
            kept.insert(k, v);
        }
    }
    kept.insert("metadata_truncated".into(), true.into());
    *meta = kept;
}

/// Credential headers whose values are never reported, whatever the provider.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "proxy-authorization",
];

pub(crate) const REDACTED: &str = "[REDACTED]";

/// Captured bodies are cut at this many bytes.
pub(crate) const BODY_CAPTURE_LIMIT: usize = 64 * 1024;

/// Every provider's signature and shared-token headers, sorted: a signature without a signed
/// timestamp is replay material, and GitLab's token is the secret itself. They are redacted on
/// every route, so a route that receives another provider's headers (behind a shared proxy, or
/// with a custom verifier) reports none of them either.
fn provider_secret_headers() -> &'static [&'static str] {
    static HEADERS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    HEADERS.get_or_init(|| {
        let mut all: Vec<&'static str> = crate::security::Provider::ALL
            .iter()
            .flat_map(|p| p.secret_headers().iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    })
}

/// Whether a header's value is never reported, on any route.
pub(crate) fn always_redacted(name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name) || provider_secret_headers().binary_search(&name).is_ok()
}

/// The headers as reported: values of credential and signature headers, and of the route's
/// own `redact` list (any case), are `[REDACTED]`.
pub(crate) fn redact_headers<S: AsRef<str>>(
    headers: &HeaderMap,
    extra: &[S],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        let v = if always_redacted(n) || extra.iter().any(|e| e.as_ref().eq_ignore_ascii_case(n)) {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.entry(n.to_owned())
            .and_modify(|prev: &mut String| {
                prev.push_str(", ");
                prev.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// The request's path, and its query with every value redacted (a custom verifier's token, or
/// anything else a sender put there, must not reach a report).
pub(crate) fn source_url(uri: &http::Uri) -> String {
    crate::util::query_redacted(uri.path(), uri.query())
}

pub(crate) fn capture(body: &[u8]) -> String {
    if body.len() <= BODY_CAPTURE_LIMIT {
        return String::from_utf8_lossy(body).into_owned();
    }
    let mut s = String::from_utf8_lossy(&body[..BODY_CAPTURE_LIMIT]).into_owned();
    s.push_str("...[truncated]");
    s
}

/// ISO 8601 / RFC 3339 in UTC with milliseconds.
///
/// Written digit by digit: it runs for every delivery, and a general formatter costs more
/// than the rest of the event.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let ms: i64 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => {
            i64::try_from(e.duration().as_nanos().div_ceil(1_000_000)).map_or(i64::MIN, |m| -m)
        }
    };
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    match u32::try_from(year) {
        Ok(y) if y <= 9999 => push_digits(&mut out, y, 4),
        _ => out.push_str(&format!("{year:+07}")),
    }
    // Each part is below 1,000 by construction, so the narrowing is exact.
    let part = |n: i64| u32::try_from(n).unwrap_or(0);
    for (sep, n, width) in [
        ('-', month, 2),
        ('-', day, 2),
        ('T', part(in_day / 3_600_000), 2),
        (':', part(in_day / 60_000 % 60), 2),
        (':', part(in_day / 1000 % 60), 2),
        ('.', part(in_day % 1000), 3),
    ] {
        out.push(sep);
        push_digits(&mut out, n, width);
    }
    out.push('Z');
    out
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // `month` is in 1..=12 and `day` in 1..=31.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Pushes the last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for i in (0..width).rev() {
        let d = (n / 10u32.pow(i)) % 10;
        out.push(char::from(b'0' + d as u8));
    }
}

/// A minimal valid event for tests in this crate.
#[cfg(test)]
pub(crate) fn sample() -> DeliveryEvent {
    DeliveryEvent {
        provider: "stripe".into(),
        status_code: 200,
        success: true,
        duration_ms: 3,
        payload_size: 10,
        timestamp: iso8601(SystemTime::UNIX_EPOCH),
        event_type: None,
        request_headers: None,
        request_body: None,
        response_body: None,
        signature_valid: Some(true),
        signature_failure_reason: None,
        error_message: None,
        metadata: None,
        source_url: None,
        processing_status: None,
        processing_marked_at: None,
        processing_failure_reason: None,
        direction: None,
        handler: "test",
        signature_hint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status this SDK reports is one the wire (and `outworx serve`'s ingest) accepts:
    /// a status missing there had receipts of `queue` routes refused with a 422.
    #[test]
    fn every_processing_status_is_on_the_wire() {
        use ProcessingStatus::*;
        for p in [Completed, Failed, SilentDrop, Queued, Ignored] {
            // A new variant fails to compile here until it is listed.
            match p {
                Completed | Failed | SilentDrop | Queued | Ignored => {}
            }
            assert!(
                crate::wire::PROCESSING_STATUSES.contains(&processing_name(p)),
                "{p:?}"
            );
        }
    }

    #[test]
    fn absent_fields_are_omitted() {
        let e = DeliveryEvent {
            processing_status: Some(ProcessingStatus::SilentDrop),
            signature_hint: Some("x".into()),
            ..sample()
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "provider": "stripe", "status_code": 200, "success": true, "duration_ms": 3,
                "payload_size": 10, "timestamp": "1970-01-01T00:00:00.000Z",
                "signature_valid": true, "processing_status": "silent_drop"
            })
        );
    }

    #[test]
    fn sensitive_headers_are_redacted() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer secret".parse().unwrap());
        h.insert("x-custom-token", "t".parse().unwrap());
        h.insert("stripe-signature", "t=1,v1=ab".parse().unwrap());
        h.insert("x-gitlab-token", "the-secret-itself".parse().unwrap());
        h.insert("x-github-delivery", "d-1".parse().unwrap());
        h.append("x-many", "a".parse().unwrap());
        h.append("x-many", "b".parse().unwrap());
        let r = redact_headers(&h, &["X-Custom-Token"]);
        assert_eq!(r["authorization"], REDACTED);
        assert_eq!(r["x-custom-token"], REDACTED);
        assert_eq!(r["stripe-signature"], REDACTED);
        assert_eq!(r["x-gitlab-token"], REDACTED);
        assert_eq!(r["x-github-delivery"], "d-1");
        assert_eq!(r["x-many"], "a, b");
    }

    #[test]
    fn every_providers_signature_and_token_headers_are_always_redacted() {
        for p in crate::security::Provider::ALL {
            for h in p.secret_headers() {
                assert!(always_redacted(h), "{p}: {h}");
            }
        }
        for h in [
            "x-hub-signature-256",
            "x-shopify-hmac-sha256",
            "svix-signature",
        ] {
            assert!(always_redacted(h), "{h}");
        }
        assert!(!always_redacted("content-type"));
    }

    #[test]
    fn source_urls_keep_the_path_and_the_query_names_only() {
        let url = |u: &str| source_url(&u.parse::<http::Uri>().unwrap());
        assert_eq!(url("/hooks/a"), "/hooks/a");
        assert_eq!(
            url("/hooks/a?token=s3cret&flag&x=1"),
            "/hooks/a?token=[REDACTED]&[REDACTED]&x=[REDACTED]"
        );
        assert_eq!(url("/hooks/a?"), "/hooks/a");
    }

    #[test]
    fn every_field_is_cut_to_its_limit_as_json() {
        let mut headers = BTreeMap::new();
        for i in 0..100 {
            headers.insert(format!("x-junk-{i}"), "\u{1}".repeat(2000));
        }
        let mut meta = serde_json::Map::new();
        meta.insert("team".into(), "billing".into());
        meta.insert("huge".into(), "m".repeat(100_000).into());
        let mut e = DeliveryEvent {
            event_type: Some("t".repeat(10_000)),
            error_message: Some("\"".repeat(50_000)),
            source_url: Some(format!("/x?{}", "n".repeat(50_000))),
            processing_failure_reason: Some("é".repeat(50_000)),
            request_body: Some("\u{0}".repeat(64 * 1024)),
            request_headers: Some(headers),
            metadata: Some(meta),
            ..sample()
        };
        e.enforce_limits();
        let v = serde_json::to_value(&e).unwrap();
        let size = |k: &str| serde_json::to_string(&v[k]).unwrap().len();
        for (k, cap) in [
            ("event_type", limits::EVENT_TYPE),
            ("error_message", limits::ERROR_MESSAGE),
            ("source_url", limits::SOURCE_URL),
            ("processing_failure_reason", limits::FAILURE_REASON),
            ("request_body", limits::BODY),
            ("request_headers", limits::REQUEST_HEADERS),
            ("metadata", limits::METADATA),
        ] {
            assert!(size(k) <= cap, "{k}: {} > {cap}", size(k));
            // Text is cut, not dropped (metadata drops whole entries).
            assert!(
                k == "metadata" || size(k) > cap / 2,
                "{k} was cut too far: {}",
                size(k)
            );
        }
        assert!(serde_json::to_string(&e).unwrap().len() <= limits::EVENT);
        assert!(e.error_message.as_deref().unwrap().ends_with(CUT));
        assert_eq!(e.meta("team"), Some(&"billing".into()));
        assert_eq!(e.meta("metadata_truncated"), Some(&true.into()));
        assert!(
            e.request_headers
                .as_ref()
                .unwrap()
                .contains_key("[truncated]")
        );
        // Small events are left exactly as they are.
        let mut small = sample();
        small.error_message = Some("boom".into());
        let before = small.clone();
        small.enforce_limits();
        assert_eq!(small, before);
    }

    #[test]
    fn captured_bodies_are_cut() {
        assert_eq!(capture(b"abc"), "abc");
        let big = vec![b'a'; BODY_CAPTURE_LIMIT + 10];
        let c = capture(&big);
        assert!(c.ends_with("...[truncated]"));
        assert_eq!(c.len(), BODY_CAPTURE_LIMIT + "...[truncated]".len());
    }

    #[test]
    fn timestamps_match_a_general_rfc3339_formatter() {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let mut secs: u64 = 0;
        while secs < 253_000_000_000 {
            for nanos in [0, 1_000_000, 999_999_999, 123_456_789] {
                let d = std::time::Duration::new(secs, nanos);
                for t in [SystemTime::UNIX_EPOCH + d, SystemTime::UNIX_EPOCH - d / 40] {
                    let want = time::OffsetDateTime::from(t).format(&fmt).unwrap();
                    assert_eq!(iso8601(t), want, "{t:?}");
                }
            }
            secs = secs * 3 + 86_399;
        }
        for day in 0..800 {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(day * 86_400 * 37);
            let want = time::OffsetDateTime::from(t).format(&fmt).unwrap();
            assert_eq!(iso8601(t), want);
        }
    }
}
