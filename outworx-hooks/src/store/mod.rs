//! Idempotency stores: where the first response to a delivery is kept so retries replay it.
//!
//! Providers retry; a retried delivery never runs the handler twice, on one instance or on
//! twenty. One [`Store`] trait, three implementations, used by the same pipeline:
//!
//! | store | when | how |
//! |---|---|---|
//! | [`MemoryStore`] (default) | one instance | bounded in keys and bytes (100,000 keys and 64 MiB by default, [`MemoryStore::with_bounds`]), sharded insertion-ordered hash maps; atomic per key; TTL expiry; oldest keys evicted first |
//! | `RedisStore` (feature `redis`) | many instances | one Lua script per operation: reserve with `SET NX PX`, complete, release and renew guarded by the reservation token; a key prefix; a reconnecting connection manager; Redis 5 or later, checked at `connect` |
//! | `OutworxApiStore` (feature `outworx-api`) | the Outworx API or `outworx serve` | `POST /api/sdk/idempotency/check` and `/complete` (see `docs/wire-protocol.md`), async with a timeout |
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use outworx_hooks::{Config, store::RedisStore};
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("billing:idem:");
//! let guard = outworx_hooks::init(Config::from_env().store(store).service("billing"))?;
//! # let _ = guard; Ok(()) }
//! ```
//!
//! # Semantics, for every store
//!
//! [`Store::reserve`] answers atomically: new, duplicate (with the first response: status,
//! content type and body; a body over [`MAX_CACHED_BODY`] is kept as its status only), or in
//! flight. A 2xx completes the key for the route's TTL (default 24 h, clamped to 60 s ..= 7
//! days); a non-2xx, an error or a panic releases it ([`Store::release`]), so the retry runs
//! the handler. A reservation neither completed nor renewed ([`Store::renew`]) within
//! [`STALE_RESERVATION`] (its instance died) is taken over; the old owner's late `complete` or
//! `release` carries a stale [`ReservationToken`] and changes nothing. The pipeline renews its
//! reservations while the handler runs ([`Store::renew_every`]), so a slow handler is never run
//! a second time beside itself. Tokens carry 128 bits of OS randomness (none available: a
//! store error, never a guessable token).
//!
//! # Keys
//!
//! Keys are `service:provider:route:key`, each part escaped so parts never run into each
//! other. The route is the handler's module path and name (two `async fn hook` in two modules
//! are two routes) or, for a layer, its name and the path it guards. The service is
//! [`Config::service`](crate::Config::service) (`OUTWORX_HOOKS_SERVICE`; default the
//! executable's name), so two services sharing one Redis or one Outworx project never answer
//! each other's deliveries, while every instance of one service shares them. Name it when you
//! share a store ([`init`](crate::init) warns if you do not). Keys longer than [`MAX_KEY_LEN`]
//! bytes are replaced by a digest of themselves ([`fit_key`]) before they reach a store, so a
//! key's size is bounded whatever a sender puts in it; [`MemoryStore`] keeps no key at all,
//! only a keyed 128-bit hash of it.
//!
//! For providers whose natural key is a header their signature does not cover (GitHub,
//! Shopify, GitLab, Bitbucket, Linear, Razorpay, Twilio), bare `idempotency` also reserves a
//! digest of the signed body: a captured delivery replayed under a new id header is still a
//! duplicate. A store error fails open (the handler runs, a warning is logged at most once
//! every 10 s, the event carries `metadata.idempotency_error`);
//! [`Config::fail_closed`](crate::Config::fail_closed) answers 503 with `Retry-After`
//! instead.
//!
//! # A store that is down
//!
//! A store given to [`Config::store`](crate::Config::store) is guarded
//! ([`BreakerOptions`]): every call is bounded by a timeout (2 s), and after 5 failures in a
//! row a circuit breaker opens, so later deliveries skip the store at once instead of each
//! paying the timeout (fail open: handled without deduplication; fail closed: 503 at once).
//! After a cooldown (1 s, doubling to 10 s) one call probes the store; its success closes the
//! breaker. Opening and closing are one log line each and the
//! `webhook_store_breaker_open` gauge. Measured with every fault in `docs/performance.md`.
//!
//! The Outworx API's check answer has no in-flight status and no release endpoint of its own:
//! `OutworxApiStore` sends its reservation token, reads a `duplicate` without a cached status
//! as in flight, and releases with `/complete` and `"release": true`, which `outworx serve`
//! implements.
//!
//! How it is proven (`tests/tests/store_*.rs`): for each store, 200 concurrent HTTP copies of
//! one delivery run the handler exactly once, every 2xx is the first run's body, the rest are
//! 409, a later copy replays; a 503 and a panic release the key. The Redis tests run a real
//! `redis-server`, including two receiver processes sharing it. Measured costs are in
//! `docs/performance.md`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

mod breaker;
mod memory;
#[cfg(feature = "outworx-api")]
mod outworx_api;
#[cfg(feature = "redis")]
mod redis;

pub use breaker::BreakerOptions;
pub(crate) use breaker::Guarded;
pub use memory::MemoryStore;
#[cfg(feature = "outworx-api")]
pub use outworx_api::OutworxApiStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;

pub use crate::util::BoxFuture;

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

/// A reservation older than this that was never completed nor renewed is taken over (its
/// owner died). The pipeline renews its reservations every [`RENEW_EVERY`] while the handler
/// runs, so a slow handler keeps its key.
pub const STALE_RESERVATION: Duration = Duration::from_secs(30);

/// How often the pipeline renews a reservation while its handler runs.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The longest key a store is given; longer ones become `sha256:<hex digest>` ([`fit_key`]).
pub const MAX_KEY_LEN: usize = 512;

/// `key` if it is at most [`MAX_KEY_LEN`] bytes, else `sha256:` and the hex digest of it:
/// the same in every store, so a key's size is bounded and equal keys still meet.
///
/// ```
/// use outworx_hooks::store::{MAX_KEY_LEN, fit_key};
/// assert_eq!(fit_key("evt_1"), "evt_1");
/// let long = "k".repeat(MAX_KEY_LEN + 1);
/// assert!(fit_key(&long).starts_with("sha256:") && fit_key(&long).len() == 71);
/// ```
pub fn fit_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_LEN {
        return Cow::Borrowed(key);
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(key.as_bytes());
    Cow::Owned(format!("sha256:{}", hex::encode(digest)))
}

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

    /// Restarts the stale clock of a reservation `token` still holds, so a handler that runs
    /// longer than [`STALE_RESERVATION`] keeps its key. The pipeline calls it every
    /// [`RENEW_EVERY`] while the handler runs. The default does nothing: a store without it
    /// lets a retry take over a reservation older than its stale time.
    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (key, token);
        Box::pin(async { Ok(()) })
    }

    /// How often a running handler's reservation is renewed: well within the store's stale
    /// time (default [`RENEW_EVERY`], a third of [`STALE_RESERVATION`]).
    fn renew_every(&self) -> Duration {
        RENEW_EVERY
    }

    /// Whether other processes share this store (Redis, the Outworx API): then the service
    /// name in its keys matters, and [`crate::init`] warns when none was configured.
    fn is_shared(&self) -> bool {
        false
    }
}

/// The TTL stores are used with: the route's TTL clamped to 60 s ..= 7 days.
pub fn clamp_ttl(ttl: Duration) -> Duration {
    ttl.clamp(Duration::from_secs(60), Duration::from_secs(604_800))
}

/// A source of time, injectable so expiry and takeover are tested without waiting.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: for tests.
///
/// ```
/// use std::time::Duration;
/// use outworx_hooks::store::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(31));
/// assert_eq!(clock.now() - t0, Duration::from_secs(31));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: Instant,
    offset_ms: Arc<AtomicU64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock at the current instant.
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            offset_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// A reservation token: 128 random bits drawn once per process from the operating system,
/// then a counter, so tokens are unique and cannot be guessed from one another's process.
/// Without OS randomness there is no token: an error (the pipeline's fail-open or fail-closed
/// rule applies), never a guessable fallback.
pub(crate) fn new_token() -> Result<ReservationToken, StoreError> {
    static PREFIX: OnceLock<Option<String>> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX
        .get_or_init(|| {
            let mut seed = [0u8; 16];
            getrandom::fill(&mut seed).ok()?;
            Some(format!("{}-", hex::encode(seed)))
        })
        .as_deref()
        .ok_or_else(|| StoreError("no randomness from the operating system for a token".into()))?;
    // Built without a formatter: it runs for every new delivery.
    let mut token = String::with_capacity(prefix.len() + 16);
    token.push_str(prefix);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        let d = ((n >> (i * 4)) & 0xf) as u8;
        token.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
    }
    Ok(ReservationToken(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_carry_random_bits() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        let (prefix, _) = a.0.split_once('-').unwrap();
        assert_eq!(prefix.len(), 32, "128 random bits, hex");
        assert!(b.0.starts_with(prefix), "one draw per process");
    }

    #[test]
    fn long_keys_become_a_digest_of_themselves() {
        let long = "x".repeat(MAX_KEY_LEN + 1);
        let other = format!("{}y", "x".repeat(MAX_KEY_LEN));
        assert_eq!(fit_key(&long), fit_key(&long));
        assert_ne!(fit_key(&long), fit_key(&other));
        assert!(fit_key(&long).len() <= MAX_KEY_LEN);
        assert_eq!(fit_key(&"x".repeat(MAX_KEY_LEN)).len(), MAX_KEY_LEN);
    }
}
