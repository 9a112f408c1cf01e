//! The providers the SDK knows: the catalog crate's table, re-exported here and at the root.
//!
//! `outworx-hooks-providers` holds the one table (names, schemes, natural keys, envelopes,
//! handshakes) that this crate and the attribute both read.

pub use outworx_hooks_providers::{KeyKind, Provider, Source, UnknownProvider};
