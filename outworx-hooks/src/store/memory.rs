//! `MemoryStore`: the embedded default, on sharded, insertion-ordered hash maps.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashlink::LinkedHashMap;

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
    /// Expiry on the store's clock: past it the key is as good as absent.
    expires: Instant,
}

/// One shard: keys in the order they were last reserved or completed, so the front is always
/// the oldest entry (the first to expire for a common TTL, and the one evicted at the bound).
struct Shard {
    map: LinkedHashMap<Box<str>, Slot>,
    capacity: usize,
}

impl Shard {
    /// Drops expired entries from the front, then the oldest ones until one more fits.
    fn make_room(&mut self, now: Instant) {
        while let Some((_, front)) = self.map.front() {
            if front.expires > now && self.map.len() < self.capacity {
                break;
            }
            self.map.pop_front();
        }
    }
}

/// The embedded default store: in this process, concurrent, TTL-expiring and bounded.
///
/// Keys are spread over independently locked shards, each an insertion-ordered hash map, so a
/// new key is one hash-map insert under one uncontended lock. Entries expire with their TTL
/// and are dropped as new keys arrive; past `max_entries` the **oldest** entries are evicted
/// first: the ones least likely to be retried. Under that pressure a retry of an evicted key
/// runs the handler again, so size the bound for your providers' retry window.
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
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .field("shards", &self.shards.len())
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

/// At most this many shards; small stores get fewer, so the bound stays exact.
const MAX_SHARDS: u64 = 64;

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// A store holding at most 100,000 keys.
    pub fn new() -> Self {
        MemoryStore::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// A store holding at most `max_entries` keys (at least one).
    pub fn with_max_entries(max_entries: u64) -> Self {
        let max_entries = max_entries.max(1);
        // One shard per 1,024 keys up to 64: the bound is split exactly among them.
        let n = (max_entries / 1024).clamp(1, MAX_SHARDS);
        let shards = (0..n)
            .map(|i| {
                let capacity = max_entries / n + u64::from(i < max_entries % n);
                Mutex::new(Shard {
                    map: LinkedHashMap::new(),
                    capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
                })
            })
            .collect();
        MemoryStore {
            shards,
            hasher: RandomState::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for expiry and takeover decisions (tests use a [`super::ManualClock`]).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many keys are held, expired ones not yet dropped included.
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).map.len() as u64).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let n = self.shards.len() as u64;
        // Widening then narrowing: the index is below the shard count, so it fits.
        let i = (self.hasher.hash_one(key) % n) as usize;
        lock(&self.shards[i])
    }

    fn reserve_now(&self, key: &str, ttl: Duration) -> Reservation {
        let now = self.clock.now();
        let mut shard = self.shard(key);
        let token = new_token();
        let fresh = Slot {
            state: State::InFlight {
                token: token.clone(),
                since: now,
            },
            expires: now + ttl,
        };
        if let Some(slot) = shard.map.get_mut(key) {
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
            *slot = fresh;
            shard.map.to_back(key);
            return Reservation::New(token);
        }
        shard.make_room(now);
        shard.map.insert(key.into(), fresh);
        Reservation::New(token)
    }

    /// Applies `change` to the slot of `key` while `token` holds its reservation, checked and
    /// changed under one lock (so a takeover in between is seen).
    fn if_holder(&self, key: &str, token: &ReservationToken, change: impl FnOnce(&mut Slot)) {
        let mut shard = self.shard(key);
        if let Some(slot) = shard.map.get_mut(key)
            && matches!(&slot.state, State::InFlight { token: t, .. } if t == token)
        {
            change(slot);
            shard.map.to_back(key);
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
            let mut shard = self.shard(key);
            if let Some(slot) = shard.map.get(key)
                && matches!(&slot.state, State::InFlight { token: t, .. } if t == token)
            {
                shard.map.remove(key);
            }
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

    #[tokio::test]
    async fn the_oldest_keys_are_evicted_first_and_the_bound_is_exact() {
        for bound in [1, 7, 1024, 5000] {
            let s = MemoryStore::with_max_entries(bound);
            for i in 0..bound * 3 {
                new_token_of(s.reserve(&format!("k{i}"), TTL).await.unwrap());
                assert!(s.len() <= bound, "{} entries over {bound}", s.len());
            }
            // The newest key of its shard is always kept.
            let last = format!("k{}", bound * 3 - 1);
            assert_eq!(s.reserve(&last, TTL).await.unwrap(), Reservation::InFlight);
        }
        let s = MemoryStore::with_max_entries(3);
        for k in ["a", "b", "c", "d"] {
            new_token_of(s.reserve(k, TTL).await.unwrap());
        }
        assert_eq!(s.len(), 3);
        new_token_of(s.reserve("a", TTL).await.unwrap()); // "a" was the oldest: gone
        assert_eq!(s.reserve("c", TTL).await.unwrap(), Reservation::InFlight);
    }

    #[tokio::test]
    async fn completing_a_key_renews_its_place_and_expired_keys_make_room() {
        let clock = ManualClock::new();
        let s = MemoryStore::with_max_entries(2).with_clock(clock.clone());
        let a = new_token_of(s.reserve("a", TTL).await.unwrap());
        new_token_of(s.reserve("b", TTL).await.unwrap());
        s.complete("a", &a, ok(), TTL).await.unwrap(); // "a" is now the newest
        new_token_of(s.reserve("c", TTL).await.unwrap()); // evicts "b"
        assert_eq!(
            s.reserve("a", TTL).await.unwrap(),
            Reservation::Duplicate(ok())
        );
        new_token_of(s.reserve("b", TTL).await.unwrap());

        let s = MemoryStore::with_max_entries(100).with_clock(clock.clone());
        for i in 0..50 {
            new_token_of(s.reserve(&format!("old{i}"), TTL).await.unwrap());
        }
        clock.advance(TTL + Duration::from_secs(1));
        new_token_of(s.reserve("new", TTL).await.unwrap());
        assert_eq!(s.len(), 1, "expired entries are dropped as new keys arrive");
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
