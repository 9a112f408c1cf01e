//! No library: this package holds the benchmarks whose dependencies the SDK should not carry
//! (`benches/load.rs`, the HTTP load benchmark). Run it with
//! `cargo bench -p outworx-hooks-bench --bench load`; the numbers are in
//! `docs/performance.md`.
