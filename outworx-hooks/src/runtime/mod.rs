//! The process runtime: what [`init`] installs (the store, the sinks, the service name, the
//! proxies) and every delivery reads, with the embedded defaults until then. Receiving's
//! state is here; reporting (the sinks, the [`Guard`] that flushes them) is in `report.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

mod report;

pub use report::Guard;
use report::{start_sinks, with_metrics};

use crate::config::{Config, ConfigError, parse_cidrs, valid_api_key};
use crate::report::{Sink, TracingSink};
use crate::route::escape_component;
use crate::store::{MemoryStore, Store};

pub(crate) struct Runtime {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sinks: Vec<Arc<dyn Sink>>,
    /// Whether any sink reads the request headers (see [`Sink::wants_request_headers`]).
    headers_wanted: bool,
    pub(crate) debug: bool,
    pub(crate) fail_closed: bool,
    /// This service's name, escaped as a key component: the first part of every idempotency
    /// key, so services sharing one store never meet.
    pub(crate) service: String,
    /// The public base URL URL-signing providers post to, when configured.
    pub(crate) public_url: Option<String>,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
}

/// The default service name: the executable's file name, so every instance of one service
/// agrees on it and two services do not.
fn default_service() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "service".to_owned())
}

impl Runtime {
    fn embedded() -> Runtime {
        let sinks = with_metrics(vec![Arc::new(TracingSink)]);
        Runtime {
            store: Arc::new(MemoryStore::new()),
            headers_wanted: sinks.iter().any(|s| s.wants_request_headers()),
            sinks,
            debug: false,
            fail_closed: false,
            service: escape_component(&default_service()),
            public_url: None,
            trusted_proxies: Vec::new(),
        }
    }
}

static RUNTIME: RwLock<Option<Arc<Runtime>>> = RwLock::new(None);

pub(crate) fn runtime() -> Arc<Runtime> {
    if let Some(rt) = RUNTIME.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        return rt.clone();
    }
    let mut slot = RUNTIME.write().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| Arc::new(Runtime::embedded()))
        .clone()
}

/// An `#[emit]` handler compiled into this binary (registered by the attribute), so that
/// [`init`] can refuse to start when no emitter would answer it.
#[doc(hidden)]
#[derive(Debug)]
pub struct EmitRef {
    /// The handler function's name.
    pub handler: &'static str,
    /// Its file.
    pub file: &'static str,
    /// Its line.
    pub line: u32,
}

inventory::collect!(EmitRef);

/// Whether an emitter was installed (set by the sending side's `Emitter::install`).
static EMITTER_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Notes that `#[emit]` handlers now have an emitter.
#[cfg(feature = "send")]
pub(crate) fn emitter_installed() {
    EMITTER_INSTALLED.store(true, Ordering::Release);
}

/// The `#[emit]` handlers that no emitter would answer: every one when none is installed.
fn emit_routes_without_emitter() -> Vec<String> {
    if EMITTER_INSTALLED.load(Ordering::Acquire) {
        return Vec::new();
    }
    let mut routes: Vec<String> = inventory::iter::<EmitRef>
        .into_iter()
        .map(|r| format!("`{}` ({}:{})", r.handler, r.file, r.line))
        .collect();
    routes.sort();
    routes
}

/// Prints, once per process, how to see the per-delivery log lines when no `tracing`
/// subscriber is installed: without one, the default sink's lines go nowhere. It never
/// installs one itself: the application's own `fmt().init()` afterwards would then panic.
fn hint_without_subscriber() {
    static HINTED: AtomicBool = AtomicBool::new(false);
    if tracing::dispatcher::has_been_set() || HINTED.swap(true, Ordering::Relaxed) {
        return;
    }
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "outworx-hooks: no tracing subscriber is installed, so its log line per delivery goes \
         nowhere; install one before init, e.g. `tracing_subscriber::fmt().init()`"
    );
}

/// Validates `config`, checks that every `#[webhook]` route in the binary can read and use its
/// secret and that every `#[emit]` route has an emitter, and installs the configuration for
/// every delivery from now on.
///
/// When no `tracing` subscriber is installed, it prints a one-line hint to stderr (once):
/// the default sink logs each delivery through `tracing`.
///
/// ```
/// let guard = outworx_hooks::init(outworx_hooks::Config::new());
/// # let _ = guard;
/// ```
pub fn init(mut config: Config) -> Result<Guard, ConfigError> {
    let (trusted_proxies, public_url) = validate(&config)?;
    let problems = crate::route::check_all_routes();
    if !problems.is_empty() {
        return Err(ConfigError::Secrets(problems));
    }
    let unanswered = emit_routes_without_emitter();
    if !unanswered.is_empty() && !config.emit_by_extension {
        return Err(ConfigError::NoEmitter(unanswered));
    }
    // Without sinks or an API key, deliveries are logged through `tracing` (TracingSink).
    if config.sinks.is_empty() && config.api_key.is_none() {
        hint_without_subscriber();
    }
    let guard = start_sinks(&mut config)?;
    // A configured store is networked (or may be): guarded by a timeout and a breaker. The
    // embedded memory store answers in memory, never fails, and stays unwrapped.
    let store = match config.store.take() {
        Some(store) => {
            Arc::new(crate::store::Guarded::new(store, config.store_breaker)) as Arc<dyn Store>
        }
        None => Arc::new(MemoryStore::new()) as Arc<dyn Store>,
    };
    if store.is_shared() && config.service.is_none() {
        tracing::warn!(
            service = %default_service(),
            "the idempotency store is shared, and no Config::service (OUTWORX_HOOKS_SERVICE) \
             is set: keys use the executable's name, so two services built under the same \
             name would answer each other's deliveries; name this service"
        );
    }
    let rt = Runtime {
        store,
        headers_wanted: guard.sinks.iter().any(|s| s.wants_request_headers()),
        sinks: guard.sinks.clone(),
        debug: config.debug,
        fail_closed: config.fail_closed,
        service: escape_component(&config.service.unwrap_or_else(default_service)),
        public_url,
        trusted_proxies,
    };
    *RUNTIME.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(rt));
    Ok(guard)
}

/// Checks the parts of `config` that can be wrong on their own: the API key's form, the
/// trusted proxies and the public URL (returned parsed).
fn validate(config: &Config) -> Result<(Vec<ipnet::IpNet>, Option<String>), ConfigError> {
    if let Some(key) = &config.api_key
        && !valid_api_key(key.trim())
    {
        return Err(ConfigError::InvalidApiKey);
    }
    let trusted_proxies = parse_cidrs(config.trusted_proxies.iter().map(String::as_str))
        .map_err(ConfigError::TrustedProxy)?;
    match &config.public_url {
        Some(u)
            if !(u.starts_with("https://") || u.starts_with("http://"))
                || u.parse::<http::Uri>().is_err() =>
        {
            Err(ConfigError::PublicUrl)
        }
        other => Ok((trusted_proxies, other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_api_key_is_refused_without_echoing_it() {
        let err = init(Config::new().api_key("nope")).unwrap_err();
        assert_eq!(err, ConfigError::InvalidApiKey);
        assert!(!err.to_string().contains("nope"));
    }
    #[cfg(feature = "outworx-api")]
    #[test]
    fn reporting_needs_a_runtime() {
        let key = "ohk_0123456789abcdef0123456789abcdef";
        let c = Config::new()
            .api_key(key)
            .endpoint("http://127.0.0.1:9/api/ingest");
        assert_eq!(init(c).unwrap_err(), ConfigError::NoRuntime);
        // Without an endpoint, the hosted default applies (the Python package's).
        assert_eq!(
            init(Config::new().api_key(key)).unwrap_err(),
            ConfigError::NoRuntime
        );
    }

    #[test]
    fn proxies_and_public_urls_are_checked() {
        let e = init(Config::new().trusted_proxies(["10.0.0.0/99"])).unwrap_err();
        assert!(matches!(e, ConfigError::TrustedProxy(ref m) if m.contains("10.0.0.0/99")));
        let e = init(Config::new().public_url("hooks.example.com")).unwrap_err();
        assert_eq!(e, ConfigError::PublicUrl);
    }
}
