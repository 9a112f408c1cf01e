//! Receive webhooks in axum services, correct to the byte.
//!
//! `outworx-hooks` verifies each delivery's signature over the exact raw request bytes, for
//! every major provider ([`security`]), and signs test deliveries the same way ([`testing`]).
//! The `#[webhook]` attribute, idempotency stores and delivery reporting build on this core;
//! see the README for the whole picture.
//!
//! ```
//! use std::time::Duration;
//! use outworx_hooks::security::{self, Provider};
//! use outworx_hooks::testing::Signer;
//!
//! let body = br#"{"id":"evt_1"}"#;
//! let signed = Signer::new(Provider::Github, "s3cret").sign(&body[..]).unwrap();
//! let verdict = security::verify("github", &signed.headers, body, &["s3cret"], Duration::from_secs(300));
//! assert!(verdict.valid);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod security;
pub mod testing;
