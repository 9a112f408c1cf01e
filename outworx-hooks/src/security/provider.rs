//! The providers the SDK knows: the catalog crate's table, re-exported here and at the root.
//!
//! `outworx-hooks-providers` holds the one table (names, schemes, natural keys, envelopes,
//! handshakes) that this crate and the attribute both read.

pub(crate) use outworx_hooks_providers::{KeyKind, Source};
pub use outworx_hooks_providers::{Provider, UnknownProvider};
