//! The dashboard's sending and inbox views on PostgreSQL: the server's events in one
//! database, the application's outbox and inbox in another, on a real `postgres` (see
//! `operations/mod.rs`).

mod operations;

use std::time::Duration;

use outworx_test_support::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_and_inbox_views_on_postgres() {
    let pg = Postgres::start();
    let serve_db = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    for _ in 0..100 {
        if outworx_serve::Db::open(&serve_db).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = sqlx_create(&serve_db).await;
    drop(pool);
    let app_db = format!("postgres://postgres@127.0.0.1:{}/app", pg.port);
    operations::scenario(&serve_db, &app_db, "-postgres").await;
}

/// Creates the application's database beside the server's.
async fn sqlx_create(url: &str) -> outworx_hooks::send::sqlx::PgPool {
    let pool = outworx_hooks::send::sqlx::PgPool::connect(url)
        .await
        .unwrap();
    outworx_hooks::send::sqlx::query("CREATE DATABASE app")
        .execute(&pool)
        .await
        .unwrap();
    pool
}
