//! The guard around a networked idempotency store: every call is bounded by a timeout, and a
//! circuit breaker stops calling a store that keeps failing.
//!
//! A store that is down costs each delivery its timeout; one that is black-holed would cost
//! it forever without one. After [`BreakerOptions::failures`] failures in a row the breaker
//! **opens**: calls fail at once, without touching the store, so a delivery pays nothing for
//! the outage (fail-open: it runs without deduplication; fail-closed: it is answered 503 at
//! once). After [`BreakerOptions::cooldown`] one call is let through as a probe: success
//! closes the breaker, failure keeps it open for twice as long (at most
//! [`BreakerOptions::max_cooldown`]). It closes by itself when the store is back. Each
//! opening and closing is one log line and a metric (`webhook_store_breaker_open`,
//! `webhook_store_calls_total{result}`), never one per delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{
    BoxFuture, CachedResponse, Clock, Reservation, ReservationToken, Store, StoreError, SystemClock,
};

/// How a networked store is guarded (see [`Config::store_breaker`](crate::Config::store_breaker)).
///
/// ```
/// use std::time::Duration;
/// use outworx_hooks::store::BreakerOptions;
///
/// let options = BreakerOptions::default()
///     .timeout(Duration::from_millis(500))
///     .failures(3)
///     .cooldown(Duration::from_secs(2));
/// assert_eq!(options.failures, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerOptions {
    /// The longest one store call may take; past it, it is a failure (default 2 s).
    pub timeout: Duration,
    /// Failures in a row that open the breaker (default 5; 0 never opens it).
    pub failures: u32,
    /// How long it stays open before a probe (default 1 s).
    pub cooldown: Duration,
    /// The longest it stays open after failed probes, doubling from `cooldown` (default 10 s: a store that is back is used again within about 10 s).
    pub max_cooldown: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            timeout: Duration::from_secs(2),
            failures: 5,
            cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(10),
        }
    }
}

impl BreakerOptions {
    /// The longest one store call may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Failures in a row that open the breaker (0: never).
    pub fn failures(mut self, n: u32) -> Self {
        self.failures = n;
        self
    }
    /// How long it stays open before the first probe.
    pub fn cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }
    /// The longest it stays open between probes.
    pub fn max_cooldown(mut self, d: Duration) -> Self {
        self.max_cooldown = d;
        self
    }
}

/// What the breaker lets a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Closed: call the store.
    Call,
    /// Open, its cooldown over: this call is the one probe.
    Probe,
    /// Open: fail at once.
    Skip,
}

/// The breaker's state, in atomics: a delivery reads one on the healthy path.
pub(crate) struct Breaker {
    options: BreakerOptions,
    clock: Arc<dyn Clock>,
    epoch: Instant,
    /// Failures in a row while closed.
    failures: AtomicU32,
    /// While open: when the next probe may go, in ms since `epoch` plus one (0: closed).
    open_until: AtomicU64,
    /// The current cooldown, in ms.
    cooldown_ms: AtomicU64,
    /// A probe is in flight.
    probing: AtomicBool,
    /// Calls skipped since it opened (for the closing line).
    skipped: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(options: BreakerOptions, clock: Arc<dyn Clock>) -> Self {
        Breaker {
            options,
            epoch: clock.now(),
            clock,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            cooldown_ms: AtomicU64::new(ms(options.cooldown)),
            probing: AtomicBool::new(false),
            skipped: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        ms(self.clock.now().saturating_duration_since(self.epoch))
    }

    /// Whether the breaker is open now.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    fn admit(&self) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Call;
        }
        if self.now_ms() + 1 >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Admit::Probe;
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        Admit::Skip
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            self.cooldown_ms
                .store(ms(self.options.cooldown), Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
            let skipped = self.skipped.swap(0, Ordering::Relaxed);
            tracing::info!(
                skipped,
                "the idempotency store answers again; the circuit breaker closed"
            );
            gauge(false);
        }
    }

    fn failed(&self, probe: bool, error: &StoreError) {
        if probe {
            self.probe_failed(error);
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.options.failures == 0 || n < self.options.failures {
            return;
        }
        let cooldown = self.cooldown_ms.load(Ordering::Relaxed);
        let opened = self
            .open_until
            .compare_exchange(
                0,
                self.now_ms() + cooldown + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if opened {
            tracing::warn!(
                failures = n,
                %error,
                cooldown_ms = cooldown,
                "the idempotency store keeps failing; the circuit breaker opened: deliveries \
                 skip it until a probe succeeds"
            );
            gauge(true);
        }
    }
}

impl Breaker {
    /// A probe failed, or ended without an answer (its caller went away): open for twice as
    /// long, and let the next probe through after that.
    fn probe_failed(&self, why: &dyn std::fmt::Display) {
        let floor = ms(self.options.cooldown).max(1);
        let cooldown = self
            .cooldown_ms
            .load(Ordering::Relaxed)
            .saturating_mul(2)
            .min(ms(self.options.max_cooldown).max(floor));
        self.cooldown_ms.store(cooldown, Ordering::Relaxed);
        let until = self.now_ms() + cooldown + 1;
        let current = self.open_until.load(Ordering::Acquire);
        // Closed meanwhile by a call let in before it opened: this is an ordinary failure of
        // a closed breaker, counted as such.
        let reopened = current != 0
            && self
                .open_until
                .compare_exchange(current, until, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        self.probing.store(false, Ordering::Release);
        if reopened {
            tracing::debug!(%why, cooldown_ms = cooldown, "the idempotency store's probe failed");
        } else {
            self.failed(false, &StoreError(why.to_string()));
        }
    }
}

/// Ends a probe that was dropped before it answered (a cancelled request, a finished
/// handler's renewal) as a failed one, so the breaker is never left waiting on it.
struct Probing<'a> {
    breaker: Option<&'a Breaker>,
}

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.breaker {
            b.probe_failed(&"the probe was cancelled");
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

fn gauge(open: bool) {
    crate::metrics::breaker_open(open);
}

fn count(result: &'static str) {
    crate::metrics::store_call(result);
}

/// A store behind a timeout and a [`Breaker`]: what [`crate::init`] installs around a
/// configured store.
pub(crate) struct Guarded {
    inner: Arc<dyn Store>,
    breaker: Breaker,
}

impl Guarded {
    pub(crate) fn new(inner: Arc<dyn Store>, options: BreakerOptions) -> Self {
        Self::with_clock(inner, options, Arc::new(SystemClock))
    }

    pub(crate) fn with_clock(
        inner: Arc<dyn Store>,
        options: BreakerOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Guarded {
            inner,
            breaker: Breaker::new(options, clock),
        }
    }

    /// Runs `f()`'s call unless the breaker is open; the call is not even made then.
    async fn call<T, F: Future<Output = Result<T, StoreError>>>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> F,
    ) -> Result<T, StoreError> {
        let admit = self.breaker.admit();
        if admit == Admit::Skip {
            count("skipped");
            return Err(StoreError(format!(
                "{what} skipped: the store failed {} times in a row and its circuit breaker is open",
                self.breaker.options.failures
            )));
        }
        let probe = admit == Admit::Probe;
        let mut probing = Probing {
            breaker: probe.then_some(&self.breaker),
        };
        let result = match tokio::time::timeout(self.breaker.options.timeout, f()).await {
            Ok(r) => r,
            Err(_) => Err(StoreError(format!(
                "{what} timed out after {} ms",
                self.breaker.options.timeout.as_millis()
            ))),
        };
        // Answered: the probe's outcome is recorded below, not by the guard.
        probing.breaker = None;
        match &result {
            Ok(_) => {
                count("ok");
                self.breaker.succeeded();
            }
            Err(e) => {
                count("error");
                self.breaker.failed(probe, e);
            }
        }
        result
    }
}

impl Store for Guarded {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(self.call("reserve", move || self.inner.reserve(key, ttl)))
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
        response: CachedResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.call("complete", move || {
            self.inner.complete(key, token, response, ttl)
        }))
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.call("release", move || self.inner.release(key, token)))
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.call("renew", move || self.inner.renew(key, token)))
    }

    fn renew_every(&self) -> Duration {
        self.inner.renew_every()
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A store whose every call fails, hangs or succeeds as told, counting calls.
    struct Flaky {
        mode: AtomicUsize, // 0 ok, 1 error, 2 hang
        calls: AtomicUsize,
    }

    impl Store for Flaky {
        fn reserve<'a>(
            &'a self,
            _key: &'a str,
            _ttl: Duration,
        ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mode = self.mode.load(Ordering::SeqCst);
            Box::pin(async move {
                match mode {
                    0 => Ok(Reservation::InFlight),
                    1 => Err(StoreError("connection refused".into())),
                    _ => std::future::pending().await,
                }
            })
        }
        fn complete<'a>(
            &'a self,
            _: &'a str,
            _: &'a ReservationToken,
            _: CachedResponse,
            _: Duration,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn release<'a>(
            &'a self,
            _: &'a str,
            _: &'a ReservationToken,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_skips_then_probes_and_closes() {
        let clock = crate::store::ManualClock::new();
        let flaky = Arc::new(Flaky {
            mode: AtomicUsize::new(2),
            calls: AtomicUsize::new(0),
        });
        let options = BreakerOptions::default()
            .timeout(Duration::from_millis(100))
            .failures(3)
            .cooldown(Duration::from_secs(1));
        let store = Guarded::with_clock(flaky.clone(), options, Arc::new(clock.clone()));
        let ttl = Duration::from_secs(60);
        // A black hole costs each call its timeout, until the third failure opens it.
        for i in 1..=3 {
            let e = store.reserve("k", ttl).await.unwrap_err();
            assert!(e.0.contains("timed out after 100 ms"), "{e}");
            assert_eq!(store.breaker.is_open(), i == 3);
        }
        // Open: calls fail at once, without reaching the store.
        let before = flaky.calls.load(Ordering::SeqCst);
        for _ in 0..100 {
            let e = store.reserve("k", ttl).await.unwrap_err();
            assert!(e.0.contains("circuit breaker is open"), "{e}");
        }
        assert_eq!(flaky.calls.load(Ordering::SeqCst), before);
        // After the cooldown one probe goes; it fails: open twice as long.
        flaky.mode.store(1, Ordering::SeqCst);
        clock.advance(Duration::from_millis(999));
        assert!(
            store
                .reserve("k", ttl)
                .await
                .unwrap_err()
                .0
                .contains("open")
        );
        clock.advance(Duration::from_millis(2));
        assert!(store.reserve("k", ttl).await.is_err());
        assert_eq!(flaky.calls.load(Ordering::SeqCst), before + 1);
        assert!(
            store
                .reserve("k", ttl)
                .await
                .unwrap_err()
                .0
                .contains("open")
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), before + 1);
        // The store is back: the next probe (after 2 s) closes it.
        flaky.mode.store(0, Ordering::SeqCst);
        clock.advance(Duration::from_millis(1990));
        assert!(
            store
                .reserve("k", ttl)
                .await
                .unwrap_err()
                .0
                .contains("open")
        );
        clock.advance(Duration::from_millis(20));
        assert_eq!(store.reserve("k", ttl).await, Ok(Reservation::InFlight));
        assert!(!store.breaker.is_open());
        assert_eq!(store.reserve("k", ttl).await, Ok(Reservation::InFlight));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_does_not_wedge_the_breaker() {
        let clock = crate::store::ManualClock::new();
        let flaky = Arc::new(Flaky {
            mode: AtomicUsize::new(1),
            calls: AtomicUsize::new(0),
        });
        let options = BreakerOptions::default()
            .failures(1)
            .cooldown(Duration::from_secs(1));
        let store = Guarded::with_clock(flaky.clone(), options, Arc::new(clock.clone()));
        let ttl = Duration::from_secs(60);
        assert!(store.reserve("k", ttl).await.is_err());
        // The probe hangs, and its caller goes away.
        flaky.mode.store(2, Ordering::SeqCst);
        clock.advance(Duration::from_millis(1001));
        let probe = store.reserve("k", ttl);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), probe)
                .await
                .is_err()
        );
        // The next probe goes after the (doubled) cooldown, and closes it.
        flaky.mode.store(0, Ordering::SeqCst);
        assert!(
            store
                .reserve("k", ttl)
                .await
                .unwrap_err()
                .0
                .contains("open")
        );
        clock.advance(Duration::from_millis(2001));
        assert_eq!(store.reserve("k", ttl).await, Ok(Reservation::InFlight));
        assert!(!store.breaker.is_open());
    }

    #[tokio::test]
    async fn a_success_resets_the_count_and_zero_never_opens() {
        let flaky = Arc::new(Flaky {
            mode: AtomicUsize::new(1),
            calls: AtomicUsize::new(0),
        });
        let store = Guarded::new(flaky.clone(), BreakerOptions::default().failures(2));
        let ttl = Duration::from_secs(60);
        assert!(store.reserve("k", ttl).await.is_err());
        flaky.mode.store(0, Ordering::SeqCst);
        assert!(store.reserve("k", ttl).await.is_ok());
        flaky.mode.store(1, Ordering::SeqCst);
        assert!(store.reserve("k", ttl).await.is_err());
        assert!(!store.breaker.is_open(), "one failure since the success");
        let never = Guarded::new(flaky, BreakerOptions::default().failures(0));
        for _ in 0..20 {
            assert!(never.reserve("k", ttl).await.is_err());
        }
        assert!(!never.breaker.is_open());
    }
}
