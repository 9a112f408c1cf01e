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

#[cfg(test)]
mod tests {
    use super::*;

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
