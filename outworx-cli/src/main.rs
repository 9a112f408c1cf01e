//! `outworx`: the command-line companion of outworx-hooks. This file parses the command
//! line and dispatches to one module per command:
//!
//! - `outworx verify` gives the verdict, reason and hint for one captured request
//!   (exit codes: 0 valid, 1 invalid, 2 usage error);
//! - `outworx trigger` sends a realistic, signed sample event to a URL;
//! - `outworx forward` tunnels public requests to a local server;
//! - `outworx serve` (feature `serve`, on by default) runs the self-hosted backend;
//! - `outworx endpoints`, `send`, `worker`, `messages` run the sending side's outbox;
//! - `outworx inbox` lists, shows, replays and purges the queue-first receiving side's inbox.

mod forward;
mod inbox;
mod portal;
mod send;
#[cfg(feature = "serve")]
mod serve;
mod trigger;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "outworx", version, about = "Webhook tools of outworx-hooks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify one captured request: prints the verdict, the reason and a hint.
    Verify(verify::VerifyArgs),
    /// Send a realistic sample event for a provider, signed, to a URL.
    Trigger(trigger::TriggerArgs),
    /// Open a tunnel from a public URL to a local server.
    Forward(forward::ForwardArgs),
    /// Run the self-hosted Outworx backend (ingest, idempotency, forward relay, query API).
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Manage the endpoints messages are sent to.
    #[command(subcommand)]
    Endpoints(send::EndpointsCommand),
    /// Send a message to every endpoint subscribed to its type.
    Send(send::SendArgs),
    /// Deliver the outbox's messages: retries, dead letters, many workers on PostgreSQL.
    Worker(send::WorkerArgs),
    /// List and replay messages.
    #[command(subcommand)]
    Messages(send::MessagesCommand),
    /// The queue-first receiving side's inbox: list, show, replay, purge.
    #[command(subcommand)]
    Inbox(inbox::InboxCommand),
    /// Print a link to one application's subscriber portal on `outworx serve`.
    PortalUrl(portal::PortalUrlArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Verify(args) => verify::run(&args),
        Command::Trigger(args) => run(trigger::run(args)),
        Command::Forward(args) => run(forward::run(args)),
        #[cfg(feature = "serve")]
        Command::Serve(args) => run(serve::run(args)),
        Command::Endpoints(cmd) => run(send::endpoints(cmd)),
        Command::Send(args) => run(send::send(args)),
        Command::Worker(args) => run(send::worker(args)),
        Command::Messages(cmd) => run(send::messages(cmd)),
        Command::Inbox(cmd) => run(inbox::run(cmd)),
        Command::PortalUrl(args) => run(portal::run(args)),
    }
}

/// What must live as long as a long-running command (the OTLP exporter, flushed on drop).
pub(crate) struct Logs {
    #[cfg(feature = "otel")]
    _otel: Option<outworx_hooks::otel::Otel>,
}

/// Logs of a long-running command (`serve`, `worker`) to stderr (stdout carries the one line
/// scripts wait for), filtered by `RUST_LOG` (default `info`), colored only on a terminal and
/// never when `NO_COLOR` is set. With the `otel` feature and an OTLP endpoint set, spans (the
/// worker's `webhook.send`) are exported over OTLP/HTTP too.
pub(crate) fn logs() -> Result<Logs, String> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::prelude::*;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let filter =
        || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_filter(filter());
    #[cfg(feature = "otel")]
    {
        let otel = outworx_hooks::otel::Otel::from_env_if_configured()
            .map_err(|e| format!("OpenTelemetry: {e}"))?;
        let _ = tracing_subscriber::registry()
            .with(fmt)
            .with(otel.as_ref().map(|o| o.layer().with_filter(filter())))
            .try_init();
        Ok(Logs { _otel: otel })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        Ok(Logs {})
    }
}

/// The API key of a command: from `--api-key-file` (its first line), or from `--api-key` /
/// the environment variable `env`. A key typed on the command line works, with a warning:
/// every user of the machine can read it in `ps`.
pub(crate) fn api_key(
    given: Option<String>,
    file: Option<&std::path::Path>,
    env: &str,
) -> Result<String, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
        return text
            .lines()
            .next()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("the API key file {} is empty", path.display()));
    }
    let key = given.ok_or_else(|| format!("give the API key in {env} or with --api-key-file"))?;
    if std::env::args().any(|a| a == "--api-key" || a.starts_with("--api-key=")) {
        eprintln!(
            "warning: --api-key on the command line is visible to every user of this machine \
             (ps); prefer {env} or --api-key-file"
        );
    }
    Ok(key)
}

/// `--since`: an RFC 3339 time, as milliseconds since 1970 (`outworx messages replay` and
/// `outworx inbox replay`).
pub(crate) fn since_ms(text: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("--since {text}: not an RFC 3339 time ({e})"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| "--since is out of range".to_owned())
}

/// Runs an async command: exit 0, or 2 with its error.
fn run(command: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::api_key;

    #[test]
    fn an_api_key_file_gives_its_first_line_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("outworx-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "  ohk_0123456789abcdef0123456789abcdef \nignored\n").unwrap();
        let key = api_key(None, Some(&file), "OUTWORX_API_KEY").unwrap();
        assert_eq!(key, "ohk_0123456789abcdef0123456789abcdef");
        std::fs::write(&file, "\n").unwrap();
        let e = api_key(None, Some(&file), "OUTWORX_API_KEY").unwrap_err();
        assert!(e.contains("empty") && !e.contains("ohk_"), "{e}");
        let e = api_key(None, Some(&dir.join("missing")), "OUTWORX_API_KEY").unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let e = api_key(None, None, "OUTWORX_API_KEY").unwrap_err();
        assert!(e.contains("OUTWORX_API_KEY"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
