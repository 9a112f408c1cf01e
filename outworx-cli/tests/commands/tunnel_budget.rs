//! The public tunnel ingress holds a bounded number of bytes, whoever sends them: 64
//! concurrent 5 MiB POSTs to a tunnel whose CLI never polls, against a real `outworx serve`
//! process with a 32 MiB budget. What fits is held (then 504 after the hold), the rest is
//! answered 503 before its body is read, the server's resident memory stays within the
//! budget plus a margin, and once the holds end the budget is whole again (a second round is
//! admitted exactly as the first).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";
const BUDGET_MIB: usize = 32;
const BODY: usize = 5 << 20;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The resident set now and at its peak, in bytes (Linux `/proc`).
fn rss(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<usize>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// An API call with the key; its answer as JSON.
async fn api(request: reqwest::RequestBuilder) -> Value {
    request
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One round: 64 concurrent POSTs; how many were admitted (and answered 504 after the hold).
async fn round(client: &reqwest::Client, url: &str, body: &bytes::Bytes) -> (usize, usize) {
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                match client.post(&url).body(body).send().await {
                    Ok(r) => r.status().as_u16(),
                    // A refused request may see its connection closed mid-body.
                    Err(_) => 0,
                }
            })
        })
        .collect();
    let (mut held, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            504 => held += 1,
            503 | 0 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (held, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_holds_a_bounded_number_of_bytes() {
    let dir = std::env::temp_dir().join(format!("outworx-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Kill(
        Command::new(env!("CARGO_BIN_EXE_outworx"))
            .args(["serve", "--listen", "127.0.0.1:0", "--hold-timeout", "3"])
            .args(["--tunnel-budget-mib", &BUDGET_MIB.to_string()])
            .args(["--tunnel-session-budget-mib", &BUDGET_MIB.to_string()])
            .arg("--db")
            .arg(dir.join("budget.db"))
            .env("OUTWORX_SERVE_API_KEYS", KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // Read what it prints after (the dashboard's address): with the pipe closed, its next
    // line would fail with EPIPE and the server would stop. Whether the second line came
    // before the reader was dropped was a race, lost once the machine was busy enough.
    std::thread::spawn(move || lines.for_each(drop));
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let session = api(client.post(format!("{base}/api/forward/sessions"))).await;
    let url = format!("{}/hook", session["ingressUrl"].as_str().unwrap());
    let body = bytes::Bytes::from(vec![b'x'; BODY]);
    let (baseline, _) = rss(pid);

    let (held, refused) = round(&client, &url, &body).await;
    let (_, peak) = rss(pid);
    let grown = peak.saturating_sub(baseline);
    eprintln!(
        "held {held}, refused {refused}; peak RSS {} MiB over a baseline of {} MiB",
        grown >> 20,
        baseline >> 20
    );
    assert_eq!(held + refused, 64);
    assert!(
        (1..=BUDGET_MIB * (1 << 20) / BODY).contains(&held),
        "held {held}"
    );
    let margin = 32 << 20;
    assert!(
        grown <= (BUDGET_MIB << 20) + margin,
        "the server grew by {} MiB for a {BUDGET_MIB} MiB budget",
        grown >> 20
    );

    // Every hold has ended (504): nothing is held any more, and the budget admits as much as
    // before.
    let status = api(client.get(format!("{base}/api/forward/status"))).await;
    assert_eq!(status["pending_bytes"], 0, "{status}");
    assert_eq!(status["sessions"], 1);
    let (again, _) = round(&client, &url, &body).await;
    assert_eq!(again, held, "the budget is whole again");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
