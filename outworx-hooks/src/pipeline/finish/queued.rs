//! A `queue` route's side of a delivery: its receipt, committed to the inbox before the
//! provider is answered, and a worker's re-dispatch of it through the router. This is the
//! pipeline's one `cfg(feature = "inbox")`: without the feature, [`Redispatch`] is zero-sized
//! and never present, its methods give back what they are given, and `finish` is the same
//! code either way.

#[cfg(not(feature = "inbox"))]
pub(super) use off::{Redispatch, enqueue};

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use crate::pipeline::Verified;
use crate::pipeline::respond::Note;
#[cfg(feature = "inbox")]
pub(super) use on::{Redispatch, enqueue};

/// A `queue` route with nowhere to commit: logged with `why`, answered 503 with
/// `Retry-After` so the provider retries once an inbox is there.
fn no_inbox(v: Verified, event_type: Option<String>, why: &'static str) -> Response {
    tracing::error!(handler = v.route.handler, "{why}");
    let resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "30")],
        "the webhook inbox is unavailable; retry later",
    )
        .into_response();
    v.without_handler(resp, Note::not_queued(event_type, why.to_owned()))
}

#[cfg(feature = "inbox")]
mod on {
    use std::time::Duration;

    use axum::response::{IntoResponse, Response};
    use http::request::Parts;
    use http::{StatusCode, header};

    use crate::inbox::{Dispatch, Inbox, Processed};
    use crate::pipeline::Verified;
    use crate::pipeline::finish::answer::Answered;
    use crate::pipeline::respond::Note;
    use crate::route::{KeyOrigin, QueueConfig};
    use crate::track::{Outcome, Track};

    /// An inbox that cannot commit: one line every 10 s (each such delivery is answered 503).
    static INBOX_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
    /// A shared store that cannot record a queued key: one line every 10 s.
    static SETTLE_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));

    /// The inbox worker's re-dispatch this request is, if it is one (taken from its extensions:
    /// only this crate makes one, and a request from the network cannot carry an extension).
    pub(in crate::pipeline) struct Redispatch(Option<Dispatch>);

    impl Redispatch {
        pub(in crate::pipeline) fn take(parts: &mut Parts) -> Self {
            Redispatch(parts.extensions.remove::<Dispatch>())
        }

        pub(in crate::pipeline) fn is_some(&self) -> bool {
            self.0.is_some()
        }

        /// Why this route no longer takes a queued delivery, if it does not: another route now
        /// answers its path, the route lost `queue`, or it now refuses unverified deliveries.
        pub(in crate::pipeline) fn refused_by(&self, v: &Verified) -> Option<String> {
            let d = self.0.as_ref()?;
            let namespace = v
                .route
                .resolved()
                .map(|r| r.namespace.as_str())
                .unwrap_or("");
            if v.route.queue.is_none() || namespace != d.route {
                return Some(format!(
                    "the route at this path is not the queued route `{}` any more",
                    d.route
                ));
            }
            // Stored by an older version with `reject_invalid = false`: a `queue` route runs
            // only deliveries that verified.
            if d.signature_valid == Some(false) {
                return Some(
                    "the route now refuses deliveries whose signature did not verify".into(),
                );
            }
            None
        }

        /// `resp`, telling the worker the delivery is dead with `why` (replay it after the fix).
        pub(in crate::pipeline) fn dead(&self, mut resp: Response, why: &str) -> Response {
            if self.0.is_some() {
                resp.extensions_mut()
                    .insert(Processed::Dead(why.to_owned()));
            }
            resp
        }

        /// `resp`, telling the worker the delivery is done.
        pub(in crate::pipeline) fn done(&self, mut resp: Response) -> Response {
            if self.0.is_some() {
                resp.extensions_mut().insert(Processed::Done);
            }
            resp
        }

        /// What the run says to the worker, with the inbox row in the event's metadata.
        pub(in crate::pipeline) fn verdict(
            &self,
            extra: &mut serde_json::Map<String, serde_json::Value>,
            answered: &Answered,
            track: &Track,
            require_processed: bool,
        ) -> Verdict {
            Verdict(self.0.as_ref().map(|d| {
                extra.insert("inbox_id".into(), d.id.into());
                extra.insert("inbox_attempt".into(), d.attempt.into());
                processed(answered, track, require_processed)
            }))
        }
    }

    /// A re-dispatch's outcome, for the response the worker reads.
    pub(in crate::pipeline) struct Verdict(Option<Processed>);

    impl Verdict {
        pub(in crate::pipeline) fn attach(self, mut resp: Response) -> Response {
            if let Some(v) = self.0 {
                resp.extensions_mut().insert(v);
            }
            resp
        }
    }

    /// A `queue` route's receipt: the verified delivery is committed to the inbox, then
    /// answered 200; a repeat of its key is answered 200 and not stored again; a failed commit
    /// is a 503, so the provider retries.
    pub(in crate::pipeline) async fn enqueue(
        v: Verified,
        q: QueueConfig,
        key: Option<String>,
        origin: KeyOrigin,
        event_type: Option<String>,
    ) -> Response {
        // The router's `Extension(inbox)`, or the installed one.
        let inbox = v
            .parts
            .extensions
            .get::<Inbox>()
            .cloned()
            .or_else(Inbox::installed);
        let Some(inbox) = inbox else {
            return super::no_inbox(
                v,
                event_type,
                "this route has `queue` but no inbox is installed: call \
                 `Inbox::open(..).await?.install()` at start, or add `Extension(inbox)` to the router",
            );
        };
        let valid = v.signature.as_ref().map(|s| s.valid);
        let namespace = v
            .route
            .resolved()
            .map(|r| r.namespace.clone())
            .unwrap_or_default();
        // The route's store key identifies the delivery in the inbox: the body's digest when
        // the provider's id header is unsigned (a captured delivery re-sent under a new id is
        // the same delivery), else the key. Without a key, the digest; an unverified
        // delivery (refused at receipt now, so never here) would never share a verified one's.
        let keys = match key {
            Some(k) if valid != Some(false) => v.store_keys(k, origin),
            _ => Vec::new(),
        };
        let key = keys.last().cloned();
        let key = match (key, valid) {
            (Some(k), _) => k,
            (None, Some(false)) => format!(
                "unverified:{namespace}:sha256:{}",
                crate::security::scheme::sha256_hex(&v.body)
            ),
            (None, _) => format!(
                "{namespace}:sha256:{}",
                crate::security::scheme::sha256_hex(&v.body)
            ),
        };
        let key = outworx_hooks_queue::storable(&key);
        // The URI the router saw first (a nested router strips its prefix from `uri`): the
        // worker dispatches from the top.
        let uri = v
            .parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(&v.parts.uri, |o| &o.0)
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let headers = stored_headers(&v.parts.headers, &v.route);
        let entry = crate::inbox::NewEntry {
            route: namespace,
            key,
            method: v.parts.method.as_str().to_owned(),
            uri,
            headers: crate::inbox::headers_json(&headers),
            body: v.body.clone(),
            signature_valid: valid,
            event_type: event_type.as_deref().map(outworx_hooks_queue::storable),
            // The worker's span continues this delivery's trace.
            traceparent: crate::otel::traceparent(&v.span),
            options: crate::inbox::QueueOptions {
                attempts: q.attempts.max(1),
                backoff: Duration::from_millis(q.backoff_ms),
            },
        };
        // Instances that each have their own inbox share a configured store (Redis): the key
        // is reserved there first, as an inline route's is, so that a retry reaching another
        // instance is answered as the duplicate it is instead of being queued, and run, there
        // too. Completed once the row commits; released when the commit fails. A process that
        // dies in between leaves the reservation in flight: retries are answered 409 until it
        // is stale (the store's stale time, 30 s by default), then one takes it over.
        let ttl = crate::store::clamp_ttl(v.route.ttl);
        let shared = if v.rt.store.is_shared() {
            keys
        } else {
            Vec::new()
        };
        let mut unused = serde_json::Map::new();
        let lease = match v.admit(shared, ttl, &mut unused).await {
            Ok(lease) => lease,
            Err((resp, flag, value)) => {
                return v.without_handler(resp, Note::flag(event_type, flag, value));
            }
        };
        let committed = if lease.keys.is_empty() {
            tokio::time::timeout(crate::inbox::COMMIT_TIMEOUT, inbox.enqueue(entry))
                .await
                .unwrap_or(Err(crate::inbox::InboxError::Timeout(
                    crate::inbox::COMMIT_TIMEOUT,
                )))
        } else {
            // The commit and the key's settlement run in a task of their own: a commit that
            // lands after the provider was answered 503 (the timeout), or after it hung up,
            // still completes the key, and one that fails releases it. Never released while
            // the row may yet commit.
            let store = std::sync::Arc::clone(&v.rt.store);
            let handler = v.route.handler;
            let task = tokio::spawn(async move {
                let committed = inbox.enqueue(entry).await;
                settle(&lease, &*store, committed.as_ref().ok(), ttl, handler).await;
                committed
            });
            match tokio::time::timeout(crate::inbox::COMMIT_TIMEOUT, task).await {
                Ok(Ok(committed)) => committed,
                Ok(Err(_)) => Err(crate::inbox::InboxError::Invalid(
                    "the commit's task ended without an answer".into(),
                )),
                Err(_) => Err(crate::inbox::InboxError::Timeout(
                    crate::inbox::COMMIT_TIMEOUT,
                )),
            }
        };
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
                v.without_handler(resp, note)
            }
            Err(e) => {
                if let Some(held) = INBOX_FAILED.allow() {
                    tracing::warn!(handler = v.route.handler, held, error = %e, "committing to the inbox failed; answering 503");
                }
                let resp = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "5")],
                    "the webhook inbox is unavailable; retry later",
                )
                    .into_response();
                v.without_handler(resp, Note::not_queued(event_type, e.to_string()))
            }
        }
    }

    /// Completes a queued delivery's keys with what a retry is answered (the same row, as a
    /// duplicate), or releases them when it was not committed.
    async fn settle(
        lease: &crate::pipeline::finish::admit::Lease,
        store: &dyn crate::store::Store,
        committed: Option<&crate::inbox::store::Enqueued>,
        ttl: Duration,
        handler: &'static str,
    ) {
        let replay = committed.map(|done| crate::store::CachedResponse {
            status: 200,
            content_type: Some("application/json".to_owned()),
            body: Some(format!(r#"{{"queued":true,"id":{},"duplicate":true}}"#, done.id).into()),
        });
        if let Err(e) = lease.settle(store, replay, ttl).await
            && let Some(held) = SETTLE_FAILED.allow()
        {
            tracing::warn!(handler, held, "{e}");
        }
    }

    /// The headers a queued delivery keeps: not the credentials (`authorization`, `cookie`,
    /// `proxy-authorization`), not the provider's signature and secret headers (GitLab's token
    /// is the secret itself), not the route's `redact` list. The worker does not verify again, and
    /// the inbox is no place for secrets at rest.
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
}

#[cfg(not(feature = "inbox"))]
mod off {
    use axum::response::Response;
    use http::request::Parts;

    use crate::pipeline::Verified;
    use crate::pipeline::finish::answer::Answered;
    use crate::route::{KeyOrigin, QueueConfig};
    use crate::track::Track;

    /// Never a re-dispatch: without the inbox there is no worker.
    pub(in crate::pipeline) struct Redispatch;

    impl Redispatch {
        pub(in crate::pipeline) fn take(_parts: &mut Parts) -> Self {
            Redispatch
        }

        pub(in crate::pipeline) fn is_some(&self) -> bool {
            false
        }

        pub(in crate::pipeline) fn refused_by(&self, _v: &Verified) -> Option<String> {
            None
        }

        pub(in crate::pipeline) fn dead(&self, resp: Response, _why: &str) -> Response {
            resp
        }

        pub(in crate::pipeline) fn done(&self, resp: Response) -> Response {
            resp
        }

        pub(in crate::pipeline) fn verdict(
            &self,
            _extra: &mut serde_json::Map<String, serde_json::Value>,
            _answered: &Answered,
            _track: &Track,
            _require_processed: bool,
        ) -> Verdict {
            Verdict
        }
    }

    /// Nothing to tell a worker.
    pub(in crate::pipeline) struct Verdict;

    impl Verdict {
        pub(in crate::pipeline) fn attach(self, resp: Response) -> Response {
            resp
        }
    }

    /// A `queue` route built without the `inbox` feature (the attribute refuses to; a route
    /// built by hand could): nothing can commit it, so the provider is told to retry.
    pub(in crate::pipeline) async fn enqueue(
        v: Verified,
        _q: QueueConfig,
        _key: Option<String>,
        _origin: KeyOrigin,
        event_type: Option<String>,
    ) -> Response {
        super::no_inbox(
            v,
            event_type,
            "this route has `queue` but outworx-hooks was built without its `inbox` feature",
        )
    }
}
