//! `outworx forward`: the local end of a tunnel.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use outworx_hooks::wire::{HeldRequest, LocalResponse, Polled, SessionAnswer, SessionRequest};

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
pub(crate) struct ForwardArgs {
    /// The local server: `3000`, `localhost:8080` or a full URL.
    target: String,
    /// The Outworx server (or `outworx serve`). Also OUTWORX_ENDPOINT.
    #[arg(
        long,
        env = "OUTWORX_ENDPOINT",
        default_value = "https://hooks.outworx.io"
    )]
    endpoint: String,
    /// API key. Prefer OUTWORX_API_KEY or --api-key-file: a command line is visible to
    /// every user of the machine (`ps`).
    #[arg(long, env = "OUTWORX_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A file holding the API key (its first line).
    #[arg(long, conflicts_with = "api_key")]
    api_key_file: Option<std::path::PathBuf>,
}

/// `3000` → `http://localhost:3000`, `host:port` → `http://host:port`, URLs as given.
pub(crate) fn local_url(target: &str) -> String {
    let url = if !target.is_empty() && target.bytes().all(|b| b.is_ascii_digit()) {
        format!("http://localhost:{target}")
    } else if target.starts_with("http://") || target.starts_with("https://") {
        target.to_owned()
    } else {
        format!("http://{target}")
    };
    url.trim_end_matches('/').to_owned()
}

/// What the local server answered: status, headers, body.
type Local = (u16, HashMap<String, String>, Vec<u8>);

struct Tunnel {
    client: reqwest::Client,
    local: reqwest::Client,
    endpoint: String,
    api_key: String,
    local_url: String,
    local_base: reqwest::Url,
    color: bool,
}

pub(crate) async fn run(args: ForwardArgs) -> Result<(), String> {
    let t = Arc::new(Tunnel::new(args)?);
    let session = t.open_session().await?;
    let id = session.session_id.clone();
    say!(
        "\n  {}  →  {}",
        t.paint("1", "outworx forward"),
        t.local_url
    );
    // The relay's text is escaped before it reaches the terminal.
    say!(
        "  Public URL:  {}",
        t.paint("1;36", &printable(or_unknown(&session.ingress_url)))
    );
    say!(
        "  Expires:     {}",
        printable(or_unknown(&session.expires_at))
    );
    say!("  Press Ctrl+C to stop.\n");

    let poller = {
        let t = t.clone();
        let id = id.clone();
        tokio::spawn(async move { t.poll_loop(&id).await })
    };
    let gone = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        ended = poller => Some(ended.unwrap_or_else(|e| e.to_string())),
    };
    if let Some(why) = gone {
        // The session is gone (the server restarted, or it expired): its public URL is dead,
        // and polling on would only loop on 404.
        return Err(why);
    }
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

/// A value the relay left out, shown as `?`.
fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "?" } else { s }
}

impl Tunnel {
    /// The tunnel `args` describe: the key, the relay, and the local server it forwards to.
    fn new(args: ForwardArgs) -> Result<Tunnel, String> {
        let api_key = crate::api_key(
            args.api_key,
            args.api_key_file.as_deref(),
            "OUTWORX_API_KEY",
        )?;
        let local_url = local_url(&args.target);
        let local_base = reqwest::Url::parse(&local_url)
            .map_err(|e| format!("`{}` is not a usable local URL: {e}", args.target))?;
        if local_base.cannot_be_a_base() || local_base.host().is_none() {
            return Err(format!("`{}` is not a usable local URL", args.target));
        }
        Ok(Tunnel {
            client: reqwest::Client::new(),
            local: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .map_err(|e| e.to_string())?,
            endpoint: args.endpoint.trim_end_matches('/').to_owned(),
            api_key,
            local_url,
            local_base,
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        })
    }

    /// Opens a session on the relay.
    async fn open_session(&self) -> Result<SessionAnswer, String> {
        let res = self
            .client
            .post(format!("{}/api/forward/sessions", self.endpoint))
            .bearer_auth(&self.api_key)
            .json(&SessionRequest {
                destination_url: Some(self.local_url.clone()),
            })
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.endpoint))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "failed to create the tunnel session ({status}): {}",
                printable(&text)
            ));
        }
        serde_json::from_str(&text)
            .map_err(|e| format!("the relay's session answer is not one: {e}"))
    }
}

impl Tunnel {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Polls until the session is gone; returns why.
    async fn poll_loop(self: Arc<Self>, id: &str) -> String {
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
                Ok(r) if r.status().is_success() => r.json::<Polled>().await.ok().map(|p| p.events),
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    return "the tunnel session is gone (the server restarted, or the session \
                            expired): run `outworx forward` again for a new public URL"
                        .to_owned();
                }
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

    async fn handle(&self, e: HeldRequest) {
        let method = if e.method.is_empty() {
            "POST".to_owned()
        } else {
            e.method.clone()
        };
        let path = if e.path.is_empty() {
            "/".to_owned()
        } else {
            e.path.clone()
        };
        // Printed to a terminal: the relay's text is escaped, never interpreted.
        let label = printable(&format!("{method} {path}"));
        let started = Instant::now();
        let result = self.deliver(&e, &method, &path).await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let report = self.answer(&e.id, result, &label, ms);
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

    /// Prints one line for a delivery and makes the response reported to the relay: the local
    /// server's, or a 502 when it could not be reached.
    fn answer(
        &self,
        id: &str,
        result: Result<Local, String>,
        label: &str,
        ms: u64,
    ) -> LocalResponse {
        let clock = clock();
        match result {
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
                    self.paint("1", label),
                    self.paint(code, &status.to_string()),
                    self.paint("2", &format!("{ms}ms"))
                );
                let text = std::str::from_utf8(&body).ok();
                LocalResponse {
                    event_id: id.to_owned(),
                    status,
                    headers,
                    body: Some(text.map_or_else(
                        || String::from_utf8_lossy(&body).into_owned(),
                        str::to_owned,
                    )),
                    body_base64: text
                        .is_none()
                        .then(|| base64::engine::general_purpose::STANDARD.encode(&body)),
                    duration_ms: Some(ms),
                }
            }
            Err(msg) => {
                say!(
                    "{}  {}  {}  {}",
                    self.paint("2", &clock),
                    self.paint("1", label),
                    self.paint("31", "ERR"),
                    self.paint("2", &msg)
                );
                LocalResponse {
                    event_id: id.to_owned(),
                    status: 502,
                    headers: [("content-type".to_owned(), "text/plain".to_owned())].into(),
                    body: Some(format!(
                        "outworx forward: local handler unreachable ({msg})"
                    )),
                    body_base64: None,
                    duration_ms: Some(0),
                }
            }
        }
    }

    async fn deliver(&self, e: &HeldRequest, method: &str, path: &str) -> Result<Local, String> {
        let url = local_target(&self.local_base, path, e.query_string.as_deref())?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.local.request(method.clone(), url);
        for (k, v) in forwarded_headers(e) {
            req = req.header(k, v);
        }
        if method != reqwest::Method::GET && method != reqwest::Method::HEAD {
            let body = match &e.request_body_base64 {
                Some(b) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| e.to_string())?,
                None => e.request_body.as_bytes().to_vec(),
            };
            req = req.body(body);
        }
        let res = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = res.status().as_u16();
        let mut headers: HashMap<String, String> = HashMap::new();
        for (k, v) in res.headers() {
            let Ok(v) = v.to_str() else { continue };
            headers
                .entry(k.as_str().to_owned())
                .and_modify(|prev| {
                    prev.push_str(", ");
                    prev.push_str(v);
                })
                .or_insert_with(|| v.to_owned());
        }
        let body = res.bytes().await.map_err(|e| e.to_string())?.to_vec();
        Ok((status, headers, body))
    }
}

/// The local URL for a relayed request: the target's scheme, host and port always, its path
/// prefix, then the relay's path. The path must start with `/`, hold no control characters or
/// backslashes, and no `.`/`..` segment once percent-decoded: a relay (or whoever controls
/// one) cannot reach another host, port or path prefix of the developer's machine.
pub(crate) fn local_target(
    base: &reqwest::Url,
    path: &str,
    query: Option<&str>,
) -> Result<reqwest::Url, String> {
    let refuse = |why: &str| format!("refused path {}: {why}", printable(path));
    if !path.starts_with('/') {
        return Err(refuse("it does not start with `/`"));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
        return Err(refuse("it holds control characters or a backslash"));
    }
    let decoded = percent_decode(path);
    if decoded
        .split(|&b| b == b'/' || b == b'\\')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return Err(refuse("it has a `.` or `..` segment"));
    }
    if decoded.iter().any(u8::is_ascii_control) {
        return Err(refuse("it encodes control characters"));
    }
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    let query = query.filter(|q| !q.is_empty());
    if let Some(q) = query
        && (q.bytes().any(|b| b.is_ascii_control()) || q.contains('#'))
    {
        return Err(refuse("its query holds control characters or `#`"));
    }
    url.set_query(query);
    url.set_fragment(None);
    // The URL API keeps the origin; checked anyway, as the one thing that must hold.
    if url.origin() != base.origin() {
        return Err(refuse("it would leave the local server"));
    }
    Ok(url)
}

/// Percent-decodes `s` into bytes (`%zz` and a lone `%` stay as they are).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && hex.bytes().all(|d| d.is_ascii_hexdigit())
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Text as it may be printed on a terminal: control characters (escape sequences among
/// them) and other non-printing characters are shown escaped.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let plain =
                !c.is_control() && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}');
            let escaped: Vec<char> = if plain {
                vec![c]
            } else {
                c.escape_unicode().collect()
            };
            escaped
        })
        .collect()
}

/// The request headers to send to the local server: every header as the public caller sent
/// it, repeated ones repeated, except the hop-by-hop ones (and those `Connection` names),
/// which belong to the public hop only.
fn forwarded_headers(e: &HeldRequest) -> Vec<(String, String)> {
    // Our relay sends the ordered list; the Python one only the joined map.
    let pairs: Vec<(String, String)> = if e.request_headers_list.is_empty() {
        e.request_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        e.request_headers_list.clone()
    };
    let named_by_connection: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|n| n.trim().to_ascii_lowercase()))
        .collect();
    pairs
        .into_iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !matches!(
                k.as_str(),
                "host"
                    | "content-length"
                    | "transfer-encoding"
                    | "connection"
                    | "keep-alive"
                    | "te"
                    | "trailer"
                    | "upgrade"
                    | "expect"
            ) && !k.starts_with("proxy-")
                && !named_by_connection.contains(&k)
        })
        .collect()
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
    use super::*;

    #[test]
    fn shorthands() {
        assert_eq!(local_url("3000"), "http://localhost:3000");
        assert_eq!(local_url("localhost:8080/"), "http://localhost:8080");
        assert_eq!(local_url("https://x.test/a"), "https://x.test/a");
    }

    #[test]
    fn a_relay_cannot_choose_the_host_port_or_prefix() {
        let base = reqwest::Url::parse("http://localhost:3000/app").unwrap();
        let ok = |p: &str, q: Option<&str>| local_target(&base, p, q).unwrap().to_string();
        assert_eq!(
            ok("/hooks/a", Some("x=1")),
            "http://localhost:3000/app/hooks/a?x=1"
        );
        assert_eq!(ok("/a%20b", None), "http://localhost:3000/app/a%20b");
        // What string concatenation turned into another host, port or file.
        for evil in [
            "@169.254.169.254/latest",
            ".evil.com/x",
            ":6379/",
            "/../admin",
            "/%2e%2e/admin",
            "/a/%2E%2e%2fb",
            "/..%5cadmin",
            "/a\\b",
            "/\u{1b}[2Jhi",
            "/%1b[2J",
        ] {
            assert!(
                local_target(&base, evil, None).is_err(),
                "{evil:?} was accepted"
            );
        }
        // `//host` stays a path on the local server.
        assert_eq!(
            local_target(&base, "//evil.com/x", None)
                .unwrap()
                .host_str(),
            Some("localhost")
        );
        assert!(local_target(&base, "/x", Some("a=1#frag")).is_err());
    }

    #[test]
    fn terminal_text_is_escaped() {
        assert_eq!(printable("POST /a"), "POST /a");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
    }

    #[test]
    fn hop_by_hop_headers_stay_behind_and_repeats_stay_repeated() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let e = HeldRequest {
            request_headers: [pair("ignored", "when the list is there")].into(),
            request_headers_list: vec![
                pair("webhook-signature", "v1,a"),
                pair("webhook-signature", "v1,b"),
                pair("connection", "keep-alive, x-hop"),
                pair("x-hop", "1"),
                pair("te", "trailers"),
                pair("upgrade", "h2c"),
                pair("proxy-authorization", "p"),
                pair("expect", "100-continue"),
                pair("host", "public.example"),
                pair("accept-encoding", "gzip"),
            ],
            ..HeldRequest::default()
        };
        assert_eq!(
            forwarded_headers(&e),
            [
                pair("webhook-signature", "v1,a"),
                pair("webhook-signature", "v1,b"),
                pair("accept-encoding", "gzip"),
            ]
        );
        // The Python relay's single map still works.
        let e = HeldRequest {
            request_headers: [pair("x-a", "1"), pair("connection", "close")].into(),
            ..HeldRequest::default()
        };
        assert_eq!(forwarded_headers(&e), [pair("x-a", "1")]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::RngSeed;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 1024,
                rng_seed: RngSeed::Fixed(0x6f75_7477_6f72_7835),
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        fn path() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/".to_owned()),
                Just("..".to_owned()),
                Just(".".to_owned()),
                Just("%2e".to_owned()),
                Just("%2E%2e".to_owned()),
                Just("%2f".to_owned()),
                Just("%5c".to_owned()),
                Just("@".to_owned()),
                Just(":".to_owned()),
                Just("\\".to_owned()),
                Just("%00".to_owned()),
                Just("\u{1b}".to_owned()),
                "[a-zA-Z0-9_-]{1,4}",
                "[ -~]{1,3}",
            ];
            prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(config())]

            /// Whatever the relay sends: never a panic, and an accepted URL stays on the local
            /// server, under its prefix, with no dot segment even once decoded.
            #[test]
            fn relayed_paths_stay_under_the_local_prefix(p in path(), q in proptest::option::of("[ -~]{0,12}")) {
                let base = reqwest::Url::parse("http://127.0.0.1:3000/app").unwrap();
                if let Ok(url) = local_target(&base, &p, q.as_deref()) {
                    prop_assert_eq!(url.origin(), base.origin());
                    prop_assert!(url.path().starts_with("/app/"), "{}", url);
                    let decoded = percent_decode(url.path());
                    prop_assert!(
                        !decoded.split(|&b| b == b'/' || b == b'\\').any(|s| s == b".." || s == b"."),
                        "{}", url
                    );
                }
            }
        }
    }
}
