//! The receive pipeline: one delivery from raw bytes to response and event.
//!
//! [`receive`] checks the source, reads the body (with the size limit), verifies it and
//! answers provider handshakes; [`Verified::finish`] reserves the idempotency keys, runs the
//! handler (catching panics, renewing its reservations), resolves the processing mark,
//! completes or releases the keys and reports the event. The `#[webhook]` attribute and the
//! layer are two front doors to these functions; neither holds a pipeline of its own.

mod finish;
mod receive;
mod respond;
mod url;
mod verified;

pub(crate) use finish::HandlerError;
pub use receive::receive;
pub(crate) use receive::receive_route;
pub use verified::{IntoKey, Verified, WithState};
