//! The static description of one webhook route: its provider, secrets, options and
//! `allow_ips`, built in a `const` by the attribute (or at run time by the layer), the
//! registry [`crate::init`] checks at start, and the namespace of its idempotency keys.

use std::borrow::Cow;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::SecretProblem;
use crate::security::custom::{CustomVerifier, DynVerifier};
use crate::security::{Provider, Verifier};

/// A string a route keeps: borrowed from the binary in a `#[webhook]` route, owned by a
/// layer's route (and freed with it).
pub(crate) type Text = Cow<'static, str>;

/// Where a route's secret comes from. Its `Debug` never shows a literal secret.
#[derive(Clone)]
pub enum SecretSource {
    /// An environment variable, read once.
    Env(Text),
    /// A literal in the source (or given to the layer).
    Literal(Text),
    /// A function returning the secret (`secret = path::to::fn`).
    Func(fn() -> Option<String>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(var) => f.debug_tuple("Env").field(var).finish(),
            SecretSource::Literal(_) => f.write_str("Literal([REDACTED])"),
            SecretSource::Func(_) => f.write_str("Func(..)"),
        }
    }
}

/// Where a route's `allow_ips` list comes from.
#[derive(Debug, Clone)]
pub(crate) enum IpSource {
    /// CIDRs in the source (checked at compile time by the attribute).
    List(Cow<'static, [Text]>),
    /// A comma-separated list in an environment variable, read once.
    Env(Text),
}

/// Where an idempotency key came from: the provider's natural key, or the route's own
/// expression. A natural key in a header the signature does not cover is also checked
/// against a digest of the signed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Bare `idempotency`: the provider's natural key.
    Natural,
    /// `idempotency = body.x` / `header("..")`, or the layer's key closure.
    Given,
}

/// Escapes one component of an idempotency key (`%`, `:` and `@`, the separators), so
/// components never run into each other: `a:b` + `c` and `a` + `b:c` stay different keys.
pub(crate) fn escape_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped(&mut out, s);
    out
}

pub(crate) fn push_escaped(out: &mut String, s: &str) {
    if !s.contains(['%', ':', '@']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '@' => out.push_str("%40"),
            c => out.push(c),
        }
    }
}

/// Values a secret function (`secret = path::to::fn`) may return.
pub trait IntoSecret {
    /// The secret, or `None` when there is none.
    fn into_secret(self) -> Option<String>;
}

impl IntoSecret for String {
    fn into_secret(self) -> Option<String> {
        Some(self)
    }
}

impl IntoSecret for &str {
    fn into_secret(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl<T: IntoSecret> IntoSecret for Option<T> {
    fn into_secret(self) -> Option<String> {
        self.and_then(IntoSecret::into_secret)
    }
}

/// The description of one route: built in a `static` by `#[webhook]`'s generated code, or at
/// run time by a layer, which owns it in an `Arc`.
pub struct Route {
    pub(crate) handler: &'static str,
    pub(crate) module: &'static str,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    pub(crate) provider: Option<Provider>,
    pub(crate) secrets: Cow<'static, [SecretSource]>,
    pub(crate) custom: Option<CustomVerifier>,
    pub(crate) dyn_verifier: Option<DynVerifier>,
    pub(crate) tolerance: Duration,
    pub(crate) ttl: Duration,
    pub(crate) require_processed: bool,
    pub(crate) reject_invalid: bool,
    pub(crate) capture_body: bool,
    pub(crate) capture_headers: bool,
    pub(crate) metadata: Cow<'static, [(Text, Text)]>,
    pub(crate) max_body: usize,
    pub(crate) redact: Cow<'static, [Text]>,
    pub(crate) allow_ips: Option<IpSource>,
    /// Layers: the request's matched path is part of the key namespace.
    pub(crate) namespace_by_path: bool,
    /// `queue`: commit to the inbox and answer at once; the worker runs the handler.
    pub(crate) queue: Option<QueueConfig>,
    /// `events`: only these event types reach the handler; others are answered 200, ignored.
    pub(crate) events: Cow<'static, [Text]>,
    pub(crate) resolved: OnceLock<Resolved>,
}

impl std::fmt::Debug for Route {
    // Written out: the secrets (and what they resolved to) must never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("handler", &self.handler)
            .field("module", &self.module)
            .field("location", &self.location())
            .field("provider", &self.provider)
            .field("secrets", &self.secrets)
            .field("require_processed", &self.require_processed)
            .field("reject_invalid", &self.reject_invalid)
            .field("max_body", &self.max_body)
            .field("allow_ips", &self.allow_ips)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Resolved {
    pub(crate) verifier: Option<Verifier>,
    /// The first secret, for handshakes that answer with an HMAC of it (Zoom).
    pub(crate) first_secret: Option<String>,
    /// The parsed `allow_ips`, when the route has one.
    pub(crate) allow: Option<Vec<ipnet::IpNet>>,
    /// `provider:route` escaped, the part of every key that names this route.
    pub(crate) namespace: String,
}

/// axum's default body limit, used when the route sets no `max_body`.
pub(crate) const DEFAULT_MAX_BODY: usize = 2 * 1024 * 1024;

/// A `queue` route's retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueConfig {
    /// Attempts in all.
    pub(crate) attempts: u32,
    /// The first retry's delay, in milliseconds (doubling after).
    pub(crate) backoff_ms: u64,
}

impl Route {
    /// A route for `handler` defined at `file:line`, with the documented defaults.
    pub const fn new(handler: &'static str, file: &'static str, line: u32) -> Self {
        Route {
            handler,
            module: "",
            file,
            line,
            provider: None,
            secrets: Cow::Borrowed(&[]),
            custom: None,
            dyn_verifier: None,
            tolerance: Duration::from_secs(300),
            ttl: Duration::from_secs(86_400),
            require_processed: false,
            reject_invalid: true,
            capture_body: false,
            capture_headers: true,
            metadata: Cow::Borrowed(&[]),
            max_body: DEFAULT_MAX_BODY,
            redact: Cow::Borrowed(&[]),
            allow_ips: None,
            namespace_by_path: false,
            queue: None,
            events: Cow::Borrowed(&[]),
            resolved: OnceLock::new(),
        }
    }

    /// Queue-first: each verified delivery is committed to the inbox and answered at once;
    /// the inbox's worker runs the handler, `attempts` times at most, the first retry
    /// `backoff_ms` after the first failure, doubling after.
    pub const fn queue(mut self, attempts: u32, backoff_ms: u64) -> Self {
        self.queue = Some(QueueConfig {
            attempts,
            backoff_ms,
        });
        self
    }
    /// Only events of these types (`invoice.paid`, `customer.*`, `*`) reach the handler.
    pub const fn events(mut self, patterns: &'static [Text]) -> Self {
        set(&mut self.events, Cow::Borrowed(patterns));
        self
    }

    /// The module the handler is defined in (`module_path!()`): with the handler's name it
    /// names the route in idempotency keys, so equal names in two modules never meet.
    pub const fn module(mut self, module: &'static str) -> Self {
        self.module = module;
        self
    }
    /// Headers whose values are never reported, beyond the credential and signature headers.
    pub const fn redact(mut self, headers: &'static [Text]) -> Self {
        set(&mut self.redact, Cow::Borrowed(headers));
        self
    }
    /// Only these sources may deliver (403 otherwise): literal CIDRs.
    pub const fn allow_ips_list(mut self, cidrs: &'static [Text]) -> Self {
        set(
            &mut self.allow_ips,
            Some(IpSource::List(Cow::Borrowed(cidrs))),
        );
        self
    }
    /// Only these sources may deliver: a comma-separated list in an environment variable.
    pub const fn allow_ips_env(mut self, var: &'static str) -> Self {
        set(&mut self.allow_ips, Some(IpSource::Env(Cow::Borrowed(var))));
        self
    }
    /// Keys are namespaced by the request's matched path too (layers).
    pub(crate) fn namespace_by_path(mut self, on: bool) -> Self {
        self.namespace_by_path = on;
        self
    }

    /// Sets the provider.
    pub const fn provider(mut self, p: Provider) -> Self {
        self.provider = Some(p);
        self
    }
    /// Sets the secrets (any may match).
    pub const fn secrets(mut self, s: &'static [SecretSource]) -> Self {
        set(&mut self.secrets, Cow::Borrowed(s));
        self
    }
    /// Sets a custom verifier.
    pub const fn custom_verifier(mut self, v: CustomVerifier) -> Self {
        self.custom = Some(v);
        self
    }
    /// Whether a custom verifier (of either kind) decides instead of the provider scheme.
    pub(crate) fn has_custom(&self) -> bool {
        self.custom.is_some() || self.dyn_verifier.is_some()
    }

    /// Sets the replay window in seconds.
    pub const fn tolerance_secs(mut self, s: u64) -> Self {
        self.tolerance = Duration::from_secs(s);
        self
    }
    /// Sets the idempotency TTL in seconds.
    pub const fn ttl_secs(mut self, s: u64) -> Self {
        self.ttl = Duration::from_secs(s);
        self
    }
    /// Requires a processing mark.
    pub const fn require_processed(mut self, on: bool) -> Self {
        self.require_processed = on;
        self
    }
    /// Answers 401 to invalid signatures (default) or lets them through, reported.
    pub const fn reject_invalid(mut self, on: bool) -> Self {
        self.reject_invalid = on;
        self
    }
    /// Captures request and response bodies in events.
    pub const fn capture_body(mut self, on: bool) -> Self {
        self.capture_body = on;
        self
    }
    /// Captures request headers in events (default on).
    pub const fn capture_headers(mut self, on: bool) -> Self {
        self.capture_headers = on;
        self
    }
    /// Static metadata for every event of the route.
    pub const fn metadata(mut self, m: &'static [(Text, Text)]) -> Self {
        set(&mut self.metadata, Cow::Borrowed(m));
        self
    }
    /// The largest body accepted (413 beyond).
    pub const fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    pub(crate) fn provider_name(&self) -> &'static str {
        self.provider.map_or("custom", Provider::name)
    }

    fn read_secrets(&self) -> Result<Vec<String>, String> {
        self.secrets
            .iter()
            .map(|s| match s {
                SecretSource::Env(var) => match std::env::var(&**var) {
                    Ok(v) if !v.trim().is_empty() => Ok(v),
                    _ => Err(format!("the environment variable {var} is not set")),
                },
                SecretSource::Literal(v) => Ok(v.to_string()),
                SecretSource::Func(f) => {
                    f().ok_or_else(|| "the secret function returned none".into())
                }
            })
            .collect()
    }

    fn build(&self) -> Result<Resolved, String> {
        let allow = self.read_allow_ips()?;
        let mut namespace = escape_component(self.provider_name());
        namespace.push(':');
        if self.module.is_empty() {
            push_escaped(&mut namespace, self.handler);
        } else {
            push_escaped(&mut namespace, self.module);
            namespace.push_str("%3A%3A");
            push_escaped(&mut namespace, self.handler);
        }
        if self.has_custom() && self.secrets.is_empty() {
            return Ok(Resolved {
                verifier: None,
                first_secret: None,
                allow,
                namespace,
            });
        }
        let provider = self
            .provider
            .ok_or_else(|| "the route has neither a provider nor a verifier".to_owned())?;
        let secrets = self.read_secrets()?;
        let verifier = Verifier::new(provider, &secrets)
            .map_err(|e| e.to_string())?
            .with_tolerance(self.tolerance);
        // Once the route resolves (it is cached then): which secret, never its value.
        for (i, secret) in secrets.iter().enumerate() {
            if let Some(hint) = unlikely_secret(provider, secret) {
                tracing::warn!(
                    handler = self.handler,
                    location = %self.location(),
                    secret = i + 1,
                    "{hint}"
                );
            }
        }
        Ok(Resolved {
            first_secret: secrets.into_iter().next(),
            verifier: Some(verifier),
            allow,
            namespace,
        })
    }

    fn read_allow_ips(&self) -> Result<Option<Vec<ipnet::IpNet>>, String> {
        let nets = match &self.allow_ips {
            None => return Ok(None),
            Some(IpSource::List(list)) => crate::config::parse_cidrs(list.iter().map(|c| &**c)),
            Some(IpSource::Env(var)) => match std::env::var(&**var) {
                Ok(v) if !v.trim().is_empty() => crate::config::parse_cidrs(v.split(',')),
                _ => Err(format!(
                    "the environment variable {var} (allow_ips) is not set"
                )),
            },
        }
        .map_err(|e| format!("allow_ips: {e}"))?;
        if nets.is_empty() {
            return Err("allow_ips lists no address: no source could deliver".into());
        }
        Ok(Some(nets))
    }

    /// Secrets are read once and cached; a failure is retried on the next delivery, so
    /// setting the variable and restarting is not the only fix.
    pub(crate) fn resolved(&self) -> Result<&Resolved, String> {
        if let Some(r) = self.resolved.get() {
            return Ok(r);
        }
        let built = self.build()?;
        Ok(self.resolved.get_or_init(|| built))
    }

    /// Resolves the secrets now: `Err` says what is wrong (never the secret).
    pub(crate) fn check(&self) -> Result<(), String> {
        self.resolved().map(drop)
    }

    pub(crate) fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Replaces `*slot` in a `const fn`, which cannot run destructors. The value replaced is
/// forgotten, not dropped, and it never owns anything: the `const` builders take only
/// `&'static` data and store it borrowed, so they replace [`Route::new`]'s borrowed defaults
/// or another builder's borrowed value. (A layer's route gets its owned values by plain
/// assignment, after the builders.)
const fn set<T>(slot: &mut T, value: T) {
    std::mem::forget(std::mem::replace(slot, value));
}

/// A route as the pipeline holds it during one delivery: a `#[webhook]` route's static, or a
/// layer's own route, shared by the layer's clones and freed with the last of them.
#[derive(Debug, Clone)]
pub(crate) enum RouteHandle {
    Static(&'static Route),
    Shared(Arc<Route>),
}

impl Deref for RouteHandle {
    type Target = Route;

    fn deref(&self) -> &Route {
        match self {
            RouteHandle::Static(r) => r,
            RouteHandle::Shared(r) => r,
        }
    }
}

/// A warning for a secret that verifies nothing the provider sends, though its form is
/// accepted: Stripe's signing secrets start with `whsec_`, and an API key (`sk_..`,
/// `rk_..`) pasted instead fails every delivery as `hmac_mismatch`.
pub(crate) fn unlikely_secret(provider: Provider, secret: &str) -> Option<&'static str> {
    match provider {
        Provider::Stripe if !secret.trim().starts_with("whsec_") => Some(
            "this Stripe secret does not start with `whsec_`, as Stripe's signing secrets do: \
             use the endpoint's signing secret (Dashboard > Webhooks, or `stripe listen`), not \
             an API key; every delivery will fail as hmac_mismatch otherwise",
        ),
        _ => None,
    }
}

/// Registers a route so [`crate::init`] can check its secrets.
#[derive(Debug)]
pub struct RouteRef(pub &'static Route);

inventory::collect!(RouteRef);

pub(crate) fn check_all_routes() -> Vec<SecretProblem> {
    let mut problems: Vec<SecretProblem> = inventory::iter::<RouteRef>
        .into_iter()
        .filter_map(|r| {
            r.0.check().err().map(|problem| SecretProblem {
                handler: r.0.handler,
                location: r.0.location(),
                problem,
            })
        })
        .collect();
    problems.sort_by(|a, b| a.location.cmp(&b.location));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Stripe secret that is not a signing secret is warned about; others are not.
    #[test]
    fn a_stripe_secret_without_whsec_is_unlikely() {
        assert!(unlikely_secret(Provider::Stripe, "sk_live_abc").is_some());
        assert!(unlikely_secret(Provider::Stripe, "whsec_abc").is_none());
        assert!(unlikely_secret(Provider::Github, "anything").is_none());
        let hint = unlikely_secret(Provider::Stripe, "sk_live_abc").unwrap();
        assert!(!hint.contains("sk_live_abc"), "never the secret itself");
    }

    #[test]
    fn key_components_are_escaped_so_they_never_run_into_each_other() {
        assert_eq!(escape_component("plain"), "plain");
        assert_eq!(escape_component("a:b%c"), "a%3Ab%25c");
        assert_ne!(
            format!("{}:{}", escape_component("a:b"), escape_component("c")),
            format!("{}:{}", escape_component("a"), escape_component("b:c"))
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::RngSeed;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 512,
                rng_seed: RngSeed::Fixed(0x6f75_7477_6f72_7832),
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        proptest! {
            #![proptest_config(config())]

            /// Keys built from different components are different keys, whatever the
            /// components hold (`:` and `%` included).
            #[test]
            fn escaped_components_never_collide(
                a in "[a-z:%@/]{0,6}", b in "[a-z:%@/]{0,6}",
                c in "[a-z:%@/]{0,6}", d in "[a-z:%@/]{0,6}",
            ) {
                // Both separators: `:` between components, `@` between a layer and its path.
                for sep in [":", "@"] {
                    let key = |x: &str, y: &str| format!("{}{sep}{}", escape_component(x), escape_component(y));
                    prop_assert_eq!(key(&a, &b) == key(&c, &d), a == c && b == d);
                }
            }

            /// Any value a key expression yields becomes a key of bounded size in every store.
            #[test]
            fn keys_of_any_length_fit_the_stores(k in ".{0,2000}") {
                let fitted = crate::store::fit_key(&k);
                prop_assert!(fitted.len() <= crate::store::MAX_KEY_LEN);
                prop_assert_eq!(fitted.len() < k.len(), k.len() > crate::store::MAX_KEY_LEN);
            }
        }
    }
}
