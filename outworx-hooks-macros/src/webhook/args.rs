//! The grammar of `#[webhook(...)]`: a comma-separated list of keys, each parsed with its own
//! keyword so that rustc says "expected one of ..." for anything else.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitBool, LitInt, LitStr, Token, bracketed, parenthesized};

mod kw {
    syn::custom_keyword!(provider);
    syn::custom_keyword!(secret);
    syn::custom_keyword!(idempotency);
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(event_type);
    syn::custom_keyword!(require_processed);
    syn::custom_keyword!(tolerance);
    syn::custom_keyword!(reject_invalid);
    syn::custom_keyword!(capture_body);
    syn::custom_keyword!(capture_headers);
    syn::custom_keyword!(metadata);
    syn::custom_keyword!(verifier);
    syn::custom_keyword!(max_body);
    syn::custom_keyword!(redact);
    syn::custom_keyword!(allow_ips);
}

/// One `key` or `key = value` of the attribute, with the span of its key.
pub(crate) struct Arg {
    pub(crate) name: &'static str,
    pub(crate) span: Span,
    pub(crate) value: Value,
}

pub(crate) enum Value {
    Flag,
    Str(LitStr),
    Bool(LitBool),
    /// An integer or a string with a unit (`"24h"`, `"2MiB"`).
    Amount(Lit),
    /// One or several secret expressions.
    Secrets(Vec<Expr>),
    /// A key expression: `body.a.b`, `body["a"]`, `header("name")`.
    Key(Expr),
    Path(syn::Path),
    Metadata(Vec<(Ident, LitStr)>),
    /// `["a", "b"]`.
    Strings(Vec<LitStr>),
    /// Any other expression (`env("VAR")` where a list may also go).
    Expr(Expr),
}

/// `["a", "b"]` as string literals.
fn strings(input: ParseStream<'_>) -> syn::Result<Vec<LitStr>> {
    let content;
    bracketed!(content in input);
    let list = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
    Ok(list.into_iter().collect())
}

pub(crate) struct Args {
    pub(crate) items: Vec<Arg>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let items = Punctuated::<Arg, Token![,]>::parse_terminated(input)?;
        Ok(Args {
            items: items.into_iter().collect(),
        })
    }
}

fn amount(input: ParseStream<'_>) -> syn::Result<Lit> {
    let lit: Lit = input.parse()?;
    match lit {
        Lit::Int(_) | Lit::Str(_) => Ok(lit),
        other => Err(syn::Error::new(
            other.span(),
            "expected a whole number or a string with a unit",
        )),
    }
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let look = input.lookahead1();
        macro_rules! key {
            ($kw:path, $name:literal, |$input:ident| $value:expr) => {{
                let k: $kw = input.parse()?;
                let $input = input;
                Ok(Arg {
                    name: $name,
                    span: k.span,
                    value: $value,
                })
            }};
        }
        macro_rules! assigned {
            ($kw:path, $name:literal, |$input:ident| $value:expr) => {
                key!($kw, $name, |$input| {
                    $input.parse::<Token![=]>()?;
                    $value
                })
            };
        }
        if look.peek(kw::provider) {
            assigned!(kw::provider, "provider", |i| Value::Str(i.parse()?))
        } else if look.peek(kw::secret) {
            assigned!(kw::secret, "secret", |i| {
                if i.peek(syn::token::Bracket) {
                    let content;
                    bracketed!(content in i);
                    let list = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
                    Value::Secrets(list.into_iter().collect())
                } else {
                    Value::Secrets(vec![i.parse()?])
                }
            })
        } else if look.peek(kw::idempotency) {
            key!(kw::idempotency, "idempotency", |i| {
                if i.peek(Token![=]) {
                    i.parse::<Token![=]>()?;
                    Value::Key(i.parse()?)
                } else {
                    Value::Flag
                }
            })
        } else if look.peek(kw::event_type) {
            assigned!(kw::event_type, "event_type", |i| Value::Key(i.parse()?))
        } else if look.peek(kw::ttl) {
            assigned!(kw::ttl, "ttl", |i| Value::Amount(amount(i)?))
        } else if look.peek(kw::tolerance) {
            assigned!(kw::tolerance, "tolerance", |i| Value::Amount(Lit::Int(
                i.parse::<LitInt>()?
            )))
        } else if look.peek(kw::max_body) {
            assigned!(kw::max_body, "max_body", |i| Value::Amount(amount(i)?))
        } else if look.peek(kw::require_processed) {
            key!(kw::require_processed, "require_processed", |_i| Value::Flag)
        } else if look.peek(kw::reject_invalid) {
            assigned!(kw::reject_invalid, "reject_invalid", |i| Value::Bool(
                i.parse()?
            ))
        } else if look.peek(kw::capture_body) {
            key!(kw::capture_body, "capture_body", |i| {
                if i.peek(Token![=]) {
                    i.parse::<Token![=]>()?;
                    Value::Bool(i.parse()?)
                } else {
                    Value::Flag
                }
            })
        } else if look.peek(kw::capture_headers) {
            assigned!(kw::capture_headers, "capture_headers", |i| Value::Bool(
                i.parse()?
            ))
        } else if look.peek(kw::metadata) {
            key!(kw::metadata, "metadata", |i| {
                let content;
                parenthesized!(content in i);
                let pairs = Punctuated::<MetaPair, Token![,]>::parse_terminated(&content)?;
                Value::Metadata(pairs.into_iter().map(|p| (p.key, p.value)).collect())
            })
        } else if look.peek(kw::redact) {
            assigned!(kw::redact, "redact", |i| Value::Strings(strings(i)?))
        } else if look.peek(kw::allow_ips) {
            assigned!(kw::allow_ips, "allow_ips", |i| {
                if i.peek(syn::token::Bracket) {
                    Value::Strings(strings(i)?)
                } else {
                    Value::Expr(i.parse()?)
                }
            })
        } else if look.peek(kw::verifier) {
            assigned!(kw::verifier, "verifier", |i| Value::Path(i.parse()?))
        } else if look.peek(Token![crate]) {
            let k: Token![crate] = input.parse()?;
            input.parse::<Token![=]>()?;
            let path: LitStr = input.parse()?;
            Ok(Arg {
                name: "crate",
                span: k.span,
                value: Value::Path(path.parse()?),
            })
        } else {
            Err(look.error())
        }
    }
}

struct MetaPair {
    key: Ident,
    value: LitStr,
}

impl Parse for MetaPair {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = input.call(syn::ext::IdentExt::parse_any)?;
        input.parse::<Token![=]>()?;
        Ok(MetaPair {
            key,
            value: input.parse()?,
        })
    }
}
