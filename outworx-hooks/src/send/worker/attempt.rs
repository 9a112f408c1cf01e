//! One attempt's HTTP, apart from the queue (as svix keeps its HTTP client apart from its
//! worker): build the request in the endpoint's format and sign it, check the target against
//! the policy, post it (no redirects, no system proxy, every resolved address checked), and
//! read a bounded snippet of the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::send::limits::RESPONSE_SNIPPET_BYTES;
use crate::send::model::Format;
use crate::send::store::deliveries::{Job, Target};
use crate::send::target::{GuardedResolver, TargetPolicy};
use outworx_hooks_queue::storable;

/// The two HTTP clients a worker posts with: one for `https` targets, one for plain `http`
/// ones (whose resolver also applies the policy's http rule).
pub(crate) struct Client {
    policy: Arc<TargetPolicy>,
    https: reqwest::Client,
    http: reqwest::Client,
}

impl Client {
    /// Clients with `timeout` per request, keeping `idle_per_host` connections per host.
    pub(crate) fn new(
        policy: Arc<TargetPolicy>,
        timeout: Duration,
        idle_per_host: usize,
    ) -> Client {
        let client = |https: bool| {
            let resolver = GuardedResolver {
                policy: Arc::clone(&policy),
                https,
            };
            // No redirects (a redirect is how a public URL reaches a private one), no system
            // proxy (it would resolve names where the policy cannot see), the policy's resolver.
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .dns_resolver(Arc::new(resolver))
                .user_agent(concat!("outworx-hooks/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(idle_per_host)
                .build()
                .unwrap_or_default()
        };
        Client {
            https: client(true),
            http: client(false),
            policy,
        }
    }

    /// Posts one attempt of `job` to `target`, signed at `now`.
    pub(crate) async fn post(
        &self,
        job: &Job,
        target: &Target,
        now: i64,
    ) -> Result<Answer, String> {
        let url = self
            .policy
            .check_url(&target.url)
            .map_err(|e| e.to_string())?;
        let https = url.scheme() == "https";
        if let Some(ip) = url
            .host_str()
            .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
        {
            // A literal address skips the resolver: checked here, on every attempt.
            self.policy
                .check_connect(ip, https)
                .map_err(|e| e.to_string())?;
        }
        let client = if https { &self.https } else { &self.http };
        let (body, mut headers) = build_request(job, target, now)?;
        // The attempt's own span (entered around this call) goes out as `traceparent`.
        crate::otel::inject(&tracing::Span::current(), &mut headers);
        let response = client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let snippet = read_snippet(response).await;
        Ok(Answer {
            status,
            snippet,
            retry_after,
        })
    }
}

/// What the endpoint answered.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) snippet: String,
    pub(crate) retry_after: Option<Duration>,
}

/// What went wrong, without the URL (which may carry a token in its query).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first 4 KiB of the body (lossy UTF-8); reads at most 64 KiB so the connection can be
/// reused, and stops there.
async fn read_snippet(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < 64 * 1024 {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = RESPONSE_SNIPPET_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    let mut text = storable(&String::from_utf8_lossy(&kept));
    if text.len() > RESPONSE_SNIPPET_BYTES {
        let mut cut = RESPONSE_SNIPPET_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// `Retry-After`: seconds, or an HTTP date; capped at one day.
pub(crate) fn parse_retry_after(v: &str, now_ms: i64) -> Option<Duration> {
    let cap = Duration::from_secs(24 * 3600);
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs).min(cap));
    }
    // An HTTP date (IMF-fixdate, or the obsolete RFC 850 and asctime forms).
    let at = httpdate::parse_http_date(v.trim()).ok()?;
    // A date before the epoch is in the past too: retry now.
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let at_ms = i64::try_from(since.as_millis()).ok()?;
    let ms = u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0);
    Some(Duration::from_millis(ms).min(cap))
}

/// The body and headers of one attempt, in the endpoint's format.
pub(crate) fn build_request(
    job: &Job,
    target: &Target,
    now_ms: i64,
) -> Result<(Bytes, http::HeaderMap), String> {
    use http::header::{CONTENT_TYPE, HeaderValue};
    let mut headers = http::HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let header =
        |v: &str| HeaderValue::from_str(v).map_err(|_| "a header value is not valid".to_owned());
    let mut secrets = vec![target.secret.as_str()];
    if let (Some(prev), Some(until)) = (&target.previous_secret, target.previous_until)
        && until > now_ms
    {
        secrets.push(prev);
    }
    let body = match target.format {
        Format::Standard | Format::Svix | Format::SvixHeaders => {
            let body = if target.format == Format::Standard {
                standard_body(&job.event_type, job.message_created_at, &job.payload)
            } else {
                // As Svix: the payload is the body, byte for byte.
                job.payload.clone()
            };
            let ts = (now_ms / 1000).to_string();
            let mut sig = String::new();
            for secret in secrets {
                let one = crate::security::scheme::standard_signature(
                    crate::Provider::Standard,
                    secret,
                    &job.message_id,
                    &ts,
                    body.as_bytes(),
                )
                .map_err(|e| format!("signing: {e}"))?;
                if !sig.is_empty() {
                    sig.push(' ');
                }
                sig.push_str(&one);
            }
            let [id, timestamp, signature] = if target.format == Format::SvixHeaders {
                ["svix-id", "svix-timestamp", "svix-signature"]
            } else {
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
            };
            headers.insert(id, header(&job.message_id)?);
            headers.insert(timestamp, header(&ts)?);
            headers.insert(signature, header(&sig)?);
            body
        }
        Format::Fastapihooks => {
            let body = job.payload.clone();
            headers.insert("x-fastapihooks-event", header(&job.event_type)?);
            // fastapihooks sends one signature; during a rotation the new secret signs.
            let hex =
                crate::security::scheme::hmac_sha256_hex(target.secret.as_bytes(), body.as_bytes());
            headers.insert(
                "x-fastapihooks-signature",
                header(&format!("sha256={hex}"))?,
            );
            body
        }
    };
    if let Some((name, value)) = target.auth.header() {
        headers.insert(name, value);
    }
    // The endpoint's own headers never replace the signature's, the format's or the
    // authentication's (checked when stored, and again here).
    for (name, value) in &target.headers {
        let (Ok(name), Ok(mut value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            continue;
        };
        value.set_sensitive(true);
        if let http::header::Entry::Vacant(v) = headers.entry(name) {
            v.insert(value);
        }
    }
    Ok((Bytes::from(body), headers))
}

/// RFC 3339 in UTC with the milliseconds there are (`2024-05-01T12:00:00.25Z`, none for a
/// whole second); the epoch for a time RFC 3339's four-digit years cannot write (after
/// 9999) or before the epoch (a clock set wrong, a row written by hand).
fn rfc3339_ms(ms: i64) -> String {
    use std::fmt::Write as _;
    const EPOCH: &str = "1970-01-01T00:00:00Z";
    let Some(t) = u64::try_from(ms)
        .ok()
        .and_then(|ms| std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
    else {
        return EPOCH.to_owned();
    };
    // humantime refuses (fmt::Error) a year past 9999: written, never `to_string`ed.
    let mut text = String::with_capacity(24);
    if write!(text, "{}", humantime::format_rfc3339_millis(t)).is_err() {
        return EPOCH.to_owned();
    }
    // `..:SS.mmmZ`: drop the fraction's trailing zeros, and its dot when nothing is left.
    match text.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                format!("{whole}Z")
            } else {
                format!("{whole}.{fraction}Z")
            }
        }
        None => text,
    }
}

/// `{"type":..,"timestamp":..,"data":..}`, the payload placed as stored (already JSON).
fn standard_body(event_type: &str, created_at_ms: i64, payload: &str) -> String {
    let ts = rfc3339_ms(created_at_ms);
    let mut out = String::with_capacity(payload.len() + event_type.len() + 64);
    out.push_str("{\"type\":");
    out.push_str(&serde_json::Value::from(event_type).to_string());
    out.push_str(",\"timestamp\":\"");
    out.push_str(&ts);
    out.push_str("\",\"data\":");
    out.push_str(payload);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(format: Format) -> (Job, Target) {
        let target = Target {
            url: "https://example.com/h".into(),
            auth: crate::send::Auth::Bearer {
                token: "tok".into(),
            },
            format,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            previous_secret: Some("whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0".into()),
            previous_until: Some(2_000_000),
            enabled: true,
            disabled_reason: None,
            headers: [
                ("x-tenant".to_owned(), "acme".to_owned()),
                ("authorization".to_owned(), "Bearer not-this".to_owned()),
            ]
            .into_iter()
            .collect(),
        };
        let job = Job {
            delivery_id: 1,
            attempt: 1,
            message_id: "msg_1".into(),
            endpoint_id: "ep_1".into(),
            owner: String::new(),
            event_type: "order.created".into(),
            payload: r#"{"id":1}"#.into(),
            message_created_at: 1_700_000_000_000,
            traceparent: None,
            expunged: false,
            target: Some(target.clone()),
        };
        (job, target)
    }

    #[test]
    fn standard_messages_verify_with_the_receive_side() {
        let (job, target) = job(Format::Standard);
        let (body, headers) = build_request(&job, &target, 1_000_000).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"type":"order.created","timestamp":"2023-11-14T22:13:20Z","data":{"id":1}}"#
        );
        assert_eq!(headers["webhook-id"], "msg_1");
        assert_eq!(headers["authorization"], "Bearer tok");
        assert!(headers["authorization"].is_sensitive());
        // Both secrets sign during the grace: a receiver with either accepts.
        let sig = headers["webhook-signature"].to_str().unwrap();
        assert_eq!(sig.split(' ').count(), 2);
        for secret in [&target.secret, target.previous_secret.as_ref().unwrap()] {
            let r = crate::security::verify_at(
                "standard",
                &headers,
                &body,
                &[secret.as_str()],
                std::time::Duration::from_secs(300),
                1_000,
            );
            assert!(r.valid, "{r:?}");
        }
        // After the grace, only the new one.
        let (_, later) = build_request(&job, &target, 3_000_000).unwrap();
        assert_eq!(
            later["webhook-signature"]
                .to_str()
                .unwrap()
                .split(' ')
                .count(),
            1
        );
    }

    #[test]
    fn svix_messages_are_the_payload_itself_under_either_header_family() {
        for (format, prefix) in [(Format::Svix, "webhook-"), (Format::SvixHeaders, "svix-")] {
            let (job, target) = job(format);
            let (body, headers) = build_request(&job, &target, 1_000_000).unwrap();
            assert_eq!(&body[..], br#"{"id":1}"#, "byte for byte");
            assert_eq!(headers[format!("{prefix}id").as_str()], "msg_1");
            // The endpoint's own header is added; the authentication's is not replaced.
            assert_eq!(headers["x-tenant"], "acme");
            assert_eq!(headers["authorization"], "Bearer tok");
            // Svix's verifier maps `svix-*` to `webhook-*`: the same signature.
            let mut standard = http::HeaderMap::new();
            for name in ["id", "timestamp", "signature"] {
                standard.insert(
                    http::HeaderName::from_bytes(format!("webhook-{name}").as_bytes()).unwrap(),
                    headers[format!("{prefix}{name}").as_str()].clone(),
                );
            }
            let r = crate::security::verify_at(
                "standard",
                &standard,
                &body,
                &[target.secret.as_str()],
                std::time::Duration::from_secs(300),
                1_000,
            );
            assert!(r.valid, "{format:?}: {r:?}");
        }
    }

    #[test]
    fn fastapihooks_messages_are_the_raw_payload_with_a_hex_hmac() {
        let (job, target) = job(Format::Fastapihooks);
        let (body, headers) = build_request(&job, &target, 1_000_000).unwrap();
        assert_eq!(&body[..], br#"{"id":1}"#);
        assert_eq!(headers["x-fastapihooks-event"], "order.created");
        let expect = crate::security::scheme::hmac_sha256_hex(target.secret.as_bytes(), &body);
        assert_eq!(
            headers["x-fastapihooks-signature"],
            format!("sha256={expect}").as_str()
        );
        assert!(headers.get("webhook-signature").is_none());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("999999", 0),
            Some(Duration::from_secs(86400))
        );
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        // A date in the past: retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    /// The message's timestamp is what the `time` crate's RFC 3339 writes (the format the
    /// outbox always sent), for whole seconds, milliseconds and across the calendar from the
    /// epoch on.
    #[test]
    fn message_timestamps_are_rfc3339_as_before() {
        let mut ms: i64 = 0;
        for step in [1, 999, 1_000, 86_399_999, 2_592_000_123, 31_536_000_250] {
            for _ in 0..40 {
                ms += step;
                let want =
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                        .unwrap()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap();
                assert_eq!(rfc3339_ms(ms), want, "{ms}");
            }
        }
        assert_eq!(rfc3339_ms(-5), "1970-01-01T00:00:00Z");
        // Past year 9999 (which RFC 3339 cannot write): the epoch, never a panic.
        assert_eq!(rfc3339_ms(253_402_300_800_000), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(i64::MAX), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }
}
