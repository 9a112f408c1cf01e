//! `outworx verify`: the verdict, the reason and a hint for one captured request, through
//! the SDK's own [`Verifier`] (exit codes: 0 valid, 1 invalid, 2 usage error).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue};
use outworx_hooks::security::{Provider, SignatureResult, SignedRequest, Verifier, now_unix};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("payload").required(true).args(["body", "body_file"])))]
pub(crate) struct VerifyArgs {
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

/// Runs `outworx verify`.
pub(crate) fn run(args: &VerifyArgs) -> ExitCode {
    match verify(args) {
        Ok(result) => report(&result, args.json),
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
    let mut delivery = SignedRequest::new(&headers, &body).with_method(&args.method);
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
