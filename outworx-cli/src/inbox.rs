//! `outworx inbox list|show|replay|purge`: the queue-first receiving side's inbox, from the
//! command line. Thin over the SDK's `Inbox`.

use std::time::Duration;

use clap::Subcommand;
use outworx_hooks::inbox::{DeliveryFilter, DeliveryStatus, Inbox};

#[derive(Subcommand)]
pub(crate) enum InboxCommand {
    /// List queued deliveries, newest first.
    List {
        /// The inbox: a SQLite path or `sqlite://` URL, or a `postgres://` URL.
        #[arg(long, env = "OUTWORX_HOOKS_INBOX")]
        db: String,
        /// Only this status: pending, processing, done, dead.
        #[arg(long)]
        status: Option<String>,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery's state (and, with --body, its stored body).
    Show {
        #[arg(long, env = "OUTWORX_HOOKS_INBOX")]
        db: String,
        /// The delivery's id.
        id: i64,
        /// Also print the stored body (it may hold personal data).
        #[arg(long)]
        body: bool,
    },
    /// Run finished deliveries again: one, or every dead one (since a time).
    Replay {
        #[arg(long, env = "OUTWORX_HOOKS_INBOX")]
        db: String,
        /// A delivery's id.
        id: Option<i64>,
        /// Every dead delivery instead of one.
        #[arg(long, conflicts_with = "id")]
        dead: bool,
        /// With --dead: only those that died at or after this RFC 3339 time.
        #[arg(long, requires = "dead")]
        since: Option<String>,
    },
    /// Delete finished deliveries (done, dead) older than a duration (`30d`, `12h`).
    Purge {
        #[arg(long, env = "OUTWORX_HOOKS_INBOX")]
        db: String,
        /// How old: a number with `s`, `m`, `h` or `d`.
        #[arg(long)]
        older_than: String,
    },
}

async fn open(db: &str) -> Result<Inbox, String> {
    Inbox::open(db)
        .await
        .map_err(|e| format!("opening the inbox: {e}"))
}

pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration: use a number with s, m, h or d (`30d`)");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

pub(crate) async fn run(cmd: InboxCommand) -> Result<(), String> {
    match cmd {
        InboxCommand::List {
            db,
            status,
            route,
            limit,
            json,
        } => {
            let inbox = open(&db).await?;
            let mut f = DeliveryFilter::default().limit(limit);
            if let Some(s) = status {
                f = f.status(s.parse::<DeliveryStatus>().map_err(|e| e.to_string())?);
            }
            if let Some(r) = route {
                f = f.route(r);
            }
            let list = inbox.deliveries(&f).await.map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?
                );
            } else {
                for e in list {
                    println!(
                        "{:>6}  {:10}  attempts {}/{}  {}  {}  {}",
                        e.id,
                        format!("{:?}", e.status).to_lowercase(),
                        e.attempts,
                        e.max_attempts,
                        crate::send::shown(e.event_type.as_deref().unwrap_or("-")),
                        crate::send::shown(&e.route),
                        crate::send::shown(&e.last_error.unwrap_or_default())
                    );
                }
            }
            Ok(())
        }
        InboxCommand::Show {
            db,
            id,
            body: with_body,
        } => {
            let inbox = open(&db).await?;
            let (entry, body) = inbox
                .delivery(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no delivery {id}"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&entry).map_err(|e| e.to_string())?
            );
            if with_body {
                println!("{}", String::from_utf8_lossy(&body));
            }
            Ok(())
        }
        InboxCommand::Replay {
            db,
            id,
            dead,
            since,
        } => {
            let inbox = open(&db).await?;
            let filter = match (id, dead) {
                (Some(id), false) => DeliveryFilter::default().id(id),
                (None, true) => {
                    let mut f = DeliveryFilter::default().status(DeliveryStatus::Dead);
                    if let Some(s) = since {
                        f = f.since(crate::since_ms(&s)?);
                    }
                    f
                }
                _ => return Err("give a delivery id, or --dead".to_owned()),
            };
            let n = inbox.replay(&filter).await.map_err(|e| e.to_string())?;
            println!("{n} deliveries queued again");
            Ok(())
        }
        InboxCommand::Purge { db, older_than } => {
            let inbox = open(&db).await?;
            let n = inbox
                .purge(duration(&older_than)?)
                .await
                .map_err(|e| e.to_string())?;
            println!("{n} finished deliveries deleted");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_read_their_unit() {
        assert_eq!(duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(duration("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert!(duration("30").is_err());
        assert!(duration("d").is_err());
        assert!(duration("3w").is_err());
    }
}
