//! `outworx serve`: the self-hosted backend.

use clap::Args;
use outworx_serve::ServeConfig;
use std::io::Write as _;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: String,
    /// SQLite file path, or a `postgres://` URL. Also OUTWORX_SERVE_DB (a URL with a
    /// password is better there than on the command line, which `ps` shows).
    #[arg(
        long,
        env = "OUTWORX_SERVE_DB",
        hide_env_values = true,
        default_value = "outworx.db"
    )]
    db: String,
    /// An accepted API key (`ohk_` + 32 hex); repeatable. Prefer OUTWORX_SERVE_API_KEYS
    /// (comma-separated) or --api-key-file: a command line is visible in `ps`.
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// A file of accepted API keys, one per line.
    #[arg(long)]
    api_key_file: Option<std::path::PathBuf>,
    /// This server's public base URL (default: the host the CLI used).
    #[arg(long)]
    public_url: Option<String>,
    /// The base URL tunnels are served on, on a host of its own (recommended: a tunnelled
    /// page then never shares the dashboard's origin). Only `/t/...` is served there.
    #[arg(long)]
    tunnel_url: Option<String>,
    /// Days to keep events (0 keeps them forever).
    #[arg(long, default_value_t = 30)]
    retention_days: u64,
    /// Seconds a public tunnel request waits for the local answer before a 504.
    #[arg(long, default_value_t = 30)]
    hold_timeout: u64,
    /// MiB all tunnels together may hold for requests not yet taken by their CLI; past it,
    /// public requests get 503.
    #[arg(long, default_value_t = 64)]
    tunnel_budget_mib: usize,
    /// MiB one tunnel may hold.
    #[arg(long, default_value_t = 16)]
    tunnel_session_budget_mib: usize,
    /// An outbox (the database an `Emitter` sends from: a SQLite path or URL, or
    /// `postgres://`). The Svix v1 API (`/api/v1`) sends through it, each key's project a
    /// namespace of its own; the dashboard shows its endpoints, messages and attempts, and
    /// replays, disables and rotates. Without --deliver, this server never sends: workers
    /// (`outworx worker`, an application's) do.
    #[arg(long, env = "OUTWORX_SERVE_OUTBOX_DB", hide_env_values = true)]
    outbox_db: Option<String>,
    /// Deliver the outbox's messages from this process too (a delivery worker at
    /// `outworx worker`'s defaults). More `outworx worker --db` processes may run beside it.
    #[arg(long, requires = "outbox_db")]
    deliver: bool,
    /// With --deliver: allow a target the default policy refuses (a CIDR, e.g.
    /// `127.0.0.0/8`); repeatable. `OUTWORX_ALLOW_TARGETS` (comma-separated) adds to it.
    /// Endpoints created through the API are checked against it too.
    #[arg(long = "allow-target")]
    allow: Vec<String>,
    /// Sign the Svix API's endpoints with Svix's header names (`svix-id`, `svix-timestamp`,
    /// `svix-signature`) instead of Standard Webhooks' (`webhook-*`).
    #[arg(long, requires = "outbox_db")]
    svix_header_names: bool,
    /// An origin that may embed the subscriber portal (`/portal/`) in an iframe, e.g.
    /// `https://app.example.com`; repeatable. None by default.
    #[arg(long = "portal-frame-ancestor", requires = "outbox_db")]
    portal_frame_ancestors: Vec<String>,
    /// An application's own inbox (its `queue` routes' database): the dashboard shows its
    /// pending, retrying and dead deliveries, and replays them.
    #[arg(long, env = "OUTWORX_SERVE_INBOX_DB", hide_env_values = true)]
    inbox_db: Option<String>,
    /// The project that sees --outbox-db and --inbox-db: its id (`POST /api/sdk/verify`
    /// answers it). Default: the only key's project; required with several keys.
    #[arg(long, env = "OUTWORX_SERVE_ATTACH_PROJECT")]
    attach_project: Option<String>,
    /// Hours a rotated endpoint secret's predecessor keeps signing: what the application's
    /// `Emitter` uses (its default, 24).
    #[arg(long, default_value_t = 24)]
    rotation_grace_hours: u64,
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), String> {
    let _logs = crate::logs()?;
    let mut keys = args.api_keys;
    if !keys.is_empty() {
        eprintln!(
            "warning: --api-key on the command line is visible to every user of this machine \
             (ps); prefer OUTWORX_SERVE_API_KEYS or --api-key-file"
        );
    }
    if let Some(path) = &args.api_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|k| !k.is_empty() && !k.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if let Ok(env) = std::env::var("OUTWORX_SERVE_API_KEYS") {
        keys.extend(
            env.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
        );
    }
    let mut config = ServeConfig::new(keys);
    config.public_url = args.public_url;
    config.tunnel_url = args.tunnel_url;
    config.hold_timeout = std::time::Duration::from_secs(args.hold_timeout.max(1));
    config.tunnel.max_pending_bytes = args.tunnel_budget_mib.saturating_mul(1 << 20);
    config.tunnel.max_session_bytes = args.tunnel_session_budget_mib.saturating_mul(1 << 20);
    config.retention = (args.retention_days > 0)
        .then(|| std::time::Duration::from_secs(args.retention_days.saturating_mul(86_400)));
    if args.attach_project.is_some() && args.outbox_db.is_none() && args.inbox_db.is_none() {
        return Err("--attach-project names who sees --outbox-db and --inbox-db; give one".into());
    }
    // Several keys, an outbox, no inbox and no project named: the Svix API serves every
    // project, and no dashboard shows the outbox (its operator view sees every owner in it).
    let shared_outbox = args.attach_project.is_none()
        && args.inbox_db.is_none()
        && config.api_keys.len() > 1
        && args.outbox_db.is_some();
    let policy = crate::send::policy(&args.allow)?;
    // Checked before anything is opened: opening runs the SDK's (idempotent) migrations.
    if let Some(p) = &args.attach_project {
        config
            .check_project(p)
            .map_err(|e| format!("--attach-project: {e}"))?;
    }
    if let Some(url) = &args.outbox_db {
        if let Some(path) = sqlite_path(url)
            && !std::path::Path::new(path).exists()
            && !args.deliver
        {
            return Err(format!(
                "no database at {path} (pass --deliver to send from a new outbox here)"
            ));
        }
        let outbox = outworx_hooks::send::Outbox::open(url)
            .await
            .map_err(|e| format!("the outbox: {e}"))?;
        let emitter = outworx_hooks::send::Emitter::builder(outbox)
            .policy(policy)
            .max_payload(outworx_hooks::send::svix::MAX_PAYLOAD)
            .worker(
                args.deliver
                    .then(outworx_hooks::send::WorkerOptions::default),
            )
            .build();
        let mut svix = outworx_serve::Svix::new(emitter)
            .svix_header_names(args.svix_header_names)
            .portal_frame_ancestors(args.portal_frame_ancestors.clone());
        if !shared_outbox {
            let project = match (&args.attach_project, config.api_keys.as_slice()) {
                (Some(p), _) => p.clone(),
                (None, [only]) => outworx_serve::project_id(only),
                _ => String::new(),
            };
            svix = svix.only(project);
        }
        config.svix = Some(svix);
    }
    if (args.outbox_db.is_some() && !shared_outbox) || args.inbox_db.is_some() {
        let project = match (args.attach_project, config.api_keys.as_slice()) {
            (Some(p), _) => p,
            (None, [only]) => outworx_serve::project_id(only),
            (None, _) => {
                return Err(format!(
                    "--outbox-db and --inbox-db are shown to one project: with several keys, \
                     name it with --attach-project (one of {})",
                    config.projects().join(", ")
                ));
            }
        };
        // Checked before anything is opened: opening runs the SDK's (idempotent) migrations.
        config
            .check_project(&project)
            .map_err(|e| format!("--attach-project: {e}"))?;
        // A mistyped path would open a new, empty database: say so instead.
        for url in [&args.inbox_db].into_iter().flatten() {
            if let Some(path) = sqlite_path(url)
                && !std::path::Path::new(path).exists()
            {
                return Err(format!("no database at {path}"));
            }
        }
        let mut attached = outworx_serve::Attached::new(project).rotation_grace(
            std::time::Duration::from_secs(args.rotation_grace_hours.saturating_mul(3600)),
        );
        if let Some(svix) = &config.svix {
            // The same outbox (one pool), seen through an emitter without a worker.
            attached = attached.outbox(svix.emitter().outbox().clone());
        }
        if let Some(url) = &args.inbox_db {
            attached = attached.inbox_db(url).await.map_err(|e| e.to_string())?;
        }
        config.attached = Some(attached);
    }
    config.check().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The one line scripts wait for. A script may close the pipe once it has it: what is
    // printed after must not fail (println! panics on EPIPE, and the server would stop).
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "outworx serve listening on http://{addr} (db: {})",
        redact_url(&args.db)
    );
    let _ = writeln!(out, "dashboard: http://{addr}/dashboard/");
    for (what, url) in [("outbox", &args.outbox_db), ("inbox", &args.inbox_db)] {
        if let Some(url) = url {
            let _ = writeln!(out, "{what}: {}", redact_url(url));
        }
    }
    if let Some(t) = &config.tunnel_url {
        let _ = writeln!(out, "tunnels: {}/t/...", t.trim_end_matches('/'));
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    outworx_serve::serve_until(listener, &args.db, config, shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// The file of a SQLite database URL or path (`None` for PostgreSQL and `:memory:`).
fn sqlite_path(url: &str) -> Option<&str> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    (path != ":memory:" && !path.is_empty()).then_some(path)
}

/// A database URL without its password (in the user info or a `password=` parameter), for
/// the log.
fn redact_url(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    };
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_stay_out_of_the_log() {
        let r = super::redact_url;
        assert_eq!(r("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            r("postgres://u@h/db?sslmode=require&password=pw"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(r("outworx.db"), "outworx.db");
    }

    #[test]
    fn sqlite_files_are_found_in_paths_and_urls() {
        let p = super::sqlite_path;
        assert_eq!(p("app.db"), Some("app.db"));
        assert_eq!(p("sqlite://app.db?mode=rwc"), Some("app.db"));
        assert_eq!(p("sqlite:/var/app.db"), Some("/var/app.db"));
        assert_eq!(p("postgres://u@h/db"), None);
        assert_eq!(p("sqlite::memory:"), None);
    }
}
