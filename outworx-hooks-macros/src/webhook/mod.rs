//! `#[webhook]`: parse ([`args`]), check ([`mod@check`], into a [`model::Model`]), expand
//! ([`mod@expand`]). The provider knowledge comes from the catalog crate ([`providers`]).

mod args;
mod check;
pub(crate) mod expand;
mod model;
mod providers;

use proc_macro2::TokenStream;
use quote::ToTokens;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let msg = syn::Error::new(e.span(), "#[webhook] goes on an `async fn` handler");
            return with_item(msg, item);
        }
    };
    let parsed = match syn::parse2::<args::Args>(args) {
        Ok(a) => a,
        Err(e) => return with_item(e, func.into_token_stream()),
    };
    match check::check(parsed, &func) {
        Ok(model) => expand::expand(model, func),
        Err(e) => with_item(e, func.into_token_stream()),
    }
}

/// The errors, and the user's item unchanged beside them, so one mistake does not cascade
/// into unrelated errors (as `#[tokio::main]` does).
fn with_item(error: syn::Error, item: TokenStream) -> TokenStream {
    let mut out = error.to_compile_error();
    out.extend(item);
    out
}
