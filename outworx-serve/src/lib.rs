//! `outworx serve`: the self-hosted Outworx backend.
//!
//! One process speaks the HTTP API the SDKs and CLIs call, so `outworx-hooks` (Rust) and the
//! Python package `outworx-hooks` both report to it, dedupe through it and tunnel through it:
//!
//! - `POST /api/ingest` (`{"events": [...]}`), `POST /api/sdk/verify`;
//! - `POST /api/sdk/idempotency/check` and `/complete`;
//! - `POST /api/forward/sessions`, `GET /api/forward/poll?session=`,
//!   `POST /api/forward/responses`, `DELETE /api/forward/sessions/{id}`, and the public
//!   ingress `/t/{slug}/...`;
//! - `GET /api/events?provider=&status=&processing_status=&signature_valid=&since=&until=&limit=&before_id=`:
//!   the stored events, newest first; `GET /api/stats?since=&until=`: their counts;
//!   `GET /api/stats/series?since=&until=&bucket=`: counts per outcome and p50/p95 latency
//!   per time bucket of whole minutes, ten minutes, hours or days, for charts; both read
//!   per-minute, ten-minute, hour and day counts kept at ingest (the summary reads only a
//!   window's partial minutes from its events);
//! - with an application's outbox and inbox attached ([`Attached`], `--outbox-db`,
//!   `--inbox-db`): `GET /api/outbound` (endpoints with their health),
//!   `GET /api/outbound/messages`, `GET /api/outbound/messages/{id}` (with its attempts),
//!   `POST /api/outbound/messages/{id}/replay`, `POST /api/outbound/endpoints/{id}/replay`,
//!   `/disable`, `/enable`, `/rotate`; `GET /api/inbox`, `GET /api/inbox/{id}`,
//!   `POST /api/inbox/{id}/replay`, `POST /api/inbox/replay?route=&since=`;
//! - with [`Svix`] (`--outbox-db`): the Svix v1 API under `/api/v1/` (`docs/svix.md`);
//! - `GET /dashboard/`: a page over all of it (the API key is typed into it).
//!
//! Every `/api` call needs `Authorization: Bearer <api key>` with a configured key (401
//! otherwise); events and idempotency keys are scoped by key. Storage is a SQLite file by
//! default, or PostgreSQL with a `postgres://` URL; migrations are embedded and applied at
//! start.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use outworx_serve::{ServeConfig, serve};
//! let config = ServeConfig::new(vec!["ohk_0123456789abcdef0123456789abcdef".into()]);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//! serve(listener, "outworx.db", config).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod dashboard;
pub mod db;
mod server;
pub mod tunnel;

use std::sync::Arc;
use std::time::Duration;

pub use db::{Db, DbError};

/// Settings of a server.
#[derive(Clone)]
pub struct ServeConfig {
    /// Accepted API keys (`ohk_` + 32 lowercase hex each).
    pub api_keys: Vec<String>,
    /// The public base URL of this server, for the dashboard and the API (default: the
    /// `Host` the CLI used).
    pub public_url: Option<String>,
    /// The base URL tunnels are served on (`--tunnel-url`), on a host of its own: a page
    /// served through a tunnel then never shares an origin with the dashboard. When set, this
    /// server answers `/t/...` only on that host, and nothing else there.
    pub tunnel_url: Option<String>,
    /// How long a public request is held for the local answer (default 30 s; then 504).
    pub hold_timeout: Duration,
    /// How long a tunnel session lives (default 24 h).
    pub session_ttl: Duration,
    /// How long a poll waits for a request (default 25 s).
    pub poll_wait: Duration,
    /// Most events in one ingest batch (default 1,000; more is a 413).
    pub max_batch: usize,
    /// Largest request body (default 10 MiB).
    pub max_body: usize,
    /// How long events are kept (default 30 days; `None` keeps them forever). Older ones are
    /// deleted once a minute, with expired idempotency keys.
    pub retention: Option<Duration>,
    /// The relay's byte and count budgets.
    pub tunnel: tunnel::TunnelLimits,
    /// How long a client may take to send a request's headers (default 10 s).
    pub header_timeout: Duration,
    /// How long one request may take in all, body and answer included (default 60 s, above
    /// the longest poll and hold).
    pub request_timeout: Duration,
    /// Connections served at once; more wait to be accepted (default 1,024).
    pub max_connections: usize,
    /// An application's own outbox and inbox, shown to one project (default: none).
    pub attached: Option<Attached>,
    /// The Svix-compatible API (`/api/v1`) over an outbox (default: none).
    pub svix: Option<Svix>,
}

/// The Svix v1 API (`/api/v1/...`) over an outbox, on this server: every Svix client sends
/// through it with a serve API key as its bearer token. Each key's project is a namespace:
/// its applications, endpoints, messages and event types are its own, and another project's
/// key gets 404 on every one of them, as a missing one.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use outworx_hooks::send::{Emitter, Outbox};
/// use outworx_serve::{ServeConfig, Svix};
/// let mut config = ServeConfig::new(vec!["ohk_0123456789abcdef0123456789abcdef".into()]);
/// // With a worker: this process delivers what the API sends.
/// let emitter = Emitter::builder(Outbox::open("outbox.db").await?).build();
/// config.svix = Some(Svix::new(emitter));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Svix {
    pub(crate) emitter: outworx_hooks::send::Emitter,
    pub(crate) only: Option<String>,
    pub(crate) svix_header_names: bool,
    pub(crate) frame_ancestors: Vec<String>,
}

impl Svix {
    /// The API over `emitter`'s outbox, for every configured key's project.
    pub fn new(emitter: outworx_hooks::send::Emitter) -> Self {
        Svix {
            emitter,
            only: None,
            svix_header_names: false,
            frame_ancestors: Vec::new(),
        }
    }

    /// Only this project's key may use it (others get 401): for an outbox an operator's
    /// dashboard also shows ([`Attached`]), which sees every owner in it.
    pub fn only(mut self, project: impl Into<String>) -> Self {
        self.only = Some(project.into());
        self
    }

    /// Origins that may embed the subscriber portal (`/portal/`) in an `<iframe>`
    /// (`https://app.example.com`); none by default. Checked when the server starts.
    pub fn portal_frame_ancestors(mut self, origins: Vec<String>) -> Self {
        self.frame_ancestors = origins;
        self
    }

    /// The emitter it sends with.
    pub fn emitter(&self) -> &outworx_hooks::send::Emitter {
        &self.emitter
    }

    /// Sends with Svix's header names (`svix-id`, ...) instead of `webhook-*`.
    pub fn svix_header_names(mut self, on: bool) -> Self {
        self.svix_header_names = on;
        self
    }
}

/// An application's own outbox (sending) and inbox (queue-first receiving), attached to one
/// project: that project's key sees and operates them on `/api/outbound`, `/api/inbox` and the
/// dashboard; any other key is answered 404, as if nothing were attached.
///
/// Sending and queued receiving run in the application, against its own database, and stay
/// there: this server never sends and never runs a handler. It reads and changes those rows
/// only through the SDK's [`Emitter`](outworx_hooks::send::Emitter) (built without a worker)
/// and [`Inbox`](outworx_hooks::inbox::Inbox), the same code the application runs. A replay
/// puts rows back in the queue; the application's workers deliver or process them.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use outworx_serve::{Attached, ServeConfig};
/// let key = "ohk_0123456789abcdef0123456789abcdef";
/// let mut config = ServeConfig::new(vec![key.into()]);
/// config.attached = Some(
///     Attached::new(outworx_serve::project_id(key))
///         .outbox_db("postgres://app@db/app")
///         .await?
///         .inbox_db("postgres://app@db/app")
///         .await?,
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Attached {
    pub(crate) project: String,
    pub(crate) outbox: Option<outworx_hooks::send::Emitter>,
    pub(crate) inbox: Option<outworx_hooks::inbox::Inbox>,
    rotation_grace: Duration,
}

impl std::fmt::Debug for Attached {
    // Written out: only what is attached, never a database URL (it may hold a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("project", &self.project)
            .field("outbox", &self.outbox.is_some())
            .field("inbox", &self.inbox.is_some())
            .field("rotation_grace", &self.rotation_grace)
            .finish()
    }
}

impl Attached {
    /// Nothing attached yet, for the project with this id ([`project_id`] of its key).
    pub fn new(project: impl Into<String>) -> Self {
        Attached {
            project: project.into(),
            outbox: None,
            inbox: None,
            rotation_grace: Duration::from_secs(24 * 3600),
        }
    }

    /// How long a rotated secret's predecessor keeps signing beside it (default 24 h): set it
    /// to what the application's `Emitter` uses.
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
        if let Some(emitter) = self.outbox.take() {
            self = self.outbox(emitter.outbox().clone());
        }
        self
    }

    /// Attaches an outbox already open.
    pub fn outbox(mut self, outbox: outworx_hooks::send::Outbox) -> Self {
        self.outbox = Some(
            outworx_hooks::send::Emitter::builder(outbox)
                .worker(None)
                .rotation_grace(self.rotation_grace)
                .build(),
        );
        self
    }

    /// Opens and attaches the outbox at `url` (a SQLite path or URL, or `postgres://`).
    pub async fn outbox_db(self, url: &str) -> Result<Self, ServeError> {
        let outbox = outworx_hooks::send::Outbox::open(url)
            .await
            .map_err(|e| ServeError::Attach(format!("the outbox: {e}")))?;
        Ok(self.outbox(outbox))
    }

    /// Attaches an inbox already open.
    pub fn inbox(mut self, inbox: outworx_hooks::inbox::Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// Opens and attaches the inbox at `url` (a SQLite path or URL, or `postgres://`).
    pub async fn inbox_db(self, url: &str) -> Result<Self, ServeError> {
        let inbox = outworx_hooks::inbox::Inbox::open(url)
            .await
            .map_err(|e| ServeError::Attach(format!("the inbox: {e}")))?;
        Ok(self.inbox(inbox))
    }
}

/// The stable, non-secret id of an API key's project: what scopes its events, and what
/// [`Attached::new`] names (`POST /api/sdk/verify` answers it too).
pub fn project_id(api_key: &str) -> String {
    api::project_id(api_key)
}

impl std::fmt::Debug for ServeConfig {
    // Written out: the API keys are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("public_url", &self.public_url)
            .field("tunnel_url", &self.tunnel_url)
            .field("hold_timeout", &self.hold_timeout)
            .field("session_ttl", &self.session_ttl)
            .field("max_body", &self.max_body)
            .field("tunnel", &self.tunnel)
            .field("max_connections", &self.max_connections)
            .field("attached", &self.attached)
            .field("svix", &self.svix.is_some())
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// Defaults with these API keys.
    pub fn new(api_keys: Vec<String>) -> Self {
        ServeConfig {
            api_keys,
            public_url: None,
            tunnel_url: None,
            hold_timeout: Duration::from_secs(30),
            session_ttl: Duration::from_secs(24 * 3600),
            poll_wait: api::DEFAULT_POLL_WAIT,
            max_batch: 1000,
            max_body: 10 << 20,
            retention: Some(Duration::from_secs(30 * 86_400)),
            tunnel: tunnel::TunnelLimits::default(),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            attached: None,
            svix: None,
        }
    }

    /// Checks the keys (at least one, each `ohk_` + 32 lowercase hex) and the URLs (absolute;
    /// the tunnel's host differs from the public URL's).
    pub fn check(&self) -> Result<(), ServeError> {
        if self.api_keys.is_empty() {
            return Err(ServeError::NoApiKey);
        }
        for k in &self.api_keys {
            let ok = k.strip_prefix("ohk_").is_some_and(|h| {
                h.len() == 32
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
            if !ok {
                return Err(ServeError::BadApiKey(project_hint(k)));
            }
        }
        if let Some(a) = &self.attached {
            self.check_project(&a.project)?;
        }
        if let Some(p) = self.svix.as_ref().and_then(|s| s.only.as_deref()) {
            self.check_project(p)?;
        }
        if let Some(s) = &self.svix {
            outworx_hooks::send::svix::SvixApi::new(s.emitter.clone())
                .portal_frame_ancestors(s.frame_ancestors.iter().cloned())
                .map_err(|e| ServeError::Url(e.to_string()))?;
        }
        let public = self.public_url.as_deref().map(authority).transpose()?;
        if let Some(tunnel) = self.tunnel_url.as_deref() {
            let tunnel = authority(tunnel)?;
            if public
                .as_deref()
                .is_some_and(|p| normal_host(p) == normal_host(&tunnel))
            {
                return Err(ServeError::Url(
                    "--tunnel-url must be on another host than --public-url: tunnelled pages \
                     must not share the dashboard's origin"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

impl ServeConfig {
    /// The projects of the configured keys (their non-secret ids, [`project_id`]), in order.
    pub fn projects(&self) -> Vec<String> {
        self.api_keys.iter().map(|k| project_id(k)).collect()
    }

    /// Whether `project` is the project of a configured key: what [`Attached`] must name.
    /// The error lists the keys' projects.
    pub fn check_project(&self, project: &str) -> Result<(), ServeError> {
        let projects = self.projects();
        if projects.iter().any(|p| p == project) {
            return Ok(());
        }
        Err(ServeError::Attach(format!(
            "project {project} has no key here; the keys' projects are {}",
            projects.join(", ")
        )))
    }
}

/// The `host[:port]` of an absolute `http(s)://` URL, without user info and without the
/// scheme's default port.
fn authority(url: &str) -> Result<String, ServeError> {
    let bad = || ServeError::Url(format!("`{url}` is not an absolute http(s):// URL"));
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme @ ("http" | "https")), Some(a)) => {
            let default = if scheme == "https" { 443 } else { 80 };
            let host = a.host();
            Ok(match a.port_u16() {
                Some(p) if p != default => format!("{host}:{p}"),
                _ => host.to_owned(),
            })
        }
        _ => Err(bad()),
    }
}

/// A `Host` header as compared with the tunnel's: lowercase, without user info, and without
/// the port 80 or 443 (the same host however the client wrote it).
pub(crate) fn normal_host(host: &str) -> String {
    let host = host.rsplit('@').next().unwrap_or(host).to_ascii_lowercase();
    host.strip_suffix(":443")
        .or_else(|| host.strip_suffix(":80"))
        .map_or_else(|| host.clone(), str::to_owned)
}

/// A key's first characters, for an error message that must not echo the secret.
fn project_hint(k: &str) -> String {
    k.chars().take(4).collect::<String>() + "…"
}

/// Errors of starting or running a server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No API key was given.
    #[error("no API key: pass --api-key ohk_<32 hex> or set OUTWORX_SERVE_API_KEYS")]
    NoApiKey,
    /// A key is not `ohk_` + 32 lowercase hex.
    #[error("API key {0} is not ohk_ followed by 32 lowercase hex digits")]
    BadApiKey(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The listener failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// A configured URL is not usable.
    #[error("{0}")]
    Url(String),
    /// An attached outbox or inbox could not be opened, or names no configured project.
    #[error("attaching {0}")]
    Attach(String),
}

/// The router over an opened database (for embedding the backend in another app or a test).
/// [`serve`] also sweeps the database once a minute; an embedding app calls [`Db::sweep`]
/// itself.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use outworx_serve::{Db, ServeConfig};
/// let config = ServeConfig::new(vec!["ohk_0123456789abcdef0123456789abcdef".into()]);
/// config.check()?;
/// let app = axum::Router::new()
///     .route("/ready", axum::routing::get(|| async { "ok" }))
///     .merge(outworx_serve::router(Db::open("outworx.db").await?, config));
/// axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8787").await?, app).await?;
/// # Ok(()) }
/// ```
pub fn router(db: Db, config: ServeConfig) -> axum::Router {
    router_with(db, config, tunnel::Tunnels::default())
}

fn router_with(db: Db, config: ServeConfig, tunnels: tunnel::Tunnels) -> axum::Router {
    let tunnel_host = config
        .tunnel_url
        .as_deref()
        .and_then(|u| authority(u).ok())
        .map(|a| normal_host(&a));
    api::router(Arc::new(api::App {
        db,
        config,
        tunnels,
        tunnel_host,
    }))
}

/// Opens `db_url`, then serves on `listener` until the process is stopped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db_url: &str,
    config: ServeConfig,
) -> Result<(), ServeError> {
    serve_until(listener, db_url, config, std::future::pending()).await
}

/// As [`serve`], stopping gracefully when `shutdown` completes.
///
/// Connections are served with HTTP/1.1, at most `max_connections` at once, each request's
/// headers within `header_timeout` and the whole request within `request_timeout`; the
/// relay's expired sessions and the database's old rows are swept in the background.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    db_url: &str,
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.check()?;
    let db = Db::open(db_url).await?;
    let tunnels = tunnel::Tunnels::with_limits(config.tunnel.clone());
    let sweeper = db.clone();
    let retention = config.retention;
    let relay = tunnels.clone();
    let sweeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            relay.expire_due();
            sweeper.sweep(retention).await;
        }
    });
    tracing::info!(addr = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), backend = ?db.backend(), "outworx serve listening");
    if config.tunnel_url.is_none() {
        tracing::warn!(
            "tunnels are served on the dashboard's origin: their pages are sandboxed, but set \
             --tunnel-url to a host of their own so they never share an origin with the dashboard"
        );
    }
    let limits = server::Limits {
        header_timeout: config.header_timeout,
        request_timeout: config.request_timeout,
        max_connections: config.max_connections,
    };
    let app = router_with(db, config, tunnels);
    let served = server::run(listener, app, limits, shutdown).await;
    sweeping.abort();
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_without_echoing_them() {
        assert!(matches!(
            ServeConfig::new(vec![]).check(),
            Err(ServeError::NoApiKey)
        ));
        let e = ServeConfig::new(vec!["ohk_secretsecret".into()])
            .check()
            .unwrap_err();
        assert!(!e.to_string().contains("secretsecret"));
        ServeConfig::new(vec!["ohk_0123456789abcdef0123456789abcdef".into()])
            .check()
            .unwrap();
    }

    #[test]
    fn an_attachment_names_the_project_of_a_configured_key() {
        let key = "ohk_0123456789abcdef0123456789abcdef";
        let mut c = ServeConfig::new(vec![key.into()]);
        c.check_project(&project_id(key)).unwrap();
        let e = c.check_project("0000000000000000").unwrap_err().to_string();
        assert!(e.contains(&project_id(key)), "{e}");
        assert!(
            !e.contains("0123456789abcdef0123456789abcdef"),
            "no key in {e}"
        );
        c.attached = Some(Attached::new("0000000000000000"));
        assert!(matches!(c.check(), Err(ServeError::Attach(_))));
    }

    #[test]
    fn the_tunnel_must_live_on_its_own_host_and_debug_hides_the_keys() {
        let key = "ohk_0123456789abcdef0123456789abcdef";
        let mut c = ServeConfig::new(vec![key.into()]);
        c.public_url = Some("https://hooks.example.com".into());
        c.tunnel_url = Some("https://HOOKS.example.com/".into());
        assert!(matches!(c.check(), Err(ServeError::Url(_))));
        c.tunnel_url = Some("https://tunnels.example.com".into());
        c.check().unwrap();
        // The same host however it is written.
        c.tunnel_url = Some("https://user@HOOKS.example.com:443".into());
        assert!(matches!(c.check(), Err(ServeError::Url(_))));
        assert_eq!(authority("http://t.example:80/x").unwrap(), "t.example");
        assert_eq!(
            authority("http://t.example:8080").unwrap(),
            "t.example:8080"
        );
        assert_eq!(normal_host("T.Example:443"), "t.example");
        c.tunnel_url = Some("tunnels.example.com".into());
        assert!(matches!(c.check(), Err(ServeError::Url(_))));
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn events_are_validated_field_by_field() {
        let ok = serde_json::json!({"provider": "stripe", "status_code": 200, "success": true,
            "duration_ms": 3, "payload_size": 10, "timestamp": "2026-11-23T10:00:00.123456Z",
            "request_body": {"python": "sends dicts"}, "processing_status": "silent_drop"});
        assert_eq!(api::validate(&ok).unwrap(), 1_795_428_000_123);
        for (patch, why) in [
            (serde_json::json!({"extra": 1}), "unknown field `extra`"),
            (serde_json::json!({"status_code": 42}), "status_code"),
            (serde_json::json!({"timestamp": "yesterday"}), "RFC 3339"),
            (serde_json::json!({"provider": ""}), "provider"),
            (
                serde_json::json!({"processing_status": "done"}),
                "processing_status",
            ),
        ] {
            let mut e = ok.clone();
            for (k, v) in patch.as_object().unwrap() {
                e[k] = v.clone();
            }
            let err = api::validate(&e).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert!(api::validate(&serde_json::json!([1])).is_err());
        // Every processing status the SDK reports, a queued receipt and an ignored type too.
        for p in ["completed", "failed", "silent_drop", "queued", "ignored"] {
            let mut e = ok.clone();
            e["processing_status"] = p.into();
            api::validate(&e).unwrap_or_else(|why| panic!("{p}: {why}"));
        }
    }

    mod properties {
        use proptest::prelude::*;
        use proptest::test_runner::RngSeed;
        use serde_json::Value;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 512,
                rng_seed: RngSeed::Fixed(0x6f75_7477_6f72_7834),
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        /// Events that are mostly well-formed, with any field possibly wrong or huge.
        fn event() -> impl Strategy<Value = Value> {
            let any_value = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[ -~]{0,20}".prop_map(Value::String),
                (0usize..300_000).prop_map(|n| Value::String("x".repeat(n))),
                prop::collection::vec(any::<u8>().prop_map(Value::from), 0..10)
                    .prop_map(Value::Array),
            ];
            let field = prop_oneof![
                Just("provider"),
                Just("status_code"),
                Just("success"),
                Just("duration_ms"),
                Just("payload_size"),
                Just("timestamp"),
                Just("event_type"),
                Just("metadata"),
                Just("request_headers"),
                Just("request_body"),
                Just("processing_status"),
                Just("signature_valid"),
                Just("surprise"),
            ];
            prop::collection::vec((field, any_value), 0..6).prop_map(|patch| {
                let mut e = serde_json::json!({"provider": "stripe", "status_code": 200,
                    "success": true, "duration_ms": 1, "payload_size": 2,
                    "timestamp": "2026-11-30T10:00:00Z"});
                for (k, v) in patch {
                    e[k] = v;
                }
                e
            })
        }

        proptest! {
            #![proptest_config(config())]

            /// Validation never panics, and what it accepts fits the event size cap.
            #[test]
            fn validation_never_panics_and_bounds_what_it_accepts(e in event()) {
                if crate::api::validate(&e).is_ok() {
                    prop_assert!(e.to_string().len() <= crate::api::MAX_EVENT_BYTES);
                }
            }

            /// Arbitrary bytes as a batch: parsed or refused, never a panic.
            #[test]
            fn batches_of_any_bytes_are_parsed_or_refused(
                bytes in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                #[derive(serde::Deserialize)]
                struct Batch<'a> {
                    #[serde(borrow)]
                    #[allow(dead_code)]
                    events: Vec<&'a serde_json::value::RawValue>,
                }
                let _ = serde_json::from_slice::<Batch<'_>>(&bytes);
            }
        }
    }
}
