//! Procedural macros of [`outworx-hooks`](https://docs.rs/outworx-hooks).
//!
//! Do not depend on this crate directly: `outworx-hooks` re-exports `#[webhook]` and pins
//! this crate to its exact version.

use proc_macro::TokenStream;

mod webhook;

/// Turns an async axum handler into a verified, deduplicated, reported webhook receiver.
///
/// See the `outworx_hooks` crate documentation for the grammar and examples.
#[proc_macro_attribute]
pub fn webhook(args: TokenStream, item: TokenStream) -> TokenStream {
    webhook::expand(args.into(), item.into()).into()
}
