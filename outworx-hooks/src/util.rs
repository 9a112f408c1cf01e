//! Small helpers every layer of the crate uses, depending on nothing in it.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A boxed, `Send` future: what trait methods return so the traits can be `dyn` (stores,
/// sinks, async custom verifiers). Also at [`crate::store::BoxFuture`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `path` and its query with every value `[REDACTED]` (names kept; a bare item, which may be a
/// token itself, redacted whole): how a request's URL is shown anywhere but to its handler.
pub(crate) fn query_redacted(path: &str, query: Option<&str>) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return path.to_owned();
    };
    const REDACTED: &str = "[REDACTED]";
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
            None => out.push_str(REDACTED),
        }
    }
    out
}

/// The message of a caught panic (`panic!("...")` carries a `&str` or a `String`).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// `s` as a `&'static str`, allocated once per distinct value and kept for the life of the
/// process. For names that events carry as `&'static str` but a layer takes at run time
/// (`TrackOptions::name`): building the same layer again allocates nothing. Names come from
/// the application's code, never from a request; an application that builds layers with
/// names of its own making (one per tenant, say) keeps one string per name.
pub(crate) fn intern(s: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(name) = names.get(s) {
        return name;
    }
    let name: &'static str = Box::leak(s.to_owned().into_boxed_str());
    names.insert(name);
    name
}

/// Whether `event_type` matches `pattern`: `*` (everything), `order.*` (every type under
/// `order.`), or the type itself. The sending side's endpoint filters and a route's `events`
/// share it.
pub(crate) fn event_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.len() > prefix.len() && event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_once() {
        let a = intern(&format!("layer:{}", "stripe"));
        let b = intern("layer:stripe");
        assert_eq!(a, "layer:stripe");
        assert!(
            std::ptr::eq(a, b),
            "the second call reuses the first allocation"
        );
    }

    #[test]
    fn panic_messages() {
        let caught = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(&*caught), "boom 1");
        let caught = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*caught), "plain");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&*caught), "a panic without a message");
    }
}

/// At most one log line per `every` from one call site; the lines it held back are counted
/// and reported with the next one. An outage that fails every delivery logs a line a period,
/// not a line a delivery.
#[derive(Debug)]
pub(crate) struct Every {
    every_ms: u64,
    /// When the last line was let through, in ms since the first call (plus one; 0: never).
    last: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
    epoch: std::sync::OnceLock<std::time::Instant>,
}

impl Every {
    pub(crate) const fn new(every: std::time::Duration) -> Self {
        Every {
            every_ms: every.as_millis() as u64,
            last: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
            epoch: std::sync::OnceLock::new(),
        }
    }

    /// `Some(lines held back since the last one)` when this line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let epoch = self.epoch.get_or_init(std::time::Instant::now);
        let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now < last.saturating_add(self.every_ms) {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod every_tests {
    use super::Every;
    use std::time::Duration;

    #[test]
    fn one_line_a_period_and_the_rest_counted() {
        let every = Every::new(Duration::from_secs(3600));
        assert_eq!(every.allow(), Some(0));
        for _ in 0..99 {
            assert_eq!(every.allow(), None);
        }
        let zero = Every::new(Duration::ZERO);
        assert_eq!(zero.allow(), Some(0));
        assert_eq!(zero.allow(), Some(0));
        assert_eq!(every.held.load(std::sync::atomic::Ordering::Relaxed), 99);
    }
}
