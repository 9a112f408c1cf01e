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
    Done(Done),
}

/// A completed key's response, as held: the content type interned when it is JSON (nearly
/// always), so most entries carry no allocation for it.
#[derive(Debug, Clone)]
struct Done {
    status: u16,
    content_type: ContentType,
    body: Option<bytes::Bytes>,
}

#[derive(Debug, Clone)]
enum ContentType {
    None,
    Json,
    Other(Box<str>),
}

const JSON: &str = "application/json";

impl From<CachedResponse> for Done {
    fn from(r: CachedResponse) -> Self {
        let content_type = match r.content_type {
            None => ContentType::None,
            Some(t) if t == JSON => ContentType::Json,
            Some(t) => ContentType::Other(t.into_boxed_str()),
        };
        Done {
            status: r.status,
            content_type,
            body: r.body,
        }
    }
}

impl Done {
    fn content_type(&self) -> Option<&str> {
        match &self.content_type {
            ContentType::None => None,
            ContentType::Json => Some(JSON),
            ContentType::Other(t) => Some(t),
        }
    }

    fn response(&self) -> CachedResponse {
        CachedResponse {
            status: self.status,
            content_type: self.content_type().map(str::to_owned),
            body: self.body.clone(),
        }
    }
}

#[derive(Debug)]
struct Slot {
    state: State,
    /// Expiry on the store's clock: past it the key is as good as absent.
    expires: Instant,
}

/// What one entry is charged against the byte budget beyond its values: the map's node (the
/// key's 128-bit id, the slot, the links), its bucket and the allocator's headers, rounded up
/// from the 147 resident bytes measured at 1M entries (`bench/benches/store_memory.rs`).
const ENTRY_OVERHEAD: usize = 160;

impl Slot {
    fn bytes(&self) -> usize {
        let values = match &self.state {
            State::InFlight { token, .. } => token.0.len(),
            State::Done(r) => {
                r.content_type().map_or(0, str::len) + r.body.as_ref().map_or(0, |b| b.len())
            }
        };
        ENTRY_OVERHEAD + values
    }
}

/// A key as held: two 64-bit outputs of one randomly keyed hash (std's SipHash), on the key
/// prefixed by 0 and by 1 (two distinct inputs of a keyed PRF). The key itself is not
/// stored, so an entry carries no allocation for it and neither a lookup nor an eviction reads
/// cold key bytes. Two distinct keys share an id with probability about 2^-128 (10^-27 across
/// a million keys), and the hash key is random per store and never leaves it, so a sender
/// cannot aim for a collision (or for one shard). The first half picks the shard, the second
/// places the entry in its map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id(u64, u64);

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.1);
    }
}

/// The map's hasher: an [`Id`] is already a random hash, so its second half is used as is.
#[derive(Default, Clone, Copy)]
struct Pass(u64);

impl std::hash::Hasher for Pass {
    fn write(&mut self, bytes: &[u8]) {
        // Not reached (an `Id` writes one u64); folded in anyway so any input is hashed.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One shard: keys in the order they were last reserved or completed, so the front is always
/// the oldest entry (the first to expire for a common TTL, and the one evicted at a bound).
struct Shard {
    map: LinkedHashMap<Id, Slot, std::hash::BuildHasherDefault<Pass>>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
}

impl Shard {
    /// Drops expired entries from the front, then the oldest ones until one more entry of
    /// `incoming` bytes fits both bounds.
    fn make_room(&mut self, now: Instant, incoming: usize) {
        while let Some((_, front)) = self.map.front() {
            let fits = self.map.len() < self.capacity && self.bytes + incoming <= self.max_bytes;
            if front.expires > now && fits {
                break;
            }
            let freed = front.bytes();
            self.map.pop_front();
            self.bytes -= freed;
        }
    }

    /// Replaces the slot of `key` (which must be present) and moves it to the back, keeping
    /// the byte count; older entries give way if the new value does not fit.
    fn replace(&mut self, key: Id, slot: Slot) {
        let Some(old) = self.map.get_mut(&key) else {
            return;
        };
        let (before, after) = (old.bytes(), slot.bytes());
        *old = slot;
        self.bytes = self.bytes - before + after;
        self.map.to_back(&key);
        // Evict from the front (never this key, now at the back) until within the budget.
        while self.bytes > self.max_bytes && self.map.len() > 1 {
            if let Some((_, front)) = self.map.front() {
                let freed = front.bytes();
                self.map.pop_front();
                self.bytes -= freed;
            }
        }
        // Alone and still too large: keep the status, not the body.
        if self.bytes > self.max_bytes
            && let Some(slot) = self.map.get_mut(&key)
            && let State::Done(r) = &mut slot.state
            && let Some(body) = r.body.take()
        {
            self.bytes -= body.len();
        }
    }

    fn insert(&mut self, key: Id, slot: Slot, now: Instant) {
        let size = slot.bytes();
        self.make_room(now, size);
        self.map.insert(key, slot);
        self.bytes += size;
    }

    fn remove(&mut self, key: Id) {
        if let Some(slot) = self.map.remove(&key) {
            self.bytes -= slot.bytes();
        }
    }
}

/// The embedded default store: in this process, concurrent, TTL-expiring and bounded both in
/// keys and in bytes.
///
/// Keys are spread over independently locked shards, each an insertion-ordered hash map, so a
/// new key is one hash-map insert under one uncontended lock. Entries expire with their TTL
/// and are dropped as new keys arrive; past `max_entries` keys or `max_bytes` bytes (cached
/// response bodies and a fixed 160 bytes per entry) the **oldest** entries are evicted
/// first: the ones least likely to be retried. Under that pressure a retry of an evicted key
/// runs the handler again, so size the bounds for your providers' retry window.
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
    /// The random key of every [`Id`].
    hasher: RandomState,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .field("bytes", &self.bytes())
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

/// The default key bound of [`MemoryStore::new`].
pub(crate) const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// The default byte bound of [`MemoryStore::new`]: 64 MiB.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// At most this many shards; small stores get fewer, so the bound stays exact.
const MAX_SHARDS: u64 = 64;

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// A store holding at most 100,000 keys and 64 MiB.
    pub fn new() -> Self {
        MemoryStore::with_bounds(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    }

    /// A store holding at most `max_entries` keys (at least one) and 64 MiB.
    pub fn with_max_entries(max_entries: u64) -> Self {
        MemoryStore::with_bounds(max_entries, DEFAULT_MAX_BYTES)
    }

    /// A store holding at most `max_entries` keys and about `max_bytes` bytes: cached bodies
    /// and content types, plus 160 bytes per entry for the map itself (the key is not held:
    /// see the type's notes).
    ///
    /// ```
    /// use outworx_hooks::MemoryStore;
    /// let store = MemoryStore::with_bounds(1_000_000, 256 << 20); // 1M keys, 256 MiB
    /// # let _ = store;
    /// ```
    pub fn with_bounds(max_entries: u64, max_bytes: u64) -> Self {
        let max_entries = max_entries.max(1);
        // One shard per 1,024 keys and per MiB, up to 64: the bounds are split exactly among
        // them, and each shard can hold many cached bodies of the largest size.
        let n = (max_entries / 1024)
            .min(max_bytes / (1 << 20))
            .clamp(1, MAX_SHARDS);
        let shards = (0..n)
            .map(|i| {
                let capacity = max_entries / n + u64::from(i < max_entries % n);
                let bytes = max_bytes / n + u64::from(i < max_bytes % n);
                Mutex::new(Shard {
                    map: LinkedHashMap::default(),
                    capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
                    max_bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
                    bytes: 0,
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

    /// The bytes charged against the byte bound now.
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).bytes as u64).sum()
    }

    fn id(&self, key: &str) -> Id {
        Id(
            self.hasher.hash_one((0u8, key)),
            self.hasher.hash_one((1u8, key)),
        )
    }

    fn shard(&self, key: Id) -> MutexGuard<'_, Shard> {
        let n = self.shards.len() as u64;
        // Widening then narrowing: the index is below the shard count, so it fits.
        let i = (key.0 % n) as usize;
        lock(&self.shards[i])
    }

    fn reserve_now(&self, key: Id, ttl: Duration) -> Result<Reservation, StoreError> {
        let now = self.clock.now();
        let mut shard = self.shard(key);
        if let Some(slot) = shard.map.get(&key)
            && slot.expires > now
        {
            match &slot.state {
                State::Done(resp) => return Ok(Reservation::Duplicate(resp.response())),
                State::InFlight { since, .. }
                    if now.saturating_duration_since(*since) < STALE_RESERVATION =>
                {
                    return Ok(Reservation::InFlight);
                }
                State::InFlight { .. } => {} // its owner died: take it over
            }
        }
        let token = new_token()?;
        let fresh = Slot {
            state: State::InFlight {
                token: token.clone(),
                since: now,
            },
            expires: now + ttl,
        };
        if shard.map.contains_key(&key) {
            shard.replace(key, fresh);
        } else {
            shard.insert(key, fresh, now);
        }
        Ok(Reservation::New(token))
    }

    /// Applies `change` to the slot of `key` while `token` holds its reservation, checked and
    /// changed under one lock (so a takeover in between is seen).
    fn if_holder(&self, key: Id, token: &ReservationToken, change: impl FnOnce(&Slot) -> Slot) {
        let mut shard = self.shard(key);
        let next = match shard.map.get(&key) {
            Some(slot) if matches!(&slot.state, State::InFlight { token: t, .. } if t == token) => {
                change(slot)
            }
            _ => return,
        };
        shard.replace(key, next);
    }
}

impl Store for MemoryStore {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(async move { self.reserve_now(self.id(key), ttl) })
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
            self.if_holder(self.id(key), token, |_| Slot {
                state: State::Done(response.into()),
                expires: now + ttl,
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
            let key = self.id(key);
            let mut shard = self.shard(key);
            if let Some(slot) = shard.map.get(&key)
                && matches!(&slot.state, State::InFlight { token: t, .. } if t == token)
            {
                shard.remove(key);
            }
            Ok(())
        })
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let now = self.clock.now();
            self.if_holder(self.id(key), token, |slot| Slot {
                state: State::InFlight {
                    token: token.clone(),
                    since: now,
                },
                // A handler running past the key's TTL keeps its reservation too.
                expires: slot.expires.max(now + STALE_RESERVATION),
            });
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

    #[tokio::test]
    async fn renewal_keeps_a_slow_handlers_reservation() {
        let clock = ManualClock::new();
        let s = MemoryStore::new().with_clock(clock.clone());
        let t = new_token_of(s.reserve("k", TTL).await.unwrap());
        // Renewed every 20 s for 100 s: past both the stale time and the key's 60 s TTL.
        for _ in 0..5 {
            clock.advance(Duration::from_secs(20));
            s.renew("k", &t).await.unwrap();
            assert_eq!(s.reserve("k", TTL).await.unwrap(), Reservation::InFlight);
        }
        // Without renewal the reservation goes stale and is taken over.
        clock.advance(STALE_RESERVATION);
        let other = new_token_of(s.reserve("k", TTL).await.unwrap());
        // The old holder's renewal no longer counts.
        s.renew("k", &t).await.unwrap();
        s.complete("k", &other, ok(), TTL).await.unwrap();
        assert_eq!(
            s.reserve("k", TTL).await.unwrap(),
            Reservation::Duplicate(ok())
        );
    }

    #[tokio::test]
    async fn the_byte_bound_holds_and_evicts_the_oldest() {
        let body = Bytes::from(vec![b'x'; 10_000]);
        let big = CachedResponse {
            status: 200,
            content_type: Some("text/plain".into()),
            body: Some(body),
        };
        let s = MemoryStore::with_bounds(1_000_000, 100_000);
        for i in 0..50 {
            let k = format!("k{i}");
            let t = new_token_of(s.reserve(&k, TTL).await.unwrap());
            s.complete(&k, &t, big.clone(), TTL).await.unwrap();
            assert!(s.bytes() <= 100_000, "{} bytes after {i}", s.bytes());
        }
        assert!(s.len() < 12, "{} entries of 10 kB in 100 kB", s.len());
        // The newest is kept; the oldest went first.
        assert!(matches!(
            s.reserve("k49", TTL).await.unwrap(),
            Reservation::Duplicate(_)
        ));
        new_token_of(s.reserve("k0", TTL).await.unwrap());
        // Released and expired entries give their bytes back.
        let s = MemoryStore::with_bounds(100, 1_000_000);
        let t = new_token_of(s.reserve("a", TTL).await.unwrap());
        assert!(s.bytes() > 0);
        s.release("a", &t).await.unwrap();
        assert_eq!(s.bytes(), 0);
    }

    #[tokio::test]
    async fn a_response_larger_than_the_whole_budget_is_kept_as_status_only() {
        let s = MemoryStore::with_bounds(10, 1_000);
        let t = new_token_of(s.reserve("k", TTL).await.unwrap());
        let huge = CachedResponse {
            status: 201,
            content_type: None,
            body: Some(Bytes::from(vec![0u8; 5_000])),
        };
        s.complete("k", &t, huge, TTL).await.unwrap();
        assert!(s.bytes() <= 1_000);
        assert_eq!(
            s.reserve("k", TTL).await.unwrap(),
            Reservation::Duplicate(CachedResponse {
                status: 201,
                content_type: None,
                body: None
            })
        );
    }

    #[tokio::test]
    async fn long_keys_are_stored_as_their_digest() {
        let s = MemoryStore::new();
        let long = "k".repeat(100_000);
        let t = new_token_of(s.reserve(&long, TTL).await.unwrap());
        assert!(s.bytes() < 1_000, "{} bytes for one key", s.bytes());
        s.complete(&long, &t, ok(), TTL).await.unwrap();
        assert_eq!(
            s.reserve(&long, TTL).await.unwrap(),
            Reservation::Duplicate(ok())
        );
    }
}
