//! Admitting a delivery to its handler: the store keys it is known by, reserving them (or
//! answering a duplicate, an in-flight 409, a store outage), and the reservations a running
//! handler holds: renewed while it runs, completed or released after.

use std::future::Future;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use super::Verified;
use crate::pipeline::respond::replay;
use crate::route::{KeyOrigin, push_escaped};
use crate::security::Provider;
use crate::store::{CachedResponse, Reservation, ReservationToken, Store};

/// A store outage fails every delivery: one line every 10 s says so (with how many it held
/// back), and each event carries the error.
/// (One per call site: a renewal's warning never hides the first "without deduplication".)
static FAILED_OPEN: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
static FAILED_CLOSED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
static RELEASE_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));
static RENEW_FAILED: crate::util::Every = crate::util::Every::new(Duration::from_secs(10));

impl Verified {
    /// The store keys of a delivery: the route's namespace and `key`, and for a natural key
    /// the signature does not cover, a second key from a digest of the signed body. Escaped
    /// components (`service:provider:route:key`), cut to [`crate::store::MAX_KEY_LEN`].
    pub(super) fn store_keys(&self, key: String, origin: KeyOrigin) -> Vec<String> {
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

    /// Reserves `keys` for the handler. `Err` is the answer given instead, with the event's
    /// metadata flag: a duplicate's replay, a 409 while another delivery holds a key, a 503
    /// when the store fails and the runtime fails closed. When it fails open, the handler runs
    /// and `extra` says why deduplication was skipped.
    pub(super) async fn admit(
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
pub(super) struct Lease {
    pub(super) keys: Vec<(String, ReservationToken)>,
}

impl Lease {
    /// Runs `work` to its end, renewing the reservations every `every` (the store's
    /// [`Store::renew_every`]) meanwhile, so a handler slower than the stale time keeps its
    /// keys and a retry is not run beside it.
    pub(super) async fn renewing<T>(
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
    pub(super) async fn settle(
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
