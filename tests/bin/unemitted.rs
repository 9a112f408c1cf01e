//! An application with an `#[emit]` route: with `INSTALL=1` it installs an emitter before
//! `init`, with `EXTENSION=1` it says its routers carry theirs (`Config::emit_by_extension`),
//! otherwise it forgets to. `init` must refuse to start then, naming the handler;
//! `main` returns the error as an application would (`?`), so its text is what a user sees.

use axum::Json;
use outworx_hooks::send::{Emitter, Outbox};
use outworx_hooks::{Config, emit};

#[emit("order.created")]
async fn create_order() -> Json<serde_json::Value> {
    Json(serde_json::json!({"id": 1}))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _route = axum::routing::post(create_order::<()>);
    if std::env::var_os("INSTALL").is_some() {
        Emitter::builder(Outbox::memory().await?)
            .worker(None)
            .build()
            .install();
    }
    let mut config = Config::new();
    if std::env::var_os("EXTENSION").is_some() {
        config = config.emit_by_extension();
    }
    let _guard = outworx_hooks::init(config)?;
    println!("started");
    Ok(())
}
