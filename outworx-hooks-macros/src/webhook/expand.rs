//! Generation: the handler stays a function of the same name, generic over the router state,
//! taking the request with its state; it hands the request to the runtime pipeline and runs
//! the user's function (nested inside, renamed) with its own extractors over the verified
//! bytes. A function, unlike a unit struct, can be shadowed by a `let` of the same name.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ItemFn};

use super::check::{AllowIps, Key, Model, Secret};

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
        BodySource::Typed => quote_spanned! {span=>
            {
                let body = &__outworx_body;
                #krate::__private::key(&(#expr))
            }
        },
        BodySource::Envelope => quote_spanned! {span=>
            __outworx_envelope.as_ref().and_then(|body| #krate::__private::key(&(#expr)))
        },
    }
}

pub(crate) fn expand(m: Model, func: ItemFn) -> TokenStream {
    let krate = m
        .krate
        .as_ref()
        .map_or_else(|| quote!(::outworx_hooks), |p| quote!(#p));
    let p = quote!(#krate::__private);
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let vis = &func.vis;
    let inner = format_ident!("__outworx_{}", name);
    let line = quote_spanned!(name.span()=> ::core::line!());

    // The static route.
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
            Secret::Func(path) => quote_spanned! {path.span()=>
                #p::SecretSource::Func(|| #p::IntoSecret::into_secret(#path()))
            },
        });
        route.extend(quote!(.secrets(&[#(#secrets),*])));
    }
    if let Some(path) = &m.verifier {
        route.extend(quote_spanned! {path.span()=>
            .custom_verifier(|d: &#p::Delivery<'_>| #p::IntoVerdict::into_verdict(#path(d)))
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
    if !m.metadata.is_empty() {
        let pairs = m
            .metadata
            .iter()
            .map(|(k, v)| quote!((#p::Cow::Borrowed(#k), #p::Cow::Borrowed(#v))));
        route.extend(quote!(.metadata(&[#(#pairs),*])));
    }
    if !m.redact.is_empty() {
        let names = m.redact.iter().map(|n| quote!(#p::Cow::Borrowed(#n)));
        route.extend(quote!(.redact(&[#(#names),*])));
    }
    match &m.allow_ips {
        Some(AllowIps::List(list)) => {
            let list = list.iter().map(|c| quote!(#p::Cow::Borrowed(#c)));
            let list = quote!(#p::Cow::Borrowed(&[#(#list),*]));
            route.extend(quote!(.allow_ips(#p::IpSource::List(#list))));
        }
        Some(AllowIps::Env(var)) => {
            route.extend(quote!(.allow_ips(#p::IpSource::Env(#p::Cow::Borrowed(#var)))));
        }
        None => {}
    }

    // Body and keys.
    let uses_body_key = [&m.key, &m.event_type]
        .into_iter()
        .any(|k| matches!(k, Some(Key::Body(_))));
    let source = if m.json.is_some() {
        BodySource::Typed
    } else {
        BodySource::Envelope
    };
    let want_key = matches!(m.key, Some(Key::Default));
    let want_type = m.event_type.is_none() && m.provider.is_some();
    let body_prelude = match (&m.json, uses_body_key, m.provider.and_then(|p| p.envelope)) {
        // The handler's own parse also yields the provider defaults: one pass over the bytes.
        (Some(t), _, _) if want_key || want_type => quote_spanned! {t.span()=>
            let (__outworx_body, __outworx_dkey, __outworx_dtype): (#t, _, _) =
                match __v.json_and_defaults::<#t>(#want_key, #want_type) {
                    ::core::result::Result::Ok(b) => b,
                    ::core::result::Result::Err(e) => return __v.reject_body(e),
                };
        },
        (Some(t), _, _) => quote_spanned! {t.span()=>
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
    let key = key_tokens(m.key.as_ref(), &quote!(__outworx_dkey), &krate, source);
    let origin = if want_key {
        quote!(#p::KeyOrigin::Natural)
    } else {
        quote!(#p::KeyOrigin::Given)
    };
    let event_type = if m.event_type.is_none() && m.provider.is_some() {
        quote!(__outworx_dtype)
    } else {
        key_tokens(m.event_type.as_ref(), &quote!(None), &krate, source)
    };

    // Extractors: all but the last from the parts; the last from the request, or the
    // already-parsed Json<T>.
    let n = m.params.len();
    let args: Vec<_> = (0..n)
        .map(|i| format_ident!("__outworx_arg{}", i))
        .collect();
    let mut bounds = Vec::new();
    let mut extract = Vec::new();
    let mut needs_m = false;
    for (i, (param, arg)) in m.params.iter().zip(&args).enumerate() {
        let ty = &param.ty;
        let last = i + 1 == n;
        if last && m.json.is_some() {
            extract.push(quote_spanned! {ty.span()=> let #arg = #p::axum::Json(__outworx_body); });
        } else if last {
            needs_m = true;
            bounds.push(quote_spanned! {ty.span()=> #ty: #p::axum::extract::FromRequest<__S, __M> + ::core::marker::Send, });
            extract.push(quote_spanned! {ty.span()=>
                let __req = #p::axum::extract::Request::from_parts(__parts, #p::axum::body::Body::from(__bytes));
                let #arg = match <#ty as #p::axum::extract::FromRequest<__S, __M>>::from_request(__req, &__state).await {
                    ::core::result::Result::Ok(v) => v,
                    ::core::result::Result::Err(e) => return #p::axum::response::IntoResponse::into_response(e),
                };
            });
        } else {
            bounds.push(quote_spanned! {ty.span()=> #ty: #p::axum::extract::FromRequestParts<__S> + ::core::marker::Send, });
            extract.push(quote_spanned! {ty.span()=>
                let #arg = match <#ty as #p::axum::extract::FromRequestParts<__S>>::from_request_parts(&mut __parts, &__state).await {
                    ::core::result::Result::Ok(v) => v,
                    ::core::result::Result::Err(e) => return #p::axum::response::IntoResponse::into_response(e),
                };
            });
        }
    }
    let unused = if needs_m {
        quote!()
    } else {
        quote!(let _ = (&mut __parts, __bytes, &__state);)
    };
    let generics = if needs_m {
        quote!(<__S, __M>)
    } else {
        quote!(<__S>)
    };
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, t) => t.span(),
        syn::ReturnType::Default => Span::call_site(),
    };
    let respond = quote_spanned! {ret_span=>
        #p::axum::response::IntoResponse::into_response(#inner(#(#args),*).await)
    };

    // The user's function, renamed; its docs stay on the public item.
    let (docs, other_attrs): (Vec<_>, Vec<_>) =
        func.attrs.iter().partition(|a| a.path().is_ident("doc"));
    let mut inner_fn = func.clone();
    inner_fn.sig.ident = inner.clone();
    inner_fn.vis = syn::Visibility::Inherited;
    inner_fn.attrs = other_attrs.into_iter().cloned().collect();

    let route_static = format_ident!("__OUTWORX_ROUTE_{}", name);
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #route_static: #p::Route = #route;

        #p::inventory::submit! { #p::RouteRef(&#route_static) }

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
                #body_prelude
                #defaults
                let __outworx_key: ::core::option::Option<::std::string::String> = #key;
                let __outworx_type: ::core::option::Option<::std::string::String> = #event_type;
                __v.finish(__outworx_key, #origin, __outworx_type, move |mut __parts: #p::http::request::Parts, __bytes: #p::bytes::Bytes| async move {
                    #unused
                    #(#extract)*
                    #respond
                }).await
            })
        }
    }
}
