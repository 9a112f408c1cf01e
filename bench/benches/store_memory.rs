//! The memory store's footprint per entry, measured, not estimated: 1,000,000 keys reserved
//! and completed with a cached response, as the pipeline does, then the heap the store holds
//! (a counting global allocator: the bytes asked of the allocator) and the resident set it
//! added (`VmRSS`, which includes the allocator's own overhead), divided by the entries.
//!
//! The cached body is a static slice here, so what is measured is everything **beyond** the
//! body: the map, the slot, the content type (the store keeps a 128-bit hash of each key, not
//! the key).
//!
//! Run: `cargo bench -p outworx-hooks-bench --bench store_memory` (`-- --entries N` to
//! change the count; about 10 s).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use outworx_hooks::MemoryStore;
use outworx_hooks::store::{CachedResponse, Reservation, Store};

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// A key as the pipeline builds it: `service:provider:route:event id`, escaped (56 bytes).
fn key(i: usize) -> String {
    format!("receiver:stripe:stripe_webhook:evt_3QeXbC2eZvKYlo2C{i:08}")
}

fn main() {
    let mut entries = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--entries" {
            entries = args.next().and_then(|n| n.parse().ok()).unwrap_or(entries);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ttl = Duration::from_secs(3600);
    let response = CachedResponse {
        status: 200,
        content_type: Some("application/json".to_owned()),
        body: Some(Bytes::from_static(br#"{"received":true}"#)),
    };
    let (heap0, rss0) = (HELD.load(Ordering::Relaxed), rss_bytes());
    // Bounds that never bind (the key bound is split among shards): every entry stays.
    let store = MemoryStore::with_bounds(2 * entries as u64, u64::MAX);
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..entries {
            let k = key(i);
            let Ok(Reservation::New(token)) = store.reserve(&k, ttl).await else {
                panic!("a new key is new");
            };
            store
                .complete(&k, &token, response.clone(), ttl)
                .await
                .expect("complete");
        }
    });
    let took = started.elapsed();
    assert_eq!(store.len(), entries as u64);
    let (heap, rss) = (HELD.load(Ordering::Relaxed) - heap0, rss_bytes() - rss0);
    let per = |b: i64| b as f64 / entries as f64;
    println!(
        "memory store, {entries} entries (key {} bytes, content type {} bytes, body static): \
         heap {:.0} bytes/entry, resident {:.0} bytes/entry; {:.2} µs per reserve + complete",
        key(0).len(),
        "application/json".len(),
        per(heap as i64),
        per(rss),
        took.as_secs_f64() * 1e6 / entries as f64,
    );
    drop(store);
}
