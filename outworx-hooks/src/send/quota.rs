//! Per-owner quotas: how fast one tenant may send messages and call `POST
//! /endpoints/{id}/test`, each a token bucket per owner, kept in this process.
//!
//! Memory is bounded by construction: at most [`MAX_OWNERS`] buckets are kept. A bucket
//! that has refilled holds nothing worth keeping (a new one starts full), so when the map is
//! full those are dropped first; if none is, the oldest is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The most owners whose buckets are kept at once, per quota.
pub(crate) const MAX_OWNERS: usize = 65_536;

/// A rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size: how many may go at once after a pause.
    pub burst: u32,
}

impl Rate {
    /// `n` per second, with a burst of `n` (at least one).
    pub fn per_second(n: u32) -> Rate {
        Rate {
            per_second: f64::from(n.max(1)),
            burst: n.max(1),
        }
    }

    /// `n` per minute, with a burst of `n` (at least one).
    pub fn per_minute(n: u32) -> Rate {
        Rate {
            per_second: f64::from(n.max(1)) / 60.0,
            burst: n.max(1),
        }
    }

    /// Sets the burst.
    pub fn burst(mut self, n: u32) -> Rate {
        self.burst = n.max(1);
        self
    }
}

/// What each owner (tenant) may do, enforced by an [`Emitter`](super::Emitter) in its process
/// (each instance enforces its own: N instances allow up to N times the rate). A refusal is
/// [`SendError::RateLimited`](super::SendError::RateLimited), answered 429 with
/// `Retry-After` by the management router. `#[emit]` counts its messages but never refuses
/// one: its handler has run by then, and a 429 would have the client run it again. The endpoints an owner may have
/// are capped in the database instead ([`limits::MAX_ENDPOINTS_PER_OWNER`](super::limits::MAX_ENDPOINTS_PER_OWNER)).
///
/// ```
/// use outworx_hooks::send::{Quotas, Rate};
///
/// let quotas = Quotas::default().messages(Rate::per_second(100).burst(500));
/// assert_eq!(quotas.test_calls, Some(Rate::per_minute(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Quotas {
    /// Messages one owner may send (`send`, `#[emit]`, `send_in`, tests); default `None`:
    /// the application's own sends are not limited.
    pub messages: Option<Rate>,
    /// `POST /endpoints/{id}/test` calls one owner may make; default 10 a minute.
    pub test_calls: Option<Rate>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            messages: None,
            test_calls: Some(Rate::per_minute(10)),
        }
    }
}

impl Quotas {
    /// No quota at all.
    pub fn none() -> Quotas {
        Quotas {
            messages: None,
            test_calls: None,
        }
    }

    /// Limits the messages one owner sends.
    pub fn messages(mut self, rate: impl Into<Option<Rate>>) -> Quotas {
        self.messages = rate.into();
        self
    }

    /// Limits one owner's test calls.
    pub fn test_calls(mut self, rate: impl Into<Option<Rate>>) -> Quotas {
        self.test_calls = rate.into();
        self
    }
}

/// One owner's bucket: tokens left at `at` (ms on the emitter's clock).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
}

/// The buckets of one quota.
#[derive(Debug)]
pub(crate) struct Buckets {
    rate: Rate,
    owners: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    pub(crate) fn new(rate: Rate) -> Buckets {
        Buckets {
            rate,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens of `owner`'s bucket at `now` (ms), or says how long until there are
    /// enough (`n` is at most the burst: a larger request waits for a full bucket).
    pub(crate) fn take(&self, owner: &str, n: u32, now: i64) -> Result<(), Duration> {
        let rate = self.rate;
        let burst = f64::from(rate.burst.max(1));
        let want = f64::from(n.clamp(1, rate.burst.max(1)));
        let refill = |b: Bucket| -> f64 {
            let secs = (now.saturating_sub(b.at)).max(0) as f64 / 1000.0;
            (b.tokens + secs * rate.per_second).min(burst)
        };
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        if !owners.contains_key(owner) && owners.len() >= MAX_OWNERS {
            // Full buckets first (they hold nothing); then the least recently used eighth,
            // so that this pass, linear in the map, comes once per thousands of new owners.
            owners.retain(|_, b| refill(*b) < burst);
            if owners.len() >= MAX_OWNERS {
                let mut times: Vec<i64> = owners.values().map(|b| b.at).collect();
                let nth = times.len() / 8;
                let (_, cut, _) = times.select_nth_unstable(nth);
                let cut = *cut;
                owners.retain(|_, b| b.at > cut);
            }
        }
        let bucket = owners.entry(owner.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = refill(*bucket);
        if tokens >= want {
            *bucket = Bucket {
                tokens: tokens - want,
                at: now,
            };
            return Ok(());
        }
        *bucket = Bucket { tokens, at: now };
        let secs = (want - tokens) / rate.per_second.max(f64::MIN_POSITIVE);
        // In whole seconds, rounded up: a client that waits what `Retry-After` says is let in.
        Err(Duration::from_secs(
            secs.min(86_400.0).ceil().max(1.0) as u64
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_and_tells_how_long_to_wait() {
        let b = Buckets::new(Rate::per_minute(2));
        assert!(b.take("acme", 1, 0).is_ok());
        assert!(b.take("acme", 1, 0).is_ok());
        let wait = b.take("acme", 1, 0).unwrap_err();
        assert_eq!(wait.as_secs(), 30, "one token every 30 s");
        assert!(
            b.take("other", 1, 0).is_ok(),
            "owners have buckets of their own"
        );
        assert!(b.take("acme", 1, 29_000).is_err());
        assert!(b.take("acme", 1, 30_000).is_ok());
    }

    #[test]
    fn the_map_of_owners_is_bounded() {
        let b = Buckets::new(Rate::per_second(1));
        for i in 0..(MAX_OWNERS + 10) {
            let _ = b.take(&format!("o{i}"), 1, 0);
        }
        assert!(b.owners.lock().unwrap().len() <= MAX_OWNERS);
        // An owner that spent its bucket just now is kept over the full ones.
        let _ = b.take("spent", 1, 5_000);
        assert!(b.take("spent", 1, 5_000).is_err());
    }
}
