//! `OutworxSink`: delivery events to the Outworx ingest API, batched, never blocking.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::Sink;
use crate::event::DeliveryEvent;
use crate::util::BoxFuture;

/// Why one batch could not be delivered (given to the `on_error` callback).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The ingest endpoint could not be reached, or did not answer in time.
    #[error("ingest unreachable: {0}")]
    Network(String),
    /// The ingest answered with this status.
    #[error("ingest answered HTTP {0}")]
    Status(u16),
    /// The API key was refused (401/403): sending stopped.
    #[error("the API key was refused (HTTP {0}); delivery reporting stopped")]
    Unauthorized(u16),
}

/// A callback for reporting failures.
pub type OnError = Arc<dyn Fn(&ReportError) + Send + Sync>;

/// How the Outworx sink batches and retries.
#[derive(Clone)]
pub struct OutworxSinkOptions {
    /// The ingest URL events are posted to (`http://127.0.0.1:8787/api/ingest`).
    pub endpoint: String,
    /// The API key, sent as `Authorization: Bearer`.
    pub api_key: String,
    /// How long one request may take.
    pub timeout: Duration,
    /// Events queued at most; past it the newest is dropped and counted.
    pub capacity: usize,
    /// Bytes of events queued at most (default 64 MiB); past it the newest is dropped and
    /// counted, as past `capacity`.
    pub max_queued_bytes: usize,
    /// Events per batch at most.
    pub batch_size: usize,
    /// Serialized bytes per batch at most (one larger event still goes alone). An ingest
    /// that answers 413 anyway gets the batch again in halves, down to single events.
    pub max_batch_bytes: usize,
    /// How long a batch waits for more events.
    pub linger: Duration,
    /// The longest pause between retries.
    pub max_backoff: Duration,
    /// Called on every failed attempt.
    pub on_error: Option<OnError>,
}

impl std::fmt::Debug for OutworxSinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutworxSinkOptions")
            .field("endpoint", &self.endpoint)
            .field("api_key", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .field("capacity", &self.capacity)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("batch_size", &self.batch_size)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}

impl OutworxSinkOptions {
    /// The defaults: 5 s timeout, 10,000 queued, 100 events or 512 KiB per batch, 100 ms
    /// linger, 10 s backoff cap.
    pub fn new(endpoint: impl Into<String>, api_key: impl Into<String>) -> Self {
        OutworxSinkOptions {
            endpoint: endpoint.into(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(5),
            capacity: 10_000,
            max_queued_bytes: 64 << 20,
            batch_size: 100,
            max_batch_bytes: 512 * 1024,
            linger: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            on_error: None,
        }
    }

    /// `POST /api/sdk/verify` beside the ingest path (`.../api/ingest` becomes
    /// `.../api/sdk/verify`), else at the endpoint's origin, as the Python package derives it.
    fn verify_url(&self) -> String {
        let endpoint = self.endpoint.trim_end_matches('/');
        if let Some(base) = endpoint.strip_suffix("/api/ingest") {
            return format!("{base}/api/sdk/verify");
        }
        match endpoint.parse::<http::Uri>() {
            Ok(u) if u.scheme().is_some() && u.authority().is_some() => format!(
                "{}://{}/api/sdk/verify",
                u.scheme_str().unwrap_or("https"),
                u.authority().map_or("", |a| a.as_str())
            ),
            _ => format!("{endpoint}/api/sdk/verify"),
        }
    }
}

struct Shared {
    dropped: AtomicU64,
    sent: AtomicU64,
    stopped: AtomicBool,
    warned_full: AtomicBool,
    /// Bytes of the events in the queue now.
    queued_bytes: std::sync::atomic::AtomicUsize,
    max_queued_bytes: usize,
}

impl Shared {
    /// Counts `n` events dropped (and `webhook_report_dropped_total`, with metrics); the
    /// count before.
    fn drop_events(&self, n: u64) -> u64 {
        crate::metrics::report_dropped(n);
        self.dropped.fetch_add(n, Ordering::Relaxed)
    }

    fn dequeued(&self, batch: &[Arc<DeliveryEvent>]) {
        let bytes: usize = batch.iter().map(|e| e.approx_size()).sum();
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Sends delivery events to the Outworx ingest API (feature `outworx-api`).
///
/// `send` never waits: events go into a bounded queue (a full queue drops the newest event and
/// counts it). A background task batches them (up to 100 events, 512 KiB or 100 ms), posts
/// `{"events": [..]}` with `Authorization: Bearer <key>`, retries network errors and 5xx with
/// exponential backoff and jitter, sends a batch the ingest finds too large (413) again in
/// halves, and stops for good after a 401 or 403 (one warning). It calls
/// `POST /api/sdk/verify` once when it starts.
#[derive(Clone)]
pub struct OutworxSink {
    tx: mpsc::Sender<Arc<DeliveryEvent>>,
    flush: mpsc::UnboundedSender<oneshot::Sender<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OutworxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutworxSink")
            .field("sent", &self.sent())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl OutworxSink {
    /// Starts the sink's task on the current tokio runtime (`None` outside one).
    pub fn spawn(options: OutworxSinkOptions) -> Option<Self> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let (flush, flush_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            warned_full: AtomicBool::new(false),
            queued_bytes: std::sync::atomic::AtomicUsize::new(0),
            max_queued_bytes: options.max_queued_bytes,
        });
        let worker = Worker {
            client: reqwest::Client::new(),
            options,
            shared: shared.clone(),
        };
        handle.spawn(worker.run(rx, flush_rx));
        Some(OutworxSink { tx, flush, shared })
    }

    /// Events dropped: queue full, or sending stopped after a refused key.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events the ingest accepted.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Whether sending stopped after the API key was refused.
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Relaxed)
    }
}

impl Sink for OutworxSink {
    fn send(&self, event: &Arc<DeliveryEvent>) {
        if self.stopped() {
            self.shared.drop_events(1);
            return;
        }
        let size = event.approx_size();
        let queued = self.shared.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        let full =
            queued > self.shared.max_queued_bytes || self.tx.try_send(event.clone()).is_err();
        if full {
            self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            let n = self.shared.drop_events(1) + 1;
            if !self.shared.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    dropped = n,
                    "the delivery event queue is full; dropping new events"
                );
            }
        }
    }

    /// Delivers what is queued; gives up after 10 s so shutdown never hangs on a dead ingest.
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (ack, done) = oneshot::channel();
            if self.flush.send(ack).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
            }
            let dropped = self.dropped();
            if dropped > 0 {
                tracing::warn!(dropped, "delivery events were dropped");
            }
        })
    }
}

struct Worker {
    client: reqwest::Client,
    options: OutworxSinkOptions,
    shared: Arc<Shared>,
}

enum Outcome {
    Sent,
    /// The ingest stored some events and refused the rest (422): how many of each.
    Partly {
        accepted: u64,
        refused: u64,
    },
    Retry(ReportError),
    Stop(ReportError),
    Drop(ReportError),
    TooLarge,
}

fn jitter(max_ms: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) % max_ms.max(1)
}

impl Worker {
    async fn run(
        self,
        mut rx: mpsc::Receiver<Arc<DeliveryEvent>>,
        mut flush_rx: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) {
        self.verify_key().await;
        let size = self.options.batch_size.max(1);
        loop {
            let mut batch = Vec::with_capacity(size);
            let mut ack = None;
            tokio::select! {
                a = flush_rx.recv() => match a {
                    Some(a) => ack = Some(a),
                    None => return,
                },
                n = rx.recv_many(&mut batch, size) => if n == 0 { return },
            }
            // Linger for a fuller batch, unless a flush asks for everything now.
            if ack.is_none() {
                let deadline = tokio::time::Instant::now() + self.options.linger;
                while batch.len() < size {
                    let room = size - batch.len();
                    tokio::select! {
                        a = flush_rx.recv() => {
                            ack = a;
                            break;
                        }
                        more = tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)) => {
                            if !matches!(more, Ok(n) if n > 0) { break; }
                        }
                    }
                }
            }
            if !batch.is_empty() {
                self.shared.dequeued(&batch);
                self.deliver(std::mem::take(&mut batch)).await;
            }
            if let Some(ack) = ack {
                // Drain what is queued now, without waiting for more.
                loop {
                    while batch.len() < size {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    if batch.is_empty() {
                        break;
                    }
                    self.shared.dequeued(&batch);
                    self.deliver(std::mem::take(&mut batch)).await;
                }
                let _ = ack.send(());
            }
        }
    }

    fn fail(&self, e: &ReportError) {
        if let Some(cb) = &self.options.on_error {
            cb(e);
        }
    }

    async fn verify_key(&self) {
        let resp = self
            .client
            .post(self.options.verify_url())
            .bearer_auth(&self.options.api_key)
            .timeout(self.options.timeout)
            .json(&serde_json::json!({}))
            .send()
            .await;
        if let Ok(r) = resp
            && matches!(r.status().as_u16(), 401 | 403)
        {
            self.stop(r.status().as_u16());
        }
    }

    fn stop(&self, status: u16) {
        if !self.shared.stopped.swap(true, Ordering::Relaxed) {
            let e = ReportError::Unauthorized(status);
            tracing::warn!("{e}: check OUTWORX_HOOKS_API_KEY");
            self.fail(&e);
        }
    }

    async fn post(&self, events: &[Vec<u8>]) -> Outcome {
        // The wire body, `{"events": [..]}`, from the events serialized once each.
        let len = events.iter().map(|e| e.len() + 1).sum::<usize>() + 12;
        let mut body = Vec::with_capacity(len);
        body.extend_from_slice(b"{\"events\":[");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e);
        }
        body.extend_from_slice(b"]}");
        let resp = self
            .client
            .post(&self.options.endpoint)
            .bearer_auth(&self.options.api_key)
            .timeout(self.options.timeout)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match resp {
            Err(e) => Outcome::Retry(ReportError::Network(e.without_url().to_string())),
            Ok(r) => match r.status().as_u16() {
                200..=299 => Outcome::Sent,
                413 => Outcome::TooLarge,
                // `{"accepted": n, "rejected": [..]}`: the valid events were stored.
                422 => {
                    let answer: crate::wire::IngestAnswer = r.json().await.unwrap_or_default();
                    let n = events.len() as u64;
                    let accepted = answer.accepted.min(n);
                    Outcome::Partly {
                        accepted,
                        refused: n - accepted,
                    }
                }
                s @ (401 | 403) => Outcome::Stop(ReportError::Unauthorized(s)),
                s @ (408 | 429 | 500..=599) => Outcome::Retry(ReportError::Status(s)),
                s => Outcome::Drop(ReportError::Status(s)),
            },
        }
    }

    /// Serializes the events and sends them in requests of at most `max_batch_bytes` each (an
    /// event larger than that alone); a request the ingest refuses as too large is sent again
    /// in halves, and a single event it refuses is dropped and counted.
    async fn deliver(&self, batch: Vec<Arc<DeliveryEvent>>) {
        let mut encoded = Vec::with_capacity(batch.len());
        for e in &batch {
            match serde_json::to_vec(&**e) {
                Ok(bytes) => encoded.push(bytes),
                Err(err) => {
                    tracing::warn!("a delivery event could not be serialized: {err}");
                    self.shared.drop_events(1);
                }
            }
        }
        drop(batch);
        let mut pending = std::collections::VecDeque::new();
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        let mut size = 0;
        for e in encoded {
            if !chunk.is_empty() && size + e.len() + 1 > self.options.max_batch_bytes {
                pending.push_back(std::mem::take(&mut chunk));
                size = 0;
            }
            size += e.len() + 1;
            chunk.push(e);
        }
        if !chunk.is_empty() {
            pending.push_back(chunk);
        }
        while let Some(mut chunk) = pending.pop_front() {
            if !self.deliver_chunk(&chunk).await {
                continue;
            }
            if chunk.len() == 1 {
                let e = ReportError::Status(413);
                tracing::warn!(
                    bytes = chunk[0].len(),
                    "{e} for a single delivery event; it is dropped"
                );
                self.fail(&e);
                self.shared.drop_events(1);
                continue;
            }
            let back = chunk.split_off(chunk.len() / 2);
            pending.push_front(back);
            pending.push_front(chunk);
        }
    }

    /// Sends one request's events, retrying as needed; `true` when the ingest found it too
    /// large (the caller splits it), `false` once it is sent or given up on.
    async fn deliver_chunk(&self, events: &[Vec<u8>]) -> bool {
        let n = events.len() as u64;
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.shared.stopped.load(Ordering::Relaxed) {
                self.shared.drop_events(n);
                return false;
            }
            match self.post(events).await {
                Outcome::Sent => {
                    self.shared.sent.fetch_add(n, Ordering::Relaxed);
                    return false;
                }
                Outcome::TooLarge => return true,
                Outcome::Partly { accepted, refused } => {
                    let e = ReportError::Status(422);
                    tracing::warn!("{e}: the ingest refused {refused} of {n} delivery events");
                    self.fail(&e);
                    self.shared.sent.fetch_add(accepted, Ordering::Relaxed);
                    self.shared.drop_events(refused);
                    return false;
                }
                Outcome::Stop(e) => {
                    if let ReportError::Unauthorized(s) = e {
                        self.stop(s);
                    }
                    self.shared.drop_events(n);
                    return false;
                }
                Outcome::Drop(e) => {
                    // A 4xx other than auth: the batch will never be accepted as it is.
                    tracing::warn!("{e}; {n} delivery events dropped");
                    self.fail(&e);
                    self.shared.drop_events(n);
                    return false;
                }
                Outcome::Retry(e) => {
                    tracing::debug!("{e}; retrying in about {backoff:?}");
                    self.fail(&e);
                    let ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
                    tokio::time::sleep(Duration::from_millis(ms / 2 + jitter(ms / 2 + 1))).await;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use std::sync::Mutex;

    const KEY: &str = "ohk_0123456789abcdef0123456789abcdef";

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Ok,
        Unavailable,
        Unauthorized,
        BlackHole,
        /// 422: stores all but the last two events of each batch, as `outworx serve` does
        /// for a batch with two invalid events.
        Partial,
    }

    #[derive(Default)]
    struct Ingest {
        batches: Vec<serde_json::Value>,
        auth: Vec<String>,
        verify_calls: usize,
        attempts: usize,
    }

    #[derive(Clone)]
    struct Fake {
        mode: Arc<Mutex<Mode>>,
        seen: Arc<Mutex<Ingest>>,
    }

    impl Fake {
        fn set(&self, m: Mode) {
            *self.mode.lock().unwrap() = m;
        }
        fn events(&self) -> usize {
            let seen = self.seen.lock().unwrap();
            seen.batches
                .iter()
                .map(|b| b["events"].as_array().map_or(0, Vec::len))
                .sum()
        }
    }

    async fn ingest(
        State(f): State<Fake>,
        h: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let mode = *f.mode.lock().unwrap();
        {
            let mut seen = f.seen.lock().unwrap();
            seen.attempts += 1;
            seen.auth.push(
                h.get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .into(),
            );
        }
        match mode {
            Mode::Partial => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let n = v["events"].as_array().map_or(0, Vec::len);
                let answer = serde_json::json!({"accepted": n.saturating_sub(2),
                    "rejected": [{"index": 0, "reason": "x"}, {"index": 1, "reason": "y"}]});
                (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(answer)).into_response()
            }
            Mode::BlackHole => std::future::pending().await,
            Mode::Unavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            Mode::Unauthorized => StatusCode::UNAUTHORIZED.into_response(),
            Mode::Ok => {
                let v = serde_json::from_slice(&body).unwrap_or_default();
                f.seen.lock().unwrap().batches.push(v);
                StatusCode::OK.into_response()
            }
        }
    }

    async fn verify(State(f): State<Fake>) -> StatusCode {
        f.seen.lock().unwrap().verify_calls += 1;
        if *f.mode.lock().unwrap() == Mode::Unauthorized {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        }
    }

    async fn fake(mode: Mode) -> (Fake, String) {
        fake_limited(mode, 2 << 20).await
    }

    /// An ingest that answers 413 to bodies over `limit` bytes.
    async fn fake_limited(mode: Mode, limit: usize) -> (Fake, String) {
        let f = Fake {
            mode: Arc::new(Mutex::new(mode)),
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/api/ingest", post(ingest))
            .route("/api/sdk/verify", post(verify))
            .layer(axum::extract::DefaultBodyLimit::max(limit))
            .with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/ingest", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (f, url)
    }

    fn event(i: usize) -> Arc<DeliveryEvent> {
        Arc::new(DeliveryEvent {
            payload_size: i,
            event_type: Some("charge.succeeded".into()),
            ..crate::event::sample()
        })
    }

    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn batches_of_at_most_100_with_the_bearer_key_and_one_verify_call() {
        let (f, url) = fake(Mode::Ok).await;
        let sink = OutworxSink::spawn(OutworxSinkOptions::new(url, KEY)).unwrap();
        for i in 0..250 {
            sink.send(&event(i));
        }
        eventually("all 250 events", || f.events() == 250).await;
        // Counted once the ingest's answer is back, just after it stored the batch.
        eventually("all 250 counted as sent", || sink.sent() == 250).await;
        let seen = f.seen.lock().unwrap();
        assert!(seen.batches.len() >= 3, "{} batches", seen.batches.len());
        assert!(
            seen.batches
                .iter()
                .all(|b| b["events"].as_array().unwrap().len() <= 100)
        );
        assert!(seen.auth.iter().all(|a| a == &format!("Bearer {KEY}")));
        assert_eq!(seen.verify_calls, 1);
        let first = &seen.batches[0]["events"][0];
        assert_eq!(first["provider"], "stripe");
        assert!(
            first.get("request_body").is_none(),
            "absent values are omitted"
        );
    }

    #[tokio::test]
    async fn an_outage_followed_by_recovery_loses_nothing_within_capacity() {
        let (f, url) = fake(Mode::Unavailable).await;
        let errors = Arc::new(AtomicU64::new(0));
        let mut opts = OutworxSinkOptions::new(url, KEY);
        opts.max_backoff = Duration::from_millis(400);
        let counter = errors.clone();
        opts.on_error = Some(Arc::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        let sink = OutworxSink::spawn(opts).unwrap();
        for i in 0..500 {
            sink.send(&event(i));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(f.events(), 0);
        assert!(
            errors.load(Ordering::Relaxed) >= 2,
            "on_error sees each failed attempt"
        );
        f.set(Mode::Ok);
        eventually("recovery", || f.events() == 500).await;
        assert_eq!(sink.dropped(), 0);
    }

    #[tokio::test]
    async fn a_refused_key_stops_sending_for_good() {
        let (f, url) = fake(Mode::Ok).await;
        let sink = OutworxSink::spawn(OutworxSinkOptions::new(url, KEY)).unwrap();
        sink.send(&event(0));
        eventually("the first batch", || f.events() == 1).await;
        f.set(Mode::Unauthorized);
        sink.send(&event(1));
        eventually("stopped", || sink.stopped()).await;
        let attempts = f.seen.lock().unwrap().attempts;
        f.set(Mode::Ok);
        for i in 0..10 {
            sink.send(&event(i));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            f.seen.lock().unwrap().attempts,
            attempts,
            "nothing more was sent"
        );
        assert_eq!(sink.dropped(), 11);
    }

    #[tokio::test]
    async fn a_key_refused_at_verify_sends_nothing() {
        let (f, url) = fake(Mode::Unauthorized).await;
        let sink = OutworxSink::spawn(OutworxSinkOptions::new(url, KEY)).unwrap();
        eventually("stopped at verify", || sink.stopped()).await;
        sink.send(&event(0));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(f.seen.lock().unwrap().attempts, 0);
    }

    #[tokio::test]
    async fn a_black_hole_ingest_never_blocks_send_and_a_full_queue_drops_the_newest() {
        let (f, url) = fake(Mode::BlackHole).await;
        let mut opts = OutworxSinkOptions::new(url, KEY);
        opts.capacity = 100;
        let sink = OutworxSink::spawn(opts).unwrap();
        sink.send(&event(0));
        eventually("the first batch is stuck at the ingest", || {
            f.seen.lock().unwrap().attempts == 1
        })
        .await;
        // The ingest never answers; every send still returns at once.
        for i in 0..1000 {
            sink.send(&event(i));
        }
        assert_eq!(sink.dropped(), 900, "100 queued, the newest 900 dropped");
        assert_eq!(f.events(), 0);
    }

    #[tokio::test]
    async fn flush_delivers_what_is_queued() {
        let (f, url) = fake(Mode::Ok).await;
        let mut opts = OutworxSinkOptions::new(url, KEY);
        opts.linger = Duration::from_secs(60);
        opts.batch_size = 1000;
        let sink = OutworxSink::spawn(opts).unwrap();
        for i in 0..42 {
            sink.send(&event(i));
        }
        sink.flush().await;
        assert_eq!(f.events(), 42);
        sink.flush().await; // an empty flush returns at once
    }

    fn captured(i: usize, bytes: usize) -> Arc<DeliveryEvent> {
        Arc::new(DeliveryEvent {
            payload_size: i,
            request_body: Some("b".repeat(bytes)),
            ..crate::event::sample()
        })
    }

    #[tokio::test]
    async fn batches_are_capped_in_bytes_so_captured_bodies_fit_the_ingest() {
        // 100 events of 60 KiB: one batch of 100 would be 6 MiB against a 1 MiB ingest.
        let (f, url) = fake_limited(Mode::Ok, 1 << 20).await;
        let sink = OutworxSink::spawn(OutworxSinkOptions::new(url, KEY)).unwrap();
        for i in 0..100 {
            sink.send(&captured(i, 60 * 1024));
        }
        eventually("all 100 events", || f.events() == 100).await;
        assert_eq!(sink.dropped(), 0);
    }

    #[tokio::test]
    async fn a_413_splits_the_batch_until_it_fits_and_drops_only_an_event_too_large_alone() {
        let (f, url) = fake_limited(Mode::Ok, 200 * 1024).await;
        let mut opts = OutworxSinkOptions::new(url, KEY);
        opts.max_batch_bytes = 100 << 20; // the ingest's limit is what stops it here
        opts.linger = Duration::from_millis(300);
        let sink = OutworxSink::spawn(opts).unwrap();
        for i in 0..40 {
            sink.send(&captured(i, 30 * 1024));
        }
        sink.send(&captured(99, 300 * 1024)); // larger than the ingest takes, even alone
        sink.flush().await;
        eventually("the 40 that fit", || f.events() == 40).await;
        assert_eq!(sink.dropped(), 1);
        assert_eq!(sink.sent(), 40);
    }

    #[tokio::test]
    async fn a_422_counts_only_the_events_the_ingest_refused() {
        let (_f, url) = fake(Mode::Partial).await;
        let mut opts = OutworxSinkOptions::new(url, KEY);
        opts.linger = Duration::from_millis(300);
        let sink = OutworxSink::spawn(opts).unwrap();
        for i in 0..5 {
            sink.send(&event(i));
        }
        sink.flush().await;
        assert_eq!((sink.sent(), sink.dropped()), (3, 2));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_too() {
        let (f, url) = fake(Mode::BlackHole).await;
        let mut opts = OutworxSinkOptions::new(url, KEY);
        opts.max_queued_bytes = 1 << 20;
        let sink = OutworxSink::spawn(opts).unwrap();
        sink.send(&event(0));
        eventually("the first batch is stuck at the ingest", || {
            f.seen.lock().unwrap().attempts == 1
        })
        .await;
        // 100 events of 60 KiB (6 MiB) against a 1 MiB queue, far below 10,000 events.
        for i in 0..100 {
            sink.send(&captured(i, 60 * 1024));
        }
        let dropped = sink.dropped();
        assert!((80..=90).contains(&dropped), "{dropped} dropped");
    }

    #[test]
    fn the_verify_url_is_derived_as_the_python_package_does() {
        let url = |e: &str| OutworxSinkOptions::new(e, KEY).verify_url();
        assert_eq!(
            url("https://hooks.outworx.io/api/ingest"),
            "https://hooks.outworx.io/api/sdk/verify"
        );
        assert_eq!(
            url("http://127.0.0.1:8787/base/api/ingest/"),
            "http://127.0.0.1:8787/base/api/sdk/verify"
        );
        assert_eq!(
            url("http://127.0.0.1:8787/events"),
            "http://127.0.0.1:8787/api/sdk/verify"
        );
    }

    #[test]
    fn outside_a_runtime_the_sink_cannot_start() {
        assert!(OutworxSink::spawn(OutworxSinkOptions::new("http://x/api/ingest", KEY)).is_none());
    }
}
