//! Generation: the handler stays a function of the same name, generic over the router state,
//! taking the request with its state; it hands the request to the runtime pipeline and runs
//! the user's function (nested inside, renamed) with its own extractors over the verified
//! bytes. A function, unlike a unit struct, can be shadowed by a `let` of the same name.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ItemFn};

use super::model::{AllowIps, Key, Model, Secret};

fn key_tokens(
    key: Option<&Key>,
    default: &TokenStream,
    krate: &TokenStream,
    body: BodySource,
) -> TokenStream {
    match key {
        None => quote!(::core::option::Option::None),
        Some(Key::Default) => default.clone(),
        Some(Key::Header(name)) => quote!(__v.header(#name)),
        Some(Key::Body(expr)) => body_key(expr, krate, body),
    }
}

#[derive(Clone, Copy)]
enum BodySource {
    /// The handler's parsed `Json<T>` value, `__outworx_body`.
    Typed,
    /// The provider's envelope, `__outworx_envelope: Option<E>`.
    Envelope,
}

fn body_key(expr: &Expr, krate: &TokenStream, body: BodySource) -> TokenStream {
    // Spanned at the user's expression: a field that does not exist is reported there.
    let span = expr.span();
    match body {
        BodySource::Typed => quote_spanned! {crate::at(span)=>
            {
                let body = &__outworx_body;
                #krate::__private::key(&(#expr))
            }
        },
        BodySource::Envelope => quote_spanned! {crate::at(span)=>
            __outworx_envelope.as_ref().and_then(|body| #krate::__private::key(&(#expr)))
        },
    }
}

/// The generated code: the route's static, its registration, and the handler rewritten as a
/// function over the request and the router state.
pub(crate) fn expand(m: Model, func: ItemFn) -> TokenStream {
    let krate = m
        .krate
        .as_ref()
        .map_or_else(|| quote!(::outworx_hooks), |p| quote!(#p));
    let p = quote!(#krate::__private);
    let name = &func.sig.ident;
    let vis = &func.vis;
    let inner = format_ident!("__outworx_{}", name);

    let route = route(&m, &p, name);
    let Keys {
        prelude,
        key,
        origin,
        event_type,
    } = keys(&m, &p, &krate);
    let Extractors {
        generics,
        bounds,
        extract,
    } = extractors(&m, &p);
    let args = (0..m.params.len()).map(|i| format_ident!("__outworx_arg{}", i));
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, t) => t.span(),
        syn::ReturnType::Default => Span::call_site(),
    };
    let respond = quote_spanned! {crate::at(ret_span)=>
        #p::axum::response::IntoResponse::into_response(#inner(#(#args),*).await)
    };
    let (docs, inner_fn) = user_fn(&func, inner);

    let route_static = format_ident!("__OUTWORX_ROUTE_{}", name);
    // `queue` needs the inbox: without the feature, the build stops here, saying so.
    let inbox_check = if m.queue.is_some() {
        quote_spanned! {crate::at(m.queue_span)=>
            const _: () = ::core::assert!(
                #p::INBOX,
                "#[webhook(.., queue)] needs the `inbox` feature of outworx-hooks: features = [\"inbox\"]"
            );
        }
    } else {
        quote!()
    };
    // A provider whose scheme is behind a feature: without it, the build stops here, naming it.
    let feature_check = match m.provider.and_then(|s| Some((s.name, s.feature()?))) {
        Some((provider, feature)) => {
            let flag = format_ident!("{}", feature.to_uppercase());
            let message = format!(
                "#[webhook(provider = \"{provider}\")] needs the `{feature}` feature of outworx-hooks: features = [\"{feature}\"]"
            );
            quote_spanned! {crate::at(name.span())=>
                const _: () = ::core::assert!(#p::#flag, #message);
            }
        }
        None => quote!(),
    };
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #route_static: #p::Route = #route;

        #p::inventory::submit! { #p::RouteRef(&#route_static) }
        #inbox_check
        #feature_check

        #(#docs)*
        #vis fn #name #generics(__outworx_req: #p::WithState<__S>) -> #p::BoxFuture<'static, #p::axum::response::Response>
        where
            __S: ::core::clone::Clone + ::core::marker::Send + ::core::marker::Sync + 'static,
            #(#bounds)*
        {
            #[allow(clippy::too_many_arguments)]
            #inner_fn

            let #p::WithState(__req, __state) = __outworx_req;
            ::std::boxed::Box::pin(async move {
                let __v = match #p::receive(&#route_static, __req).await {
                    ::core::result::Result::Ok(v) => v,
                    ::core::result::Result::Err(resp) => return resp,
                };
                #prelude
                let __outworx_key: ::core::option::Option<::std::string::String> = #key;
                let __outworx_type: ::core::option::Option<::std::string::String> = #event_type;
                __v.finish(__outworx_key, #origin, __outworx_type, move |mut __parts: #p::http::request::Parts, __bytes: #p::bytes::Bytes| async move {
                    #(#extract)*
                    #respond
                }).await
            })
        }
    }
}

/// The `const` expression of the route's static: `Route::new(..)` and one builder call per
/// option that differs from the default.
fn route(m: &Model, p: &TokenStream, name: &syn::Ident) -> TokenStream {
    let name_str = name.to_string();
    let line = quote_spanned!(crate::at(name.span())=> ::core::line!());
    let mut route = quote!(
        #p::Route::new(#name_str, ::core::file!(), #line).module(::core::module_path!())
    );
    if let Some(prov) = m.provider {
        let v = format_ident!("{}", prov.variant);
        route.extend(quote!(.provider(#p::Provider::#v)));
    }
    if !m.secrets.is_empty() {
        let secrets = m.secrets.iter().map(|s| match s {
            Secret::Env(var) => quote!(#p::SecretSource::Env(#p::Cow::Borrowed(#var))),
            Secret::Literal(lit) => quote!(#p::SecretSource::Literal(#p::Cow::Borrowed(#lit))),
            Secret::Func(path) => quote_spanned! {crate::at(path.span())=>
                #p::SecretSource::Func(|| #p::IntoSecret::into_secret(#path()))
            },
        });
        route.extend(quote!(.secrets(&[#(#secrets),*])));
    }
    if let Some(path) = &m.verifier {
        route.extend(quote_spanned! {crate::at(path.span())=>
            .custom_verifier(|d: &#p::SignedRequest<'_>| #p::IntoVerdict::into_verdict(#path(d)))
        });
    }
    let opts = [
        m.ttl.map(|v| quote!(.ttl_secs(#v))),
        m.tolerance.map(|v| quote!(.tolerance_secs(#v))),
        m.require_processed
            .then(|| quote!(.require_processed(true))),
        m.reject_invalid.map(|v| quote!(.reject_invalid(#v))),
        m.capture_body.map(|v| quote!(.capture_body(#v))),
        m.capture_headers.map(|v| quote!(.capture_headers(#v))),
        m.max_body.map(|v| {
            let v = usize::try_from(v).unwrap_or(usize::MAX);
            quote!(.max_body(#v))
        }),
    ];
    route.extend(opts.into_iter().flatten());
    route.extend(strings_options(m, p));
    if let Some((attempts, backoff_ms)) = m.queue {
        route.extend(quote!(.queue(#attempts, #backoff_ms)));
    }
    route
}

/// The builder calls of the options that are lists of strings (borrowed from the binary).
fn strings_options(m: &Model, p: &TokenStream) -> TokenStream {
    let text = |s: &dyn quote::ToTokens| quote!(#p::Cow::Borrowed(#s));
    let mut out = TokenStream::new();
    if !m.metadata.is_empty() {
        let pairs = m.metadata.iter().map(|(k, v)| {
            let (k, v) = (text(k), text(v));
            quote!((#k, #v))
        });
        out.extend(quote!(.metadata(&[#(#pairs),*])));
    }
    if !m.events.is_empty() {
        let list = m.events.iter().map(|e| text(e));
        out.extend(quote!(.events(&[#(#list),*])));
    }
    if !m.redact.is_empty() {
        let names = m.redact.iter().map(|n| text(n));
        out.extend(quote!(.redact(&[#(#names),*])));
    }
    match &m.allow_ips {
        Some(AllowIps::List(list)) => {
            let list = list.iter().map(|c| text(c));
            out.extend(quote!(.allow_ips_list(&[#(#list),*])));
        }
        Some(AllowIps::Env(var)) => out.extend(quote!(.allow_ips_env(#var))),
        None => {}
    }
    out
}

/// How the idempotency key and the event type are read.
struct Keys {
    /// Statements before the keys: the body's one parse, and the provider's defaults.
    prelude: TokenStream,
    key: TokenStream,
    origin: TokenStream,
    event_type: TokenStream,
}

fn keys(m: &Model, p: &TokenStream, krate: &TokenStream) -> Keys {
    let source = if m.json.is_some() {
        BodySource::Typed
    } else {
        BodySource::Envelope
    };
    let want_key = matches!(m.key, Some(Key::Default));
    let want_type = m.event_type.is_none() && m.provider.is_some();
    let body = match (
        &m.json,
        m.uses_body_key(),
        m.provider.and_then(|p| p.envelope),
    ) {
        // The handler's own parse also yields the provider defaults: one pass over the bytes.
        (Some(t), _, _) if want_key || want_type => quote_spanned! {crate::at(t.span())=>
            let (__outworx_body, __outworx_dkey, __outworx_dtype): (#t, _, _) =
                match __v.json_and_defaults::<#t>(#want_key, #want_type) {
                    ::core::result::Result::Ok(b) => b,
                    ::core::result::Result::Err(e) => return __v.reject_body(e),
                };
        },
        (Some(t), _, _) => quote_spanned! {crate::at(t.span())=>
            let __outworx_body: #t = match __v.json::<#t>() {
                ::core::result::Result::Ok(b) => b,
                ::core::result::Result::Err(e) => return __v.reject_body(e),
            };
        },
        (None, true, Some(env)) => {
            let env = format_ident!("{}", env);
            quote!(let __outworx_envelope: ::core::option::Option<#p::envelope::#env> = __v.json_opt();)
        }
        _ => quote!(),
    };
    let defaults = if (want_key || want_type) && m.json.is_none() {
        quote!(let (__outworx_dkey, __outworx_dtype) = __v.provider_defaults(#want_key, #want_type);)
    } else {
        quote!()
    };
    Keys {
        prelude: quote!(#body #defaults),
        key: key_tokens(m.key.as_ref(), &quote!(__outworx_dkey), krate, source),
        origin: if want_key {
            quote!(#p::KeyOrigin::Natural)
        } else {
            quote!(#p::KeyOrigin::Given)
        },
        event_type: if want_type {
            quote!(__outworx_dtype)
        } else {
            key_tokens(m.event_type.as_ref(), &quote!(None), krate, source)
        },
    }
}

/// The handler's extractors: all but the last from the parts; the last from the request, or
/// the already-parsed `Json<T>`.
struct Extractors {
    /// `<__S>`, or `<__S, __M>` when the last extractor reads the request.
    generics: TokenStream,
    /// One `where` bound per extractor.
    bounds: Vec<TokenStream>,
    /// One `let __outworx_argN = ...;` per parameter.
    extract: Vec<TokenStream>,
}

fn extractors(m: &Model, p: &TokenStream) -> Extractors {
    let n = m.params.len();
    let mut bounds = Vec::new();
    let mut extract = Vec::new();
    let mut needs_m = false;
    for (i, param) in m.params.iter().enumerate() {
        let ty = &param.ty;
        let arg = format_ident!("__outworx_arg{}", i);
        let last = i + 1 == n;
        if last && m.json.is_some() {
            extract.push(
                quote_spanned! {crate::at(ty.span())=> let #arg = #p::axum::Json(__outworx_body); },
            );
        } else if last {
            needs_m = true;
            bounds.push(quote_spanned! {crate::at(ty.span())=> #ty: #p::axum::extract::FromRequest<__S, __M> + ::core::marker::Send, });
            extract.push(quote_spanned! {crate::at(ty.span())=>
                let __req = #p::axum::extract::Request::from_parts(__parts, #p::axum::body::Body::from(__bytes));
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
    if needs_m {
        Extractors {
            generics: quote!(<__S, __M>),
            bounds,
            extract,
        }
    } else {
        extract.insert(0, quote!(let _ = (&mut __parts, __bytes, &__state);));
        Extractors {
            generics: quote!(<__S>),
            bounds,
            extract,
        }
    }
}

/// The user's function, renamed and private, nested in the generated one; its docs stay on
/// the public item.
pub(crate) fn user_fn(func: &ItemFn, inner: syn::Ident) -> (Vec<&syn::Attribute>, ItemFn) {
    let (docs, other_attrs): (Vec<_>, Vec<_>) =
        func.attrs.iter().partition(|a| a.path().is_ident("doc"));
    let mut inner_fn = func.clone();
    inner_fn.sig.ident = inner;
    inner_fn.vis = syn::Visibility::Inherited;
    inner_fn.attrs = other_attrs.into_iter().cloned().collect();
    (docs, inner_fn)
}
