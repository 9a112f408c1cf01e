//! `outworx forward`: the local end of a tunnel.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use serde_json::{Value, json};

/// `println!` that never panics: a closed stdout (a pipe whose reader left) must not kill
/// the tunnel.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!`, likewise.
macro_rules! complain {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

#[derive(Args)]
pub struct ForwardArgs {
    /// The local server: `3000`, `localhost:8080` or a full URL.
    target: String,
    /// The Outworx server (or `outworx serve`). Also OUTWORX_ENDPOINT.
    #[arg(
        long,
        env = "OUTWORX_ENDPOINT",
        default_value = "https://hooks.outworx.io"
    )]
    endpoint: String,
    /// API key. Also OUTWORX_API_KEY.
    #[arg(long, env = "OUTWORX_API_KEY", hide_env_values = true)]
    api_key: String,
}

/// `3000` → `http://localhost:3000`, `host:port` → `http://host:port`, URLs as given.
pub fn local_url(target: &str) -> String {
    let url = if !target.is_empty() && target.bytes().all(|b| b.is_ascii_digit()) {
        format!("http://localhost:{target}")
    } else if target.starts_with("http://") || target.starts_with("https://") {
        target.to_owned()
    } else {
        format!("http://{target}")
    };
    url.trim_end_matches('/').to_owned()
}

struct Tunnel {
    client: reqwest::Client,
    local: reqwest::Client,
    endpoint: String,
    api_key: String,
    local_url: String,
    color: bool,
}

pub async fn run(args: ForwardArgs) -> Result<(), String> {
    let t = Arc::new(Tunnel {
        client: reqwest::Client::new(),
        local: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?,
        endpoint: args.endpoint.trim_end_matches('/').to_owned(),
        api_key: args.api_key,
        local_url: local_url(&args.target),
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    });
    let res = t
        .client
        .post(format!("{}/api/forward/sessions", t.endpoint))
        .bearer_auth(&t.api_key)
        .json(&json!({ "destination_url": t.local_url }))
        .send()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", t.endpoint))?;
    let status = res.status();
    let session: Value = res.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "failed to create the tunnel session ({status}): {session}"
        ));
    }
    let id = session["sessionId"].as_str().unwrap_or_default().to_owned();
    say!(
        "\n  {}  →  {}",
        t.paint("1", "outworx forward"),
        t.local_url
    );
    say!(
        "  Public URL:  {}",
        t.paint("1;36", session["ingressUrl"].as_str().unwrap_or("?"))
    );
    say!(
        "  Expires:     {}",
        session["expiresAt"].as_str().unwrap_or("?")
    );
    say!("  Press Ctrl+C to stop.\n");

    let poller = {
        let t = t.clone();
        let id = id.clone();
        tokio::spawn(async move { t.poll_loop(&id).await })
    };
    let _ = tokio::signal::ctrl_c().await;
    poller.abort();
    say!("\n  Closing tunnel…");
    let _ = t
        .client
        .delete(format!("{}/api/forward/sessions/{id}", t.endpoint))
        .bearer_auth(&t.api_key)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    Ok(())
}

impl Tunnel {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    async fn poll_loop(self: Arc<Self>, id: &str) {
        let mut idle = 0u32;
        loop {
            let res = self
                .client
                .get(format!("{}/api/forward/poll", self.endpoint))
                .query(&[("session", id)])
                .bearer_auth(&self.api_key)
                .timeout(Duration::from_secs(40))
                .send()
                .await;
            let events = match res {
                Ok(r) if r.status().is_success() => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["events"].as_array().cloned()),
                Ok(r) => {
                    complain!(
                        "{}",
                        self.paint("31", &format!("  poll error: {}", r.status()))
                    );
                    None
                }
                Err(e) => {
                    complain!("{}", self.paint("31", &format!("  poll error: {e}")));
                    None
                }
            };
            match events {
                Some(events) if !events.is_empty() => {
                    idle = 0;
                    for e in events {
                        let t = self.clone();
                        // Concurrent local deliveries: a slow handler does not hold up the rest.
                        tokio::spawn(async move { t.handle(e).await });
                    }
                }
                Some(_) => {
                    // The server held the poll already; come straight back, briefly backing off.
                    idle = idle.saturating_add(1);
                    tokio::time::sleep(Duration::from_millis(u64::from(idle.min(10)) * 100)).await;
                }
                None => tokio::time::sleep(Duration::from_millis(1500)).await,
            }
        }
    }

    async fn handle(&self, e: Value) {
        let method = e["method"].as_str().unwrap_or("POST").to_owned();
        let path = e["path"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_owned();
        let label = format!("{method} {path}");
        let clock = clock();
        let started = Instant::now();
        let result = self.deliver(&e, &method, &path).await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let report = match result {
            Ok((status, headers, body)) => {
                let code = match status {
                    500.. => "31",
                    400.. => "33",
                    300.. => "36",
                    _ => "32",
                };
                say!(
                    "{}  {}  {}  {}",
                    self.paint("2", &clock),
                    self.paint("1", &label),
                    self.paint(code, &status.to_string()),
                    self.paint("2", &format!("{ms}ms"))
                );
                let text = String::from_utf8(body.clone()).ok();
                json!({
                    "eventId": e["id"], "status": status, "headers": headers,
                    "body": text.clone().unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
                    "bodyBase64": text.is_none().then(|| base64::engine::general_purpose::STANDARD.encode(&body)),
                    "durationMs": ms,
                })
            }
            Err(msg) => {
                say!(
                    "{}  {}  {}  {}",
                    self.paint("2", &clock),
                    self.paint("1", &label),
                    self.paint("31", "ERR"),
                    self.paint("2", &msg)
                );
                json!({
                    "eventId": e["id"], "status": 502,
                    "headers": {"content-type": "text/plain"},
                    "body": format!("outworx forward: local handler unreachable ({msg})"),
                    "durationMs": 0,
                })
            }
        };
        let sent = self
            .client
            .post(format!("{}/api/forward/responses", self.endpoint))
            .bearer_auth(&self.api_key)
            .json(&report)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Err(err) = sent {
            complain!(
                "{}",
                self.paint("31", &format!("  could not report the response: {err}"))
            );
        }
    }

    async fn deliver(
        &self,
        e: &Value,
        method: &str,
        path: &str,
    ) -> Result<(u16, HashMap<String, String>, Vec<u8>), String> {
        let mut url = format!("{}{path}", self.local_url);
        if let Some(q) = e["query_string"].as_str().filter(|q| !q.is_empty()) {
            url = format!("{url}?{q}");
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.local.request(method.clone(), &url);
        if let Some(headers) = e["request_headers"].as_object() {
            for (k, v) in headers {
                // The client sets these itself for the local hop.
                if ["host", "content-length", "transfer-encoding", "connection"]
                    .contains(&k.to_ascii_lowercase().as_str())
                {
                    continue;
                }
                if let Some(v) = v.as_str() {
                    req = req.header(k, v);
                }
            }
        }
        if method != reqwest::Method::GET && method != reqwest::Method::HEAD {
            let body = match e["request_body_base64"].as_str() {
                Some(b) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| e.to_string())?,
                None => e["request_body"].as_str().unwrap_or("").as_bytes().to_vec(),
            };
            req = req.body(body);
        }
        let res = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = res.bytes().await.map_err(|e| e.to_string())?.to_vec();
        Ok((status, headers, body))
    }
}

/// The wall clock as HH:MM:SS (UTC).
fn clock() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn shorthands() {
        assert_eq!(super::local_url("3000"), "http://localhost:3000");
        assert_eq!(super::local_url("localhost:8080/"), "http://localhost:8080");
        assert_eq!(super::local_url("https://x.test/a"), "https://x.test/a");
    }
}
