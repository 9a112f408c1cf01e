//! `outworx`: the command-line companion of outworx-hooks.
//!
//! - `outworx verify` gives the verdict, reason and hint for one captured request
//!   (exit codes: 0 valid, 1 invalid, 2 usage error);
//! - `outworx trigger` sends a realistic, signed sample event to a URL;
//! - `outworx forward` tunnels public requests to a local server;
//! - `outworx serve` (feature `serve`) runs the self-hosted backend.

mod forward;
#[cfg(feature = "serve")]
mod serve;
mod trigger;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue};
use outworx_hooks::security::{Delivery, Provider, SignatureResult, Verifier, now_unix};

#[derive(Parser)]
#[command(name = "outworx", version, about = "Webhook tools of outworx-hooks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify one captured request: prints the verdict, the reason and a hint.
    Verify(VerifyArgs),
    /// Send a realistic sample event for a provider, signed, to a URL.
    Trigger(trigger::TriggerArgs),
    /// Open a tunnel from a public URL to a local server.
    Forward(forward::ForwardArgs),
    /// Run the self-hosted Outworx backend (ingest, idempotency, forward relay, query API).
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("payload").required(true).args(["body", "body_file"])))]
struct VerifyArgs {
    /// Provider name (stripe, github, shopify, svix, ...).
    #[arg(long)]
    provider: String,
    /// Signing secret; repeat for rotation (any may match).
    #[arg(long = "secret", required = true)]
    secrets: Vec<String>,
    /// A request header as 'Name: value'; repeatable.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    headers: Vec<String>,
    /// The raw body, as given.
    #[arg(long)]
    body: Option<String>,
    /// A file holding the raw body bytes exactly as received (`-` for standard input).
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// The full public URL the provider posted to (Twilio, Square, HubSpot sign it).
    #[arg(long)]
    url: Option<String>,
    /// The HTTP method (HubSpot signs it).
    #[arg(long, default_value = "POST")]
    method: String,
    /// Verify as if the time were this many seconds since 1970 (for captured requests).
    #[arg(long)]
    now: Option<i64>,
    /// Replay window in seconds.
    #[arg(long, default_value_t = 300)]
    tolerance: u64,
    /// Print one JSON object {"valid", "reason", "hint"} instead of text.
    #[arg(long)]
    json: bool,
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
        Command::Verify(args) => match verify(&args) {
            Ok(result) => report(&result, args.json),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Command::Trigger(args) => run(trigger::run(args)),
        Command::Forward(args) => run(forward::run(args)),
        #[cfg(feature = "serve")]
        Command::Serve(args) => run(serve::run(args)),
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

fn parse_header(raw: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("--header `{raw}` is not 'Name: value'"))?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| format!("--header `{raw}`: `{}` is not a header name", name.trim()))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("--header `{raw}`: the value cannot be a header value"))?;
    Ok((name, value))
}

fn read_body(args: &VerifyArgs) -> Result<Vec<u8>, String> {
    match (&args.body, &args.body_file) {
        (Some(body), _) => Ok(body.clone().into_bytes()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| format!("cannot read the body from standard input: {e}"))?;
            Ok(buf)
        }
        (None, Some(path)) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        (None, None) => Err("give the body with --body or --body-file".into()),
    }
}

fn verify(args: &VerifyArgs) -> Result<SignatureResult, String> {
    let provider: Provider = args.provider.parse().map_err(|e| format!("{e}"))?;
    let verifier = Verifier::new(provider, &args.secrets)
        .map_err(|e| e.to_string())?
        .with_tolerance(Duration::from_secs(args.tolerance));
    let mut headers = HeaderMap::new();
    for raw in &args.headers {
        let (name, value) = parse_header(raw)?;
        headers.append(name, value);
    }
    let body = read_body(args)?;
    let mut delivery = Delivery::new(&headers, &body).with_method(&args.method);
    if let Some(url) = &args.url {
        delivery = delivery.with_url(url);
    }
    Ok(verifier.verify_at(&delivery, args.now.unwrap_or_else(now_unix)))
}

fn report(result: &SignatureResult, json: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_string(result)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}"))
    } else if result.valid {
        writeln!(out, "valid")
    } else {
        let reason = result.reason.map_or("unknown", |r| r.as_str());
        writeln!(out, "invalid: {reason}").and_then(|()| match &result.hint {
            Some(hint) => writeln!(out, "hint: {hint}"),
            None => Ok(()),
        })
    };
    if written.is_err() {
        return ExitCode::from(2);
    }
    ExitCode::from(if result.valid { 0 } else { 1 })
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
