//! The handler's shape: an async free function, not generic, whose parameters are
//! extractors; a `Track` parameter found here is what `require_processed` checks.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, Type};

use super::Ctxt;
use super::mark::marks_or_hands_on;
use crate::webhook::model::{Model, Param};

/// The handler's `Track` parameter, if it has one.
#[derive(Default)]
pub(super) struct TrackParam<'f> {
    /// The parameter's span.
    span: Option<Span>,
    /// Its name and span, when it is bound to a name (not `_` or a pattern).
    named: Option<(&'f Ident, Span)>,
}

/// Checks the function and records its parameters (and a last `Json<T>`) in the model.
pub(super) fn check<'f>(cx: &mut Ctxt, func: &'f ItemFn, m: &mut Model) -> TrackParam<'f> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        cx.error(
            sig.fn_token.span,
            "#[webhook] handlers are async: write `async fn`",
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error(sig.generics.span(), "#[webhook] handlers cannot be generic");
    }
    let mut track = TrackParam::default();
    let count = sig.inputs.len();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => cx.error(
                r.span(),
                "#[webhook] goes on a free function, not a method: move the handler out of the impl",
            ),
            FnArg::Typed(pt) => {
                if last_ident(&pt.ty).is_some_and(|id| id == "Track") {
                    track.span = Some(pt.span());
                    if let Pat::Ident(p) = &*pt.pat {
                        track.named = Some((&p.ident, pt.span()));
                    }
                }
                if i + 1 == count {
                    m.json = json_inner(&pt.ty);
                }
                m.params.push(Param { ty: (*pt.ty).clone() });
            }
        }
    }
    track
}

/// `require_processed` (at `req`) needs a named `Track` that the body marks or hands on.
pub(super) fn require_processed_is_marked(
    cx: &mut Ctxt,
    req: Span,
    track: &TrackParam<'_>,
    func: &ItemFn,
) {
    match (track.named, track.span) {
        (None, None) => cx.error(
            req,
            "require_processed needs a `Track` parameter: add `track: Track` to the handler and \
             call `track.processed()` (or `track.failed(..)`)",
        ),
        (None, Some(span)) => cx.error(
            span,
            "bind the Track to a name (`track: Track`) so the handler can call `track.processed()`",
        ),
        (Some((name, span)), _) => {
            if !marks_or_hands_on(name, &func.block) {
                cx.error(
                    span,
                    format!(
                        "this handler requires a processing mark but never calls \
                         `{name}.processed()` or `{name}.failed(..)`, nor hands `{name}` to \
                         another function: mark the event, or remove `require_processed`"
                    ),
                );
            }
        }
    }
}

/// The last path segment's name of a type: `Track` for `outworx_hooks::Track`.
fn last_ident(ty: &Type) -> Option<&Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
        _ => None,
    }
}

fn json_inner(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Json" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [syn::GenericArgument::Type(t)] => Some(t.clone()),
        _ => None,
    }
}
