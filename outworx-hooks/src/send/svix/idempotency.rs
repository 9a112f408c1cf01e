//! Svix's `idempotency-key`: the first 2xx answer to a POST with a key is replayed, for 12
//! hours, to every repeat with the same token, key and URL; a repeat arriving while the
//! first runs waits for it (up to 5 s).
//!
//! Bounded per namespace (a tenant flooding keys pushes out only its own answers) and in
//! all, in entries and bytes. A request that never finishes (its client gone, a timeout)
//! releases its key when it is dropped; a key whose request has run for longer than
//! [`RUNNING_TTL`] is taken over by the next repeat, as Svix's lock expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashlink::LinkedHashMap;
use http::StatusCode;
use tokio::sync::Notify;

/// How long a 2xx answer is replayed (as Svix: 12 h).
pub(crate) const TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a running request holds its key before a repeat may take it over (as Svix).
pub(crate) const RUNNING_TTL: Duration = Duration::from_secs(5);
/// Most answers and bytes one namespace keeps.
const NAMESPACE_ENTRIES: usize = 2_000;
const NAMESPACE_BYTES: usize = 8 << 20;
/// Most bytes all namespaces keep together: past it, the namespace keeping the most gives
/// up its oldest.
const TOTAL_BYTES: usize = 64 << 20;
/// The largest answer kept (a larger one is answered, not kept).
pub(crate) const MAX_ANSWER: usize = 1 << 20;

pub(crate) type Key = [u8; 32];

enum Entry {
    Running {
        since: Instant,
        done: Arc<Notify>,
    },
    Done {
        at: Instant,
        status: StatusCode,
        body: Bytes,
    },
}

#[derive(Default)]
struct Space {
    entries: LinkedHashMap<Key, Entry>,
    bytes: usize,
}

impl Space {
    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        if let Entry::Done { body, .. } = &e {
            self.bytes -= body.len();
        }
        Some(e)
    }

    fn pop_oldest(&mut self) -> Option<usize> {
        let (_, e) = self.entries.pop_front()?;
        Some(match e {
            Entry::Done { body, .. } => {
                self.bytes -= body.len();
                body.len()
            }
            Entry::Running { .. } => 0,
        })
    }

    /// Drops the answers past their time (they are in insertion order, so only the front
    /// is looked at; a running entry there is skipped over, not a stop).
    fn expire(&mut self, now: Instant) {
        let expired: Vec<Key> = self
            .entries
            .iter()
            .take_while(|(_, e)| match e {
                Entry::Done { at, .. } => now.duration_since(*at) >= TTL,
                Entry::Running { since, .. } => now.duration_since(*since) >= RUNNING_TTL,
            })
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            self.remove(&k);
        }
    }
}

/// The cache of every namespace.
#[derive(Default)]
pub(crate) struct Idempotency {
    spaces: Mutex<HashMap<String, Space>>,
    total: Mutex<usize>,
}

/// What a request with a key does.
pub(crate) enum Begin {
    /// Replay this answer.
    Replay(StatusCode, Bytes),
    /// Wait for the request running with the key, then ask again.
    Wait(Arc<Notify>),
    /// Run it; the guard keeps the key until it is filled or dropped.
    Run(Guard),
}

/// A running request's hold on its key: [`Guard::finish`] keeps its answer; dropped
/// unfinished, it releases the key (only its own entry, never a later one's).
pub(crate) struct Guard {
    cache: Arc<Idempotency>,
    namespace: String,
    key: Key,
    done: Arc<Notify>,
    finished: bool,
}

impl Idempotency {
    pub(crate) fn begin(self: &Arc<Self>, namespace: &str, key: Key) -> Begin {
        let now = Instant::now();
        let Ok(mut spaces) = self.spaces.lock() else {
            // A poisoned lock: run without idempotency rather than refuse everything.
            return Begin::Run(self.guard(namespace, key, Arc::new(Notify::new())));
        };
        let space = spaces.entry(namespace.to_owned()).or_default();
        space.expire(now);
        match space.entries.get(&key) {
            Some(Entry::Done { status, body, .. }) => Begin::Replay(*status, body.clone()),
            Some(Entry::Running { since, done }) if now.duration_since(*since) < RUNNING_TTL => {
                Begin::Wait(Arc::clone(done))
            }
            _ => {
                // New, or a running one past its time: this request takes the key over.
                let freed = match space.remove(&key) {
                    Some(Entry::Done { body, .. }) => body.len(),
                    _ => 0,
                };
                let done = Arc::new(Notify::new());
                space.entries.insert(
                    key,
                    Entry::Running {
                        since: now,
                        done: Arc::clone(&done),
                    },
                );
                while space.entries.len() > NAMESPACE_ENTRIES {
                    let n = space.pop_oldest().unwrap_or(0);
                    self.sub(n);
                }
                drop(spaces);
                self.sub(freed);
                Begin::Run(self.guard(namespace, key, done))
            }
        }
    }

    fn guard(self: &Arc<Self>, namespace: &str, key: Key, done: Arc<Notify>) -> Guard {
        Guard {
            cache: Arc::clone(self),
            namespace: namespace.to_owned(),
            key,
            done,
            finished: false,
        }
    }

    fn sub(&self, n: usize) {
        if let Ok(mut t) = self.total.lock() {
            *t = t.saturating_sub(n);
        }
    }

    /// Bytes kept in all (for tests).
    #[cfg(test)]
    fn total(&self) -> usize {
        self.total.lock().map_or(0, |t| *t)
    }
}

impl Guard {
    /// Keeps a 2xx answer for its key (`None`: releases the key, keeping nothing).
    pub(crate) fn finish(mut self, answer: Option<(StatusCode, Bytes)>) {
        self.finished = true;
        self.settle(answer);
    }

    fn settle(&mut self, answer: Option<(StatusCode, Bytes)>) {
        let cache = Arc::clone(&self.cache);
        let Ok(mut spaces) = cache.spaces.lock() else {
            return;
        };
        let Some(space) = spaces.get_mut(&self.namespace) else {
            self.done.notify_waiters();
            return;
        };
        // Only this request's own entry: one taken over meanwhile is the other's.
        let own = matches!(
            space.entries.get(&self.key),
            Some(Entry::Running { done, .. }) if Arc::ptr_eq(done, &self.done)
        );
        if own {
            space.entries.remove(&self.key);
            if let Some((status, body)) = answer.filter(|(_, b)| b.len() <= MAX_ANSWER) {
                let n = body.len();
                space.bytes += n;
                space.entries.insert(
                    self.key,
                    Entry::Done {
                        at: Instant::now(),
                        status,
                        body,
                    },
                );
                let mut evicted = 0;
                while space.bytes > NAMESPACE_BYTES {
                    evicted += space.pop_oldest().unwrap_or(0);
                }
                if let Ok(mut total) = cache.total.lock() {
                    *total = (*total + n).saturating_sub(evicted);
                    // Past the shared budget: the namespace keeping the most gives up its
                    // oldest answers first.
                    while *total > TOTAL_BYTES {
                        let Some(biggest) = spaces
                            .values_mut()
                            .max_by_key(|s| s.bytes)
                            .filter(|s| s.bytes > 0)
                        else {
                            break;
                        };
                        let freed = biggest.pop_oldest().unwrap_or(0);
                        *total = total.saturating_sub(freed);
                    }
                }
            }
        }
        spaces.retain(|_, s| !s.entries.is_empty());
        self.done.notify_waiters();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.finished {
            self.settle(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn a_kept_answer_is_replayed_and_a_dropped_request_releases_its_key() {
        let cache = Arc::new(Idempotency::default());
        let Begin::Run(g) = cache.begin("a", key(1)) else {
            panic!("new key runs")
        };
        assert!(matches!(cache.begin("a", key(1)), Begin::Wait(_)));
        g.finish(Some((StatusCode::ACCEPTED, Bytes::from_static(b"{}"))));
        assert!(matches!(
            cache.begin("a", key(1)),
            Begin::Replay(StatusCode::ACCEPTED, _)
        ));
        // Another namespace's same key is its own.
        assert!(matches!(cache.begin("b", key(1)), Begin::Run(_)));
        // A request dropped unfinished (its client gone): the key is free again.
        let Begin::Run(g) = cache.begin("a", key(2)) else {
            panic!()
        };
        drop(g);
        assert!(matches!(cache.begin("a", key(2)), Begin::Run(_)));
        assert_eq!(cache.total(), 2);
    }

    #[test]
    fn a_taken_over_key_is_not_undone_by_the_first_request() {
        let cache = Arc::new(Idempotency::default());
        let Begin::Run(first) = cache.begin("a", key(1)) else {
            panic!()
        };
        // The first request's entry expires (simulated: removed), a repeat takes the key.
        cache
            .spaces
            .lock()
            .unwrap()
            .get_mut("a")
            .unwrap()
            .remove(&key(1));
        let Begin::Run(second) = cache.begin("a", key(1)) else {
            panic!()
        };
        first.finish(Some((StatusCode::OK, Bytes::from_static(b"first"))));
        assert!(
            matches!(cache.begin("a", key(1)), Begin::Wait(_)),
            "still the second's"
        );
        second.finish(Some((StatusCode::OK, Bytes::from_static(b"second"))));
        match cache.begin("a", key(1)) {
            Begin::Replay(_, b) => assert_eq!(&b[..], b"second"),
            _ => panic!("kept"),
        }
        assert_eq!(cache.total(), 6);
    }

    #[test]
    fn a_flooding_namespace_pushes_out_only_its_own_answers() {
        let cache = Arc::new(Idempotency::default());
        let Begin::Run(g) = cache.begin("quiet", key(0)) else {
            panic!()
        };
        g.finish(Some((StatusCode::OK, Bytes::from_static(b"{}"))));
        for i in 0..(NAMESPACE_ENTRIES + 100) {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            k[31] = 1;
            if let Begin::Run(g) = cache.begin("loud", k) {
                g.finish(Some((StatusCode::OK, Bytes::from(vec![b'x'; 4096]))));
            }
        }
        assert!(matches!(cache.begin("quiet", key(0)), Begin::Replay(..)));
        let spaces = cache.spaces.lock().unwrap();
        assert!(spaces["loud"].entries.len() <= NAMESPACE_ENTRIES);
        assert!(spaces["loud"].bytes <= NAMESPACE_BYTES);
    }
}
