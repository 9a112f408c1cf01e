//! Custom verifiers: a function named by the attribute (`verifier = path::to::fn`) or a
//! closure given to the layer, over the raw delivery. An `Err` or a panic is `verifier_threw`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt as _;

use crate::security::{FailureReason, SignatureResult, SignedRequest};
use crate::util::{BoxFuture, panic_message};

/// What a custom verifier says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The verifier ran and decided.
    Decided(bool),
    /// The verifier failed; the message becomes the hint.
    Threw(String),
}

/// Values a custom verifier function may return.
pub trait IntoVerdict {
    /// Converts to a [`Verdict`].
    fn into_verdict(self) -> Verdict;
}

impl IntoVerdict for bool {
    fn into_verdict(self) -> Verdict {
        Verdict::Decided(self)
    }
}

impl<E: std::fmt::Display> IntoVerdict for Result<bool, E> {
    fn into_verdict(self) -> Verdict {
        match self {
            Ok(v) => Verdict::Decided(v),
            Err(e) => Verdict::Threw(e.to_string()),
        }
    }
}

/// A custom verifier: the raw delivery in, a verdict out.
pub type CustomVerifier = fn(&SignedRequest<'_>) -> Verdict;

/// A run-time verifier over the raw bytes and headers.
pub(crate) type SyncVerifyFn =
    dyn Fn(&[u8], &http::HeaderMap) -> Result<bool, String> + Send + Sync;

/// An async run-time verifier; the future owns its copies of the bytes and headers.
pub(crate) type AsyncVerifyFn =
    dyn Fn(Bytes, http::HeaderMap) -> BoxFuture<'static, Result<bool, String>> + Send + Sync;

/// A custom verifier set at run time (the layer's): a closure over the raw bytes and headers.
#[derive(Clone)]
pub(crate) enum DynVerifier {
    Sync(Arc<SyncVerifyFn>),
    Async(Arc<AsyncVerifyFn>),
}

impl std::fmt::Debug for DynVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DynVerifier::Sync(_) => "DynVerifier::Sync",
            DynVerifier::Async(_) => "DynVerifier::Async",
        })
    }
}

pub(crate) fn run_custom(custom: CustomVerifier, d: &SignedRequest<'_>) -> SignatureResult {
    run_custom_outcome(std::panic::catch_unwind(AssertUnwindSafe(|| custom(d))))
}

fn verdict_of(
    outcome: Result<Result<bool, String>, Box<dyn std::any::Any + Send>>,
) -> SignatureResult {
    run_custom_outcome(outcome.map(|r| r.into_verdict()))
}

fn run_custom_outcome(outcome: Result<Verdict, Box<dyn std::any::Any + Send>>) -> SignatureResult {
    match outcome {
        Ok(Verdict::Decided(true)) => SignatureResult::ok(),
        Ok(Verdict::Decided(false)) => SignatureResult::fail(
            FailureReason::HmacMismatch,
            "the custom verifier rejected the delivery",
        ),
        Ok(Verdict::Threw(msg)) => SignatureResult::fail(
            FailureReason::VerifierThrew,
            format!("the custom verifier failed: {msg}"),
        ),
        Err(panic) => SignatureResult::fail(
            FailureReason::VerifierThrew,
            format!("the custom verifier panicked: {}", panic_message(&*panic)),
        ),
    }
}

pub(crate) async fn run_dyn(
    v: &DynVerifier,
    body: Bytes,
    headers: http::HeaderMap,
) -> SignatureResult {
    match v {
        DynVerifier::Sync(f) => verdict_of(std::panic::catch_unwind(AssertUnwindSafe(|| {
            f(&body, &headers)
        }))),
        DynVerifier::Async(f) => {
            let fut = std::panic::catch_unwind(AssertUnwindSafe(|| f(body, headers)));
            match fut {
                Ok(fut) => verdict_of(AssertUnwindSafe(fut).catch_unwind().await),
                Err(panic) => verdict_of(Err(panic)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_verifiers_that_fail_or_panic_are_verifier_threw() {
        fn panics(_: &SignedRequest<'_>) -> Verdict {
            panic!("boom")
        }
        fn errs(_: &SignedRequest<'_>) -> Verdict {
            Err::<bool, _>("no key").into_verdict()
        }
        let h = http::HeaderMap::new();
        let d = SignedRequest::new(&h, b"");
        let r = run_custom(panics, &d);
        assert_eq!(r.reason, Some(FailureReason::VerifierThrew));
        assert!(r.hint.unwrap().contains("boom"));
        assert_eq!(
            run_custom(errs, &d).reason,
            Some(FailureReason::VerifierThrew)
        );
    }
}
