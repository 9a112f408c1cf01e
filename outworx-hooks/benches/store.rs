//! Memory-store operations per second.
//!
//! Run: `cargo bench -p outworx-hooks --bench store`. (Redis round trips per delivery are
//! counted, not timed, by `tests/tests/store_redis.rs`: 2 for a new delivery, 1 for a
//! duplicate.)

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outworx_hooks::MemoryStore;
use outworx_hooks::store::{CachedResponse, Reservation, Store};

const TTL: Duration = Duration::from_secs(86_400);

fn memory_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let next = AtomicU64::new(0);
    let response = CachedResponse {
        status: 200,
        content_type: Some("application/json".into()),
        body: Some(bytes::Bytes::from_static(b"{\"received\":true}")),
    };
    let mut group = c.benchmark_group("memory_store");
    group.throughput(Throughput::Elements(1));

    // A new delivery: reserve a fresh key, then complete it (two operations).
    group.bench_function("new_delivery_reserve_and_complete", |b| {
        b.iter(|| {
            rt.block_on(async {
                let key = format!("evt_{}", next.fetch_add(1, Ordering::Relaxed));
                if let Ok(Reservation::New(token)) = store.reserve(&key, TTL).await {
                    let _ = store.complete(&key, &token, response.clone(), TTL).await;
                }
            })
        })
    });

    // A duplicate: one reserve that finds the completed key.
    rt.block_on(async {
        if let Ok(Reservation::New(t)) = store.reserve("dup", TTL).await {
            let _ = store.complete("dup", &t, response.clone(), TTL).await;
        }
    });
    group.bench_function("duplicate_reserve", |b| {
        b.iter(|| rt.block_on(store.reserve(black_box("dup"), TTL)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = memory_store
}
criterion_main!(benches);
