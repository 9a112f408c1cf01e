//! `#[emit("order.created", transform = .., owner = .., include_headers, include_request)]`:
//! parse and check the arguments and the handler, collecting every error at its token, then
//! expand to a handler that runs the user's function inside `__private::emit_around`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Token};

const KEYS: &[&str] = &["transform", "owner", "include_headers", "include_request"];

/// One argument after the event type.
enum Arg {
    /// `key = path::to::fn`
    Path(Ident, syn::Path),
    /// `key`
    Flag(Ident),
    /// `key = <something that is not a path>`
    Bad(Ident, syn::Expr),
}

struct Args {
    event_type: Option<LitStr>,
    rest: Vec<Arg>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let event_type = if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            Some(lit)
        } else {
            None
        };
        let mut rest = Vec::new();
        let items = Punctuated::<ArgItem, Token![,]>::parse_terminated(input)?;
        for ArgItem(a) in items {
            rest.push(a);
        }
        Ok(Args { event_type, rest })
    }
}

struct ArgItem(Arg);

impl Parse for ArgItem {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected `transform = path`, `owner = path`, `include_headers` or `include_request`",
            )
        })?;
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let expr: syn::Expr = input.parse()?;
            return Ok(ArgItem(match expr {
                syn::Expr::Path(p) if p.qself.is_none() => Arg::Path(key, p.path),
                other => Arg::Bad(key, other),
            }));
        }
        Ok(ArgItem(Arg::Flag(key)))
    }
}

/// The checked attribute.
struct Model {
    event_type: LitStr,
    transform: Option<syn::Path>,
    owner: Option<syn::Path>,
    include_headers: bool,
    include_request: bool,
    params: Vec<syn::Type>,
}

struct Errors(Option<syn::Error>);

impl Errors {
    fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        let e = syn::Error::new(span, msg);
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
}

/// `order.created`: what `Emitter::send` accepts, checked here so a typo fails the build.
fn check_event_type(lit: &LitStr, errors: &mut Errors) {
    let t = lit.value();
    if outworx_hooks_providers::is_event_type(&t) {
        return;
    }
    if t.is_empty() || t.len() > outworx_hooks_providers::MAX_EVENT_TYPE_LEN {
        errors.at(
            lit.span(),
            "the event type is 1 to 128 bytes, like \"order.created\"",
        );
    } else if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-:/".contains(*c)))
    {
        errors.at(
            lit.span(),
            format!(
                "the event type has `{}`: use letters, digits and `. _ - : /`, like \"order.created\"",
                c.escape_default()
            ),
        );
    }
}

fn suggest(key: &str) -> String {
    let close = KEYS
        .iter()
        .map(|k| (outworx_hooks_providers::edit_distance(key, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min();
    match close {
        Some((_, k)) => format!("unknown #[emit] argument `{key}`: did you mean `{k}`?"),
        None => format!(
            "unknown #[emit] argument `{key}`: expected `transform = path`, `owner = path`, `include_headers` or `include_request`"
        ),
    }
}

fn check(args: Args, func: &ItemFn) -> Result<Model, syn::Error> {
    let mut errors = Errors(None);
    let event_type = match args.event_type {
        Some(lit) => {
            check_event_type(&lit, &mut errors);
            lit
        }
        None => {
            errors.at(
                Span::call_site(),
                "#[emit] needs the event type first: #[emit(\"order.created\")]",
            );
            LitStr::new("", Span::call_site())
        }
    };
    let mut m = Model {
        event_type,
        transform: None,
        owner: None,
        include_headers: false,
        include_request: false,
        params: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    let mut flag_spans = Vec::new();
    for arg in args.rest {
        let key = match &arg {
            Arg::Path(k, _) | Arg::Flag(k) | Arg::Bad(k, _) => k.clone(),
        };
        let name = key.to_string();
        if seen.contains(&name) {
            errors.at(key.span(), format!("`{name}` is given twice: keep one"));
            continue;
        }
        seen.push(name.clone());
        match (name.as_str(), arg) {
            ("transform", Arg::Path(_, p)) => m.transform = Some(p),
            ("owner", Arg::Path(_, p)) => m.owner = Some(p),
            ("transform" | "owner", Arg::Bad(_, e)) => errors.at(
                e.span(),
                format!("`{name}` takes the path of a function: `{name} = my_module::my_fn`"),
            ),
            ("transform" | "owner", Arg::Flag(k)) => errors.at(
                k.span(),
                format!("`{name}` takes the path of a function: `{name} = my_module::my_fn`"),
            ),
            ("include_headers", Arg::Flag(k)) => {
                m.include_headers = true;
                flag_spans.push(k);
            }
            ("include_request", Arg::Flag(k)) => {
                m.include_request = true;
                flag_spans.push(k);
            }
            ("include_headers" | "include_request", Arg::Path(k, _) | Arg::Bad(k, _)) => errors.at(
                k.span(),
                format!("`{name}` is a flag: write `{name}` alone"),
            ),
            (_, _) => errors.at(key.span(), suggest(&name)),
        }
    }
    if m.transform.is_none() {
        for k in flag_spans {
            errors.at(
                k.span(),
                format!(
                    "`{k}` hands the request to the transform, and there is none: add \
                     `transform = my_fn`, or remove `{k}`"
                ),
            );
        }
    }
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            "#[emit] handlers are async: write `async fn`",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.at(sig.generics.span(), "#[emit] handlers cannot be generic");
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.at(
                r.span(),
                "#[emit] goes on a free function, not a method: move the handler out of the impl",
            ),
            FnArg::Typed(pt) => m.params.push((*pt.ty).clone()),
        }
    }
    match errors.0 {
        Some(e) => Err(e),
        None => Ok(m),
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let mut out = syn::Error::new(e.span(), "#[emit] goes on an `async fn` handler")
                .to_compile_error();
            out.extend(item);
            return out;
        }
    };
    let parsed = match syn::parse2::<Args>(args) {
        Ok(a) => a,
        Err(e) => return with_item(e, &func),
    };
    match check(parsed, &func) {
        Ok(m) => generate(m, func),
        Err(e) => with_item(e, &func),
    }
}

fn with_item(e: syn::Error, func: &ItemFn) -> TokenStream {
    let mut out = e.to_compile_error();
    out.extend(func.to_token_stream());
    out
}

fn generate(m: Model, func: ItemFn) -> TokenStream {
    let p = quote!(::outworx_hooks::__private);
    let name = &func.sig.ident;
    let vis = &func.vis;
    let inner = format_ident!("__outworx_{}", name);

    let lit = &m.event_type;
    let mut spec = quote!(#p::EmitSpec::new(#lit));
    if let Some(path) = &m.transform {
        spec.extend(
            quote_spanned! {crate::at(path.span())=> .transform(|__c: &#p::EmitContext<'_>| #path(__c)) },
        );
    }
    if let Some(path) = &m.owner {
        spec.extend(quote_spanned! {crate::at(path.span())=> .owner(|__c: &#p::EmitContext<'_>| #path(__c)) });
    }
    if m.include_headers {
        spec.extend(quote!(.include_headers()));
    }
    if m.include_request {
        spec.extend(quote!(.include_request()));
    }

    let n = m.params.len();
    let mut bounds = Vec::new();
    let mut extract = Vec::new();
    for (i, ty) in m.params.iter().enumerate() {
        let arg = format_ident!("__outworx_arg{}", i);
        if i + 1 == n {
            bounds.push(quote_spanned! {crate::at(ty.span())=> #ty: #p::axum::extract::FromRequest<__S, __M> + ::core::marker::Send, });
            extract.push(quote_spanned! {crate::at(ty.span())=>
                let __req = #p::axum::extract::Request::from_parts(__parts, __body);
                let #arg = match <#ty as #p::axum::extract::FromRequest<__S, __M>>::from_request(__req, &__state).await {
                    ::core::result::Result::Ok(v) => v,
                    ::core::result::Result::Err(e) => return #p::axum::response::IntoResponse::into_response(e),
                };
            });
        } else {
            bounds.push(quote_spanned! {crate::at(ty.span())=> #ty: #p::axum::extract::FromRequestParts<__S> + ::core::marker::Send, });
            extract.push(quote_spanned! {crate::at(ty.span())=>
                let #arg = match <#ty as #p::axum::extract::FromRequestParts<__S>>::from_request_parts(&mut __parts, &__state).await {
                    ::core::result::Result::Ok(v) => v,
                    ::core::result::Result::Err(e) => return #p::axum::response::IntoResponse::into_response(e),
                };
            });
        }
    }
    let generics = if n == 0 {
        extract.push(quote!(let _ = (&mut __parts, __body, &__state);));
        quote!(<__S>)
    } else {
        quote!(<__S, __M>)
    };
    let args = (0..n).map(|i| format_ident!("__outworx_arg{}", i));
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, t) => t.span(),
        syn::ReturnType::Default => Span::call_site(),
    };
    let respond = quote_spanned! {crate::at(ret_span)=>
        #p::axum::response::IntoResponse::into_response(#inner(#(#args),*).await)
    };
    let (docs, inner_fn) = crate::webhook::expand::user_fn(&func, inner);

    let name_str = name.to_string();
    let line = quote_spanned!(crate::at(name.span())=> ::core::line!());
    quote! {
        #p::inventory::submit! {
            #p::EmitRef { handler: #name_str, file: ::core::file!(), line: #line }
        }

        #(#docs)*
        #vis fn #name #generics(__outworx_req: #p::WithState<__S>) -> #p::BoxFuture<'static, #p::axum::response::Response>
        where
            __S: ::core::clone::Clone + ::core::marker::Send + ::core::marker::Sync + 'static,
            #(#bounds)*
        {
            #[allow(clippy::too_many_arguments)]
            #inner_fn

            static __OUTWORX_EMIT: ::std::sync::LazyLock<#p::EmitSpec> =
                ::std::sync::LazyLock::new(|| #spec);
            let #p::WithState(__req, __state) = __outworx_req;
            ::std::boxed::Box::pin(async move {
                #p::emit_around(&__OUTWORX_EMIT, __req, move |__req: #p::axum::extract::Request| async move {
                    #[allow(unused_mut)]
                    let (mut __parts, __body) = __req.into_parts();
                    #(#extract)*
                    #respond
                }).await
            })
        }
    }
}
