//! What the tests and benchmarks of `outworx-hooks` start and share: real parts, never mocks.
//!
//! | module | what |
//! |---|---|
//! | [`process`] | a child process killed (and reaped) with its test |
//! | [`net`] | a free loopback port, a fresh temporary directory |
//! | [`redis`] | a `redis-server` of the test's own on a free port |
//! | [`postgres`] | a throwaway PostgreSQL cluster (initdb, then postgres) |
//! | [`browser`] | a headless Chromium driven over WebDriver |
//! | [`fault`] | a fault-injecting TCP proxy in front of a real dependency |
//! | [`ingest`] | an ingest stand-in that counts the events reported to it |
//!
//! Each says what to install when its program is missing (`.ci/run` installs them); none
//! skips a test silently. The crate does not depend on the SDK, so an SDK change never
//! rebuilds it.

pub mod browser;
pub mod fault;
pub mod ingest;
pub mod net;
pub mod postgres;
pub mod process;
pub mod redis;
