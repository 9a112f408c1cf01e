//! Event filters: `order.created` (exact), `order.*` (every type under `order.`), `*` (all).

use super::SendError;

/// Whether `event_type` matches one of `patterns` (an empty list matches everything).
pub(crate) fn matches_any(patterns: &[String], event_type: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| matches(p, event_type))
}

/// Whether `event_type` matches `pattern`.
pub(crate) fn matches(pattern: &str, event_type: &str) -> bool {
    crate::util::event_matches(pattern, event_type)
}

/// A pattern is an event type, `*`, or an event type prefix ending in `.*`.
pub(crate) fn validate_pattern(p: &str) -> Result<(), SendError> {
    if outworx_hooks_providers::is_event_pattern(p) {
        return Ok(());
    }
    Err(SendError::invalid(
        "events",
        format!(
            "`{}` is not a pattern: use `order.created`, `order.*` or `*`",
            p.escape_debug()
        ),
    ))
}

/// Whether an endpoint taking `endpoint` channels (`None`: every message) takes a message
/// sent on `message` (`None`: on none): as Svix, a message on no channel never reaches an
/// endpoint that names channels.
pub(crate) fn channels_match(endpoint: Option<&[String]>, message: Option<&[String]>) -> bool {
    match endpoint {
        None => true,
        Some(wanted) => message.is_some_and(|m| m.iter().any(|c| wanted.contains(c))),
    }
}

/// Channels are 1 to `most` names of 1 to 128 bytes of `[A-Za-z0-9-_.]` (Svix's rule).
pub(crate) fn validate_channels(
    field: &'static str,
    channels: Option<&[String]>,
    most: usize,
) -> Result<(), SendError> {
    let Some(channels) = channels else {
        return Ok(());
    };
    if channels.is_empty() || channels.len() > most {
        return Err(SendError::invalid(
            field,
            format!("at least 1 and at most {most} channels, or none at all"),
        ));
    }
    for c in channels {
        if !is_name(c, 128) {
            return Err(SendError::invalid(
                field,
                "a channel is 1 to 128 bytes of letters, digits and `- _ .`",
            ));
        }
    }
    Ok(())
}

/// 1 to `max` bytes of `[A-Za-z0-9-_.]`: Svix's uids, event type names and channels.
pub(crate) fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Header names an endpoint may not set (as Svix): the transport's own, and the signature's.
const FORBIDDEN_HEADERS: &[&str] = &[
    "user-agent",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "age",
    "cache-control",
    "clear-site-data",
    "expires",
    "pragma",
    "warning",
    "content-length",
    "content-type",
    "content-encoding",
    "content-language",
    "content-location",
    "host",
    "connection",
    "traceparent",
    "tracestate",
];
const FORBIDDEN_PREFIXES: &[&str] = &[
    "x-amz-",
    "x-amzn-",
    "x-google",
    "x-goog-",
    "x-gfe",
    "x-azure-",
    "x-fd-",
    "x-svix-",
    "svix-",
    "webhook-",
    "x-fastapihooks-",
];

/// Checks an endpoint's custom headers: valid names and values, none of the forbidden ones,
/// bounded in number and bytes.
pub(crate) fn validate_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<(), SendError> {
    use super::limits::{MAX_HEADER_VALUE, MAX_HEADERS, MAX_HEADERS_BYTES};
    if headers.len() > MAX_HEADERS {
        return Err(SendError::invalid(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut bytes = 0usize;
    let mut seen = std::collections::HashSet::new();
    for (name, value) in headers {
        bytes += name.len() + value.len();
        let lower = name.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            return Err(SendError::invalid(
                "headers",
                format!("`{lower}` is given twice (header names ignore case)"),
            ));
        }
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(SendError::invalid(
                "headers",
                format!("`{}` is not a header name", name.escape_debug()),
            ));
        }
        if FORBIDDEN_HEADERS.contains(&lower.as_str())
            || FORBIDDEN_PREFIXES.iter().any(|p| lower.starts_with(p))
        {
            return Err(SendError::invalid(
                "headers",
                format!("`{lower}` may not be set: it is the transport's or the signature's"),
            ));
        }
        if value.len() > MAX_HEADER_VALUE || http::HeaderValue::from_str(value).is_err() {
            return Err(SendError::invalid(
                "headers",
                format!("the value of `{lower}` is not a header value of at most 4 KiB"),
            ));
        }
    }
    if bytes > MAX_HEADERS_BYTES {
        return Err(SendError::invalid("headers", "at most 16 KiB of headers"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_match_as_svix_does() {
        let ch = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(channels_match(None, None));
        assert!(channels_match(None, Some(&ch(&["a"]))));
        assert!(!channels_match(Some(&ch(&["a"])), None));
        assert!(channels_match(
            Some(&ch(&["a", "b"])),
            Some(&ch(&["c", "b"]))
        ));
        assert!(!channels_match(Some(&ch(&["a"])), Some(&ch(&["b"]))));
        assert!(validate_channels("channels", Some(&[]), 5).is_err());
        assert!(validate_channels("channels", Some(&ch(&["a"; 6])), 5).is_err());
        assert!(validate_channels("channels", Some(&ch(&["a b"])), 5).is_err());
        assert!(validate_channels("channels", Some(&ch(&["project_1.x-y"])), 5).is_ok());
    }

    #[test]
    fn headers_refuse_the_signatures_and_the_transports() {
        let one = |n: &str, v: &str| [(n.to_owned(), v.to_owned())].into_iter().collect();
        assert!(validate_headers(&one("x-tenant", "acme")).is_ok());
        for bad in [
            "Content-Type",
            "webhook-signature",
            "svix-id",
            "X-Amz-Date",
            "bad name",
        ] {
            assert!(validate_headers(&one(bad, "v")).is_err(), "{bad}");
        }
        assert!(validate_headers(&one("x-a", "line\nbreak")).is_err());
        let twice = [
            ("X-A".to_owned(), "1".to_owned()),
            ("x-a".to_owned(), "2".to_owned()),
        ];
        assert!(validate_headers(&twice.into_iter().collect()).is_err());
        assert!(validate_headers(&one("x-a", &"v".repeat(4097))).is_err());
    }

    #[test]
    fn patterns_match_as_documented() {
        assert!(matches("*", "order.created"));
        assert!(matches("order.*", "order.created"));
        assert!(matches("order.*", "order.line.added"));
        assert!(!matches("order.*", "order."));
        assert!(!matches("order.*", "orders.created"));
        assert!(!matches("order.*", "order"));
        assert!(matches("order.created", "order.created"));
        assert!(!matches("order.created", "order.created2"));
        assert!(matches_any(&[], "x"));
        assert!(!matches_any(&["a".into()], "b"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for ok in ["*", "order.*", "order.created", "a:b/c-d_e"] {
            assert!(validate_pattern(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".*",
            "order*",
            "*.created",
            "or*der.*",
            "a b",
            "order.**",
        ] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
    }
}
