//! Validation: from parsed arguments and the handler to a checked model, collecting every
//! error at its own token (each message says what is wrong and how to fix it).

use std::collections::HashMap;

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, FnArg, Ident, ItemFn, Lit, LitStr, Pat, Token, Type};

use super::args::{Arg, Args, Value};
use super::providers;
use outworx_hooks_providers::Spec;

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

pub(crate) enum Secret {
    Env(LitStr),
    Literal(LitStr),
    Func(syn::Path),
}

pub(crate) enum Key {
    /// Bare `idempotency`: the provider's natural key.
    Default,
    Header(String),
    /// `body.a.b` / `body["a"]`, checked by rustc against the body type.
    Body(Expr),
}

pub(crate) struct Param {
    pub(crate) ty: Type,
}

/// Where `allow_ips` comes from.
pub(crate) enum AllowIps {
    /// Literal CIDRs, each checked here.
    List(Vec<LitStr>),
    /// A comma-separated environment variable, read at run time.
    Env(LitStr),
}

pub(crate) struct Model {
    pub(crate) provider: Option<&'static Spec>,
    pub(crate) secrets: Vec<Secret>,
    pub(crate) key: Option<Key>,
    pub(crate) key_span: Span,
    pub(crate) event_type: Option<Key>,
    pub(crate) ttl: Option<u64>,
    pub(crate) tolerance: Option<u64>,
    pub(crate) require_processed: bool,
    pub(crate) reject_invalid: Option<bool>,
    pub(crate) capture_body: Option<bool>,
    pub(crate) capture_headers: Option<bool>,
    pub(crate) metadata: Vec<(String, LitStr)>,
    pub(crate) verifier: Option<syn::Path>,
    pub(crate) max_body: Option<u64>,
    pub(crate) redact: Vec<String>,
    pub(crate) allow_ips: Option<AllowIps>,
    pub(crate) krate: Option<syn::Path>,
    pub(crate) params: Vec<Param>,
    /// `T` of a last `Json<T>` parameter: parsed once, shared by keys and the handler.
    pub(crate) json: Option<Type>,
}

const TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=604_800;

/// A number, or a string with one of `units` (value, multiplier).
fn amount(lit: &Lit, units: &[(&str, u64)], what: &str, cx: &mut Ctxt) -> Option<u64> {
    match lit {
        Lit::Int(i) => match i.base10_parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                cx.error(i.span(), format!("{what} must be a whole number"));
                None
            }
        },
        Lit::Str(s) => {
            let text = s.value();
            let text = text.trim();
            let split = text
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let unit = unit.trim();
            let mult = units.iter().find(|(u, _)| *u == unit).map(|(_, m)| *m);
            match (digits.parse::<u64>(), mult) {
                (Ok(n), Some(m)) => n.checked_mul(m).or_else(|| {
                    cx.error(s.span(), format!("{what} is too large"));
                    None
                }),
                _ => {
                    let names: Vec<_> = units.iter().map(|(u, _)| format!("`{u}`")).collect();
                    cx.error(
                        s.span(),
                        format!(
                            "{what} `{text}` is not a number with a unit ({})",
                            names.join(", ")
                        ),
                    );
                    None
                }
            }
        }
        other => {
            cx.error(other.span(), format!("{what} must be a number"));
            None
        }
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_body_path(e: &Expr) -> bool {
    match e {
        Expr::Path(p) => p.path.is_ident("body"),
        Expr::Field(f) => is_body_path(&f.base),
        Expr::Index(i) => {
            matches!(&*i.index, Expr::Lit(l) if matches!(l.lit, Lit::Str(_) | Lit::Int(_)))
                && is_body_path(&i.expr)
        }
        Expr::Paren(p) => is_body_path(&p.expr),
        _ => false,
    }
}

fn key_expr(e: &Expr, what: &str, cx: &mut Ctxt) -> Option<Key> {
    if let Expr::Call(call) = e
        && let Expr::Path(f) = &*call.func
        && f.path.is_ident("header")
    {
        let name = match call.args.iter().collect::<Vec<_>>().as_slice() {
            [Expr::Lit(l)] => {
                match &l.lit {
                    Lit::Str(s) => s,
                    other => {
                        cx.error(other.span(), "header(..) takes the header name as a string: header(\"x-request-id\")");
                        return None;
                    }
                }
            }
            _ => {
                cx.error(
                    call.span(),
                    "header(..) takes one header name: header(\"x-request-id\")",
                );
                return None;
            }
        };
        let value = name.value();
        if !valid_header_name(&value) {
            cx.error(
                name.span(),
                format!(
                    "`{value}` is not a valid HTTP header name: use letters, digits and `-`, \
                     e.g. header(\"x-github-delivery\")"
                ),
            );
            return None;
        }
        return Some(Key::Header(value.to_ascii_lowercase()));
    }
    if is_body_path(e) && !matches!(e, Expr::Path(_)) {
        return Some(Key::Body(e.clone()));
    }
    cx.error(
        e.span(),
        format!(
            "{what} takes `body.field`, `body[\"key\"]` or `header(\"name\")`{}",
            if what == "idempotency" {
                ", or nothing for the provider's natural key"
            } else {
                ""
            }
        ),
    );
    None
}

/// `redact = [..]`: header names, lowercased.
fn redact(list: &[LitStr], cx: &mut Ctxt) -> Vec<String> {
    let mut out = Vec::new();
    for lit in list {
        let name = lit.value();
        if valid_header_name(&name) {
            out.push(name.to_ascii_lowercase());
        } else {
            cx.error(
                lit.span(),
                format!(
                    "`{name}` is not a valid HTTP header name: use letters, digits and `-`, \
                     e.g. redact = [\"x-hook-secret\"]"
                ),
            );
        }
    }
    out
}

/// Checks one `allow_ips` entry: an address, or an address and a prefix length that fits it.
fn cidr(text: &str) -> Result<(), String> {
    use std::net::IpAddr;
    let bad = || {
        format!(
            "`{text}` is not an IP address or CIDR: write e.g. \"192.0.2.0/24\", \
             \"2001:db8::/32\" or \"203.0.113.7\""
        )
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.map(str::parse::<u8>) {
        None => Ok(()),
        Some(Ok(p)) if p <= max => Ok(()),
        Some(_) => Err(bad()),
    }
}

/// The `"VAR"` of `env("VAR")`.
fn env_var_of(e: &Expr) -> Option<LitStr> {
    let Expr::Call(call) = e else { return None };
    let Expr::Path(f) = &*call.func else {
        return None;
    };
    if !f.path.is_ident("env") {
        return None;
    }
    match call.args.iter().collect::<Vec<_>>().as_slice() {
        [Expr::Lit(l)] => match &l.lit {
            Lit::Str(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn secret(e: &Expr, cx: &mut Ctxt) -> Option<Secret> {
    const FORMS: &str = "a secret is env(\"VAR\"), \"literal\", path::to::fn, or a list of them: [env(\"NEW\"), env(\"OLD\")]";
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) if s.value().trim().is_empty() => {
                cx.error(s.span(), "the secret is empty");
                None
            }
            Lit::Str(s) => Some(Secret::Literal(s.clone())),
            other => {
                cx.error(other.span(), FORMS);
                None
            }
        },
        Expr::Call(call) => {
            let is_env = matches!(&*call.func, Expr::Path(p) if p.path.is_ident("env"));
            if !is_env {
                cx.error(call.func.span(), FORMS);
                return None;
            }
            match call.args.iter().collect::<Vec<_>>().as_slice() {
                [Expr::Lit(l)] => match &l.lit {
                    Lit::Str(s) if valid_env_name(&s.value()) => Some(Secret::Env(s.clone())),
                    Lit::Str(s) => {
                        cx.error(
                            s.span(),
                            "env(..) needs a variable name: letters, digits and `_`, e.g. env(\"STRIPE_WEBHOOK_SECRET\")",
                        );
                        None
                    }
                    other => {
                        cx.error(other.span(), "env(..) takes the variable name as a string: env(\"STRIPE_WEBHOOK_SECRET\")");
                        None
                    }
                },
                _ => {
                    cx.error(
                        call.span(),
                        "env(..) takes one variable name: env(\"STRIPE_WEBHOOK_SECRET\")",
                    );
                    None
                }
            }
        }
        Expr::Path(p) if p.qself.is_none() => Some(Secret::Func(p.path.clone())),
        other => {
            cx.error(other.span(), FORMS);
            None
        }
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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

pub(crate) fn check(args: Args, func: &ItemFn) -> Result<Model, syn::Error> {
    let mut cx = Ctxt::default();
    let mut seen: HashMap<&'static str, Span> = HashMap::new();
    let mut m = Model {
        provider: None,
        secrets: Vec::new(),
        key: None,
        key_span: Span::call_site(),
        event_type: None,
        ttl: None,
        tolerance: None,
        require_processed: false,
        reject_invalid: None,
        capture_body: None,
        capture_headers: None,
        metadata: Vec::new(),
        verifier: None,
        max_body: None,
        redact: Vec::new(),
        allow_ips: None,
        krate: None,
        params: Vec::new(),
        json: None,
    };
    let mut provider_lit: Option<LitStr> = None;
    let mut require_span = None;
    let mut secret_given = false;

    for Arg { name, span, value } in args.items {
        if let Some(first) = seen.insert(name, span) {
            cx.error(span, format!("duplicate `{name}`: remove one of them"));
            seen.insert(name, first);
            continue;
        }
        match (name, value) {
            ("provider", Value::Str(s)) => {
                match providers::find(&s.value()) {
                    Some(p) => m.provider = Some(p),
                    None => {
                        let hint = providers::suggest(&s.value())
                            .map(|n| format!("; did you mean `{n}`?"))
                            .unwrap_or_default();
                        cx.error(
                            s.span(),
                            format!(
                                "unknown provider `{}`{hint}\n  known providers: {}",
                                s.value(),
                                providers::names()
                            ),
                        );
                    }
                }
                provider_lit = Some(s);
            }
            ("secret", Value::Secrets(list)) => {
                secret_given = true;
                if list.is_empty() {
                    cx.error(span, "`secret = []` lists no secret: give at least one");
                }
                m.secrets = list.iter().filter_map(|e| secret(e, &mut cx)).collect();
            }
            ("idempotency", Value::Flag) => {
                m.key = Some(Key::Default);
                m.key_span = span;
            }
            ("idempotency", Value::Key(e)) => {
                m.key = key_expr(&e, "idempotency", &mut cx);
                m.key_span = e.span();
            }
            ("event_type", Value::Key(e)) => m.event_type = key_expr(&e, "event_type", &mut cx),
            ("ttl", Value::Amount(lit)) => {
                let units = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];
                if let Some(v) = amount(&lit, &units, "ttl", &mut cx) {
                    if TTL_RANGE.contains(&v) {
                        m.ttl = Some(v);
                    } else {
                        cx.error(
                            lit.span(),
                            format!("ttl must be between 60 seconds and 7 days (604800); got {v}"),
                        );
                    }
                }
            }
            ("tolerance", Value::Amount(lit)) => match amount(&lit, &[], "tolerance", &mut cx) {
                Some(0) => cx.error(lit.span(), "tolerance must be more than 0 seconds"),
                Some(v) => m.tolerance = Some(v),
                None => {}
            },
            ("max_body", Value::Amount(lit)) => {
                let units = [
                    ("B", 1),
                    ("KB", 1000),
                    ("KiB", 1024),
                    ("MB", 1_000_000),
                    ("MiB", 1 << 20),
                ];
                match amount(&lit, &units, "max_body", &mut cx) {
                    Some(0) => cx.error(lit.span(), "max_body must be more than 0 bytes"),
                    Some(v) => m.max_body = Some(v),
                    None => {}
                }
            }
            ("require_processed", Value::Flag) => {
                m.require_processed = true;
                require_span = Some(span);
            }
            ("reject_invalid", Value::Bool(b)) => m.reject_invalid = Some(b.value),
            ("capture_body", Value::Flag) => m.capture_body = Some(true),
            ("capture_body", Value::Bool(b)) => m.capture_body = Some(b.value),
            ("capture_headers", Value::Bool(b)) => m.capture_headers = Some(b.value),
            ("metadata", Value::Metadata(pairs)) => {
                m.metadata = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            }
            ("redact", Value::Strings(list)) => m.redact = redact(&list, &mut cx),
            ("allow_ips", Value::Strings(list)) => {
                if list.is_empty() {
                    cx.error(
                        span,
                        "`allow_ips = []` allows no source: list at least one CIDR",
                    );
                }
                for lit in &list {
                    if let Err(why) = cidr(&lit.value()) {
                        cx.error(lit.span(), why);
                    }
                }
                m.allow_ips = Some(AllowIps::List(list));
            }
            ("allow_ips", Value::Expr(e)) => match env_var_of(&e) {
                Some(var) if valid_env_name(&var.value()) => m.allow_ips = Some(AllowIps::Env(var)),
                _ => cx.error(
                    e.span(),
                    "allow_ips takes a list of CIDRs, [\"192.0.2.0/24\", \"2001:db8::/32\"], or \
                     env(\"VAR\") holding them comma-separated",
                ),
            },
            ("verifier", Value::Path(p)) => m.verifier = Some(p),
            ("crate", Value::Path(p)) => m.krate = Some(p),
            (other, _) => cx.error(span, format!("`{other}` does not take this form")),
        }
    }

    match (&provider_lit, secret_given, &m.verifier) {
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

    // The handler itself.
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
    let mut track: Option<(&Ident, Span)> = None;
    let mut track_param_span = None;
    let count = sig.inputs.len();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => cx.error(
                r.span(),
                "#[webhook] goes on a free function, not a method: move the handler out of the impl",
            ),
            FnArg::Typed(pt) => {
                if last_ident(&pt.ty).is_some_and(|id| id == "Track") {
                    track_param_span = Some(pt.span());
                    if let Pat::Ident(p) = &*pt.pat {
                        track = Some((&p.ident, pt.span()));
                    }
                }
                if i + 1 == count {
                    m.json = json_inner(&pt.ty);
                }
                m.params.push(Param { ty: (*pt.ty).clone() });
            }
        }
    }

    if let Some(req) = require_span {
        match (track, track_param_span) {
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
                let mut scan = Scan {
                    binding: name,
                    aliases: Vec::new(),
                    marked: false,
                    handed: false,
                };
                scan.visit_block(&func.block);
                if !scan.marked && !scan.handed {
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

    // Keys on the body need a type: the handler's Json<T>, or the provider's envelope.
    let body_keys = [&m.key, &m.event_type]
        .into_iter()
        .any(|k| matches!(k, Some(Key::Body(_))));
    if body_keys && m.json.is_none() {
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

    cx.finish().map(|()| m)
}

/// Finds `binding.processed(..)` / `.failed(..)` calls, or the binding handed on, following
/// simple `let` aliases (`let t = &track;`, `let t = track.clone();`): an alias that is
/// marked or handed on counts, one that is only bound does not.
struct Scan<'a> {
    binding: &'a Ident,
    aliases: Vec<Ident>,
    marked: bool,
    handed: bool,
}

const MARKS: [&str; 4] = ["processed", "processed_with", "failed", "failed_with"];

impl Scan<'_> {
    fn is_name(&self, path: &syn::ExprPath) -> bool {
        path.qself.is_none()
            && (path.path.is_ident(self.binding)
                || self.aliases.iter().any(|a| path.path.is_ident(a)))
    }

    fn is_binding(&self, e: &Expr) -> bool {
        match e {
            Expr::Path(p) => self.is_name(p),
            Expr::Paren(p) => self.is_binding(&p.expr),
            Expr::Reference(r) => self.is_binding(&r.expr),
            _ => false,
        }
    }

    /// Whether `e` is the binding itself, a reference to it, or a clone of it.
    fn is_alias_of_binding(&self, e: &Expr) -> bool {
        match e {
            Expr::MethodCall(call) => {
                call.method == "clone" && call.args.is_empty() && self.is_binding(&call.receiver)
            }
            other => self.is_binding(other),
        }
    }
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_local(&mut self, local: &'ast syn::Local) {
        let pat = match &local.pat {
            Pat::Type(t) => &*t.pat,
            other => other,
        };
        if let (Pat::Ident(p), Some(init)) = (pat, &local.init)
            && p.subpat.is_none()
            && init.diverge.is_none()
            && self.is_alias_of_binding(&init.expr)
        {
            // Only bound so far: it counts once it is marked or handed on.
            self.aliases.push(p.ident.clone());
            return;
        }
        syn::visit::visit_local(self, local);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if self.is_binding(&call.receiver) {
            let method = call.method.to_string();
            if MARKS.contains(&method.as_str()) {
                self.marked = true;
            } else if method == "clone" {
                // A clone goes somewhere else: a task, a struct, a function.
                self.handed = true;
            }
            for arg in &call.args {
                self.visit_expr(arg);
            }
            return;
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        // Any other use of the binding moves or lends it on: an argument, a field, a return.
        if self.is_name(p) {
            self.handed = true;
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Macro arguments are tokens; read them as expressions where they are.
        if let Ok(exprs) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for e in &exprs {
                self.visit_expr(e);
            }
        }
    }
}
