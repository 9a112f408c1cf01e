//! The delivery event, in the wire format of the Outworx ingest API.

use std::collections::BTreeMap;
use std::time::SystemTime;

use http::HeaderMap;
use serde::Serialize;

use crate::security::FailureReason;

/// What became of the event after the handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingStatus {
    /// The handler called `Track::processed`.
    Completed,
    /// The handler called `Track::failed`.
    Failed,
    /// The route requires a mark, the handler answered 2xx and never marked.
    SilentDrop,
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
    /// Request headers, sensitive ones as `[REDACTED]`.
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
    /// The handler (function name) that received it: for in-process subscribers and logs.
    #[serde(skip)]
    pub handler: &'static str,
    /// The signature hint, for logs; not sent (it can be long), reason codes are.
    #[serde(skip)]
    pub signature_hint: Option<String>,
}

impl DeliveryEvent {
    /// The `metadata` value under `key`, if any.
    pub fn meta(&self, key: &str) -> Option<&serde_json::Value> {
        self.metadata.as_ref()?.get(key)
    }
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
pub(crate) fn redact_headers(headers: &HeaderMap, extra: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        let v = if always_redacted(n) || extra.iter().any(|e| e.eq_ignore_ascii_case(n)) {
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
    let path = uri.path();
    let Some(query) = uri.query().filter(|q| !q.is_empty()) else {
        return path.to_owned();
    };
    let mut out = String::with_capacity(path.len() + query.len() + 16);
    out.push_str(path);
    for (i, pair) in query.split('&').enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        match pair.split_once('=') {
            Some((name, _)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            // A bare item may be a token itself.
            None => out.push_str(REDACTED),
        }
    }
    out
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
        handler: "test",
        signature_hint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
