//! The rest of a delivery once its signature is known: the idempotency keys are reserved
//! (or the delivery is answered as a duplicate), the handler runs while its reservations are
//! renewed, the keys are completed or released, and the outcome and processing mark are
//! reported.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the flow of one delivery, and its processing mark |
//! | `admit.rs` | the store keys, reserving them, and the reservations a running handler holds |
//! | `queued.rs` | a `queue` route's receipt, and a worker's re-dispatch of one (the only `cfg(feature = "inbox")` of the pipeline) |
//! | `answer.rs` | the handler's answer, read only as far as something keeps it |

mod admit;
mod answer;
mod queued;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::{StatusCode, header};
use tracing::Instrument as _;

use super::Verified;
use super::respond::Note;
use crate::event::{self, DeliveryEvent, ProcessingStatus};
use crate::route::KeyOrigin;
use crate::store::clamp_ttl;
use crate::track::{Outcome, Track};
use answer::Answered;
use queued::Redispatch;

/// A handler's failure that is not a panic (an inner service's error), carried to the event.
#[derive(Debug, Clone)]
pub(crate) struct HandlerError(pub(crate) String);

impl Verified {
    /// Reserves the delivery's keys, runs `call` (the handler with its extractors) unless the
    /// delivery is a duplicate or in flight, and reports the outcome.
    ///
    /// A delivery whose signature did not verify (possible only with `reject_invalid =
    /// false`) never reserves a key and is never answered from the store: a forger can
    /// neither pre-empt the real event nor read its cached response.
    pub async fn finish<F, Fut>(
        self,
        key: Option<String>,
        origin: KeyOrigin,
        event_type: Option<String>,
        call: F,
    ) -> Response
    where
        F: FnOnce(Parts, Bytes) -> Fut,
        Fut: Future<Output = Response>,
    {
        let span = self.span.clone();
        // Only a verified delivery's own words go on the span, cut to the event's limit.
        let verified = self.signature.as_ref().is_some_and(|s| s.valid);
        if let Some(t) = event_type.as_deref().filter(|_| verified) {
            let end = t.floor_char_boundary(crate::wire::limits::EVENT_TYPE.min(t.len()));
            span.record("webhook.event_type", &t[..end]);
        }
        // An HMAC per delivery, only for a span someone records.
        if let Some(k) = key.as_deref().filter(|_| verified && !span.is_disabled()) {
            span.record("webhook.idempotency_key_hash", self.key_hash(k).as_str());
        }
        self.finish_in(key, origin, event_type, call)
            .instrument(span)
            .await
    }

    async fn finish_in<F, Fut>(
        mut self,
        key: Option<String>,
        origin: KeyOrigin,
        event_type: Option<String>,
        call: F,
    ) -> Response
    where
        F: FnOnce(Parts, Bytes) -> Fut,
        Fut: Future<Output = Response>,
    {
        let dispatched = Redispatch::take(&mut self.parts);
        // A re-dispatch the route no longer takes (changed since it was queued) ends here.
        if let Some(why) = dispatched.refused_by(&self) {
            let resp = dispatched.dead((StatusCode::CONFLICT, why.clone()).into_response(), &why);
            return self.without_handler(resp, Note::not_queued(event_type, why));
        }
        // A type outside the route's `events` never reaches the handler nor the store.
        if let Some(t) = event_type.as_deref()
            && !self.route.events.is_empty()
            && !self
                .route
                .events
                .iter()
                .any(|p| crate::util::event_matches(p, t))
        {
            let resp = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"ignored":true}"#,
            )
                .into_response();
            let resp = dispatched.done(resp);
            return self.without_handler(resp, Note::ignored(event_type));
        }
        if !dispatched.is_some()
            && let Some(q) = self.route.queue
        {
            return queued::enqueue(self, q, key, origin, event_type).await;
        }

        let valid = self.signature.as_ref().is_none_or(|s| s.valid);
        let ttl = clamp_ttl(self.route.ttl);
        // A re-dispatch from the inbox is already deduplicated: the inbox holds each key once.
        let keys = match key {
            Some(k) if valid && !dispatched.is_some() => self.store_keys(k, origin),
            _ => Vec::new(),
        };
        let mut extra = serde_json::Map::new();
        let lease = match self
            .admit(keys, ttl, &mut extra)
            .instrument(tracing::debug_span!("webhook.store"))
            .await
        {
            Ok(lease) => lease,
            Err((resp, flag, value)) => {
                return self.without_handler(resp, Note::flag(event_type, flag, value));
            }
        };

        // The event's request side is taken now, so the request itself moves to the handler.
        let mut e = self.event(0, event_type);
        let track = Track::for_delivery(valid);
        let mut parts = std::mem::replace(&mut self.parts, http::Request::new(()).into_parts().0);
        parts.extensions.insert(track.clone());
        let handler = AssertUnwindSafe(call(parts, self.body.clone()))
            .catch_unwind()
            .instrument(tracing::debug_span!("webhook.handler"));
        let outcome = lease
            .renewing(&*self.rt.store, self.rt.store.renew_every(), handler)
            .await;
        // Read only as far as something depends on it. A key is completed, and the inbox
        // records `done`, only for a body that ended well: read whole, as the handler wrote
        // it. Otherwise only `capture_body`'s first 64 KiB, or nothing: sent as it comes.
        let keep = if !lease.keys.is_empty() || dispatched.is_some() {
            usize::MAX
        } else if self.route.capture_body {
            event::BODY_CAPTURE_LIMIT
        } else {
            0
        };
        let answered = Answered::of(outcome, keep).await;

        // What a retry is answered with, for a 2xx (a body is not `Sync`: not held across).
        let replay =
            (answered.status.is_success() && !lease.keys.is_empty()).then(|| answered.cached());
        if let Err(err) = lease.settle(&*self.rt.store, replay, ttl).await {
            if let Some(held) = SETTLE_FAILED.allow() {
                tracing::warn!(handler = self.route.handler, held, "{err}");
            }
            extra.insert("idempotency_error".into(), err.to_string().into());
        }
        e.status_code = answered.status.as_u16();
        e.success = answered.status.is_success();
        e.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        e.error_message.clone_from(&answered.error);
        e.response_body = self
            .route
            .capture_body
            .then(|| event::capture(answered.head()));
        let require_processed = self.route.require_processed;
        mark_event(
            &mut e,
            &mut extra,
            &track,
            require_processed,
            answered.status,
        );
        let verdict = dispatched.verdict(&mut extra, &answered, &track, require_processed);
        if !extra.is_empty() {
            e.metadata
                .get_or_insert_with(Default::default)
                .extend(extra);
        }
        self.body = Bytes::new();
        self.rt.emit_in(e, &self.span, &self.outer);
        verdict.attach(answered.into_response())
    }

    /// A key's digest for traces: HMAC-SHA256 keyed by the route's secret (the same on every
    /// instance, so a key's spans correlate; not a plain hash, which a guessable key, an email
    /// or an order number, would give away), 16 hex characters.
    fn key_hash(&self, key: &str) -> String {
        let secret = self
            .route
            .resolved()
            .ok()
            .and_then(|r| r.first_secret.clone())
            .unwrap_or_default();
        let mac = crate::security::scheme::hmac_sha256(secret.as_bytes(), key.as_bytes());
        let mut hex = [0u8; 16];
        // 8 bytes always fit 16 hex digits, which are ASCII.
        let _ = hex::encode_to_slice(&mac[..8], &mut hex);
        String::from_utf8_lossy(&hex).into_owned()
    }
}

/// A store that cannot complete or release keys after the handler: one line every 10 s.
static SETTLE_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));

/// What the handler's mark (or its absence) says about the event.
fn mark_event(
    e: &mut DeliveryEvent,
    extra: &mut serde_json::Map<String, serde_json::Value>,
    track: &Track,
    require_processed: bool,
    status: StatusCode,
) {
    match track.mark() {
        Some(mark) => {
            e.processing_marked_at = Some(event::iso8601(mark.at));
            match &mark.outcome {
                Outcome::Processed => e.processing_status = Some(ProcessingStatus::Completed),
                Outcome::Failed(reason) => {
                    e.processing_status = Some(ProcessingStatus::Failed);
                    e.processing_failure_reason = Some(reason.clone());
                }
            }
            if let Some(serde_json::Value::Object(m)) = &mark.metadata {
                extra.extend(m.clone());
            } else if let Some(other) = &mark.metadata {
                extra.insert("mark".into(), other.clone());
            }
        }
        None if require_processed && status.is_success() => {
            e.processing_status = Some(ProcessingStatus::SilentDrop);
        }
        None => {}
    }
}
