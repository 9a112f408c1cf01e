//! The forward relay: sessions, their queues of held public requests, and the answers.
//!
//! A public request to `/t/{slug}/...` is queued on its session and held until the CLI that
//! polls the session reports the local server's response (or the hold times out: 504).
//! Sessions and held requests live in this process's memory: a tunnel is served by the
//! `outworx serve` instance that created it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::db::now_ms;

/// One request waiting for the CLI, as `/api/forward/poll` hands it out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldRequest {
    /// Event id, echoed back as `eventId` with the response.
    pub id: String,
    /// HTTP method.
    pub method: String,
    /// Path below the session's ingress (`/` at least).
    pub path: String,
    /// Query string without `?`, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_string: Option<String>,
    /// Request headers (one value per name, repeated ones joined with `, `).
    pub request_headers: HashMap<String, String>,
    /// The body as text (lossy when it is not UTF-8: see `request_body_base64`).
    pub request_body: String,
    /// The exact body bytes, base64, when they are not UTF-8 (an addition of ours).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body_base64: Option<String>,
}

/// The local server's answer, as the CLI reports it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalResponse {
    /// The held request's id.
    pub event_id: String,
    /// Status to answer the public caller with.
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Body text.
    #[serde(default)]
    pub body: Option<String>,
    /// Exact body bytes, base64 (an addition of ours; wins over `body`).
    #[serde(default)]
    pub body_base64: Option<String>,
    /// How long the local server took.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// A tunnel session.
#[derive(Debug)]
struct Session {
    id: String,
    slug: String,
    project: String,
    expires_at: i64,
    queue: VecDeque<HeldRequest>,
    notify: Arc<Notify>,
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
    /// The session holds too many requests already.
    #[error("the tunnel's queue is full")]
    Full,
}

/// All sessions of this process.
#[derive(Default)]
pub struct Tunnels {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    slugs: HashMap<String, String>,
    waiting: HashMap<String, oneshot::Sender<LocalResponse>>,
}

/// How many requests one session may hold at once.
const MAX_QUEUE: usize = 1000;

impl Tunnels {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `project`, live for `ttl`.
    pub fn create(&self, project: &str, ttl: Duration) -> Created {
        let mut inner = self.lock();
        inner.expire(now_ms());
        let (id, slug) = (random_id(16), random_id(12));
        let expires_at =
            now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        inner.slugs.insert(slug.clone(), id.clone());
        inner.sessions.insert(
            id.clone(),
            Session {
                id: id.clone(),
                slug: slug.clone(),
                project: project.to_owned(),
                expires_at,
                queue: VecDeque::new(),
                notify: Arc::new(Notify::new()),
            },
        );
        Created {
            id,
            slug,
            expires_at,
        }
    }

    /// Closes a session; held requests get 502 from their waiters being dropped.
    pub fn close(&self, project: &str, id: &str) -> Result<(), TunnelError> {
        let mut inner = self.lock();
        match inner.sessions.get(id) {
            Some(s) if s.project == project => {
                let s = inner.sessions.remove(id).ok_or(TunnelError::NoSession)?;
                inner.slugs.remove(&s.slug);
                s.notify.notify_waiters();
                Ok(())
            }
            _ => Err(TunnelError::NoSession),
        }
    }

    /// Queues a public request on the session of `slug`; the receiver gets the answer.
    pub fn hold(
        &self,
        slug: &str,
        make: impl FnOnce(String) -> HeldRequest,
    ) -> Result<(String, oneshot::Receiver<LocalResponse>), TunnelError> {
        let mut inner = self.lock();
        inner.expire(now_ms());
        let id = inner
            .slugs
            .get(slug)
            .cloned()
            .ok_or(TunnelError::NoSession)?;
        let event_id = random_id(16);
        let (tx, rx) = oneshot::channel();
        let session = inner.sessions.get_mut(&id).ok_or(TunnelError::NoSession)?;
        if session.queue.len() >= MAX_QUEUE {
            return Err(TunnelError::Full);
        }
        session.queue.push_back(make(event_id.clone()));
        session.notify.notify_waiters();
        inner.waiting.insert(event_id.clone(), tx);
        Ok((event_id, rx))
    }

    /// Forgets a held request whose caller gave up.
    pub fn abandon(&self, event_id: &str) {
        let mut inner = self.lock();
        inner.waiting.remove(event_id);
        for s in inner.sessions.values_mut() {
            s.queue.retain(|r| r.id != event_id);
        }
    }

    /// Takes the queued requests of a session, waiting up to `wait` for the first.
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
                inner.expire(now_ms());
                let s = inner
                    .sessions
                    .get_mut(id)
                    .filter(|s| s.project == project)
                    .ok_or(TunnelError::NoSession)?;
                if !s.queue.is_empty() {
                    return Ok(s.queue.drain(..).collect());
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

    /// Hands the local response to the held public request; false if none waits for it.
    pub fn respond(&self, response: LocalResponse) -> bool {
        let tx = self.lock().waiting.remove(&response.event_id);
        tx.is_some_and(|tx| tx.send(response).is_ok())
    }

    /// How many sessions are open.
    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }
}

impl Inner {
    fn expire(&mut self, now: i64) {
        let dead: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.id.clone())
            .collect();
        for id in dead {
            if let Some(s) = self.sessions.remove(&id) {
                self.slugs.remove(&s.slug);
                for r in s.queue {
                    self.waiting.remove(&r.id);
                }
                s.notify.notify_waiters();
            }
        }
    }
}

/// A random URL-safe identifier of `bytes` random bytes (hex).
pub(crate) fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // No OS randomness: fall back to time and a counter (unique, not secret).
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return format!("{:x}{n:x}", now_ms());
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: String) -> HeldRequest {
        HeldRequest {
            id,
            method: "POST".into(),
            path: "/hook".into(),
            query_string: None,
            request_headers: HashMap::new(),
            request_body: "{}".into(),
            request_body_base64: None,
        }
    }

    #[tokio::test]
    async fn a_held_request_reaches_the_poller_and_its_answer_comes_back() {
        let t = Arc::new(Tunnels::default());
        let s = t.create("p", Duration::from_secs(60));
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
        let (event_id, rx) = t.hold(&s.slug, req).unwrap();
        let got = poller.await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, event_id);
        assert!(t.respond(LocalResponse {
            event_id: event_id.clone(),
            status: 201,
            headers: HashMap::new(),
            body: Some("ok".into()),
            body_base64: None,
            duration_ms: Some(3),
        }));
        assert_eq!(rx.await.unwrap().status, 201);
        assert!(
            t.poll("p", &s.id, Duration::from_millis(20))
                .await
                .unwrap()
                .is_empty()
        );
        t.close("p", &s.id).unwrap();
        assert!(t.hold(&s.slug, req).is_err());
    }

    #[tokio::test]
    async fn sessions_expire() {
        let t = Tunnels::default();
        let s = t.create("p", Duration::ZERO);
        assert_eq!(t.hold(&s.slug, req).unwrap_err(), TunnelError::NoSession);
        assert_eq!(t.sessions(), 0);
    }
}
