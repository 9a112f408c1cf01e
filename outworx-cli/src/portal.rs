//! `outworx portal-url`: a link to one application's subscriber portal, from `outworx serve`'s
//! Svix-compatible API (`POST /api/v1/auth/app-portal-access/{app}`).

use clap::Args;
use std::io::Write as _;

#[derive(Args)]
pub(crate) struct PortalUrlArgs {
    /// The application (owner) the link opens: its `app_...` id or its uid.
    #[arg(long)]
    owner: String,
    /// The `outworx serve` it is opened on. Also OUTWORX_ENDPOINT.
    #[arg(
        long,
        env = "OUTWORX_ENDPOINT",
        default_value = "http://127.0.0.1:8787"
    )]
    endpoint: String,
    /// The project's API key. Prefer OUTWORX_API_KEY or --api-key-file: a command line is
    /// visible to every user of the machine (`ps`).
    #[arg(long, env = "OUTWORX_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A file holding the API key (its first line).
    #[arg(long, conflicts_with = "api_key")]
    api_key_file: Option<std::path::PathBuf>,
    /// How long the link works, in seconds (60 to 604800; default 3600).
    #[arg(long)]
    expiry: Option<u64>,
    /// A link that only reads: no endpoint can be changed through it.
    #[arg(long)]
    read_only: bool,
    /// Print the answer as JSON (`{"url", "token"}`).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: PortalUrlArgs) -> Result<(), String> {
    let key = crate::api_key(
        args.api_key,
        args.api_key_file.as_deref(),
        "OUTWORX_API_KEY",
    )?;
    let mut body = serde_json::json!({ "readOnly": args.read_only });
    if let Some(e) = args.expiry {
        body["expiry"] = e.into();
    }
    let mut url = reqwest::Url::parse(args.endpoint.trim_end_matches('/'))
        .map_err(|e| format!("--endpoint is not a URL: {e}"))?;
    // Named in messages without any user or password it holds.
    let shown = {
        let mut u = url.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.to_string()
    };
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if url.scheme() == "http" && !loopback {
        eprintln!(
            "warning: {shown} is plain http: the API key crosses the network unencrypted; use https"
        );
    }
    url.path_segments_mut()
        .map_err(|()| format!("--endpoint {shown} cannot be a base URL"))?
        .pop_if_empty()
        .extend(["api", "v1", "auth", "app-portal-access", &args.owner]);
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(key.trim())
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {shown}: {}", e.without_url()))?;
    let status = r.status();
    let answer: serde_json::Value = r.json().await.map_err(|e| {
        format!(
            "{shown} answered {status} without JSON: {}",
            e.without_url()
        )
    })?;
    if !status.is_success() {
        let detail = answer["detail"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| answer["detail"][0]["msg"].as_str().map(str::to_owned))
            .unwrap_or_else(|| answer.to_string());
        return Err(format!("{shown} answered {status}: {detail}"));
    }
    let mut out = std::io::stdout();
    let printed = if args.json {
        writeln!(out, "{answer}")
    } else {
        writeln!(out, "{}", answer["url"].as_str().unwrap_or_default())
    };
    printed.map_err(|e| e.to_string())
}
