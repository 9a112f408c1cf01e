//! `Track`: the handler's way to say whether it processed the delivery.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

/// What the handler said about the event: the first mark wins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mark {
    pub(crate) outcome: Outcome,
    pub(crate) metadata: Option<serde_json::Value>,
    pub(crate) at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Processed,
    Failed(String),
}

/// Marks the delivery being handled as processed or failed; an axum extractor.
///
/// Take it as a handler parameter under `#[webhook]` (or the layer). It is cheap to clone
/// and can be moved into spawned tasks; the first mark wins, later ones are ignored. A
/// handler with `require_processed` that answers 2xx without a mark is reported as a
/// *silent drop*.
///
/// ```
/// use outworx_hooks::Track;
///
/// let track = Track::detached();
/// track.processed_with(serde_json::json!({ "charge": "ch_1" }));
/// track.failed("too late: the first mark wins");
/// assert!(track.is_marked());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Track {
    mark: Arc<OnceLock<Mark>>,
    signature_valid: Option<bool>,
}

impl Track {
    /// A `Track` not attached to any delivery: for unit-testing code that takes one.
    pub fn detached() -> Self {
        Track::default()
    }

    /// The `Track` of a delivery whose signature verdict is `valid`.
    pub(crate) fn for_delivery(valid: bool) -> Self {
        Track {
            mark: Arc::default(),
            signature_valid: Some(valid),
        }
    }

    /// Whether the delivery's signature verified: always `Some(true)` under the default
    /// `reject_invalid`, since invalid deliveries are answered 401 before the handler runs.
    /// With `reject_invalid = false` a handler also sees forged deliveries, and must check
    /// this before trusting the body. `None` for a [`Track::detached`].
    ///
    /// ```
    /// use outworx_hooks::Track;
    /// assert_eq!(Track::detached().signature_valid(), None);
    /// ```
    pub fn signature_valid(&self) -> Option<bool> {
        self.signature_valid
    }

    fn set(&self, outcome: Outcome, metadata: Option<serde_json::Value>) {
        let _ = self.mark.set(Mark {
            outcome,
            metadata,
            at: SystemTime::now(),
        });
    }

    /// The event was processed.
    pub fn processed(&self) {
        self.set(Outcome::Processed, None);
    }

    /// The event was processed; `metadata` (any serializable value) joins the event's metadata.
    pub fn processed_with(&self, metadata: impl serde::Serialize) {
        self.set(Outcome::Processed, serde_json::to_value(metadata).ok());
    }

    /// Processing failed for `reason`.
    pub fn failed(&self, reason: impl Into<String>) {
        self.set(Outcome::Failed(reason.into()), None);
    }

    /// Processing failed for `reason`, with metadata.
    pub fn failed_with(&self, reason: impl Into<String>, metadata: impl serde::Serialize) {
        self.set(
            Outcome::Failed(reason.into()),
            serde_json::to_value(metadata).ok(),
        );
    }

    /// Whether a mark was set.
    pub fn is_marked(&self) -> bool {
        self.mark.get().is_some()
    }

    pub(crate) fn mark(&self) -> Option<&Mark> {
        self.mark.get()
    }
}

/// The rejection of [`Track`] outside a `#[webhook]` handler or the layer: a 500 that says why.
#[derive(Debug, Clone, Copy)]
pub struct TrackRejection;

impl IntoResponse for TrackRejection {
    fn into_response(self) -> Response {
        tracing::error!(
            "a handler asked for `outworx_hooks::Track`, but the request did not come through \
             `#[webhook]` or `OutworxHooksLayer`: add one of them to the route"
        );
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Track is only available under #[webhook] or OutworxHooksLayer",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Track {
    type Rejection = TrackRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Track>()
            .cloned()
            .ok_or(TrackRejection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_mark_wins_across_clones() {
        let t = Track::detached();
        let clone = t.clone();
        assert!(!t.is_marked());
        clone.failed("boom");
        t.processed();
        assert_eq!(t.mark().unwrap().outcome, Outcome::Failed("boom".into()));
    }

    #[test]
    fn metadata_is_kept() {
        let t = Track::detached();
        t.processed_with(serde_json::json!({"n": 1}));
        assert_eq!(
            t.mark().unwrap().metadata,
            Some(serde_json::json!({"n": 1}))
        );
    }

    #[tokio::test]
    async fn outside_the_pipeline_it_is_a_500_not_a_panic() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let r = Track::from_request_parts(&mut parts, &()).await;
        let resp = r.unwrap_err().into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        parts.extensions.insert(Track::detached());
        assert!(Track::from_request_parts(&mut parts, &()).await.is_ok());
    }
}
