//! Idempotency stores: where the first response to a delivery is kept so retries replay it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A boxed, `Send` future: what store methods return, so stores can be `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The response kept for a completed delivery, replayed to its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// HTTP status.
    pub status: u16,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// The body; `None` when it was larger than [`MAX_CACHED_BODY`] (status-only replay).
    pub body: Option<Bytes>,
}

/// Response bodies larger than this are stored as status only.
pub const MAX_CACHED_BODY: usize = 64 * 1024;

/// Proof of a reservation: only its holder may complete or release the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReservationToken(pub String);

/// The answer to [`Store::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The key was free (or its reservation was stale): run the handler.
    New(ReservationToken),
    /// The key was completed: replay this response.
    Duplicate(CachedResponse),
    /// Another delivery with this key is being handled right now.
    InFlight,
}

/// A store that could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idempotency store error: {0}")]
pub struct StoreError(pub String);

/// A reservation older than this that was never completed is taken over (its owner died).
pub const STALE_RESERVATION: Duration = Duration::from_secs(30);

/// Where idempotency keys live. Every method is atomic per key.
pub trait Store: Send + Sync + 'static {
    /// Reserves `key` for `ttl`, or reports it completed or in flight.
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>>;

    /// Stores the response of a 2xx run under `key`, if `token` still holds the reservation.
    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
        response: CachedResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Frees `key` after a non-2xx, an error or a panic, if `token` still holds it.
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

enum State {
    InFlight {
        token: ReservationToken,
        since: Instant,
    },
    Done(CachedResponse),
}

struct Entry {
    state: State,
    expires: Instant,
}

/// The embedded default store: in this process, concurrent, TTL-expiring, bounded.
///
/// ```
/// use std::time::Duration;
/// use outworx_hooks::store::{MemoryStore, Reservation, Store, CachedResponse};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let Reservation::New(token) = store.reserve("evt_1", Duration::from_secs(60)).await.unwrap() else { panic!() };
/// assert_eq!(store.reserve("evt_1", Duration::from_secs(60)).await.unwrap(), Reservation::InFlight);
/// let ok = CachedResponse { status: 200, content_type: None, body: None };
/// store.complete("evt_1", &token, ok.clone(), Duration::from_secs(60)).await.unwrap();
/// assert_eq!(store.reserve("evt_1", Duration::from_secs(60)).await.unwrap(), Reservation::Duplicate(ok));
/// # });
/// ```
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    max_entries: usize,
    next_token: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// A store holding at most 100,000 keys.
    pub fn new() -> Self {
        MemoryStore::with_max_entries(100_000)
    }

    /// A store holding at most `max_entries` keys (expired ones are dropped first; past the
    /// bound, the oldest-expiring key goes).
    pub fn with_max_entries(max_entries: usize) -> Self {
        MemoryStore {
            entries: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
            next_token: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reserve_now(&self, key: &str, ttl: Duration, now: Instant) -> Reservation {
        let mut map = self.lock();
        if let Some(e) = map.get(key)
            && e.expires > now
        {
            match &e.state {
                State::Done(resp) => return Reservation::Duplicate(resp.clone()),
                State::InFlight { since, .. } if now.duration_since(*since) < STALE_RESERVATION => {
                    return Reservation::InFlight;
                }
                State::InFlight { .. } => {} // stale: take it over below
            }
        }
        if map.len() >= self.max_entries && !map.contains_key(key) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.max_entries
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let token = ReservationToken(format!(
            "m{}",
            self.next_token.fetch_add(1, Ordering::Relaxed)
        ));
        map.insert(
            key.to_owned(),
            Entry {
                state: State::InFlight {
                    token: token.clone(),
                    since: now,
                },
                expires: now + ttl,
            },
        );
        Reservation::New(token)
    }

    fn holds(map: &HashMap<String, Entry>, key: &str, token: &ReservationToken) -> bool {
        matches!(map.get(key), Some(Entry { state: State::InFlight { token: t, .. }, .. }) if t == token)
    }
}

impl Store for MemoryStore {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(async move { Ok(self.reserve_now(key, ttl, Instant::now())) })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
        response: CachedResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut map = self.lock();
            if Self::holds(&map, key, token) {
                map.insert(
                    key.to_owned(),
                    Entry {
                        state: State::Done(response),
                        expires: Instant::now() + ttl,
                    },
                );
            }
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut map = self.lock();
            if Self::holds(&map, key, token) {
                map.remove(key);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn ok() -> CachedResponse {
        CachedResponse {
            status: 200,
            content_type: Some("application/json".into()),
            body: Some(Bytes::from_static(b"{}")),
        }
    }

    #[tokio::test]
    async fn release_lets_the_retry_run_again() {
        let s = MemoryStore::new();
        let Reservation::New(t) = s.reserve("k", TTL).await.unwrap() else {
            panic!("new")
        };
        s.release("k", &t).await.unwrap();
        assert!(matches!(
            s.reserve("k", TTL).await.unwrap(),
            Reservation::New(_)
        ));
    }

    #[test]
    fn stale_reservations_are_taken_over_and_the_old_owner_cannot_overwrite() {
        let s = MemoryStore::new();
        let t0 = Instant::now();
        let Reservation::New(old) = s.reserve_now("k", TTL, t0) else {
            panic!("new")
        };
        assert_eq!(
            s.reserve_now("k", TTL, t0 + Duration::from_secs(29)),
            Reservation::InFlight
        );
        let Reservation::New(new) = s.reserve_now("k", TTL, t0 + Duration::from_secs(31)) else {
            panic!("takeover")
        };
        assert_ne!(old, new);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // The old owner's late answers change nothing.
            s.complete("k", &old, ok(), TTL).await.unwrap();
            s.release("k", &old).await.unwrap();
        });
        assert_eq!(
            s.reserve_now("k", TTL, t0 + Duration::from_secs(32)),
            Reservation::InFlight
        );
        rt.block_on(s.complete("k", &new, ok(), TTL)).unwrap();
        let replay = futures_util::FutureExt::now_or_never(s.reserve("k", TTL));
        assert_eq!(replay, Some(Ok(Reservation::Duplicate(ok()))));
    }

    #[test]
    fn expired_keys_are_new_again_and_the_bound_holds() {
        let s = MemoryStore::with_max_entries(2);
        let t0 = Instant::now();
        assert!(matches!(s.reserve_now("a", TTL, t0), Reservation::New(_)));
        assert!(matches!(
            s.reserve_now("a", TTL, t0 + TTL + Duration::from_secs(1)),
            Reservation::New(_)
        ));
        s.reserve_now("b", TTL, t0);
        s.reserve_now("c", TTL, t0);
        assert!(s.lock().len() <= 2);
    }
}
