//! Per-delivery cost of the whole pipeline, in process: the same handler in bare axum and
//! under `#[webhook]` (verification, idempotency on the memory store, `require_processed`,
//! the embedded reporter), each request a fresh signed ~1.7 KB Stripe event with a unique id.
//!
//! Run: `cargo bench -p outworx-hooks --bench pipeline`; with `BENCH_STORE_ENTRIES=N` the
//! memory store is bounded at N entries instead of the default 100,000 (how much of the cost is
//! the store's memory footprint: cache misses once it is full).

mod app;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use app::{app, body, request};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tower::ServiceExt as _;

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = std::env::var("BENCH_STORE_ENTRIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .map(|n| {
            let store = outworx_hooks::MemoryStore::with_max_entries(n);
            rt.block_on(async {
                outworx_hooks::init(outworx_hooks::Config::default().store(store))
            })
            .expect("init")
        });
    // With `--features prometheus`, every delivery is also recorded into a real Prometheus
    // recorder: the difference against a run without is what metrics cost.
    #[cfg(feature = "prometheus")]
    let _metrics = outworx_hooks::metrics::prometheus_handle().expect("the recorder");
    let app = app();
    let next = AtomicU64::new(0);
    let request = |path: &str| request(path, next.fetch_add(1, Ordering::Relaxed));
    assert!(body(0).len() > 1600 && body(0).len() < 1800);

    let mut group = c.benchmark_group("pipeline_1.7KB");
    group.bench_function("bare_axum", |b| {
        b.iter_batched(
            || request("/bare"),
            |req| rt.block_on(app.clone().oneshot(req)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("webhook_attribute", |b| {
        b.iter_batched(
            || request("/hooked"),
            |req| rt.block_on(app.clone().oneshot(req)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = pipeline
}
criterion_main!(benches);
