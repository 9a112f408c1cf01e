//! Procedural macros of [`outworx-hooks`](https://docs.rs/outworx-hooks).
//!
//! Do not depend on this crate directly: `outworx-hooks` re-exports `#[webhook]` and pins
//! this crate to its exact version.

use proc_macro::TokenStream;

/// A span at the user's token (where errors point) with the call site's hygiene, so the
/// generated code's own names (`__v`, `__req`, ...) resolve alike however the attribute was
/// invoked, also from inside a `macro_rules!`.
pub(crate) fn at(span: proc_macro2::Span) -> proc_macro2::Span {
    span.resolved_at(proc_macro2::Span::call_site())
}

mod emit;
mod webhook;

/// *Implemented in `outworx-hooks-macros`. Use it as `outworx_hooks::webhook`, whose
/// documentation is the reference (arguments, compile-time checks, the steps of a delivery)
/// and which pins this crate to its exact version.*
#[proc_macro_attribute]
pub fn webhook(args: TokenStream, item: TokenStream) -> TokenStream {
    webhook::expand(args.into(), item.into()).into()
}

/// *Implemented in `outworx-hooks-macros`. Use it as `outworx_hooks::emit` (feature `send`),
/// whose documentation is the reference.*
#[proc_macro_attribute]
pub fn emit(args: TokenStream, item: TokenStream) -> TokenStream {
    emit::expand(args.into(), item.into()).into()
}
