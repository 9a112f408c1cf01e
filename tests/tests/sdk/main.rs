//! The SDK through its public API, over real HTTP on loopback: every test that needs no
//! process-wide state (no `init`, no global subscriber, recorder or allocator), in one binary so an SDK
//! change relinks it once. The tests that configure the process stay binaries of their own
//! beside this one (`tests/tests/*.rs`).

mod architecture;
mod catalog;
mod claim_plans;
mod delivery_log;
mod fairness;
mod fuzz_signatures;
mod inbox;
mod inbox_processes;
mod layer;
mod namespaces;
mod query_plans;
mod response_streaming;
mod retention;
mod secrets_in_debug;
mod security;
mod send;
mod svix_api;
