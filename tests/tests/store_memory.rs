//! The embedded `MemoryStore` under the pipeline: 200 concurrent copies, released failures.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_runs_the_handler_once_for_200_concurrent_copies() {
    let _guard = outworx_hooks::init(outworx_hooks::Config::new()).unwrap();
    let base = common::serve(common::router()).await;
    common::two_hundred_copies(&[format!("{base}/hook")], "mem-200").await;
    common::failures_release_the_key(&format!("{base}/hook")).await;
}
