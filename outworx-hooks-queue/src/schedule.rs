//! When a failed job is tried again.

use std::time::Duration;

/// When a failed item is tried again: one delay per retry, each moved by up to ± `jitter` of
/// itself at random so that a burst of failures does not retry as a burst.
///
/// The default is Svix's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (eight attempts in about
/// 27.6 hours), with ± 20 % jitter.
///
/// ```
/// use outworx_hooks_queue::RetrySchedule;
/// use std::time::Duration;
///
/// let s = RetrySchedule::default();
/// assert_eq!(s.attempts(), 8);
/// let first = s.delay_after(1).unwrap();
/// assert!(first >= Duration::from_secs(4) && first <= Duration::from_secs(6));
/// assert_eq!(s.delay_after(8), None); // the eighth failure is the last: dead
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        const M: u64 = 60;
        const H: u64 = 3600;
        RetrySchedule::new(
            [5, 5 * M, 30 * M, 2 * H, 5 * H, 10 * H, 10 * H].map(Duration::from_secs),
        )
    }
}

impl RetrySchedule {
    /// Retries after each of `delays` in turn (± 20 % jitter); after the last, the item is dead.
    pub fn new(delays: impl IntoIterator<Item = Duration>) -> Self {
        RetrySchedule {
            delays: delays.into_iter().collect(),
            jitter: 0.2,
        }
    }

    /// `attempts` tries in all (at most 100), the retries `base`, `2 × base`, `4 × base`, ...
    /// apart, each at most a day.
    pub fn exponential(attempts: u32, base: Duration) -> Self {
        const DAY: Duration = Duration::from_secs(86_400);
        let retries = attempts.saturating_sub(1).min(99);
        RetrySchedule::new((0..retries).map(|i| base.saturating_mul(1u32 << i.min(31)).min(DAY)))
    }

    /// The jitter, a fraction of each delay in `0.0..=1.0` (default 0.2).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// How many attempts in all: the first, and one per delay.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The delays before the jitter.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The wait after the `failures`-th failed attempt (1-based), jittered; `None` when that
    /// was the last attempt.
    pub fn delay_after(&self, failures: u32) -> Option<Duration> {
        let index = usize::try_from(failures.checked_sub(1)?).ok()?;
        let base = *self.delays.get(index)?;
        Some(jittered(base, self.jitter, random_unit()))
    }
}

/// `base` moved by `jitter × base × (2u − 1)` for `u` in `0..1`.
fn jittered(base: Duration, jitter: f64, u: f64) -> Duration {
    let factor = 1.0 + jitter * (2.0 * u - 1.0);
    base.mul_f64(factor.max(0.0))
}

/// A uniform number in `0..1`; 0.5 (no jitter) if the system has no randomness to give.
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_bounds() {
        let base = Duration::from_secs(300);
        assert_eq!(jittered(base, 0.2, 0.0), Duration::from_secs(240));
        assert_eq!(jittered(base, 0.2, 0.5), base);
        assert!(jittered(base, 0.2, 0.999_999) <= Duration::from_secs(360));
        let s = RetrySchedule::default();
        for _ in 0..1000 {
            let d = s.delay_after(2).unwrap();
            assert!(d >= Duration::from_secs(240) && d <= Duration::from_secs(360));
        }
    }

    #[test]
    fn the_default_is_svix_schedule() {
        let s = RetrySchedule::default().jitter(0.0);
        let secs: Vec<u64> = (1..8)
            .map(|n| s.delay_after(n).unwrap().as_secs())
            .collect();
        assert_eq!(secs, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(s.delay_after(8), None);
        assert_eq!(s.delay_after(0), None);
    }

    #[test]
    fn exponential_doubles() {
        let s = RetrySchedule::exponential(4, Duration::from_secs(5)).jitter(0.0);
        assert_eq!(s.attempts(), 4);
        let secs: Vec<u64> = s.delays().iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [5, 10, 20]);
        assert_eq!(
            RetrySchedule::exponential(1, Duration::from_secs(5)).attempts(),
            1
        );
    }
}
