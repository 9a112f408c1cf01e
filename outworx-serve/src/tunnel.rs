//! The forward relay: sessions, their queues of held public requests, and the answers.
//!
//! A public request to `/t/{slug}/...` is queued on its session and held until the CLI that
//! polls the session reports the local server's response (or the hold times out: 504).
//! Sessions and held requests live in this process's memory: a tunnel is served by the
//! `outworx serve` instance that created it.
//!
//! The ingress needs no key, so everything it can make the server hold is bounded in bytes,
//! not only in counts: a request is admitted (its slug looked up, its bytes reserved against
//! its session's and the server's budgets) **before** its body is read, the body is read
//! against that reservation and kept once, as `Bytes`, and its bytes are given back when the
//! CLI takes it, when its caller goes away (a drop guard, whatever ends the wait), or when
//! its session closes or expires. Encoding for the CLI happens at poll time, outside the lock.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use crate::db::now_ms;

pub use outworx_hooks::wire::{HeldRequest, LocalResponse};

/// A public request as received, before it is queued.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// HTTP method.
    pub method: String,
    /// Raw path below the ingress.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// Headers in order, repeated ones repeated (values lossily as text).
    pub headers: Vec<(String, String)>,
    /// The body, kept once.
    pub body: Bytes,
}

impl Incoming {
    /// About how many bytes the request takes in a poll answer: its body as JSON text (with
    /// its escapes) and, when it is not UTF-8, as base64 too; its headers twice (the map and
    /// the list).
    fn wire_cost(&self) -> usize {
        let body = match std::str::from_utf8(&self.body) {
            Ok(text) => json_len(text),
            // The lossy text (each invalid byte a 3-byte U+FFFD), counted without making it,
            // and the base64 beside it.
            Err(_) => {
                let text: usize = self
                    .body
                    .utf8_chunks()
                    .map(|c| json_len(c.valid()) - 2 + 3 * c.invalid().len())
                    .sum();
                2 + text + self.body.len().div_ceil(3) * 4
            }
        };
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| 2 * (json_len(k) + json_len(v)) + 8)
            .sum();
        OVERHEAD + body + headers + json_len(&self.path) + self.query.as_deref().map_or(0, json_len)
    }

    /// What the request is charged against the budgets: its body, its headers, and a fixed
    /// overhead for the bookkeeping.
    fn charge(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 32)
            .sum();
        OVERHEAD
            + self.body.len()
            + headers
            + self.path.len()
            + self.query.as_ref().map_or(0, String::len)
    }
}

/// Bytes charged to every held request beyond its body and headers.
const OVERHEAD: usize = 512;

/// The length of `s` as a JSON string, quotes and escapes included.
fn json_len(s: &str) -> usize {
    2 + s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

/// A project at its session cap may replace one of its sessions whose CLI has not polled for
/// this long (a CLI that crashed or was killed never closes its session).
const IDLE_SESSION_MS: i64 = 120_000;

/// The relay's bounds.
#[derive(Debug, Clone)]
pub struct TunnelLimits {
    /// Bytes held for all sessions together: requests being read or queued (default 64 MiB).
    pub max_pending_bytes: usize,
    /// Bytes held for one session (default 16 MiB).
    pub max_session_bytes: usize,
    /// Requests queued on one session (default 1,000).
    pub max_queue: usize,
    /// Open sessions per project (default 10).
    pub max_sessions_per_project: usize,
    /// Bytes of held requests handed out by one poll, counted as they are sent (escaped,
    /// and base64 for bodies that are not UTF-8); at least one request always goes
    /// (default 8 MiB).
    pub max_poll_bytes: usize,
}

impl Default for TunnelLimits {
    fn default() -> Self {
        TunnelLimits {
            max_pending_bytes: 64 << 20,
            max_session_bytes: 16 << 20,
            max_queue: 1000,
            max_sessions_per_project: 10,
            max_poll_bytes: 8 << 20,
        }
    }
}

/// A held request in its queue.
#[derive(Debug)]
struct Held {
    id: String,
    incoming: Incoming,
    charge: usize,
    wire: usize,
}

/// A tunnel session.
#[derive(Debug)]
struct Session {
    id: String,
    slug: String,
    project: String,
    expires_at: i64,
    /// When its CLI last polled (or the session was opened).
    last_poll: i64,
    queue: VecDeque<Held>,
    /// Bytes charged to this session: bodies being read and requests queued.
    pending: usize,
    /// Requests of this session whose callers wait for an answer (queued or polled).
    waiting: HashSet<String>,
    notify: Arc<Notify>,
}

/// Someone waiting for the answer to a held request.
#[derive(Debug)]
struct Waiter {
    tx: oneshot::Sender<LocalResponse>,
    session: String,
    project: String,
}

/// What [`Tunnels::create`] returns.
#[derive(Debug, Clone)]
pub struct Created {
    /// Session id (for poll and delete).
    pub id: String,
    /// The public path prefix's slug.
    pub slug: String,
    /// Milliseconds since 1970 when the session expires.
    pub expires_at: i64,
}

/// Errors of the relay.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TunnelError {
    /// No such (live) session for this project.
    #[error("no such tunnel session (it expired or was closed)")]
    NoSession,
    /// The session's queue, or a byte budget, is full: retry later.
    #[error("the tunnel is busy: too many bytes or requests are waiting; retry later")]
    Busy,
    /// The project has as many sessions open as it may.
    #[error("this project has too many open tunnel sessions; close one first")]
    TooManySessions,
    /// The operating system gave no randomness for an id.
    #[error("no randomness available for a session id")]
    NoRandomness,
}

/// All sessions of this process. Cheap to clone: clones share the sessions.
#[derive(Clone, Default)]
pub struct Tunnels {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    limits: TunnelLimits,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    slugs: HashMap<String, String>,
    /// Sessions by expiry, so expired ones are found without a scan.
    by_expiry: BTreeSet<(i64, String)>,
    per_project: HashMap<String, usize>,
    waiting: HashMap<String, Waiter>,
    /// Bytes charged across all sessions.
    pending: usize,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("sessions", &self.sessions())
            .field("pending_bytes", &self.pending_bytes())
            .finish()
    }
}

impl Tunnels {
    /// A relay with these bounds.
    pub fn with_limits(limits: TunnelLimits) -> Self {
        Tunnels {
            shared: Arc::new(Shared {
                inner: Mutex::default(),
                limits,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `project`, live for `ttl`.
    pub fn create(&self, project: &str, ttl: Duration) -> Result<Created, TunnelError> {
        let (id, slug) = (
            random_id(16).ok_or(TunnelError::NoRandomness)?,
            random_id(12).ok_or(TunnelError::NoRandomness)?,
        );
        let now = now_ms();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let mut inner = self.lock();
        inner.expire(now);
        let open = inner.per_project.get(project).copied().unwrap_or(0);
        if open >= self.shared.limits.max_sessions_per_project {
            // Make room by closing the project's longest-idle session, if its CLI is gone.
            let idle = inner
                .sessions
                .values()
                .filter(|s| s.project == project && now - s.last_poll >= IDLE_SESSION_MS)
                .min_by_key(|s| s.last_poll)
                .map(|s| s.id.clone());
            match idle {
                Some(id) => inner.remove_session(&id),
                None => return Err(TunnelError::TooManySessions),
            }
        }
        *inner.per_project.entry(project.to_owned()).or_default() += 1;
        inner.slugs.insert(slug.clone(), id.clone());
        inner.by_expiry.insert((expires_at, id.clone()));
        inner.sessions.insert(
            id.clone(),
            Session {
                id: id.clone(),
                slug: slug.clone(),
                project: project.to_owned(),
                expires_at,
                last_poll: now,
                queue: VecDeque::new(),
                pending: 0,
                waiting: HashSet::new(),
                notify: Arc::new(Notify::new()),
            },
        );
        Ok(Created {
            id,
            slug,
            expires_at,
        })
    }

    /// Closes a session: its held requests are answered 502 at once (their waiters are
    /// dropped), and its bytes are given back.
    pub fn close(&self, project: &str, id: &str) -> Result<(), TunnelError> {
        let mut inner = self.lock();
        match inner.sessions.get(id) {
            Some(s) if s.project == project => {
                inner.remove_session(id);
                Ok(())
            }
            _ => Err(TunnelError::NoSession),
        }
    }

    /// Admits a public request to the session of `slug` before its body is read, reserving
    /// `declared` bytes (its `Content-Length`, or 0) against the budgets; the body is then
    /// read through [`Admission::grow`].
    pub fn admit(&self, slug: &str, declared: usize) -> Result<Admission, TunnelError> {
        let mut inner = self.lock();
        inner.expire(now_ms());
        let session = inner
            .slugs
            .get(slug)
            .cloned()
            .ok_or(TunnelError::NoSession)?;
        let s = inner.sessions.get(&session).ok_or(TunnelError::NoSession)?;
        if s.queue.len() >= self.shared.limits.max_queue {
            return Err(TunnelError::Busy);
        }
        let charge = OVERHEAD.saturating_add(declared);
        inner.charge(&session, charge, &self.shared.limits)?;
        Ok(Admission {
            tunnels: self.clone(),
            session,
            charged: charge,
        })
    }

    /// Takes the queued requests of a session (at most `max_poll_bytes` of them, at least
    /// one), waiting up to `wait` for the first; their bytes are given back.
    pub async fn poll(
        &self,
        project: &str,
        id: &str,
        wait: Duration,
    ) -> Result<Vec<HeldRequest>, TunnelError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notify = {
                let mut inner = self.lock();
                let now = now_ms();
                inner.expire(now);
                let s = inner
                    .sessions
                    .get_mut(id)
                    .filter(|s| s.project == project)
                    .ok_or(TunnelError::NoSession)?;
                s.last_poll = now;
                if !s.queue.is_empty() {
                    let taken = inner.take(id, self.shared.limits.max_poll_bytes);
                    drop(inner);
                    // Encoding (base64 of the bodies) happens outside the lock.
                    return Ok(taken.into_iter().map(wire).collect());
                }
                s.notify.clone()
            };
            let notified = notify.notified();
            // Re-check after registering, so a push in between is not missed.
            if self
                .lock()
                .sessions
                .get(id)
                .is_some_and(|s| !s.queue.is_empty())
            {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// Hands the local response to the held public request of `project`; false if none
    /// waits for it (it timed out, was answered, or belongs to another project).
    pub fn respond(&self, project: &str, response: LocalResponse) -> bool {
        let waiter = {
            let mut inner = self.lock();
            match inner.waiting.get(&response.event_id) {
                Some(w) if w.project == project => {}
                _ => return false,
            }
            let Some(w) = inner.waiting.remove(&response.event_id) else {
                return false;
            };
            if let Some(s) = inner.sessions.get_mut(&w.session) {
                s.waiting.remove(&response.event_id);
            }
            w
        };
        waiter.tx.send(response).is_ok()
    }

    /// Drops the sessions whose time is up (the relay also does this as it is used; `serve`
    /// calls it on a timer so an idle server lets go of them too). Returns how many.
    pub fn expire_due(&self) -> usize {
        self.lock().expire(now_ms())
    }

    /// How many sessions are open.
    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Bytes held now for public requests being read or queued.
    pub fn pending_bytes(&self) -> usize {
        self.lock().pending
    }

    /// A project's open sessions and the bytes held for them.
    pub fn project_status(&self, project: &str) -> (usize, usize) {
        let inner = self.lock();
        inner
            .sessions
            .values()
            .filter(|s| s.project == project)
            .fold((0, 0), |(n, bytes), s| (n + 1, bytes + s.pending))
    }

    /// Forgets a held request whose caller went away: out of its queue, its bytes back.
    fn abandon(&self, session: &str, event_id: &str) {
        let mut inner = self.lock();
        inner.waiting.remove(event_id);
        let mut freed = 0;
        if let Some(s) = inner.sessions.get_mut(session) {
            s.waiting.remove(event_id);
            if let Some(pos) = s.queue.iter().position(|h| h.id == event_id)
                && let Some(h) = s.queue.remove(pos)
            {
                freed = h.charge;
                s.pending -= h.charge;
            }
        }
        inner.pending -= freed;
    }

    fn uncharge(&self, session: &str, bytes: usize) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(session) {
            // A closed session gave its bytes back already.
            s.pending -= bytes;
            inner.pending -= bytes;
        }
    }
}

impl Inner {
    /// Charges `bytes` to `session` and the server, or refuses if either budget would pass.
    fn charge(
        &mut self,
        session: &str,
        bytes: usize,
        limits: &TunnelLimits,
    ) -> Result<(), TunnelError> {
        let s = self
            .sessions
            .get_mut(session)
            .ok_or(TunnelError::NoSession)?;
        if s.pending.saturating_add(bytes) > limits.max_session_bytes
            || self.pending.saturating_add(bytes) > limits.max_pending_bytes
        {
            return Err(TunnelError::Busy);
        }
        s.pending += bytes;
        self.pending += bytes;
        Ok(())
    }

    /// Takes requests off the front of a session's queue, up to `max_bytes` as they will be
    /// sent (at least one), giving their bytes back.
    fn take(&mut self, id: &str, max_bytes: usize) -> Vec<Held> {
        let Some(s) = self.sessions.get_mut(id) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let (mut wire, mut freed) = (0usize, 0usize);
        while let Some(front) = s.queue.front() {
            if !taken.is_empty() && wire.saturating_add(front.wire) > max_bytes {
                break;
            }
            let Some(h) = s.queue.pop_front() else { break };
            wire = wire.saturating_add(h.wire);
            freed += h.charge;
            s.pending -= h.charge;
            taken.push(h);
        }
        self.pending -= freed;
        taken
    }

    /// Removes a session, dropping its waiters (their callers get 502 at once).
    fn remove_session(&mut self, id: &str) {
        let Some(s) = self.sessions.remove(id) else {
            return;
        };
        self.slugs.remove(&s.slug);
        self.by_expiry.remove(&(s.expires_at, s.id.clone()));
        if let Some(n) = self.per_project.get_mut(&s.project) {
            *n -= 1;
            if *n == 0 {
                self.per_project.remove(&s.project);
            }
        }
        for event in &s.waiting {
            self.waiting.remove(event);
        }
        self.pending -= s.pending;
        s.notify.notify_waiters();
    }

    /// Removes the sessions whose expiry has passed: only those, found in order.
    fn expire(&mut self, now: i64) -> usize {
        let mut n = 0;
        while let Some((at, id)) = self.by_expiry.first().cloned() {
            if at > now {
                break;
            }
            self.remove_session(&id);
            self.by_expiry.remove(&(at, id));
            n += 1;
        }
        n
    }
}

/// A public request admitted to a session, its body being read: its bytes are charged, and
/// given back if it is dropped before [`Admission::hold`].
#[derive(Debug)]
pub struct Admission {
    tunnels: Tunnels,
    session: String,
    charged: usize,
}

impl Admission {
    /// Makes sure `total` body bytes are covered by the reservation, charging more if the
    /// body turns out longer than declared (a chunked body); `Busy` past a budget.
    pub fn grow(&mut self, total: usize) -> Result<(), TunnelError> {
        let needed = OVERHEAD.saturating_add(total);
        if needed <= self.charged {
            return Ok(());
        }
        // Reserve ahead in steps, so a body read in small frames costs few lock round trips;
        // near a budget, just what is needed.
        let exact = needed - self.charged;
        let limits = &self.tunnels.shared.limits;
        let mut inner = self.tunnels.lock();
        let more = match inner.charge(&self.session, exact.max(64 * 1024), limits) {
            Ok(()) => exact.max(64 * 1024),
            Err(_) => {
                inner.charge(&self.session, exact, limits)?;
                exact
            }
        };
        self.charged += more;
        Ok(())
    }

    /// Queues the request; the returned guard receives the answer, and abandons the request
    /// when dropped first (its caller went away, or the hold timed out).
    pub fn hold(mut self, incoming: Incoming) -> Result<Waiting, TunnelError> {
        let id = random_id(16).ok_or(TunnelError::NoRandomness)?;
        let charge = incoming.charge();
        let wire = incoming.wire_cost();
        let (tx, rx) = oneshot::channel();
        let tunnels = self.tunnels.clone();
        let session = self.session.clone();
        let mut inner = tunnels.lock();
        match inner.sessions.get(&session) {
            None => return Err(TunnelError::NoSession),
            // Checked again now: admissions made side by side may have filled it.
            Some(s) if s.queue.len() >= tunnels.shared.limits.max_queue => {
                return Err(TunnelError::Busy);
            }
            Some(_) => {}
        }
        // Settle the reservation to the request's real charge.
        let reserved = self.charged;
        if charge > reserved {
            inner.charge(&session, charge - reserved, &tunnels.shared.limits)?;
        } else {
            let spare = reserved - charge;
            if let Some(s) = inner.sessions.get_mut(&session) {
                s.pending -= spare;
            }
            inner.pending -= spare;
        }
        self.charged = 0; // from here on the queue holds the charge
        let Some(s) = inner.sessions.get_mut(&session) else {
            return Err(TunnelError::NoSession);
        };
        s.queue.push_back(Held {
            id: id.clone(),
            incoming,
            charge,
            wire,
        });
        s.waiting.insert(id.clone());
        s.notify.notify_waiters();
        let project = s.project.clone();
        inner.waiting.insert(
            id.clone(),
            Waiter {
                tx,
                session: session.clone(),
                project,
            },
        );
        drop(inner);
        Ok(Waiting {
            tunnels,
            session,
            id,
            rx: Some(rx),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.charged > 0 {
            self.tunnels.uncharge(&self.session, self.charged);
        }
    }
}

/// A queued request's caller, waiting for the CLI's answer. Dropping it abandons the request.
#[derive(Debug)]
pub struct Waiting {
    tunnels: Tunnels,
    session: String,
    id: String,
    rx: Option<oneshot::Receiver<LocalResponse>>,
}

impl Waiting {
    /// The held request's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The answer; `None` when the session closed or expired first.
    pub async fn answer(&mut self) -> Option<LocalResponse> {
        self.rx.as_mut()?.await.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.tunnels.abandon(&self.session, &self.id);
    }
}

/// A held request as the CLI reads it.
fn wire(h: Held) -> HeldRequest {
    let Incoming {
        method,
        path,
        query,
        headers,
        body,
    } = h.incoming;
    let mut joined: HashMap<String, String> = HashMap::new();
    for (k, v) in &headers {
        joined
            .entry(k.clone())
            .and_modify(|prev| {
                prev.push_str(", ");
                prev.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    let utf8 = std::str::from_utf8(&body).ok();
    HeldRequest {
        id: h.id,
        method,
        path,
        query_string: query,
        request_headers: joined,
        request_headers_list: headers,
        request_body: utf8.map_or_else(
            || String::from_utf8_lossy(&body).into_owned(),
            str::to_owned,
        ),
        request_body_base64: utf8
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(&body)),
    }
}

/// A random URL-safe identifier of `bytes` random bytes (hex), or `None` without OS
/// randomness: ids are capabilities (a slug is the public URL), so there is no fallback.
pub(crate) fn random_id(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).ok()?;
    Some(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(body: &'static [u8]) -> Incoming {
        Incoming {
            method: "POST".into(),
            path: "/hook".into(),
            query: None,
            headers: vec![
                ("webhook-signature".into(), "v1,a".into()),
                ("webhook-signature".into(), "v1,b".into()),
            ],
            body: Bytes::from_static(body),
        }
    }

    fn queue(t: &Tunnels, slug: &str, body: &'static [u8]) -> Waiting {
        let mut a = t.admit(slug, body.len()).unwrap();
        a.grow(body.len()).unwrap();
        a.hold(incoming(body)).unwrap()
    }

    #[tokio::test]
    async fn a_held_request_reaches_the_poller_and_its_answer_comes_back() {
        let t = Tunnels::default();
        let s = t.create("p", Duration::from_secs(60)).unwrap();
        assert_eq!(
            t.poll("other", &s.id, Duration::ZERO).await.unwrap_err(),
            TunnelError::NoSession
        );
        let poller = {
            let t = t.clone();
            let id = s.id.clone();
            tokio::spawn(async move { t.poll("p", &id, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut waiting = queue(&t, &s.slug, b"{}");
        let got = poller.await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, waiting.id());
        // Repeated headers stay repeated beside the joined map.
        assert_eq!(got[0].request_headers_list.len(), 2);
        assert_eq!(got[0].request_headers["webhook-signature"], "v1,a, v1,b");
        assert_eq!(t.pending_bytes(), 0, "taken by the CLI: its bytes are back");
        let answer = LocalResponse {
            event_id: waiting.id().to_owned(),
            status: 201,
            headers: HashMap::new(),
            body: Some("ok".into()),
            body_base64: None,
            duration_ms: Some(3),
        };
        assert!(
            !t.respond("other", answer.clone()),
            "another project cannot answer"
        );
        assert!(t.respond("p", answer));
        assert_eq!(waiting.answer().await.unwrap().status, 201);
        t.close("p", &s.id).unwrap();
        assert!(t.admit(&s.slug, 0).is_err());
    }

    #[tokio::test]
    async fn budgets_are_checked_before_the_body_and_given_back_on_every_path() {
        let limits = TunnelLimits {
            max_pending_bytes: 11_000,
            max_session_bytes: 6_000,
            ..TunnelLimits::default()
        };
        let t = Tunnels::with_limits(limits);
        let a = t.create("p", Duration::from_secs(60)).unwrap();
        let b = t.create("p", Duration::from_secs(60)).unwrap();
        // A declared length over the session's budget is refused before any byte is read.
        assert_eq!(t.admit(&a.slug, 7_000).unwrap_err(), TunnelError::Busy);
        assert_eq!(t.pending_bytes(), 0);
        let held_a = t.admit(&a.slug, 5_000).unwrap();
        // The session is nearly full; the other session still has room, up to the total.
        assert_eq!(t.admit(&a.slug, 1_000).unwrap_err(), TunnelError::Busy);
        let mut held_b = t.admit(&b.slug, 4_000).unwrap();
        assert_eq!(t.pending_bytes(), 9_000 + 2 * OVERHEAD);
        // The whole server's budget binds too.
        let c = t.create("q", Duration::from_secs(60)).unwrap();
        assert_eq!(t.admit(&c.slug, 1_000).unwrap_err(), TunnelError::Busy);
        // A body longer than declared is charged as it is read, and refused past a budget.
        held_b.grow(4_900).unwrap();
        assert_eq!(held_b.grow(5_600).unwrap_err(), TunnelError::Busy);
        // Dropped before it was queued (the caller went away mid-body): bytes back.
        drop(held_a);
        drop(held_b);
        assert_eq!(t.pending_bytes(), 0);
        assert_eq!(
            t.admit("no-such-slug", 0).unwrap_err(),
            TunnelError::NoSession
        );
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_abandons_its_request() {
        let t = Tunnels::default();
        let s = t.create("p", Duration::from_secs(60)).unwrap();
        // The relay task is aborted while it waits (its client disconnected).
        let relay = {
            let t = t.clone();
            let slug = s.slug.clone();
            tokio::spawn(async move {
                let mut waiting = queue(&t, &slug, b"hello");
                waiting.answer().await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(t.pending_bytes() > 0);
        relay.abort();
        let _ = relay.await;
        assert_eq!(t.pending_bytes(), 0, "the drop guard gave the bytes back");
        assert!(
            t.poll("p", &s.id, Duration::ZERO).await.unwrap().is_empty(),
            "and the CLI never sees it"
        );
    }

    #[tokio::test]
    async fn closing_a_session_answers_its_waiters_at_once() {
        let t = Tunnels::default();
        let s = t.create("p", Duration::from_secs(60)).unwrap();
        let mut queued = queue(&t, &s.slug, b"one");
        let mut polled = queue(&t, &s.slug, b"two");
        // One of them is already with the CLI.
        let _ = t.poll("p", &s.id, Duration::ZERO).await.unwrap();
        let mut third = queue(&t, &s.slug, b"three");
        t.close("p", &s.id).unwrap();
        for w in [&mut queued, &mut polled, &mut third] {
            let answer = tokio::time::timeout(Duration::from_secs(1), w.answer())
                .await
                .expect("no wait until the hold timeout");
            assert!(answer.is_none());
        }
        assert_eq!(t.pending_bytes(), 0);
    }

    #[tokio::test]
    async fn polls_are_capped_in_bytes_and_sessions_per_project() {
        let limits = TunnelLimits {
            max_poll_bytes: 3 * OVERHEAD,
            max_sessions_per_project: 2,
            ..TunnelLimits::default()
        };
        let t = Tunnels::with_limits(limits);
        let s = t.create("p", Duration::from_secs(60)).unwrap();
        t.create("p", Duration::from_secs(60)).unwrap();
        assert_eq!(
            t.create("p", Duration::from_secs(60)).unwrap_err(),
            TunnelError::TooManySessions
        );
        t.create("q", Duration::from_secs(60)).unwrap();
        let _waiting: Vec<_> = (0..5).map(|_| queue(&t, &s.slug, b"x")).collect();
        let first = t.poll("p", &s.id, Duration::ZERO).await.unwrap();
        assert!((1..5).contains(&first.len()), "{} in one poll", first.len());
        let rest = t.poll("p", &s.id, Duration::ZERO).await.unwrap();
        assert!(!rest.is_empty());
    }

    #[tokio::test]
    async fn a_project_at_its_cap_replaces_a_session_whose_cli_is_gone() {
        let limits = TunnelLimits {
            max_sessions_per_project: 1,
            ..TunnelLimits::default()
        };
        let t = Tunnels::with_limits(limits);
        let old = t.create("p", Duration::from_secs(60)).unwrap();
        assert_eq!(
            t.create("p", Duration::from_secs(60)).unwrap_err(),
            TunnelError::TooManySessions,
            "a session polled recently is not replaced"
        );
        // Its CLI was killed two minutes ago.
        t.lock().sessions.get_mut(&old.id).unwrap().last_poll -= IDLE_SESSION_MS;
        let new = t.create("p", Duration::from_secs(60)).unwrap();
        assert_eq!(t.sessions(), 1);
        assert_eq!(t.admit(&old.slug, 0).unwrap_err(), TunnelError::NoSession);
        assert!(t.admit(&new.slug, 0).is_ok());
    }

    #[tokio::test]
    async fn polls_are_capped_by_what_they_send_not_what_they_hold() {
        // Control bytes take 6 bytes each as JSON: 10 of 1,000 such bodies would be 60 KB.
        let limits = TunnelLimits {
            max_poll_bytes: 20_000,
            ..TunnelLimits::default()
        };
        let t = Tunnels::with_limits(limits);
        let s = t.create("p", Duration::from_secs(60)).unwrap();
        let _w: Vec<_> = (0..10)
            .map(|_| {
                let mut a = t.admit(&s.slug, 1000).unwrap();
                a.grow(1000).unwrap();
                let mut i = incoming(b"");
                i.body = Bytes::from(vec![1u8; 1000]);
                a.hold(i).unwrap()
            })
            .collect();
        let first = t.poll("p", &s.id, Duration::ZERO).await.unwrap();
        let sent = serde_json::to_string(&first).unwrap().len();
        assert!(
            first.len() < 10 && sent <= 20_000 + 8_000,
            "{} events, {sent} bytes",
            first.len()
        );
    }

    #[test]
    fn the_poll_cost_of_a_request_bounds_what_it_sends() {
        for body in [
            b"plain text".to_vec(),
            vec![1u8; 1000],
            vec![0xffu8; 1000],
            "é\"\\\n".repeat(100).into_bytes(),
            [b"ok".as_slice(), &[0xc3, 0x28, 0x00, 0xff]].concat(),
        ] {
            let mut i = incoming(b"");
            i.body = Bytes::from(body.clone());
            i.query = Some("q=\"1\"".into());
            let cost = i.wire_cost();
            let held = Held {
                id: "0".repeat(32),
                charge: 0,
                wire: cost,
                incoming: i,
            };
            let sent = serde_json::to_string(&wire(held)).unwrap().len();
            assert!(
                sent <= cost,
                "{sent} sent for a cost of {cost} ({:?})",
                &body[..4]
            );
        }
    }

    #[tokio::test]
    async fn sessions_expire_in_order_without_a_scan() {
        let t = Tunnels::default();
        let soon = t.create("p", Duration::from_millis(20)).unwrap();
        let live = t.create("p", Duration::from_secs(60)).unwrap();
        let mut waiting = queue(&t, &soon.slug, b"held");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(t.expire_due(), 1);
        assert_eq!(t.admit(&soon.slug, 0).unwrap_err(), TunnelError::NoSession);
        assert!(
            waiting.answer().await.is_none(),
            "its caller is answered at once"
        );
        assert!(t.admit(&live.slug, 0).is_ok());
        assert_eq!((t.sessions(), t.pending_bytes()), (1, 0));
    }
}
