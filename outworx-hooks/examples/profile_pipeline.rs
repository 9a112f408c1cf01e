//! A loop of deliveries for a profiler: `N` signed ~1.7 KB Stripe events (unique ids) through
//! `#[webhook]` (or bare axum with `bare`), in process, with nothing else in the binary.
//!
//! ```sh
//! cargo build --release -p outworx-hooks --example profile_pipeline
//! valgrind --tool=callgrind target/release/examples/profile_pipeline 20000 hooked
//! valgrind --tool=callgrind target/release/examples/profile_pipeline 20000 bare
//! ```

#[path = "../benches/app/mod.rs"]
mod app;

use tower::ServiceExt as _;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let path = if args.next().as_deref() == Some("bare") {
        "/bare"
    } else {
        "/hooked"
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = app::app();
    // Signed up front, so the profile holds the pipeline, not the signer.
    let requests: Vec<_> = (0..n).map(|i| app::request(path, i)).collect();
    rt.block_on(async {
        for req in requests {
            let r = app.clone().oneshot(req).await.expect("infallible");
            assert_eq!(r.status(), 200);
        }
    });
}
