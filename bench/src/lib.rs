//! The benchmarks whose dependencies the SDK should not carry (`benches/load.rs`, the HTTP
//! load benchmark; `benches/faults.rs`, the fault suite; the sending side and the inbox), and
//! the one piece they share with the tests: [`fault::FaultProxy`], a fault-injecting TCP
//! proxy. Run them with `cargo bench -p outworx-hooks-bench --bench NAME`; the numbers are in
//! `docs/performance.md`.

pub mod fault;
