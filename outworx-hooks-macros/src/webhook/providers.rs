//! What the attribute knows about providers: the catalog crate's table, the same one the
//! runtime reads (names, natural keys, envelopes, secret variables), so the two cannot drift.

use outworx_hooks_providers::{Provider, Spec};

pub(crate) fn find(name: &str) -> Option<&'static Spec> {
    Provider::from_name(name).map(Provider::spec)
}

/// The known name nearest to `name`, when it is close enough to be a typo.
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    Provider::suggest(name).map(Provider::name)
}

pub(crate) fn names() -> String {
    Provider::known_names()
}

/// The conventional environment variable for a provider's secret, for help messages (also
/// for a name that is not a provider: the same convention).
pub(crate) fn env_var(name: &str) -> String {
    find(name).map_or_else(
        || format!("{}_WEBHOOK_SECRET", name.to_ascii_uppercase()),
        |spec| spec.env_var.to_owned(),
    )
}
