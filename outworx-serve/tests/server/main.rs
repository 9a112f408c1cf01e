//! `outworx serve` from the outside: the relay's bounds over real HTTP, and the dashboard in a
//! real headless browser, in one binary.

mod dashboard;
mod relay;
