//! The dashboard's sending and inbox views on SQLite: the server's events and the
//! application's outbox and inbox each in a SQLite file (see `operations/mod.rs`).

mod operations;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_and_inbox_views_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("outworx-ops-sqlite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let serve_db = dir.join("serve.db").display().to_string();
    let app_db = dir.join("app.db").display().to_string();
    operations::scenario(&serve_db, &app_db, "").await;
    let _ = std::fs::remove_dir_all(&dir);
}
