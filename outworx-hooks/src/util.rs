//! Small helpers every layer of the crate uses, depending on nothing in it.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A boxed, `Send` future: what trait methods return so the traits can be `dyn` (stores,
/// sinks, async custom verifiers). Also at [`crate::store::BoxFuture`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
