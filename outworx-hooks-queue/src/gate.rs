//! SQLite has one writer. In one process, a [`WriteGate`] hands it out in order instead of
//! letting transactions collide in SQLite's busy handler (which sleeps 1 to 100 ms between
//! tries), and lets the writes a client is waiting for (a receipt, a send) go before a
//! worker's claims and settlements.
//!
//! A worker's write waits while urgent writes are queued or running, at most
//! [`WriteGate::YIELD`] each time, and then takes its turn in order: receipts go first under a
//! burst, and the worker still moves (one write per [`WriteGate::YIELD`] at the worst).
//! On PostgreSQL, which has many writers, the gate is open ([`WriteGate::open`]): writes are
//! not taken in turn, but a worker's still yields to urgent ones, so that a burst of receipts
//! gets the process's CPU and the database's attention first.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard, Notify};

/// The writer of one SQLite database in this process (see the module docs).
#[derive(Debug)]
pub struct WriteGate {
    /// `None`: open (PostgreSQL).
    lock: Option<Mutex<()>>,
    /// Urgent writers waiting or running.
    urgent: AtomicUsize,
    /// Signalled when the last urgent writer is done.
    calm: Notify,
    /// When the last urgent writer was done (ns since `born`).
    last_urgent: AtomicU64,
    born: tokio::time::Instant,
}

/// A turn at the writer; the next writer goes when it is dropped.
#[derive(Debug)]
#[must_use = "the turn ends when this is dropped"]
pub struct Turn<'a> {
    _held: Option<MutexGuard<'a, ()>>,
}

/// Marks urgent work pending (see [`WriteGate::urgent`]) until dropped.
#[derive(Debug)]
#[must_use = "the urgency ends when this is dropped"]
pub struct Urgency<'a> {
    gate: &'a WriteGate,
}

impl Drop for Urgency<'_> {
    fn drop(&mut self) {
        self.gate
            .last_urgent
            .store(self.gate.since_born(), Ordering::Release);
        if self.gate.urgent.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.gate.calm.notify_waiters();
        }
    }
}

impl WriteGate {
    /// The longest a worker's write yields to urgent ones before taking its turn.
    pub const YIELD: Duration = Duration::from_millis(50);

    /// How long urgent writes must have been over before a worker's write goes without
    /// waiting: under a burst, the next receipts arrive within it (their clients were just
    /// answered), and the worker does not slip in between.
    pub const CALM: Duration = Duration::from_millis(2);

    fn since_born(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A gate for one single-writer database.
    pub fn new() -> Self {
        WriteGate {
            lock: Some(Mutex::new(())),
            urgent: AtomicUsize::new(0),
            calm: Notify::new(),
            last_urgent: AtomicU64::new(0),
            born: tokio::time::Instant::now(),
        }
    }

    /// A gate for a database with many writers: urgent writes never wait; a worker's still
    /// yields to them.
    pub fn open() -> Self {
        WriteGate {
            lock: None,
            urgent: AtomicUsize::new(0),
            calm: Notify::new(),
            last_urgent: AtomicU64::new(0),
            born: tokio::time::Instant::now(),
        }
    }

    /// The gate a pool needs: ordered on SQLite, open on PostgreSQL.
    pub fn for_pool(pool: &crate::Pool) -> Self {
        match pool {
            crate::Pool::Sqlite(_) => WriteGate::new(),
            crate::Pool::Postgres(_) => WriteGate::open(),
        }
    }

    /// Says urgent writes are pending until the returned value is dropped: a batch of
    /// receipts holds it from the moment it is queued until it is committed, so a worker
    /// does not slip in between.
    pub fn urgent(&self) -> Urgency<'_> {
        self.urgent.fetch_add(1, Ordering::AcqRel);
        Urgency { gate: self }
    }

    /// A turn for an urgent write (hold an [`Urgency`] while waiting for it).
    pub async fn turn(&self) -> Turn<'_> {
        match &self.lock {
            Some(lock) => Turn {
                _held: Some(lock.lock().await),
            },
            None => Turn { _held: None },
        }
    }

    /// A turn for a worker's write: once no urgent write is pending or was, for
    /// [`Self::CALM`]; or after [`Self::YIELD`], whichever comes first.
    pub async fn background(&self) -> Turn<'_> {
        let until = tokio::time::Instant::now() + Self::YIELD;
        loop {
            let calm = self.calm.notified();
            tokio::pin!(calm);
            calm.as_mut().enable();
            if self.urgent.load(Ordering::Acquire) == 0 {
                let quiet = Duration::from_nanos(
                    self.since_born()
                        .saturating_sub(self.last_urgent.load(Ordering::Acquire)),
                );
                if quiet >= Self::CALM || self.last_urgent.load(Ordering::Acquire) == 0 {
                    break;
                }
                let wake = (tokio::time::Instant::now() + (Self::CALM - quiet)).min(until);
                tokio::time::sleep_until(wake).await;
                if tokio::time::Instant::now() >= until {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = calm => {}
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        match &self.lock {
            Some(lock) => Turn {
                _held: Some(lock.lock().await),
            },
            None => Turn { _held: None },
        }
    }
}

impl Default for WriteGate {
    fn default() -> Self {
        WriteGate::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A worker's write waits for the urgent ones pending, then goes.
    #[tokio::test(start_paused = true)]
    async fn a_background_turn_waits_for_urgent_work() {
        let gate = Arc::new(WriteGate::new());
        let urgent = gate.urgent();
        let g = Arc::clone(&gate);
        let worker = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let _t = g.background().await;
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(urgent);
        let waited = worker.await.unwrap();
        assert!(
            waited >= Duration::from_millis(10) && waited < WriteGate::YIELD,
            "{waited:?}"
        );
    }

    /// Under urgent work that never stops, a worker still gets a turn after the yield.
    #[tokio::test(start_paused = true)]
    async fn a_background_turn_is_not_starved() {
        let gate = WriteGate::new();
        let _urgent = gate.urgent();
        let started = tokio::time::Instant::now();
        let _t = gate.background().await;
        assert_eq!(started.elapsed(), WriteGate::YIELD);
    }

    /// An open gate holds nothing: urgent turns go at once, together; a worker's still
    /// yields to them.
    #[tokio::test(start_paused = true)]
    async fn an_open_gate_lets_urgent_writes_through_together() {
        let gate = WriteGate::open();
        let _a = gate.turn().await;
        let _b = gate.turn().await;
        let _c = gate.background().await; // no urgent work: at once
        let started = tokio::time::Instant::now();
        let _u = gate.urgent();
        let _d = gate.background().await;
        assert_eq!(started.elapsed(), WriteGate::YIELD);
    }
}
