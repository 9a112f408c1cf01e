//! The `outworx` binary as a user runs it, and the SDK against a real `outworx serve`: every
//! test that needs no process-wide state, in one binary so a change relinks it once. The
//! dashboard's scenarios (`operations_*`), which configure the process's reporter with
//! `init`, stay binaries of their own.

mod cli;
mod faults;
mod forward_relay;
mod inbox_cli;
#[cfg(feature = "serve")]
mod portal;
#[cfg(feature = "serve")]
mod python_interop;
#[cfg(feature = "serve")]
mod redaction;
mod send_worker;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "serve")]
mod svix_api;
#[cfg(feature = "serve")]
mod svix_js;
#[cfg(feature = "serve")]
mod tunnel_budget;
