//! Reading the attribute's arguments into the model: each key once, each value by its own
//! rule in [`super::values`].

use std::collections::HashMap;

use proc_macro2::Span;
use syn::LitStr;
use syn::spanned::Spanned;

use super::Ctxt;
use super::values::{self, SIZE_UNITS, TTL_RANGE, TTL_UNITS};
use crate::webhook::args::{Arg, Args, Value};
use crate::webhook::model::{AllowIps, Key, Model};
use crate::webhook::providers;

/// What the later rules need to know about the arguments as written.
#[derive(Default)]
pub(super) struct Given {
    /// `provider = "..."` as written (also when the name is unknown).
    pub(super) provider: Option<LitStr>,
    /// Whether `secret = ...` was given (even an empty or malformed one).
    pub(super) secret: bool,
    /// The `require_processed` token.
    pub(super) require_processed: Option<Span>,
}

/// Reads every argument into `m`; a key given twice is reported at the second.
pub(super) fn read(cx: &mut Ctxt, args: Args, m: &mut Model) -> Given {
    let mut seen: HashMap<&'static str, Span> = HashMap::new();
    let mut given = Given::default();
    for arg in args.items {
        if let Some(first) = seen.insert(arg.name, arg.span) {
            cx.error(
                arg.span,
                format!("duplicate `{}`: remove one of them", arg.name),
            );
            seen.insert(arg.name, first);
            continue;
        }
        apply(cx, arg, m, &mut given);
    }
    given
}

fn apply(cx: &mut Ctxt, Arg { name, span, value }: Arg, m: &mut Model, given: &mut Given) {
    match (name, value) {
        ("provider", Value::Str(s)) => {
            m.provider = provider(cx, &s);
            given.provider = Some(s);
        }
        ("secret", Value::Secrets(list)) => {
            given.secret = true;
            if list.is_empty() {
                cx.error(span, "`secret = []` lists no secret: give at least one");
            }
            m.secrets = list.iter().filter_map(|e| values::secret(e, cx)).collect();
        }
        ("idempotency", Value::Flag) => {
            m.key = Some(Key::Default);
            m.key_span = span;
        }
        ("idempotency", Value::Key(e)) => {
            m.key = values::key_expr(&e, "idempotency", cx);
            m.key_span = e.span();
        }
        ("event_type", Value::Key(e)) => m.event_type = values::key_expr(&e, "event_type", cx),
        ("ttl", Value::Amount(lit)) => m.ttl = ttl(cx, &lit),
        ("tolerance", Value::Amount(lit)) => match values::amount(&lit, &[], "tolerance", cx) {
            Some(0) => cx.error(lit.span(), "tolerance must be more than 0 seconds"),
            Some(v) => m.tolerance = Some(v),
            None => {}
        },
        ("max_body", Value::Amount(lit)) => match values::amount(&lit, &SIZE_UNITS, "max_body", cx)
        {
            Some(0) => cx.error(lit.span(), "max_body must be more than 0 bytes"),
            Some(v) => m.max_body = Some(v),
            None => {}
        },
        ("require_processed", Value::Flag) => {
            m.require_processed = true;
            given.require_processed = Some(span);
        }
        ("reject_invalid", Value::Bool(b)) => m.reject_invalid = Some(b.value),
        ("capture_body", Value::Flag) => m.capture_body = Some(true),
        ("capture_body", Value::Bool(b)) => m.capture_body = Some(b.value),
        ("capture_headers", Value::Bool(b)) => m.capture_headers = Some(b.value),
        ("metadata", Value::Metadata(pairs)) => {
            m.metadata = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        }
        ("redact", Value::Strings(list)) => m.redact = values::redact(&list, cx),
        ("allow_ips", Value::Strings(list)) => m.allow_ips = Some(allow_ips_list(cx, span, list)),
        ("allow_ips", Value::Expr(e)) => m.allow_ips = allow_ips_env(cx, &e),
        ("verifier", Value::Path(p)) => m.verifier = Some(p),
        ("crate", Value::Path(p)) => m.krate = Some(p),
        ("queue", Value::Flag) => {
            m.queue = Some((10, 5_000));
            m.queue_span = span;
        }
        ("queue", Value::Options(pairs)) => {
            m.queue_span = span;
            m.queue = queue_options(cx, &pairs);
        }
        ("events", Value::Strings(list)) => {
            if list.is_empty() {
                cx.error(span, "`events = []` lets no event through: list at least one pattern, or remove `events`");
            }
            for lit in &list {
                if let Err(why) = event_pattern(&lit.value()) {
                    cx.error(lit.span(), why);
                }
            }
            m.events = list;
        }
        // Unreachable: the parser gives each key its own form. Kept as an error, not a
        // panic, should the two drift.
        (other, _) => cx.error(span, format!("`{other}` does not take this form")),
    }
}

/// A provider the catalog knows, or an error naming the nearest one and all of them.
fn provider(cx: &mut Ctxt, s: &LitStr) -> Option<&'static outworx_hooks_providers::Spec> {
    let found = providers::find(&s.value());
    if found.is_none() {
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
    found
}

/// `ttl`: a duration between a minute and a week.
fn ttl(cx: &mut Ctxt, lit: &syn::Lit) -> Option<u64> {
    let v = values::amount(lit, &TTL_UNITS, "ttl", cx)?;
    if TTL_RANGE.contains(&v) {
        return Some(v);
    }
    cx.error(
        lit.span(),
        format!("ttl must be between 60 seconds and 7 days (604800); got {v}"),
    );
    None
}

/// `allow_ips = [..]`: at least one entry, each a valid address or CIDR.
fn allow_ips_list(cx: &mut Ctxt, span: Span, list: Vec<LitStr>) -> AllowIps {
    if list.is_empty() {
        cx.error(
            span,
            "`allow_ips = []` allows no source: list at least one CIDR",
        );
    }
    for lit in &list {
        if let Err(why) = values::cidr(&lit.value()) {
            cx.error(lit.span(), why);
        }
    }
    AllowIps::List(list)
}

/// `allow_ips = env("VAR")`.
fn allow_ips_env(cx: &mut Ctxt, e: &syn::Expr) -> Option<AllowIps> {
    match values::env_var_of(e) {
        Some(var) if values::valid_env_name(&var.value()) => Some(AllowIps::Env(var)),
        _ => {
            cx.error(
                e.span(),
                "allow_ips takes a list of CIDRs, [\"192.0.2.0/24\", \"2001:db8::/32\"], or \
                 env(\"VAR\") holding them comma-separated",
            );
            None
        }
    }
}

/// `queue(attempts = 10, backoff = "5s")`: 1 to 100 attempts, a backoff of 1 s to 1 h.
fn queue_options(cx: &mut Ctxt, pairs: &[(syn::Ident, syn::Lit)]) -> Option<(u32, u64)> {
    let (mut attempts, mut backoff_ms) = (10u32, 5_000u64);
    let mut ok = true;
    for (key, lit) in pairs {
        match key.to_string().as_str() {
            "attempts" => match values::amount(lit, &[], "attempts", cx) {
                Some(n @ 1..=100) => attempts = u32::try_from(n).unwrap_or(100),
                Some(_) => {
                    cx.error(lit.span(), "attempts is 1 to 100");
                    ok = false;
                }
                None => ok = false,
            },
            "backoff" => match values::amount(lit, &TTL_UNITS, "backoff", cx) {
                Some(s @ 1..=3600) => backoff_ms = s * 1000,
                Some(_) => {
                    cx.error(
                        lit.span(),
                        "backoff is 1 second to 1 hour, like \"5s\" or \"1m\"",
                    );
                    ok = false;
                }
                None => ok = false,
            },
            other => {
                cx.error(
                    key.span(),
                    format!("`queue` takes `attempts = N` and `backoff = \"5s\"`, not `{other}`"),
                );
                ok = false;
            }
        }
    }
    ok.then_some((attempts, backoff_ms))
}

/// An event pattern: `invoice.paid`, `customer.*`, or `*` (what the runtime matches).
fn event_pattern(p: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{p}` is not an event pattern: use a type (`invoice.paid`), a prefix (`customer.*`) or `*`"
        )
    };
    if outworx_hooks_providers::is_event_pattern(p) {
        Ok(())
    } else {
        Err(bad())
    }
}
