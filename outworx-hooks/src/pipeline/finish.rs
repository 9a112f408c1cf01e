//! The rest of a delivery once its signature is known: the idempotency keys are reserved
//! (or the delivery is answered as a duplicate), the handler runs while its reservations are
//! renewed, the keys are completed or released, and the outcome and processing mark are
//! reported.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::{StatusCode, header};
use tracing::Instrument as _;

use super::Verified;
use super::respond::{Note, replay};
use crate::event::{self, DeliveryEvent, ProcessingStatus};
use crate::route::{KeyOrigin, push_escaped};
use crate::security::Provider;
use crate::store::{
    CachedResponse, MAX_CACHED_BODY, Reservation, ReservationToken, Store, clamp_ttl,
};
use crate::track::{Outcome, Track};
use crate::util::panic_message;

/// A handler's failure that is not a panic (an inner service's error), carried to the event.
#[derive(Debug, Clone)]
pub(crate) struct HandlerError(pub(crate) String);

impl Verified {
    /// The store keys of a delivery: the route's namespace and `key`, and for a natural key
    /// the signature does not cover, a second key from a digest of the signed body. Escaped
    /// components (`service:provider:route:key`), cut to [`crate::store::MAX_KEY_LEN`].
    fn store_keys(&self, key: String, origin: KeyOrigin) -> Vec<String> {
        let Ok(resolved) = self.route.resolved() else {
            return Vec::new();
        };
        let mut prefix = String::with_capacity(
            self.rt.service.len() + resolved.namespace.len() + key.len() + 80,
        );
        prefix.push_str(&self.rt.service);
        prefix.push(':');
        prefix.push_str(&resolved.namespace);
        if self.route.namespace_by_path {
            // A layer names no function: the endpoint it guards does.
            let path = self
                .parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map_or_else(|| self.parts.uri.path(), |m| m.as_str());
            prefix.push('@');
            push_escaped(&mut prefix, path);
        }
        prefix.push(':');
        let digest = (origin == KeyOrigin::Natural
            && self
                .route
                .provider
                .is_some_and(Provider::natural_key_is_unsigned))
        .then(|| {
            // The id header is not signed: a replay with a new id still has this body.
            let hex = crate::security::scheme::sha256_hex(&self.body);
            format!("{prefix}:{hex}")
        });
        let mut primary = prefix;
        push_escaped(&mut primary, &key);
        let fit = |k: String| match crate::store::fit_key(&k) {
            std::borrow::Cow::Borrowed(_) => k,
            std::borrow::Cow::Owned(f) => f,
        };
        std::iter::once(primary).chain(digest).map(fit).collect()
    }

    /// Reserves every key, in order; the first that is a duplicate or in flight decides, and
    /// the reservations already taken are given back.
    async fn reserve_all(&self, keys: Vec<String>, ttl: Duration) -> Reserved {
        let mut held = Lease::default();
        for key in keys {
            let answer = self.rt.store.reserve(&key, ttl).await;
            match answer {
                Ok(Reservation::New(token)) => held.keys.push((key, token)),
                other => {
                    // Best effort: a reservation left behind goes stale and is taken over.
                    if let Err(e) = held.release(&*self.rt.store).await
                        && let Some(held) = RELEASE_FAILED.allow()
                    {
                        tracing::warn!(held, "releasing an idempotency reservation: {e}");
                    }
                    return match other {
                        Ok(Reservation::Duplicate(cached)) => Reserved::Duplicate(cached),
                        Err(e) => Reserved::Failed(e),
                        _ => Reserved::InFlight,
                    };
                }
            }
        }
        Reserved::Held(held)
    }

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
        #[cfg(feature = "inbox")]
        let dispatched = self.parts.extensions.remove::<crate::inbox::Dispatch>();
        #[cfg(not(feature = "inbox"))]
        let dispatched: Option<()> = None;
        // A re-dispatch the route no longer takes (changed since it was queued) ends here.
        #[cfg(feature = "inbox")]
        if let Some(d) = &dispatched
            && let Some(why) = self.refuses_dispatch(d)
        {
            let mut resp = (StatusCode::CONFLICT, why.clone()).into_response();
            resp.extensions_mut()
                .insert(crate::inbox::Processed::Dead(why.clone()));
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
            #[allow(unused_mut)]
            let mut resp = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"ignored":true}"#,
            )
                .into_response();
            #[cfg(feature = "inbox")]
            if dispatched.is_some() {
                resp.extensions_mut().insert(crate::inbox::Processed::Done);
            }
            return self.without_handler(resp, Note::ignored(event_type));
        }
        #[cfg(feature = "inbox")]
        if dispatched.is_none()
            && let Some(q) = self.route.queue
        {
            return self.enqueue(q, key, origin, event_type).await;
        }

        let valid = self.signature.as_ref().is_none_or(|s| s.valid);
        let ttl = clamp_ttl(self.route.ttl);
        // A re-dispatch from the inbox is already deduplicated: the inbox holds each key once.
        let keys = match key {
            Some(k) if valid && dispatched.is_none() => self.store_keys(k, origin),
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
        #[cfg(feature = "inbox")]
        let depends = !lease.keys.is_empty() || dispatched.is_some();
        #[cfg(not(feature = "inbox"))]
        let depends = !lease.keys.is_empty();
        let keep = if depends {
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
        #[cfg(feature = "inbox")]
        let verdict = dispatched.map(|d| {
            extra.insert("inbox_id".into(), d.id.into());
            extra.insert("inbox_attempt".into(), d.attempt.into());
            processed(&answered, &track, require_processed)
        });
        if !extra.is_empty() {
            e.metadata
                .get_or_insert_with(Default::default)
                .extend(extra);
        }
        self.body = Bytes::new();
        self.rt.emit_in(e, &self.span);
        #[allow(unused_mut)]
        let mut resp = answered.into_response();
        #[cfg(feature = "inbox")]
        if let Some(v) = verdict {
            resp.extensions_mut().insert(v);
        }
        resp
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

    /// Why this route no longer takes a queued delivery, if it does not: another route now
    /// answers its path, the route lost `queue`, or it now refuses unverified deliveries.
    #[cfg(feature = "inbox")]
    fn refuses_dispatch(&self, d: &crate::inbox::Dispatch) -> Option<String> {
        let namespace = self
            .route
            .resolved()
            .map(|r| r.namespace.as_str())
            .unwrap_or("");
        if self.route.queue.is_none() || namespace != d.route {
            return Some(format!(
                "the route at this path is not the queued route `{}` any more",
                d.route
            ));
        }
        if d.signature_valid == Some(false) && self.route.reject_invalid {
            return Some("the route now refuses deliveries whose signature did not verify".into());
        }
        None
    }

    /// A `queue` route's receipt: the verified delivery is committed to the inbox, then
    /// answered 200; a repeat of its key is answered 200 and not stored again; a failed commit
    /// is a 503, so the provider retries.
    #[cfg(feature = "inbox")]
    async fn enqueue(
        self,
        q: crate::route::QueueConfig,
        key: Option<String>,
        origin: KeyOrigin,
        event_type: Option<String>,
    ) -> Response {
        let Some(inbox) = crate::inbox::Inbox::installed() else {
            let why = "this route has `queue` but no inbox is installed: call \
                       `Inbox::open(..).await?.install()` at start";
            tracing::error!(handler = self.route.handler, "{why}");
            let resp = (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "30")],
                "the webhook inbox is unavailable; retry later",
            )
                .into_response();
            return self.without_handler(resp, Note::not_queued(event_type, why.to_owned()));
        };
        let valid = self.signature.as_ref().map(|s| s.valid);
        let namespace = self
            .route
            .resolved()
            .map(|r| r.namespace.clone())
            .unwrap_or_default();
        // The route's store key identifies the delivery in the inbox: the body's digest when
        // the provider's id header is unsigned (a captured delivery re-sent under a new id is
        // the same delivery), else the key. Without a key, the digest; an unverified
        // delivery (possible only with `reject_invalid = false`) never shares a verified one's.
        let key = match key {
            Some(k) if valid != Some(false) => self.store_keys(k, origin).pop(),
            _ => None,
        };
        let key = match (key, valid) {
            (Some(k), _) => k,
            (None, Some(false)) => format!(
                "unverified:{namespace}:sha256:{}",
                crate::security::scheme::sha256_hex(&self.body)
            ),
            (None, _) => format!(
                "{namespace}:sha256:{}",
                crate::security::scheme::sha256_hex(&self.body)
            ),
        };
        let key = crate::queue::sql::storable(&key);
        // The URI the router saw first (a nested router strips its prefix from `uri`): the
        // worker dispatches from the top.
        let uri = self
            .parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(&self.parts.uri, |o| &o.0)
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let headers = stored_headers(&self.parts.headers, &self.route);
        let event_type_text = event_type.as_deref().map(crate::queue::sql::storable);
        let entry = crate::inbox::NewEntry {
            route: &namespace,
            key: &key,
            method: self.parts.method.as_str(),
            uri: &uri,
            headers: &headers,
            body: &self.body,
            signature_valid: valid,
            event_type: event_type_text.as_deref(),
            // The worker's span continues this delivery's trace.
            traceparent: crate::otel::traceparent(&self.span),
            options: crate::inbox::QueueOptions {
                attempts: q.attempts.max(1),
                backoff: Duration::from_millis(q.backoff_ms),
            },
        };
        let committed = tokio::time::timeout(crate::inbox::COMMIT_TIMEOUT, inbox.enqueue(&entry))
            .await
            .unwrap_or(Err(crate::inbox::InboxError::Timeout(
                crate::inbox::COMMIT_TIMEOUT,
            )));
        match committed {
            Ok(done) => {
                let body = format!(
                    r#"{{"queued":true,"id":{},"duplicate":{}}}"#,
                    done.id, done.duplicate
                );
                let resp = (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response();
                let note = Note::queued(event_type, done.id, done.duplicate);
                self.without_handler(resp, note)
            }
            Err(e) => {
                if let Some(held) = INBOX_FAILED.allow() {
                    tracing::warn!(handler = self.route.handler, held, error = %e, "committing to the inbox failed; answering 503");
                }
                let resp = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "5")],
                    "the webhook inbox is unavailable; retry later",
                )
                    .into_response();
                self.without_handler(resp, Note::not_queued(event_type, e.to_string()))
            }
        }
    }

    /// Reserves `keys` for the handler. `Err` is the answer given instead, with the event's
    /// metadata flag: a duplicate's replay, a 409 while another delivery holds a key, a 503
    /// when the store fails and the runtime fails closed. When it fails open, the handler runs
    /// and `extra` says why deduplication was skipped.
    async fn admit(
        &self,
        keys: Vec<String>,
        ttl: Duration,
        extra: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<Lease, (Response, &'static str, serde_json::Value)> {
        if keys.is_empty() {
            return Ok(Lease::default());
        }
        let handler = self.route.handler;
        match self.reserve_all(keys, ttl).await {
            Reserved::Held(held) => Ok(held),
            Reserved::Duplicate(cached) => Err((replay(&cached), "duplicate", true.into())),
            Reserved::InFlight => {
                let resp = (
                    StatusCode::CONFLICT,
                    [(header::RETRY_AFTER, "5")],
                    "this delivery is being processed; retry later",
                )
                    .into_response();
                Err((resp, "in_flight", true.into()))
            }
            Reserved::Failed(err) if self.rt.fail_closed => {
                if let Some(held) = FAILED_CLOSED.allow() {
                    tracing::warn!(handler, held, "{err}; answering 503 (fail closed)");
                }
                let resp = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "30")],
                    "the idempotency store is unavailable; retry later",
                )
                    .into_response();
                Err((resp, "idempotency_error", err.to_string().into()))
            }
            Reserved::Failed(err) => {
                if let Some(held) = FAILED_OPEN.allow() {
                    tracing::warn!(handler, held, "{err}; handling without deduplication");
                }
                extra.insert("idempotency_error".into(), err.to_string().into());
                Ok(Lease::default())
            }
        }
    }
}

/// A store outage fails every delivery: one line every 10 s says so (with how many it held
/// back), and each event carries the error.
/// (One per call site: a renewal's warning never hides the first "without deduplication".)
static FAILED_OPEN: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
static FAILED_CLOSED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
static SETTLE_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
static RELEASE_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
static RENEW_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
/// The same for an inbox that cannot commit (each such delivery is answered 503).
#[cfg(feature = "inbox")]
static INBOX_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));

/// The handler's answer: what is sent, cached for retries and reported. Its body is read only
/// as far as something keeps it (see [`Held`]). A panic, or a body that fails while it is
/// read here, becomes a 500 with the reason in `error`.
struct Answered {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Held,
    error: Option<String>,
}

/// A response body as far as it was read.
enum Held {
    /// Read whole.
    Whole(Bytes),
    /// Longer than what is kept: its first bytes (at least that much), then the rest, sent
    /// as it comes; `length` is the length the body declared exactly, if it did.
    Partial {
        head: Bytes,
        rest: Body,
        length: Option<u64>,
    },
}

/// Reads `body` until it ends or more than `keep` bytes are in hand (the frame that crosses
/// `keep` is the last one read). Frames are kept as they come: one frame is never copied.
async fn read_up_to(mut body: Body, keep: usize) -> Result<Held, axum::Error> {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    let length = body.size_hint().exact();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut held = 0usize;
    let whole = loop {
        if held > keep {
            break body.is_end_stream();
        }
        match body.frame().await {
            None => break true,
            Some(frame) => {
                if let Ok(data) = frame?.into_data()
                    && !data.is_empty()
                {
                    held = held.saturating_add(data.len());
                    frames.push(data);
                }
            }
        }
    };
    let head = match frames.len() {
        0 => Bytes::new(),
        1 => frames.swap_remove(0),
        _ => {
            let mut all = bytes::BytesMut::with_capacity(held);
            for f in &frames {
                all.extend_from_slice(f);
            }
            all.freeze()
        }
    };
    Ok(if whole {
        Held::Whole(head)
    } else {
        Held::Partial {
            head,
            rest: body,
            length,
        }
    })
}

impl Answered {
    /// The handler's outcome, its body read as far as `keep` bytes (0: not at all, sent as
    /// it comes).
    async fn of(outcome: std::thread::Result<Response>, keep: usize) -> Answered {
        let failed = |body: &'static [u8], error: String| Answered {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            headers: http::HeaderMap::new(),
            body: Held::Whole(Bytes::from_static(body)),
            error: Some(error),
        };
        let resp = match outcome {
            Ok(resp) => resp,
            Err(p) => {
                let why = format!("handler panicked: {}", panic_message(&*p));
                return failed(b"internal error", why);
            }
        };
        let (parts, body) = resp.into_parts();
        // Nothing keeps any of it: sent as it comes, never held in memory here.
        let read = if keep == 0 {
            Ok(Held::Partial {
                head: Bytes::new(),
                rest: body,
                length: None,
            })
        } else {
            read_up_to(body, keep).await
        };
        match read {
            Ok(body) => Answered {
                status: parts.status,
                headers: parts.headers,
                body,
                error: parts.extensions.get::<HandlerError>().map(|e| e.0.clone()),
            },
            Err(e) => failed(
                b"the handler's response body failed",
                format!("the handler's response body failed: {e}"),
            ),
        }
    }

    /// What a retry of this delivery is answered with (a body past
    /// [`MAX_CACHED_BODY`] is not kept).
    fn cached(&self) -> CachedResponse {
        CachedResponse {
            status: self.status.as_u16(),
            content_type: self
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: match &self.body {
                Held::Whole(b) if b.len() <= MAX_CACHED_BODY => Some(b.clone()),
                // Longer: a retry is answered with the status alone.
                _ => None,
            },
        }
    }

    /// The body's first bytes as read (all of it when it was read whole).
    fn head(&self) -> &[u8] {
        match &self.body {
            Held::Whole(b) | Held::Partial { head: b, .. } => b,
        }
    }

    fn into_response(mut self) -> Response {
        let body = match self.body {
            Held::Whole(b) => Body::from(b),
            Held::Partial { head, rest, .. } if head.is_empty() => rest,
            Held::Partial { head, rest, length } => {
                use futures_util::StreamExt as _;
                // The chained body cannot say its length: keep the one the handler's did.
                if let Some(n) = length {
                    self.headers
                        .entry(header::CONTENT_LENGTH)
                        .or_insert_with(|| http::HeaderValue::from(n));
                }
                let first = futures_util::stream::once(async move { Ok(head) });
                Body::from_stream(first.chain(rest.into_data_stream()))
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// The headers a queued delivery keeps: not the credentials (`authorization`, `cookie`,
/// `proxy-authorization`), not the provider's signature and secret headers (GitLab's token
/// is the secret itself), not the route's `redact` list. The worker does not verify again, and
/// the inbox is no place for secrets at rest.
#[cfg(feature = "inbox")]
fn stored_headers(headers: &http::HeaderMap, route: &crate::route::Route) -> http::HeaderMap {
    let provider_secret = |name: &str| {
        route.provider.is_some_and(|p| {
            p.secret_headers()
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
        })
    };
    let mut kept = http::HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if matches!(n, "authorization" | "cookie" | "proxy-authorization")
            || provider_secret(n)
            || route.redact.iter().any(|r| r.eq_ignore_ascii_case(n))
        {
            continue;
        }
        kept.append(name.clone(), value.clone());
    }
    kept
}

/// What a re-dispatched delivery's run says to the inbox's worker: done only for a 2xx
/// that was marked processed (or needed no mark).
#[cfg(feature = "inbox")]
fn processed(
    answered: &Answered,
    track: &Track,
    require_processed: bool,
) -> crate::inbox::Processed {
    use crate::inbox::Processed;
    if let Some(error) = &answered.error {
        return Processed::Retry(error.clone());
    }
    if !answered.status.is_success() {
        return Processed::Retry(format!("the handler answered {}", answered.status.as_u16()));
    }
    match track.mark().map(|m| m.outcome.clone()) {
        Some(Outcome::Processed) => Processed::Done,
        Some(Outcome::Failed(reason)) => Processed::Retry(format!("failed: {reason}")),
        None if require_processed => {
            Processed::Retry("silent drop: the handler never marked the event processed".into())
        }
        None => Processed::Done,
    }
}

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

/// How reserving a delivery's keys turned out.
enum Reserved {
    /// Every key is ours: run the handler.
    Held(Lease),
    /// A key was completed before: replay its response.
    Duplicate(CachedResponse),
    /// A key is held by a delivery being handled now.
    InFlight,
    /// The store could not answer.
    Failed(crate::store::StoreError),
}

/// The reservations a running delivery holds.
#[derive(Default)]
struct Lease {
    keys: Vec<(String, ReservationToken)>,
}

impl Lease {
    /// Runs `work` to its end, renewing the reservations every `every` (the store's
    /// [`Store::renew_every`]) meanwhile, so a handler slower than the stale time keeps its
    /// keys and a retry is not run beside it.
    async fn renewing<T>(
        &self,
        store: &dyn Store,
        every: Duration,
        work: impl Future<Output = T>,
    ) -> T {
        if self.keys.is_empty() {
            return work.await;
        }
        let renew = async {
            loop {
                tokio::time::sleep(every).await;
                for (key, token) in &self.keys {
                    if let Err(e) = store.renew(key, token).await
                        && let Some(held) = RENEW_FAILED.allow()
                    {
                        tracing::warn!(held, "renewing an idempotency reservation: {e}");
                    }
                }
            }
        };
        let (work, renew) = (std::pin::pin!(work), std::pin::pin!(renew));
        match futures_util::future::select(work, renew).await {
            futures_util::future::Either::Left((out, _)) => out,
            futures_util::future::Either::Right((never, _)) => match never {},
        }
    }

    /// Completes the keys with a 2xx answer, so retries replay it; otherwise releases them,
    /// so the provider's retry runs the handler again.
    async fn settle(
        &self,
        store: &dyn Store,
        replay: Option<CachedResponse>,
        ttl: Duration,
    ) -> Result<(), crate::store::StoreError> {
        match replay {
            _ if self.keys.is_empty() => Ok(()),
            Some(cached) => self.complete(store, cached, ttl).await,
            None => self.release(store).await,
        }
    }

    async fn complete(
        &self,
        store: &dyn Store,
        cached: CachedResponse,
        ttl: Duration,
    ) -> Result<(), crate::store::StoreError> {
        let mut result = Ok(());
        for (key, token) in &self.keys {
            if let Err(e) = store.complete(key, token, cached.clone(), ttl).await {
                result = Err(e);
            }
        }
        result
    }

    async fn release(&self, store: &dyn Store) -> Result<(), crate::store::StoreError> {
        let mut result = Ok(());
        for (key, token) in &self.keys {
            if let Err(e) = store.release(key, token).await {
                result = Err(e);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RENEW_EVERY;

    /// A store that counts renewals and answers everything else at once.
    #[derive(Default)]
    struct Renewals(std::sync::atomic::AtomicUsize);

    impl Store for Renewals {
        fn reserve<'a>(
            &'a self,
            _key: &'a str,
            _ttl: Duration,
        ) -> crate::store::BoxFuture<'a, Result<Reservation, crate::store::StoreError>> {
            Box::pin(async { Ok(Reservation::InFlight) })
        }
        fn complete<'a>(
            &'a self,
            _key: &'a str,
            _token: &'a ReservationToken,
            _response: CachedResponse,
            _ttl: Duration,
        ) -> crate::store::BoxFuture<'a, Result<(), crate::store::StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn release<'a>(
            &'a self,
            _key: &'a str,
            _token: &'a ReservationToken,
        ) -> crate::store::BoxFuture<'a, Result<(), crate::store::StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn renew<'a>(
            &'a self,
            _key: &'a str,
            _token: &'a ReservationToken,
        ) -> crate::store::BoxFuture<'a, Result<(), crate::store::StoreError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_are_renewed_while_a_slow_handler_runs() {
        let store = Renewals::default();
        let lease = Lease {
            keys: vec![
                ("a".into(), ReservationToken("t1".into())),
                ("b".into(), ReservationToken("t2".into())),
            ],
        };
        // 35 s: past the 30 s stale time. Renewed at 10, 20 and 30 s, both keys each time.
        let slow = async {
            tokio::time::sleep(Duration::from_secs(35)).await;
            "done"
        };
        assert_eq!(lease.renewing(&store, RENEW_EVERY, slow).await, "done");
        assert_eq!(store.0.load(std::sync::atomic::Ordering::Relaxed), 6);
        // A fast handler costs no renewal, and nothing is renewed after it returns.
        let fast = Renewals::default();
        assert_eq!(lease.renewing(&fast, RENEW_EVERY, async { 1 }).await, 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fast.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
