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
    syn::custom_keyword!(queue);
    syn::custom_keyword!(events);
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
    /// `queue(attempts = 10, backoff = "5s")`.
    Options(Vec<(Ident, Lit)>),
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

/// Peeks each key in turn, so that rustc lists them all ("expected one of ...") in this
/// order when none matches; parses the matching keyword and yields its name and span.
macro_rules! key {
    ($look:ident, $input:ident, [$($kw:ident),*]) => {
        $(
            if $look.peek(kw::$kw) {
                let k: kw::$kw = $input.parse()?;
                (stringify!($kw), k.span)
            } else
        )*
        if $look.peek(Token![crate]) {
            let k: Token![crate] = $input.parse()?;
            ("crate", k.span)
        } else {
            return Err($look.error());
        }
    };
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let look = input.lookahead1();
        let (name, span) = key!(
            look,
            input,
            [
                provider,
                secret,
                idempotency,
                event_type,
                ttl,
                tolerance,
                max_body,
                require_processed,
                reject_invalid,
                capture_body,
                capture_headers,
                metadata,
                redact,
                allow_ips,
                verifier,
                queue,
                events
            ]
        );
        let value = value(name, input)?;
        Ok(Arg { name, span, value })
    }
}

/// The value after the key `name`: `= value` for most, optional for `idempotency` and
/// `capture_body`, none for `require_processed`, `(k = "v", ..)` for `metadata`.
fn value(name: &str, input: ParseStream<'_>) -> syn::Result<Value> {
    let assigned = |input: ParseStream<'_>| -> syn::Result<bool> {
        Ok(input.parse::<Option<Token![=]>>()?.is_some())
    };
    Ok(match name {
        "require_processed" => Value::Flag,
        "queue" if input.peek(syn::token::Paren) => {
            let content;
            parenthesized!(content in input);
            let pairs = Punctuated::<OptionPair, Token![,]>::parse_terminated(&content)?;
            Value::Options(pairs.into_iter().map(|p| (p.key, p.value)).collect())
        }
        "queue" => Value::Flag,
        "idempotency" if assigned(input)? => Value::Key(input.parse()?),
        "idempotency" => Value::Flag,
        "capture_body" if assigned(input)? => Value::Bool(input.parse()?),
        "capture_body" => Value::Flag,
        "metadata" => {
            let content;
            parenthesized!(content in input);
            let pairs = Punctuated::<MetaPair, Token![,]>::parse_terminated(&content)?;
            Value::Metadata(pairs.into_iter().map(|p| (p.key, p.value)).collect())
        }
        _ => {
            input.parse::<Token![=]>()?;
            assigned_value(name, input)?
        }
    })
}

/// The value after `name =`.
fn assigned_value(name: &str, input: ParseStream<'_>) -> syn::Result<Value> {
    Ok(match name {
        "provider" => Value::Str(input.parse()?),
        "secret" if input.peek(syn::token::Bracket) => {
            let content;
            bracketed!(content in input);
            let list = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
            Value::Secrets(list.into_iter().collect())
        }
        "secret" => Value::Secrets(vec![input.parse()?]),
        "event_type" => Value::Key(input.parse()?),
        "ttl" | "max_body" => Value::Amount(amount(input)?),
        "tolerance" => Value::Amount(Lit::Int(input.parse::<LitInt>()?)),
        "reject_invalid" | "capture_headers" => Value::Bool(input.parse()?),
        "redact" | "events" => Value::Strings(strings(input)?),
        "allow_ips" if input.peek(syn::token::Bracket) => Value::Strings(strings(input)?),
        "allow_ips" => Value::Expr(input.parse()?),
        "verifier" => Value::Path(input.parse()?),
        // `crate = "path"`, as serde's `#[serde(crate = "...")]`.
        _ => Value::Path(input.parse::<LitStr>()?.parse()?),
    })
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

/// `attempts = 10` or `backoff = "5s"` inside `queue(..)`.
struct OptionPair {
    key: Ident,
    value: Lit,
}

impl Parse for OptionPair {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = input.call(syn::ext::IdentExt::parse_any)?;
        input.parse::<Token![=]>()?;
        Ok(OptionPair {
            key,
            value: amount(input)?,
        })
    }
}
