#![doc = include_str!("../docs/metrics.md")]

use crate::event::DeliveryEvent;

/// Whether metrics are recorded (the `metrics` feature): what samples gauges asks first.
pub(crate) const ENABLED: bool = cfg!(feature = "metrics");

#[cfg(feature = "metrics")]
pub use recorder::{BUCKETS, MAX_EVENT_TYPES, MAX_HOSTS, reset};
#[cfg(feature = "prometheus")]
pub use recorder::{prometheus_handle, router};

/// Records one delivery event (received or sent).
pub(crate) fn record(e: &DeliveryEvent) {
    #[cfg(feature = "metrics")]
    recorder::record(e);
    let _ = e;
}

/// Counts deliveries that became dead: after their last attempt, with their endpoint
/// disabled or deleted, or buried when every attempt ended with its worker.
#[cfg_attr(not(feature = "send"), allow(dead_code))]
pub(crate) fn outbound_dead(n: u64) {
    #[cfg(feature = "metrics")]
    recorder::outbound_dead(n);
    let _ = n;
}

/// Sets the outbox's pending gauge.
#[cfg_attr(not(feature = "send"), allow(dead_code))]
pub(crate) fn outbound_pending(n: u64) {
    #[cfg(feature = "metrics")]
    recorder::outbound_pending(n);
    let _ = n;
}

/// Sets the inbox's gauges from a sample of its table: depth per route and status, and the
/// oldest pending delivery's age.
#[cfg_attr(not(feature = "inbox"), allow(dead_code))]
pub(crate) fn inbox_gauges(depth: &[(String, &'static str, u64)], oldest_seconds: f64) {
    #[cfg(feature = "metrics")]
    recorder::inbox_gauges(depth, oldest_seconds);
    let _ = (depth, oldest_seconds);
}

/// Sets the store breaker's gauge (1 while open).
pub(crate) fn breaker_open(open: bool) {
    #[cfg(feature = "metrics")]
    recorder::breaker_open(open);
    let _ = open;
}

/// Counts one call to a configured store: `ok`, `error`, `skipped`.
pub(crate) fn store_call(result: &'static str) {
    #[cfg(feature = "metrics")]
    recorder::store_call(result);
    let _ = result;
}

/// Counts delivery events the Outworx reporter dropped.
#[cfg_attr(not(feature = "outworx-api"), allow(dead_code))]
pub(crate) fn report_dropped(n: u64) {
    #[cfg(feature = "metrics")]
    recorder::report_dropped(n);
    let _ = n;
}

/// The recorder behind the functions above (feature `metrics`).
#[cfg(feature = "metrics")]
mod recorder {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use metrics::{Counter, Histogram};

    use crate::event::{DeliveryEvent, Direction, ProcessingStatus};

    /// Most distinct `event_type` label values; the rest are `other`.
    pub const MAX_EVENT_TYPES: usize = 100;
    /// Most distinct `endpoint_host` label values; the rest are `other`.
    pub const MAX_HOSTS: usize = 100;
    /// Most distinct `provider`, `route` or `status` values (fixed by the code; a guard).
    const MAX_FIXED: usize = 1000;

    /// Histogram buckets for webhook latencies, in seconds: providers time out between 3 s
    /// (Slack) and 30 s.
    pub const BUCKETS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];

    /// A label's values: the first `cap` seen, then `other`.
    struct Bounded {
        seen: HashSet<&'static str>,
        cap: usize,
    }

    impl Bounded {
        fn new(cap: usize) -> Self {
            Bounded {
                seen: HashSet::new(),
                cap,
            }
        }

        fn label(&mut self, value: &str) -> &'static str {
            if let Some(v) = self.seen.get(value) {
                return v;
            }
            if self.seen.len() >= self.cap {
                return "other";
            }
            let v = crate::util::intern(value);
            self.seen.insert(v);
            v
        }
    }

    type K2 = (&'static str, &'static str);
    type K3 = (&'static str, &'static str, &'static str);
    type K4 = (&'static str, &'static str, &'static str, &'static str);

    struct Handles {
        event_types: Bounded,
        hosts: Bounded,
        fixed: Bounded,
        received: HashMap<K4, Counter>,
        seconds: HashMap<K2, Histogram>,
        errors: HashMap<K3, Counter>,
        signature: HashMap<K3, Counter>,
        duplicates: HashMap<K2, Counter>,
        silent: HashMap<K2, Counter>,
        failures: HashMap<K2, Counter>,
        outbound: HashMap<K2, Counter>,
        outbound_seconds: Option<Histogram>,
        outbound_dead: Option<Counter>,
    }

    impl Handles {
        fn new() -> Self {
            Handles {
                event_types: Bounded::new(MAX_EVENT_TYPES),
                hosts: Bounded::new(MAX_HOSTS),
                fixed: Bounded::new(MAX_FIXED),
                received: HashMap::new(),
                seconds: HashMap::new(),
                errors: HashMap::new(),
                signature: HashMap::new(),
                duplicates: HashMap::new(),
                silent: HashMap::new(),
                failures: HashMap::new(),
                outbound: HashMap::new(),
                outbound_seconds: None,
                outbound_dead: None,
            }
        }
    }

    static HANDLES: Mutex<Option<Handles>> = Mutex::new(None);

    /// Forgets the metric handles made so far, so they are made again against the recorder now
    /// installed: call it after installing your own recorder if deliveries were recorded before
    /// (the Prometheus [`router`] does it itself).
    pub fn reset() {
        *HANDLES.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn status_text(code: u16) -> &'static str {
        const CLASSES: [&str; 6] = ["0", "1xx", "2xx", "3xx", "4xx", "5xx"];
        match code {
            100..=599 => {
                let mut buf = [0u8; 3];
                let digits = [code / 100, code / 10 % 10, code % 10];
                for (b, d) in buf.iter_mut().zip(digits) {
                    *b = b'0' + u8::try_from(d).unwrap_or(0);
                }
                crate::util::intern(std::str::from_utf8(&buf).unwrap_or("0"))
            }
            _ => CLASSES[0],
        }
    }

    /// Records one event: the handles are looked up (or made) under the lock, cloned, and
    /// incremented after it is released, so deliveries on other cores do not wait on the
    /// recorder.
    pub(super) fn record(e: &DeliveryEvent) {
        if e.direction == Some(Direction::Outbound) {
            outbound(e);
            return;
        }
        let mut counters: Vec<Counter> = Vec::with_capacity(5);
        let seconds = {
            let mut guard = HANDLES.lock().unwrap_or_else(|p| p.into_inner());
            let h = guard.get_or_insert_with(Handles::new);
            let provider = h.fixed.label(&e.provider);
            let route = e.handler;
            // Only a verified delivery's type becomes a label: forged ones cannot fill the bound.
            let event_type = match (e.signature_valid, e.event_type.as_deref()) {
                (Some(false), _) => "unverified",
                (_, Some(t)) => h.event_types.label(t),
                (_, None) => "none",
            };
            let status = status_text(e.status_code);
            counters.push(
                h.received
                    .entry((provider, route, event_type, status))
                    .or_insert_with(|| {
                        metrics::counter!("webhooks_received_total", "provider" => provider, "route" => route, "event_type" => event_type, "status" => status)
                    })
                    .clone(),
            );
            let error_type = if e.signature_valid == Some(false) {
                Some("signature")
            } else if e.meta("idempotency_error").is_some() {
                Some("store")
            } else if e.status_code >= 500 {
                Some("server_error")
            } else if e.status_code >= 400 {
                Some("client_error")
            } else {
                None
            };
            if let Some(kind) = error_type {
                counters.push(
                    h.errors
                        .entry((provider, route, kind))
                        .or_insert_with(|| {
                            metrics::counter!("webhook_errors_total", "provider" => provider, "route" => route, "error_type" => kind)
                        })
                        .clone(),
                );
            }
            if let Some(reason) = e.signature_failure_reason {
                let reason = reason.as_str();
                counters.push(
                    h.signature
                        .entry((provider, route, reason))
                        .or_insert_with(|| {
                            metrics::counter!("webhook_signature_failures_total", "provider" => provider, "route" => route, "reason" => reason)
                        })
                        .clone(),
                );
            }
            let mut count = |map: &mut HashMap<K2, Counter>, name: &'static str| {
                counters.push(
                    map.entry((provider, route))
                        .or_insert_with(
                            || metrics::counter!(name, "provider" => provider, "route" => route),
                        )
                        .clone(),
                );
            };
            if e.meta("duplicate").is_some() {
                count(&mut h.duplicates, "webhook_duplicates_total");
            }
            match e.processing_status {
                Some(ProcessingStatus::SilentDrop) => {
                    count(&mut h.silent, "webhook_silent_drops_total")
                }
                Some(ProcessingStatus::Failed) => {
                    count(&mut h.failures, "webhook_processing_failures_total");
                }
                _ => {}
            }
            h.seconds
                .entry((provider, route))
                .or_insert_with(|| {
                    metrics::histogram!("webhook_processing_seconds", "provider" => provider, "route" => route)
                })
                .clone()
        };
        for c in counters {
            c.increment(1);
        }
        seconds.record(e.duration_ms as f64 / 1000.0);
    }

    fn outbound(e: &DeliveryEvent) {
        let (attempts, seconds) = {
            let mut guard = HANDLES.lock().unwrap_or_else(|p| p.into_inner());
            let h = guard.get_or_insert_with(Handles::new);
            // `source_url` of an outbound event is the target's scheme and host only.
            let host = e
                .source_url
                .as_deref()
                .and_then(|u| u.split("://").nth(1))
                .map_or("none", |host| h.hosts.label(host));
            let class = match e.status_code {
                0 => "error",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            };
            let attempts = h
                .outbound
                .entry((host, class))
                .or_insert_with(|| {
                    metrics::counter!("webhook_outbound_attempts_total", "endpoint_host" => host, "status_class" => class)
                })
                .clone();
            let seconds = h
                .outbound_seconds
                .get_or_insert_with(|| metrics::histogram!("webhook_outbound_seconds"))
                .clone();
            (attempts, seconds)
        };
        attempts.increment(1);
        seconds.record(e.duration_ms as f64 / 1000.0);
    }

    /// Counts deliveries that became dead: after their last attempt, with their endpoint
    /// disabled or deleted, or buried when every attempt ended with its worker.
    pub(super) fn outbound_dead(n: u64) {
        let dead = {
            let mut guard = HANDLES.lock().unwrap_or_else(|p| p.into_inner());
            let h = guard.get_or_insert_with(Handles::new);
            h.outbound_dead
                .get_or_insert_with(|| metrics::counter!("webhook_outbound_dead_total"))
                .clone()
        };
        dead.increment(n);
    }

    /// Sets the inbox's gauges from a sample of its table.
    pub(super) fn inbox_gauges(depth: &[(String, &'static str, u64)], oldest_seconds: f64) {
        static SET: Mutex<Vec<K2>> = Mutex::new(Vec::new());
        let mut guard = HANDLES.lock().unwrap_or_else(|p| p.into_inner());
        let h = guard.get_or_insert_with(Handles::new);
        let mut now: Vec<K2> = Vec::with_capacity(depth.len());
        for (route, status, n) in depth {
            // The inbox keeps the route's namespace (`provider:module::handler`, escaped); the
            // other metrics' `route` is the handler's name.
            let handler = route.rsplit("%3A%3A").next().unwrap_or(route);
            let handler = handler.rsplit(':').next().unwrap_or(handler);
            let route = h.fixed.label(handler);
            metrics::gauge!("webhook_inbox_depth", "route" => route, "status" => *status)
                .set(*n as f64);
            now.push((route, status));
        }
        // A route and status no longer queued reads 0, not its last value.
        let mut before = SET.lock().unwrap_or_else(|p| p.into_inner());
        for (route, status) in before.iter().filter(|k| !now.contains(k)) {
            metrics::gauge!("webhook_inbox_depth", "route" => *route, "status" => *status).set(0.0);
        }
        *before = now;
        metrics::gauge!("webhook_inbox_oldest_seconds").set(oldest_seconds);
    }

    /// Sets the outbox's pending gauge.
    pub(super) fn outbound_pending(n: u64) {
        metrics::gauge!("webhook_outbound_pending").set(n as f64);
    }

    /// Installs the Prometheus recorder (once per process, with [`BUCKETS`] for the latency
    /// histograms) and answers `GET /metrics` in the text format. Merge it into your app:
    ///
    /// ```no_run
    /// use axum::Router;
    ///
    /// let app: Router = Router::new() /* .route(..) */
    ///     .merge(outworx_hooks::metrics::router());
    /// ```
    #[cfg(feature = "prometheus")]
    pub fn router() -> axum::Router {
        let handle = prometheus_handle();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.as_ref().map(|h| h.render()).unwrap_or_default(),
                    )
                }
            }),
        )
    }

    /// The process's Prometheus recorder, installed on first use; `None` when another recorder
    /// was installed first (its own exporter serves the metrics then).
    #[cfg(feature = "prometheus")]
    pub fn prometheus_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
            std::sync::OnceLock::new();
        HANDLE
            .get_or_init(|| {
                let builder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                    .ok()?;
                let recorder = builder.build_recorder();
                let handle = recorder.handle();
                match metrics::set_global_recorder(recorder) {
                    Ok(()) => {
                        reset();
                        // Histograms keep their samples until upkeep folds them: without a
                        // scrape, memory would grow with every delivery.
                        let upkeep = handle.clone();
                        let _ = std::thread::Builder::new()
                            .name("outworx-metrics-upkeep".into())
                            .spawn(move || {
                                loop {
                                    std::thread::sleep(std::time::Duration::from_secs(5));
                                    upkeep.run_upkeep();
                                }
                            });
                        Some(handle)
                    }
                    Err(_) => {
                        tracing::warn!(
                            "a metrics recorder was installed already; /metrics stays empty"
                        );
                        None
                    }
                }
            })
            .clone()
    }

    /// Sets the store breaker's gauge.
    pub(super) fn breaker_open(open: bool) {
        metrics::gauge!("webhook_store_breaker_open").set(if open { 1.0 } else { 0.0 });
    }

    /// Counts one call to a configured store by its result.
    pub(super) fn store_call(result: &'static str) {
        metrics::counter!("webhook_store_calls_total", "result" => result).increment(1);
    }

    /// Counts delivery events the Outworx reporter dropped.
    pub(super) fn report_dropped(n: u64) {
        metrics::counter!("webhook_report_dropped_total").increment(n);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn label_values_are_bounded() {
            let mut b = Bounded::new(3);
            assert_eq!(b.label("a"), "a");
            assert_eq!(b.label("b"), "b");
            assert_eq!(b.label("c"), "c");
            assert_eq!(b.label("d"), "other");
            assert_eq!(b.label("a"), "a");
            let mut types = Bounded::new(MAX_EVENT_TYPES);
            let distinct: HashSet<&str> = (0..10_000)
                .map(|i| types.label(&format!("type.{i}")))
                .collect();
            assert_eq!(
                distinct.len(),
                MAX_EVENT_TYPES + 1,
                "the bound, and `other`"
            );
        }

        #[test]
        fn status_codes_are_their_digits() {
            assert_eq!(status_text(200), "200");
            assert_eq!(status_text(503), "503");
            assert_eq!(status_text(0), "0");
            assert_eq!(status_text(1000), "0");
        }
    }
}
