//! The README's two examples, run as a newcomer would run them: each is a fresh crate made of
//! the README's own blocks (`build.rs` extracts its `Cargo.toml` lines and its `src/main.rs`),
//! built by cargo on its own, started as a process, driven over real HTTP on loopback, and
//! stopped with Ctrl-C (SIGINT).

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outworx_hooks::security::Provider;
use outworx_hooks::testing::Signer;
use outworx_test_support::net::{free_port, temp_dir};
use outworx_test_support::process::Kill;

const SECRET: &str = "whsec_readme_example_secret";

/// Makes the README's example `name` a crate of its own, as `cargo new` and a paste would
/// (its `path` line pointed at this repository's `outworx-hooks`), builds it and answers its
/// binary. It builds against the workspace's lock, in a target directory the fresh crates
/// share.
fn fresh_crate(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace");
    let blocks = Path::new(env!("OUT_DIR")).join("readme").join(name);
    let dir = root
        .join("target/fresh-crates")
        .join(format!("readme-{name}"));
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    let lines = std::fs::read_to_string(blocks.join("Cargo.toml")).expect("the README's lines");
    let hooks = root.join("outworx-hooks");
    let pasted = "\"../outworx-hooks/outworx-hooks\"";
    assert!(lines.contains(pasted), "the README's path line: {lines}");
    let lines = lines.replace(pasted, &format!("{:?}", hooks.display().to_string()));
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"readme-{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [workspace]\n\n{lines}"
        ),
    )
    .expect("write Cargo.toml");
    std::fs::copy(blocks.join("src/main.rs"), dir.join("src/main.rs")).expect("main.rs");
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).expect("Cargo.lock");
    let target = root.join("target/fresh-crates/target");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "the README's {name} example does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join(format!("readme-{name}"))
}

/// A command for `binary` with only the environment given here: nothing of this process's
/// (an `OUTWORX_HOOKS_API_KEY`, a `RUST_LOG`) leaks into what the example does.
fn example(binary: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `line` without its terminal colours (`ESC [ .. m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines of a child's stdout, without colours, read on a thread of their own.
fn lines_of(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(plain(&line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits until `port` accepts connections (the child is listening), at most 60 s; a child
/// that exits first fails the test with what it printed.
async fn wait_for(port: u16, child: &mut Kill) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the example exited ({status}):\n{}", stderr_of(child));
        }
        assert!(Instant::now() < deadline, "nothing listened on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next line that contains `needle`, within 10 s; the lines before it are kept in `seen`.
fn line_with(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "no line with {needle:?}; the output was:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Ctrl-C, then the exit status within 10 s.
fn interrupt(child: &mut Kill) -> std::process::ExitStatus {
    let pid = child.0.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -INT {pid}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running 10 s after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Kill) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// The receiving example verifies a signed Stripe delivery, runs the handler once, logs one
/// readable line per delivery (a tampered one too, with its reason), and on Ctrl-C shuts down
/// cleanly.
#[tokio::test]
async fn the_readme_receiver_verifies_logs_and_stops_on_ctrl_c() {
    let binary = fresh_crate("receive");
    let port = free_port();
    let mut child = Kill(
        example(&binary)
            .env("STRIPE_WEBHOOK_SECRET", SECRET)
            .env("PORT", port.to_string())
            .spawn()
            .expect("start the receiving example"),
    );
    let out = lines_of(child.0.stdout.take().expect("stdout"));
    wait_for(port, &mut child).await;
    let url = format!("http://127.0.0.1:{port}/webhooks/stripe");
    let body = r#"{"id":"evt_readme_1","object":"event","type":"payment_intent.succeeded","data":{"object":{}}}"#;
    let signed = Signer::new(Provider::Stripe, SECRET)
        .sign(body)
        .expect("sign");
    let client = reqwest::Client::new();
    let send = |headers: http::HeaderMap, body: Vec<u8>| {
        client.post(&url).headers(headers).body(body).send()
    };

    let ok = send(signed.headers.clone(), signed.body.clone())
        .await
        .expect("POST");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("body"), "ok");
    let mut seen = Vec::new();
    line_with(&out, "evt_readme_1: payment_intent.succeeded", &mut seen);
    let line = line_with(&out, "outworx_hooks::delivery", &mut seen);
    assert!(
        line.contains("stripe 200 in") && line.contains("signature valid, completed"),
        "{line}"
    );
    // Once, in words: no span prefix repeating the fields, no `Some(..)`, no empty fields.
    assert!(!line.contains("Some("), "{line}");
    assert!(!line.contains("=\"\""), "{line}");
    assert!(!line.contains("webhook{"), "{line}");
    assert_eq!(line.matches(" status=").count(), 1, "{line}");

    // The same delivery again: answered with the first response, the handler not run.
    let again = send(signed.headers.clone(), signed.body.clone())
        .await
        .expect("POST");
    assert_eq!(again.status(), 200);
    let line = line_with(&out, "outworx_hooks::delivery", &mut seen);
    assert!(line.contains("duplicate"), "{line}");

    let tampered = body.replace("evt_readme_1", "evt_readme_2").into_bytes();
    let bad = send(signed.headers.clone(), tampered).await.expect("POST");
    assert_eq!(bad.status(), 401);
    let line = line_with(&out, "outworx_hooks::delivery", &mut seen);
    assert!(
        line.contains("stripe 401 in") && line.contains("signature invalid: hmac_mismatch"),
        "{line}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("evt_readme_1")),
        "the handler ran only once: {seen:?}"
    );

    let status = interrupt(&mut child);
    let err = stderr_of(&mut child);
    assert!(status.success(), "exit {status:?}; stderr:\n{err}");
    assert!(
        !err.contains("no tracing subscriber"),
        "a subscriber is installed: no hint\n{err}"
    );
}

/// The sending example commits a message with each order (`#[emit]`) and with each shipment
/// (`send_in`, in the application's own transaction), and its worker delivers both, signed, to
/// a receiver on this machine.
#[tokio::test]
async fn the_readme_sender_delivers_emitted_and_transactional_messages() {
    // The receiver: records each delivery's headers and body.
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel::<(http::HeaderMap, String)>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "thanks"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let binary = fresh_crate("send");
    let dir = temp_dir("readme-send");
    let port = free_port();
    let mut child = Kill(
        example(&binary)
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("RECEIVER_URL", &receiver)
            .env("OUTWORX_ALLOW_TARGETS", "127.0.0.0/8")
            .spawn()
            .expect("start the sending example"),
    );
    let _out = lines_of(child.0.stdout.take().expect("stdout"));
    wait_for(port, &mut child).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("http://127.0.0.1:{port}/orders"))
        .json(&serde_json::json!({"item": "a book"}))
        .send()
        .await
        .expect("POST /orders");
    assert_eq!(created.status(), 200);
    let order: serde_json::Value = created.json().await.expect("json");
    assert_eq!(order["item"], "a book");
    let id = order["id"].as_i64().expect("an id");
    let shipped = client
        .post(format!("http://127.0.0.1:{port}/orders/{id}/ship"))
        .send()
        .await
        .expect("POST ship");
    assert_eq!(shipped.status(), 200);

    let mut types = Vec::new();
    for _ in 0..2 {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(20), received.recv())
            .await
            .expect("a delivery within 20 s")
            .expect("the receiver runs");
        for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            assert!(headers.contains_key(h), "{h} missing: {headers:?}");
        }
        let message: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        types.push(message["type"].as_str().unwrap_or_default().to_owned());
        assert_eq!(message["data"]["id"].as_i64(), Some(id), "{body}");
    }
    types.sort();
    assert_eq!(types, ["order.created", "order.shipped"]);

    let status = interrupt(&mut child);
    let err = stderr_of(&mut child);
    assert!(status.success(), "exit {status:?}; stderr:\n{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
