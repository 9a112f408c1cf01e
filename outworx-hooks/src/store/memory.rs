//! `MemoryStore`: the embedded default, on a bounded, concurrent `moka` cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
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

#[derive(Debug, Clone)]
struct Slot {
    state: State,
    /// Logical expiry on the store's clock (what answers go by).
    expires: Instant,
    /// The TTL, for the cache's own eviction of the entry.
    ttl: Duration,
}

struct SlotExpiry;

impl moka::Expiry<String, Slot> for SlotExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        slot: &Slot,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        slot: &Slot,
        _at: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }
}

/// The embedded default store: in this process, concurrent, TTL-expiring and bounded.
///
/// Built on [`moka`]'s cache: every operation is atomic per key, entries expire with their
/// TTL, and past `max_entries` the least useful entries are evicted (under that pressure a
/// retry of an evicted key runs the handler again; size the bound for your retry window).
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
    cache: Cache<String, Slot>,
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
                .expire_after(SlotExpiry)
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
        let mut answer = None;
        self.cache
            .entry(key.to_owned())
            .and_compute_with(|existing| {
                if let Some(slot) = existing.map(|e| e.into_value())
                    && slot.expires > now
                {
                    match slot.state {
                        State::Done(resp) => {
                            answer = Some(Reservation::Duplicate(resp));
                            return Op::Nop;
                        }
                        State::InFlight { since, .. }
                            if now.saturating_duration_since(since) < STALE_RESERVATION =>
                        {
                            answer = Some(Reservation::InFlight);
                            return Op::Nop;
                        }
                        State::InFlight { .. } => {} // its owner died: take it over
                    }
                }
                let token = new_token();
                answer = Some(Reservation::New(token.clone()));
                Op::Put(Slot {
                    state: State::InFlight { token, since: now },
                    expires: now + ttl,
                    ttl,
                })
            });
        // The closure always sets an answer; a fresh reservation is the safe reading otherwise.
        answer.unwrap_or_else(|| Reservation::New(new_token()))
    }

    /// Applies `then` to the slot if `token` still holds the reservation of `key`.
    fn if_holder(&self, key: &str, token: &ReservationToken, then: impl FnOnce(Slot) -> Op<Slot>) {
        self.cache
            .entry(key.to_owned())
            .and_compute_with(|existing| match existing.map(|e| e.into_value()) {
                Some(slot) if matches!(&slot.state, State::InFlight { token: t, .. } if t == token) => {
                    then(slot)
                }
                _ => Op::Nop,
            });
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
            self.if_holder(key, token, |_| {
                Op::Put(Slot {
                    state: State::Done(response),
                    expires: now + ttl,
                    ttl,
                })
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
            self.if_holder(key, token, |_| Op::Remove);
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
