//! Procedural macros of [`outworx-hooks`](https://docs.rs/outworx-hooks).
//!
//! Do not depend on this crate directly: `outworx-hooks` re-exports what it holds and pins
//! it to the exact same version. The `#[webhook]` attribute lands here (issue 3); until then
//! the crate is an empty shell that keeps the workspace layout of shared/DESIGN.md.
