//! Svix's own clients against `outworx serve --outbox-db DB --deliver`: the Svix v1 API and
//! a delivery worker in one process, two projects sharing one outbox database. The checks
//! live in `python/svix_client.py` (PyPI `svix`, pinned in `python/requirements.txt`), which
//! knows nothing of this project: it creates, sends, verifies every delivery with the
//! package's own `Webhook`, resends, recovers, rotates, and finds nothing of one project
//! with the other's key.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use outworx_test_support::process::Kill;

const KEY_A: &str = "ohk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "ohk_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Starts `outworx serve` with the Svix API and a worker over `outbox`; its base URL.
async fn start(dir: &Path, outbox: &str) -> (Kill, String) {
    start_with_keys(dir, outbox, &format!("{KEY_A},{KEY_B}")).await
}

async fn start_with_keys(dir: &Path, outbox: &str, keys: &str) -> (Kill, String) {
    let port = outworx_test_support::net::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_outworx"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.join("serve.db"))
        .args([
            "--outbox-db",
            outbox,
            "--deliver",
            "--allow-target",
            "127.0.0.1/32",
        ])
        .env("OUTWORX_SERVE_API_KEYS", keys)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("outworx serve starts");
    let server = Kill(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{url}/api/v1/health"))
            .send()
            .await
            .is_ok()
        {
            return (server, url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("outworx serve did not start");
}

fn run_python_client(url: &str) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let run = Command::new(crate::python_interop::python())
        .arg(here.join("svix_client.py"))
        .args([url, KEY_A, KEY_B])
        .output()
        .expect("the venv's python runs");
    let out = String::from_utf8_lossy(&run.stdout);
    println!("{out}");
    assert!(
        run.status.success() && out.contains("svix: all checks passed"),
        "svix_client.py failed ({}):\n{out}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svix_python_client_sends_through_outworx_serve_on_sqlite() {
    let dir = outworx_test_support::net::temp_dir("svix-python");
    let outbox = dir.join("outbox.db");
    let (_server, url) = start(&dir, outbox.to_str().unwrap()).await;
    tokio::task::spawn_blocking(move || run_python_client(&url))
        .await
        .unwrap();
}

/// The same client run with the outbox on a real PostgreSQL server (the serve database stays
/// SQLite): the Svix API's queries, its unique indexes and migration on the other backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svix_python_client_sends_through_outworx_serve_on_postgres() {
    let pg = outworx_test_support::postgres::Postgres::start();
    let url = pg.url();
    for _ in 0..100 {
        if outworx_hooks::send::Outbox::open(&url).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = outworx_test_support::net::temp_dir("svix-python-pg");
    let (_server, base) = start(&dir, &url).await;
    tokio::task::spawn_blocking(move || run_python_client(&base))
        .await
        .unwrap();
}

/// A portal token dies with the API key it was signed under: the server restarted without
/// that key refuses it (401), though its application and every row are still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_api_key_revokes_its_portal_tokens() {
    let dir = outworx_test_support::net::temp_dir("svix-key-removed");
    let outbox = dir.join("outbox.db");
    let outbox = outbox.to_str().unwrap();
    let http = reqwest::Client::new();
    let (server, base) = start(&dir, outbox).await;
    let created = http
        .post(format!("{base}/api/v1/app"))
        .bearer_auth(KEY_A)
        .json(&serde_json::json!({"name": "Acme", "uid": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let access: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/app-portal-access/acme"))
        .bearer_auth(KEY_A)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = access["token"].as_str().unwrap().to_owned();
    let status = |base: String, token: String| {
        let http = http.clone();
        async move {
            http.get(format!("{base}/api/v1/app/acme/endpoint"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(base.clone(), token.clone()).await, 200);
    drop(server);
    // The same databases, without KEY_A.
    let (_server, base) = start_with_keys(&dir, outbox, KEY_B).await;
    assert_eq!(status(base.clone(), token).await, 401);
    assert_eq!(status(base, KEY_A.to_owned()).await, 401);
}
