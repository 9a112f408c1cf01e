//! The checks of single argument values: units, header and variable names, CIDRs, the forms
//! of a secret and of a key. Each reports at the value's own token and returns what it read.

use syn::spanned::Spanned;
use syn::{Expr, Lit, LitStr};

use super::Ctxt;
use crate::webhook::model::{Key, Secret};

pub(super) const TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=604_800;

pub(super) const TTL_UNITS: [(&str, u64); 4] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];

pub(super) const SIZE_UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KB", 1000),
    ("KiB", 1024),
    ("MB", 1_000_000),
    ("MiB", 1 << 20),
];

/// A number, or a string with one of `units` (value, multiplier).
pub(super) fn amount(lit: &Lit, units: &[(&str, u64)], what: &str, cx: &mut Ctxt) -> Option<u64> {
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
        // Unreachable: the parser admits only integers and strings here. Kept as an error,
        // not a panic, should the grammar grow.
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

pub(super) fn key_expr(e: &Expr, what: &str, cx: &mut Ctxt) -> Option<Key> {
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
pub(super) fn redact(list: &[LitStr], cx: &mut Ctxt) -> Vec<String> {
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
pub(super) fn cidr(text: &str) -> Result<(), String> {
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
pub(super) fn env_var_of(e: &Expr) -> Option<LitStr> {
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

pub(super) fn secret(e: &Expr, cx: &mut Ctxt) -> Option<Secret> {
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

pub(super) fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
