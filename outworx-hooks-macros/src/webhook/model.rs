//! The checked model of one `#[webhook]`: what [`mod@super::check`] produces from the arguments
//! and the handler, and all [`mod@super::expand`] reads. Every value here has passed its checks.

use proc_macro2::Span;
use syn::{Expr, LitStr, Type};

use outworx_hooks_providers::Spec;

/// Where a secret comes from.
pub(crate) enum Secret {
    /// `env("VAR")`, read at run time.
    Env(LitStr),
    /// `"literal"`.
    Literal(LitStr),
    /// `path::to::fn`, called at run time.
    Func(syn::Path),
}

/// Where an idempotency key or event type is read from.
pub(crate) enum Key {
    /// Bare `idempotency`: the provider's natural key.
    Default,
    /// `header("name")`, lowercased.
    Header(String),
    /// `body.a.b` / `body["a"]`, checked by rustc against the body type.
    Body(Expr),
}

/// One parameter of the handler (an extractor).
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

/// One checked `#[webhook]`.
pub(crate) struct Model {
    /// `queue`: attempts and the first retry's delay in milliseconds.
    pub(crate) queue: Option<(u32, u64)>,
    /// Where errors about `queue` point.
    pub(crate) queue_span: Span,
    /// `events = [..]`: the event-type patterns that reach the handler.
    pub(crate) events: Vec<LitStr>,
    pub(crate) provider: Option<&'static Spec>,
    pub(crate) secrets: Vec<Secret>,
    pub(crate) key: Option<Key>,
    /// Where errors about the key point: the `idempotency` token or its expression.
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
    /// Header names, lowercased.
    pub(crate) redact: Vec<String>,
    pub(crate) allow_ips: Option<AllowIps>,
    /// `crate = "path"`: where the runtime crate is, when it is renamed.
    pub(crate) krate: Option<syn::Path>,
    pub(crate) params: Vec<Param>,
    /// `T` of a last `Json<T>` parameter: parsed once, shared by keys and the handler.
    pub(crate) json: Option<Type>,
}

impl Model {
    /// The model of an attribute with no arguments, before any is read.
    pub(crate) fn empty() -> Model {
        Model {
            queue: None,
            queue_span: Span::call_site(),
            events: Vec::new(),
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
        }
    }

    /// Whether the key or the event type is read from the body (`body.x`).
    pub(crate) fn uses_body_key(&self) -> bool {
        [&self.key, &self.event_type]
            .into_iter()
            .any(|k| matches!(k, Some(Key::Body(_))))
    }
}
