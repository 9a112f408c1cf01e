//! The sending side from the command line: `outworx endpoints`, `outworx send`,
//! `outworx worker`, `outworx messages`. Every command opens the outbox at `--db` (a SQLite
//! path or `sqlite://` URL, or a `postgres://` URL) through the SDK's `Emitter`; nothing here
//! has queue logic of its own.

use std::time::Duration;

use clap::{Args, Subcommand};
use outworx_hooks::queue::Retention;
use outworx_hooks::send::{
    Auth, DeliveryFilter, DeliveryStatus, Emitter, Format, NewEndpoint, NewMessage, Outbox, Scope,
    TargetPolicy, WorkerOptions,
};

/// The outbox database.
#[derive(Args, Clone)]
pub(crate) struct Db {
    /// The outbox: a SQLite file path or `sqlite://` URL, or a `postgres://` URL.
    #[arg(long, env = "OUTWORX_OUTBOX_DB")]
    db: String,
}

impl Db {
    async fn emitter(&self, policy: TargetPolicy) -> Result<Emitter, String> {
        let outbox = Outbox::open(&self.db)
            .await
            .map_err(|e| format!("opening the outbox: {e}"))?;
        Ok(Emitter::builder(outbox).policy(policy).worker(None).build())
    }
}

#[derive(Subcommand)]
pub(crate) enum EndpointsCommand {
    /// Add an endpoint; prints its id and its secret (shown this once).
    Add {
        #[command(flatten)]
        db: Db,
        /// Where messages are posted.
        #[arg(long)]
        url: String,
        /// An event pattern (`order.created`, `order.*`, `*`); repeatable. Default: all.
        #[arg(long = "event")]
        events: Vec<String>,
        /// The secret (`whsec_...`, or `whsk_...` for Ed25519); generated when absent.
        #[arg(long)]
        secret: Option<String>,
        /// `bearer:TOKEN`, `basic:USER:PASSWORD` or `header:NAME:VALUE`.
        #[arg(long)]
        auth: Option<String>,
        /// `standard` (default) or `fastapihooks`.
        #[arg(long, default_value = "standard")]
        format: String,
        /// The tenant it belongs to.
        #[arg(long, default_value = "")]
        owner: String,
        /// Allow a target the default policy refuses (a CIDR); repeatable.
        #[arg(long = "allow-target")]
        allow: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List endpoints.
    List {
        #[command(flatten)]
        db: Db,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop sending to an endpoint.
    Disable {
        #[command(flatten)]
        db: Db,
        /// The endpoint id.
        id: String,
    },
    /// Send to an endpoint again.
    Enable {
        #[command(flatten)]
        db: Db,
        /// The endpoint id.
        id: String,
    },
    /// Give an endpoint a new secret (printed once); the old one signs beside it for 24 h.
    Rotate {
        #[command(flatten)]
        db: Db,
        /// The endpoint id.
        id: String,
    },
}

/// `outworx send`.
#[derive(Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    db: Db,
    /// The event type.
    event_type: String,
    /// The payload, JSON.
    #[arg(long)]
    data: String,
    /// A repeated send with the same key is one message.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// The tenant.
    #[arg(long, default_value = "")]
    owner: String,
}

/// `outworx worker`.
#[derive(Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    db: Db,
    /// Allow a target the default policy refuses (a CIDR, e.g. `127.0.0.0/8`); repeatable.
    /// `OUTWORX_ALLOW_TARGETS` (comma-separated) adds to it.
    #[arg(long = "allow-target")]
    allow: Vec<String>,
    /// Attempts in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Attempts in flight to one endpoint at once.
    #[arg(long, default_value_t = 8)]
    per_endpoint: usize,
    /// The request timeout, in seconds.
    #[arg(long, default_value_t = 15)]
    timeout: u64,
    /// How long a lease lasts, in seconds (at least the timeout; default the timeout + 30).
    /// A worker killed mid-attempt leaves its deliveries to be taken again after it.
    #[arg(long)]
    lease: Option<u64>,
    /// Serve Prometheus metrics (`GET /metrics`) on this address, e.g. `127.0.0.1:9464`.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// How long a delivered message is kept, with its attempts (`30d`, `12h`), or `forever`.
    /// The worker deletes older ones a batch at a time, once a minute.
    #[arg(long, default_value = "30d")]
    keep_delivered: String,
    /// How long a dead delivery is kept (`90d`), or `forever`.
    #[arg(long, default_value = "90d")]
    keep_dead: String,
}

#[derive(Subcommand)]
pub(crate) enum MessagesCommand {
    /// List deliveries (one message to one endpoint), newest first.
    List {
        #[command(flatten)]
        db: Db,
        /// Only this status: pending, sending, delivered, dead.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send finished deliveries again: one message's, or every dead one (since a time).
    Replay {
        #[command(flatten)]
        db: Db,
        /// A message id (`msg_...`).
        id: Option<String>,
        /// Every dead delivery instead of one message.
        #[arg(long, conflicts_with = "id")]
        dead: bool,
        /// With --dead: only those that died at or after this RFC 3339 time.
        #[arg(long, requires = "dead")]
        since: Option<String>,
    },
    /// Delete finished messages (every delivery delivered or dead) older than a duration,
    /// with their deliveries and attempts, a batch per short transaction.
    Purge {
        #[command(flatten)]
        db: Db,
        /// How old a delivered message must be: a number with `s`, `m`, `h` or `d` (`30d`).
        #[arg(long)]
        older_than: String,
        /// How old a dead delivery must be, when it differs (default: --older-than).
        #[arg(long)]
        dead_older_than: Option<String>,
    },
    /// Delete one message's payload and its attempts' answers now (an erasure request),
    /// keeping its id, type, times and delivery history. Waiting deliveries end dead.
    Expunge {
        #[command(flatten)]
        db: Db,
        /// The message id (`msg_...`).
        id: String,
    },
}

/// A retention period: a duration (`30d`), or `forever` (`None`).
fn kept(text: &str) -> Result<Option<Duration>, String> {
    if text == "forever" {
        return Ok(None);
    }
    crate::inbox::duration(text).map(Some)
}

/// The policy from `OUTWORX_ALLOW_TARGETS`, plus `--allow-target` CIDRs (or addresses).
pub(crate) fn policy(allow: &[String]) -> Result<TargetPolicy, String> {
    let mut p = TargetPolicy::from_env().map_err(|e| e.to_string())?;
    for a in allow {
        p = p
            .allow_cidr(a)
            .map_err(|_| format!("--allow-target {a}: not a CIDR"))?;
    }
    Ok(p)
}

pub(crate) async fn endpoints(cmd: EndpointsCommand) -> Result<(), String> {
    match cmd {
        EndpointsCommand::Add {
            db,
            url,
            events,
            secret,
            auth,
            format,
            owner,
            allow,
            json,
        } => {
            let emitter = db.emitter(policy(&allow)?).await?;
            let mut new = NewEndpoint::new(url)
                .owner(owner)
                .format(format.parse::<Format>().map_err(|e| e.to_string())?);
            new.events = events;
            if let Some(s) = secret {
                new = new.secret(s);
            }
            if let Some(a) = auth {
                new = new.auth(a.parse::<Auth>().map_err(|e| e.to_string())?);
            }
            let created = emitter
                .create_endpoint(new)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                println!("{}", to_json(&created)?);
            } else {
                println!("id:     {}", created.endpoint.id);
                println!("secret: {}", created.secret);
                eprintln!("(the secret is shown this once; give it to the receiver)");
            }
            Ok(())
        }
        EndpointsCommand::List { db, json } => {
            let emitter = db.emitter(TargetPolicy::default()).await?;
            let list = emitter
                .endpoints(Scope::All)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                println!("{}", to_json(&list)?);
            } else {
                for e in list {
                    let state = if e.enabled { "enabled" } else { "disabled" };
                    let events = if e.events.is_empty() {
                        "*".to_owned()
                    } else {
                        e.events.join(",")
                    };
                    println!(
                        "{}  {state:8}  {:12}  {}  {}{}",
                        e.id,
                        e.format.as_str(),
                        shown(&events),
                        shown(&e.url),
                        e.disabled_reason
                            .map(|r| format!("  ({})", shown(&r)))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        EndpointsCommand::Disable { db, id } => set_enabled(db, id, false).await,
        EndpointsCommand::Enable { db, id } => set_enabled(db, id, true).await,
        EndpointsCommand::Rotate { db, id } => {
            let emitter = db.emitter(TargetPolicy::default()).await?;
            let rotated = emitter
                .rotate_secret(Scope::All, &id)
                .await
                .map_err(|e| e.to_string())?;
            println!("secret: {}", rotated.secret);
            eprintln!("(the previous secret keeps signing beside it for 24 hours)");
            Ok(())
        }
    }
}

async fn set_enabled(db: Db, id: String, enabled: bool) -> Result<(), String> {
    let emitter = db.emitter(TargetPolicy::default()).await?;
    let e = emitter
        .set_enabled(Scope::All, &id, enabled)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{} {}",
        e.id,
        if e.enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

pub(crate) async fn send(args: SendArgs) -> Result<(), String> {
    let emitter = args.db.emitter(TargetPolicy::default()).await?;
    let mut message = NewMessage::json(args.event_type, args.data).owner(args.owner);
    if let Some(k) = args.idempotency_key {
        message = message.idempotency_key(k);
    }
    let sent = emitter
        .send_message(message)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{}  {} deliveries{}",
        sent.message_id,
        sent.deliveries,
        if sent.duplicate {
            "  (a repeat of this idempotency key: nothing new)"
        } else {
            ""
        }
    );
    Ok(())
}

pub(crate) async fn worker(args: WorkerArgs) -> Result<(), String> {
    let _logs = crate::logs()?;
    let policy = policy(&args.allow)?;
    let outbox = Outbox::open(&args.db.db)
        .await
        .map_err(|e| format!("opening the outbox: {e}"))?;
    let mut options = WorkerOptions::default()
        .concurrency(args.concurrency)
        .per_endpoint(args.per_endpoint)
        .timeout(Duration::from_secs(args.timeout.max(1)));
    if let Some(lease) = args.lease {
        options = options.lease(Duration::from_secs(lease));
    }
    options = options.retention(
        Retention::default()
            .done(kept(&args.keep_delivered).map_err(|e| format!("--keep-delivered: {e}"))?)
            .dead(kept(&args.keep_dead).map_err(|e| format!("--keep-dead: {e}"))?),
    );
    let emitter = Emitter::builder(outbox)
        .policy(policy)
        .worker(Some(options))
        .build();
    eprintln!(
        "outworx worker: delivering from the {} outbox (Ctrl-C to stop)",
        emitter.outbox().backend()
    );
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        eprintln!(
            "outworx worker: metrics on http://{}/metrics",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let app = outworx_hooks::metrics::router();
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    shutdown_signal().await;
    eprintln!("outworx worker: stopping after the attempts in flight");
    emitter.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) async fn messages(cmd: MessagesCommand) -> Result<(), String> {
    match cmd {
        MessagesCommand::List {
            db,
            status,
            limit,
            json,
        } => {
            let emitter = db.emitter(TargetPolicy::default()).await?;
            let mut filter = DeliveryFilter::default().limit(limit);
            if let Some(s) = status {
                filter = filter.status(s.parse::<DeliveryStatus>().map_err(|e| e.to_string())?);
            }
            let list = emitter
                .deliveries(Scope::All, &filter)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                println!("{}", to_json(&list)?);
            } else {
                for d in list {
                    println!(
                        "{}  {}  {:9}  attempts {}  {}  {}",
                        d.message_id,
                        d.endpoint_id,
                        format!("{:?}", d.status).to_lowercase(),
                        d.attempts,
                        shown(&d.event_type),
                        shown(&d.last_error.unwrap_or_default())
                    );
                }
            }
            Ok(())
        }
        MessagesCommand::Replay {
            db,
            id,
            dead,
            since,
        } => {
            let emitter = db.emitter(TargetPolicy::default()).await?;
            let filter = match (id, dead) {
                (Some(id), false) => DeliveryFilter::default().message(id),
                (None, true) => {
                    let mut f = DeliveryFilter::default().status(DeliveryStatus::Dead);
                    if let Some(s) = since {
                        f = f.since(crate::since_ms(&s)?);
                    }
                    f
                }
                _ => return Err("give a message id, or --dead".to_owned()),
            };
            let n = emitter
                .replay(Scope::All, &filter)
                .await
                .map_err(|e| e.to_string())?;
            println!("{n} deliveries queued again");
            Ok(())
        }
        MessagesCommand::Purge {
            db,
            older_than,
            dead_older_than,
        } => {
            let done = crate::inbox::duration(&older_than)?;
            let dead = match dead_older_than {
                Some(d) => crate::inbox::duration(&d)?,
                None => done,
            };
            let emitter = db.emitter(TargetPolicy::default()).await?;
            let n = emitter
                .purge(&Retention::default().done(done).dead(dead))
                .await
                .map_err(|e| e.to_string())?;
            println!("{n} finished messages deleted");
            Ok(())
        }
        MessagesCommand::Expunge { db, id } => {
            let emitter = db.emitter(TargetPolicy::default()).await?;
            let found = emitter
                .expunge(Scope::All, &id)
                .await
                .map_err(|e| e.to_string())?;
            if !found {
                return Err(format!("no message {}", shown(&id)));
            }
            println!(
                "{} expunged: its payload and answers are deleted",
                shown(&id)
            );
            Ok(())
        }
    }
}

fn to_json(v: &impl serde::Serialize) -> Result<String, String> {
    serde_json::to_string_pretty(v).map_err(|e| e.to_string())
}

/// Text a tenant or a receiver chose (a URL stored before control characters were refused,
/// an event type, an error quoting an answer), as a terminal may show it: control characters
/// and the invisible ones that reorder or hide text (bidirectional overrides and isolates,
/// zero-width characters) escaped (`\u{1b}`, `\u{202e}`), so none is acted on.
pub(crate) fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{061c}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{feff}'
            )
    }
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::shown;

    /// A terminal escape or a line break in stored text is printed escaped, never acted on.
    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(shown("https://example.com/ok"), "https://example.com/ok");
        assert_eq!(
            shown("https://example.com/\u{1b}[2J\nforged"),
            "https://example.com/\\u{1b}[2J\\nforged"
        );
        assert_eq!(shown("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
    }
}
