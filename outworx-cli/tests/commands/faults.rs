//! A SQLite outbox that becomes read-only: `outworx send` (the SDK's `Emitter`, in its own
//! process) fails loudly, with a non-zero exit and the reason, and nothing is half-written.
//!
//! The file is made read-only for the process that sends. CI runs as root, whom file modes do
//! not stop, so there the sender runs as `nobody` (`runuser`), as an application's
//! unprivileged user would.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use outworx_hooks::send::{Emitter, NewEndpoint, Outbox, TargetPolicy};

fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `outworx send` on `db`, as `nobody` when this test runs as root (from a copy of the
/// binary that `nobody` may run, wherever the build lives).
fn send(db: &Path, n: u32) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_outworx");
    let mut cmd = if root() {
        let dir = std::env::temp_dir().join(format!("outworx-ro-bin-{}", std::process::id()));
        let copy = dir.join("outworx");
        if !copy.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(bin, &copy).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(copy);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(["send", "--db"])
        .arg(db)
        .args(["order.created", "--data", &format!("{{\"n\":{n}}}")])
        .env_remove("OUTWORX_OUTBOX_DB")
        .output()
        .expect("outworx runs")
}

fn chmod_all(dir: &Path, dir_mode: u32, file_mode: u32) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file_mode)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
}

async fn messages(db: &Path) -> i64 {
    let pool = outworx_hooks::send::sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        db.display()
    ))
    .await
    .unwrap();
    let n = outworx_hooks::send::sqlx::query_scalar("SELECT COUNT(*) FROM outworx_messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_outbox_fails_send_loudly() {
    let dir = std::env::temp_dir().join(format!("outworx-ro-outbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("outbox.db");
    {
        let emitter = Emitter::builder(Outbox::open(&db.display().to_string()).await.unwrap())
            .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
            .worker(None)
            .build();
        emitter
            .create_endpoint(NewEndpoint::new("http://127.0.0.1:9/hooks"))
            .await
            .unwrap();
    }
    // Writable: the message is committed.
    chmod_all(&dir, 0o777, 0o666);
    let ok = send(&db, 1);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(messages(&db).await, 1);

    // Read-only: a non-zero exit and the reason, and nothing new in the outbox.
    chmod_all(&dir, 0o555, 0o444);
    let failed = send(&db, 2);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    println!("read-only outbox: {stderr}");
    assert!(
        !failed.status.success(),
        "send succeeded on a read-only outbox"
    );
    assert!(
        stderr.contains("readonly database"),
        "the reason is said: {stderr}"
    );
    chmod_all(&dir, 0o755, 0o644);
    assert_eq!(messages(&db).await, 1);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("outworx-ro-bin-{}", std::process::id())),
    );
}
