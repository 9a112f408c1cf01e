//! Validation: from parsed arguments and the handler to a checked [`Model`], collecting every
//! error at its own token (each message says what is wrong and how to fix it).
//!
//! As serde's `check.rs`, one named rule per function: [`args`] reads each argument,
//! [`handler`] checks the function's shape, and the rules here tie them together. The rules
//! run in a fixed order, which is the order of the errors rustc shows.

mod args;
mod handler;
mod mark;
mod values;

use proc_macro2::Span;
use syn::{ItemFn, LitStr};

use super::args::Args;
use super::model::{Key, Model};
use super::providers;

/// Collects errors, as serde's `Ctxt` does.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Option<syn::Error>,
}

impl Ctxt {
    pub(crate) fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        let e = syn::Error::new(span, message);
        match &mut self.errors {
            Some(all) => all.combine(e),
            None => self.errors = Some(e),
        }
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.errors.map_or(Ok(()), Err)
    }
}

/// Checks the attribute's arguments and the handler, returning the model or every error.
pub(crate) fn check(args: Args, func: &ItemFn) -> Result<Model, syn::Error> {
    let mut cx = Ctxt::default();
    let mut m = Model::empty();
    let given = args::read(&mut cx, args, &mut m);
    provider_has_a_secret(&mut cx, &m, given.provider.as_ref(), given.secret);
    let track = handler::check(&mut cx, func, &mut m);
    if let Some(span) = given.require_processed {
        handler::require_processed_is_marked(&mut cx, span, &track, func);
    }
    body_keys_have_a_type(&mut cx, &m);
    natural_key_exists(&mut cx, &m);
    queue_has_a_key(&mut cx, &m);
    events_have_a_type(&mut cx, &m);
    cx.finish().map(|()| m)
}

/// The inbox holds each delivery once, by its idempotency key: `queue` needs one.
fn queue_has_a_key(cx: &mut Ctxt, m: &Model) {
    if m.queue.is_some() && m.key.is_none() {
        cx.error(
            m.queue_span,
            "`queue` stores each delivery once, by its idempotency key: add `idempotency` (the \
             provider's natural key) or `idempotency = body.id`",
        );
    }
}

/// `events` filters on the event type: the route must know it.
fn events_have_a_type(cx: &mut Ctxt, m: &Model) {
    let known = m.event_type.is_some() || m.provider.is_some_and(|p| p.event_type.is_some());
    if let (Some(first), false) = (m.events.first(), known) {
        cx.error(
            first.span(),
            "`events` filters on the event type, and this route has none: add \
             `event_type = body.type` (or a provider that sends one)",
        );
    }
}

/// A provider needs a secret (unless a custom verifier decides), and a route needs one of the
/// two.
fn provider_has_a_secret(cx: &mut Ctxt, m: &Model, provider: Option<&LitStr>, secret: bool) {
    match (provider, secret, &m.verifier) {
        (Some(lit), false, None) => {
            let var = providers::env_var(&lit.value());
            cx.error(
                lit.span(),
                format!(
                    "provider `{}` needs a secret: add `secret = env(\"{var}\")`",
                    lit.value()
                ),
            );
        }
        (None, _, None) => cx.error(
            Span::call_site(),
            "#[webhook] needs `provider = \"...\"` (with `secret = ...`) or `verifier = path::to::fn`",
        ),
        _ => {}
    }
}

/// `body.` keys need a type to read them from: the handler's `Json<T>`, or the provider's
/// envelope.
fn body_keys_have_a_type(cx: &mut Ctxt, m: &Model) {
    if !m.uses_body_key() || m.json.is_some() {
        return;
    }
    match m.provider {
        Some(p) if p.envelope.is_none() => cx.error(
            m.key_span,
            format!(
                "provider `{}` has no body envelope to read `body.` paths from: take the body \
                 as `Json<T>` in the handler, or key on a header(\"..\")",
                p.name
            ),
        ),
        None => cx.error(
            m.key_span,
            "`body.` keys need the body type: take it as `Json<T>` in the handler",
        ),
        _ => {}
    }
}

/// Bare `idempotency` needs a provider with a natural key.
fn natural_key_exists(cx: &mut Ctxt, m: &Model) {
    if let (Some(Key::Default), Some(p)) = (&m.key, m.provider)
        && p.natural_key.is_none()
    {
        cx.error(
            m.key_span,
            format!(
                "provider `{}` has no natural idempotency key: write `idempotency = body.<field>` \
                 or `idempotency = header(\"<name>\")`",
                p.name
            ),
        );
    }
}
