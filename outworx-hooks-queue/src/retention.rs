//! How long finished jobs are kept, and the purge that deletes them: a batch per short
//! transaction, taken as a background turn at the writer (after the receipts and sends a
//! client waits for), with a pause between batches, so that a large backlog of old rows is
//! deleted over many short locks, never one long one.

use std::time::Duration;

/// How long a queue keeps its finished jobs, and how its purge runs.
///
/// The defaults keep what succeeded (delivered, done) 30 days and what died 90 days, and
/// delete at most 100 rows per transaction, once a minute.
///
/// ```
/// use std::time::Duration;
/// use outworx_hooks_queue::Retention;
///
/// let keep = Retention::default().done(Duration::from_secs(7 * 86_400)).dead(None);
/// assert_eq!(keep.done, Some(Duration::from_secs(7 * 86_400)));
/// assert_eq!(keep.dead, None); // dead jobs are kept until deleted by hand
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// How long a job that succeeded is kept after it finished; `None`: forever.
    pub done: Option<Duration>,
    /// How long a dead job is kept after it died; `None`: forever.
    pub dead: Option<Duration>,
    /// Most rows (jobs; on the outbox, messages with their deliveries and attempts) deleted
    /// per transaction (1 to 10,000).
    pub batch: u32,
    /// How often a worker purges.
    pub every: Duration,
    /// The pause between two batches of one purge, which lets other writers in.
    pub pause: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            done: Some(Duration::from_secs(30 * 86_400)),
            dead: Some(Duration::from_secs(90 * 86_400)),
            batch: 100,
            every: Duration::from_secs(60),
            pause: Duration::from_millis(20),
        }
    }
}

impl Retention {
    /// Keeps everything (the purge deletes nothing).
    pub fn forever() -> Self {
        Retention {
            done: None,
            dead: None,
            ..Retention::default()
        }
    }

    /// The same cut-off for jobs that succeeded and jobs that died.
    pub fn older_than(age: Duration) -> Self {
        Retention {
            done: Some(age),
            dead: Some(age),
            ..Retention::default()
        }
    }

    /// How long a job that succeeded is kept.
    pub fn done(mut self, keep: impl Into<Option<Duration>>) -> Self {
        self.done = keep.into();
        self
    }

    /// How long a dead job is kept.
    pub fn dead(mut self, keep: impl Into<Option<Duration>>) -> Self {
        self.dead = keep.into();
        self
    }

    /// Most rows per transaction.
    pub fn batch(mut self, n: u32) -> Self {
        self.batch = n;
        self
    }

    /// How often a worker purges.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// The batch size in range.
    pub fn batch_size(&self) -> u32 {
        self.batch.clamp(1, 10_000)
    }

    /// Runs `batch` (one purge batch) until it says there is no more, with
    /// [`Retention::pause`] between two; returns the rows deleted. What a runner's
    /// [`purge`](crate::Runner::purge) and a queue's own one-off purge both do.
    pub async fn purge_all<E, Fut>(&self, mut batch: impl FnMut() -> Fut) -> Result<u64, E>
    where
        Fut: std::future::Future<Output = Result<Purged, E>>,
    {
        let mut total = 0;
        loop {
            let done = batch().await?;
            total += done.rows;
            if !done.more {
                return Ok(total);
            }
            tokio::time::sleep(self.pause).await;
        }
    }

    /// The times before which finished jobs are deleted, at `now_ms`.
    pub fn cutoffs(&self, now_ms: i64) -> Cutoffs {
        let before = |keep: Option<Duration>| {
            keep.map(|d| now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        };
        Cutoffs {
            done_before: before(self.done),
            dead_before: before(self.dead),
        }
    }
}

/// The times (ms since 1970) before which finished jobs are deleted; `None`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Jobs that succeeded and finished before this.
    pub done_before: Option<i64>,
    /// Jobs that died before this.
    pub dead_before: Option<i64>,
}

impl Cutoffs {
    /// Nothing is ever deleted.
    pub fn none(&self) -> bool {
        self.done_before.is_none() && self.dead_before.is_none()
    }

    /// The later of the two: every row a purge may delete finished before it.
    pub fn latest(&self) -> Option<i64> {
        match (self.done_before, self.dead_before) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// [`Cutoffs::done_before`] as a bound a query can compare with (`i64::MIN`: nothing is
    /// before it).
    pub fn done_bound(&self) -> i64 {
        self.done_before.unwrap_or(i64::MIN)
    }

    /// [`Cutoffs::dead_before`] as a bound a query can compare with.
    pub fn dead_bound(&self) -> i64 {
        self.dead_before.unwrap_or(i64::MIN)
    }
}

/// What one purge batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Rows deleted (jobs; on the outbox, messages).
    pub rows: u64,
    /// The batch was full: more may be due, run another.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_follow_each_retention() {
        let day = 86_400_000;
        let c = Retention::default().cutoffs(100 * day);
        assert_eq!(c.done_before, Some(70 * day));
        assert_eq!(c.dead_before, Some(10 * day));
        assert_eq!(c.latest(), Some(70 * day));
        let c = Retention::default().done(None).cutoffs(100 * day);
        assert_eq!((c.done_bound(), c.latest()), (i64::MIN, Some(10 * day)));
        assert!(Retention::forever().cutoffs(5).none());
        // A retention longer than time itself deletes nothing, and does not overflow.
        let c = Retention::older_than(Duration::MAX).cutoffs(5);
        assert_eq!(c.done_before, Some(5 - i64::MAX));
        assert_eq!(Retention::default().batch(0).batch_size(), 1);
    }
}
