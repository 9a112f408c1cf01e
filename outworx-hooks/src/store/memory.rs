//! `MemoryStore`: the embedded default, on a bounded, concurrent `moka` cache.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::{
    BoxFuture, CachedResponse, Clock, Reservation, ReservationToken, STALE_RESERVATION, Store,
    StoreError, SystemClock, new_token,
};

#[derive(Debug, Clone)]
enum State {
    InFlight {
        token: ReservationToken,
        since: Instant,
    },
    Done(CachedResponse),
}

#[derive(Debug)]
struct Slot {
    state: State,
    /// Logical expiry on the store's clock (what answers go by).
    expires: Instant,
}

/// A cache entry: the slot is shared, so completing or taking over a key is a lock on the
/// entry, not a write to the cache; only new keys and releases write.
#[derive(Clone)]
struct Entry {
    slot: Arc<Mutex<Slot>>,
    /// The TTL, for the cache's own eviction of the entry.
    ttl: Duration,
}

struct EntryExpiry;

impl moka::Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        e: &Entry,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        // Room for the handler to run before the completed response's own TTL starts.
        Some(e.ttl + STALE_RESERVATION)
    }
}

/// The embedded default store: in this process, concurrent, TTL-expiring and bounded.
///
/// Built on [`moka`]'s cache: entries expire with their TTL, and past `max_entries` the least
/// useful entries are evicted (under that pressure a retry of an evicted key runs the handler
/// again; size the bound for your retry window). A new key is one insert; completing, replaying
/// and taking over lock the key's own slot, so they never contend with other keys.
///
/// ```
/// use std::time::Duration;
/// use outworx_hooks::store::{CachedResponse, MemoryStore, Reservation, Store};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let ttl = Duration::from_secs(60);
/// let Reservation::New(token) = store.reserve("evt_1", ttl).await.unwrap() else { panic!() };
/// assert_eq!(store.reserve("evt_1", ttl).await.unwrap(), Reservation::InFlight);
/// let ok = CachedResponse { status: 200, content_type: None, body: None };
/// store.complete("evt_1", &token, ok.clone(), ttl).await.unwrap();
/// assert_eq!(store.reserve("evt_1", ttl).await.unwrap(), Reservation::Duplicate(ok));
/// # });
/// ```
pub struct MemoryStore {
    cache: Cache<String, Entry>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

/// The default bound of [`MemoryStore::new`].
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// A store holding at most 100,000 keys.
    pub fn new() -> Self {
        MemoryStore::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// A store holding at most `max_entries` keys.
    pub fn with_max_entries(max_entries: u64) -> Self {
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(max_entries.max(1))
                .expire_after(EntryExpiry)
                .build(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for expiry and takeover decisions (tests use a [`super::ManualClock`]).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many keys are held (approximate while evictions are pending).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn reserve_now(&self, key: &str, ttl: Duration) -> Reservation {
        let now = self.clock.now();
        let token = new_token();
        let fresh = || State::InFlight {
            token: token.clone(),
            since: now,
        };
        // One insert for a new key; the slot decides everything else under its own lock.
        let entry = self.cache.entry(key.to_owned()).or_insert_with(|| Entry {
            slot: Arc::new(Mutex::new(Slot {
                state: fresh(),
                expires: now + ttl,
            })),
            ttl,
        });
        if entry.is_fresh() {
            return Reservation::New(token);
        }
        let mut slot = lock(&entry.value().slot);
        if slot.expires > now {
            match &slot.state {
                State::Done(resp) => return Reservation::Duplicate(resp.clone()),
                State::InFlight { since, .. }
                    if now.saturating_duration_since(*since) < STALE_RESERVATION =>
                {
                    return Reservation::InFlight;
                }
                State::InFlight { .. } => {} // its owner died: take it over
            }
        }
        *slot = Slot {
            state: fresh(),
            expires: now + ttl,
        };
        Reservation::New(token)
    }

    /// Applies `change` to the slot of `key` while `token` holds its reservation, checked and
    /// changed under one lock (so a takeover in between is seen).
    fn if_holder(&self, key: &str, token: &ReservationToken, change: impl FnOnce(&mut Slot)) {
        if let Some(entry) = self.cache.get(key) {
            let mut slot = lock(&entry.slot);
            if matches!(&slot.state, State::InFlight { token: t, .. } if t == token) {
                change(&mut slot);
            }
        }
    }
}

impl Store for MemoryStore {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(async move { Ok(self.reserve_now(key, ttl)) })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
        response: CachedResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let now = self.clock.now();
            self.if_holder(key, token, |slot| {
                *slot = Slot {
                    state: State::Done(response),
                    expires: now + ttl,
                };
            });
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // Expired now: the next reserve starts afresh; the cache drops the entry later.
            let now = self.clock.now();
            self.if_holder(key, token, |slot| slot.expires = now);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ManualClock;
    use super::*;
    use bytes::Bytes;

    const TTL: Duration = Duration::from_secs(60);

    fn ok() -> CachedResponse {
        CachedResponse {
            status: 200,
            content_type: Some("application/json".into()),
            body: Some(Bytes::from_static(b"{}")),
        }
    }

    fn new_token_of(r: Reservation) -> ReservationToken {
        match r {
            Reservation::New(t) => t,
            other => panic!("expected a new reservation, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn release_lets_the_retry_run_again() {
        let s = MemoryStore::new();
        let t = new_token_of(s.reserve("k", TTL).await.unwrap());
        s.release("k", &t).await.unwrap();
        new_token_of(s.reserve("k", TTL).await.unwrap());
    }

    #[tokio::test]
    async fn stale_reservations_are_taken_over_and_the_old_owner_cannot_overwrite() {
        let clock = ManualClock::new();
        let s = MemoryStore::new().with_clock(clock.clone());
        let old = new_token_of(s.reserve("k", TTL).await.unwrap());
        clock.advance(Duration::from_secs(29));
        assert_eq!(s.reserve("k", TTL).await.unwrap(), Reservation::InFlight);
        clock.advance(Duration::from_secs(2));
        let new = new_token_of(s.reserve("k", TTL).await.unwrap());
        assert_ne!(old, new);
        // The old owner's late answers change nothing.
        s.complete("k", &old, ok(), TTL).await.unwrap();
        s.release("k", &old).await.unwrap();
        assert_eq!(s.reserve("k", TTL).await.unwrap(), Reservation::InFlight);
        s.complete("k", &new, ok(), TTL).await.unwrap();
        assert_eq!(
            s.reserve("k", TTL).await.unwrap(),
            Reservation::Duplicate(ok())
        );
    }

    #[tokio::test]
    async fn completed_keys_expire_after_their_ttl() {
        let clock = ManualClock::new();
        let s = MemoryStore::new().with_clock(clock.clone());
        let t = new_token_of(s.reserve("k", TTL).await.unwrap());
        s.complete("k", &t, ok(), TTL).await.unwrap();
        clock.advance(TTL - Duration::from_secs(1));
        assert_eq!(
            s.reserve("k", TTL).await.unwrap(),
            Reservation::Duplicate(ok())
        );
        clock.advance(Duration::from_secs(2));
        new_token_of(s.reserve("k", TTL).await.unwrap());
    }

    #[tokio::test]
    async fn the_bound_holds() {
        let s = MemoryStore::with_max_entries(100);
        for i in 0..1000 {
            new_token_of(s.reserve(&format!("k{i}"), TTL).await.unwrap());
        }
        assert!(s.len() <= 100, "{} entries", s.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reservations_have_one_winner() {
        let s = Arc::new(MemoryStore::new());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.reserve("same", TTL).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Reservation::New(_)) {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
    }
}
