#![doc = include_str!("../docs/otel.md")]

use http::HeaderMap;

#[cfg(any(feature = "send", feature = "inbox"))]
/// The `traceparent` of `span`, to store beside queued work. `None` without the feature, or
/// when OpenTelemetry does not record the span.
pub(crate) fn traceparent(span: &tracing::Span) -> Option<String> {
    #[cfg(feature = "otel")]
    {
        imp::traceparent(span)
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}

#[cfg(any(feature = "send", feature = "inbox"))]
/// Makes a stored `traceparent` the parent of `span`; call it before the span is entered.
pub(crate) fn set_stored_parent(span: &tracing::Span, traceparent: Option<&str>) {
    #[cfg(feature = "otel")]
    if let Some(tp) = traceparent {
        imp::set_parent(span, &imp::One(tp));
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, traceparent);
}

/// Makes the context an inbound request carries the parent of `span`, before it is entered,
/// unless the application's own span for the request is already its parent.
pub(crate) fn set_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    #[cfg(feature = "otel")]
    if let Some(tp) = headers
        .get(imp::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|tp| well_formed(tp))
        && !imp::in_recorded_span()
    {
        imp::set_parent(span, &imp::One(tp));
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, headers);
}

#[cfg(feature = "send")]
/// Writes `span`'s context into an outbound request's headers (`traceparent`, `tracestate`).
pub(crate) fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    #[cfg(feature = "otel")]
    imp::inject(span, headers);
    #[cfg(not(feature = "otel"))]
    let _ = (span, headers);
}

/// A W3C `traceparent` exactly as version `00` writes it: `00-` 32 hex `-` 16 hex `-` 2 hex,
/// lowercase, ids not all zero (55 bytes). Only this form is taken from the network.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) fn well_formed(tp: &str) -> bool {
    let b = tp.as_bytes();
    let hex = |part: &[u8]| part.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let id = |part: &[u8]| hex(part) && part.iter().any(|&c| c != b'0');
    b.len() == 55
        && b.starts_with(b"00-")
        && b.get(35) == Some(&b'-')
        && b.get(52) == Some(&b'-')
        && b.get(3..35).is_some_and(id)
        && b.get(36..52).is_some_and(id)
        && b.get(53..55).is_some_and(hex)
}

#[cfg(feature = "otel")]
mod imp {
    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    pub(super) const TRACEPARENT: &str = "traceparent";

    /// One `traceparent` (stored, or a checked header); never a `tracestate`.
    pub(super) struct One<'a>(pub(super) &'a str);

    impl Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == TRACEPARENT).then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT]
        }
    }

    #[cfg(feature = "send")]
    struct Out<'a>(&'a mut http::HeaderMap);

    #[cfg(feature = "send")]
    impl opentelemetry::propagation::Injector for Out<'_> {
        fn set(&mut self, key: &str, value: String) {
            if value.is_empty() {
                return;
            }
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(key.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                self.0.insert(k, v);
            }
        }
    }

    #[cfg(any(feature = "send", feature = "inbox"))]
    struct Stored(Option<String>);

    #[cfg(any(feature = "send", feature = "inbox"))]
    impl opentelemetry::propagation::Injector for Stored {
        fn set(&mut self, key: &str, value: String) {
            if key == TRACEPARENT {
                self.0 = Some(value);
            }
        }
    }

    /// Whether the current span (the application's, around ours) is recorded by
    /// OpenTelemetry: then it is the parent, and an inbound header is its business.
    pub(super) fn in_recorded_span() -> bool {
        use opentelemetry::trace::TraceContextExt as _;
        tracing::Span::current()
            .context()
            .span()
            .span_context()
            .is_valid()
    }

    pub(super) fn set_parent(span: &tracing::Span, from: &dyn Extractor) {
        let cx = TraceContextPropagator::new().extract(from);
        // A malformed header gives an empty context: the span stays a root, as it was.
        // Without the layer, or on a span filtered out, there is nothing to set.
        let _ = span.set_parent(cx);
    }

    #[cfg(any(feature = "send", feature = "inbox"))]
    pub(super) fn traceparent(span: &tracing::Span) -> Option<String> {
        use opentelemetry::trace::TraceContextExt as _;
        let mut cx = span.context();
        if !cx.span().span_context().is_valid() {
            // A span filtered out of the OpenTelemetry layer (kept by another): the nearest
            // recorded one around it is the active context.
            cx = opentelemetry::Context::current();
        }
        let mut out = Stored(None);
        TraceContextPropagator::new().inject_context(&cx, &mut out);
        out.0.filter(|tp| super::well_formed(tp))
    }

    #[cfg(feature = "send")]
    pub(super) fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
        TraceContextPropagator::new().inject_context(&span.context(), &mut Out(headers));
    }
}

#[cfg(feature = "otel")]
pub use exporter::{Otel, OtelError};

#[cfg(feature = "otel")]
mod exporter {
    use std::time::Duration;

    use bytes::Bytes;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use tracing_subscriber::registry::LookupSpan;

    /// The largest collector answer read (OpenTelemetry's own clients use the same bound).
    const MAX_ANSWER: usize = 4 << 20;

    /// Why [`Otel::from_env`] could not start.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum OtelError {
        /// `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` asks for a transport not built in.
        #[error("OTLP protocol {0:?} is not supported: use http/protobuf")]
        Protocol(String),
        /// `OTEL_TRACES_EXPORTER` names an exporter other than `otlp` or `none`.
        #[error("OTEL_TRACES_EXPORTER={0:?} is not supported: use otlp or none")]
        Exporter(String),
        /// The exporter's thread or HTTP client could not be started.
        #[error("the OTLP exporter could not start: {0}")]
        Start(String),
        /// The exporter refused its configuration (an endpoint that is not a URL, say).
        #[error("the OTLP exporter's configuration: {0}")]
        Config(String),
        /// Flushing or shutting down failed (the collector did not answer, say).
        #[error("the OTLP exporter could not flush: {0}")]
        Flush(String),
    }

    /// An OTLP/HTTP (protobuf) trace exporter configured from the standard variables.
    ///
    /// - Where: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT` plus
    ///   `/v1/traces` (default `http://localhost:4318`); `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`
    ///   and `..TIMEOUT` (milliseconds, default 10 000).
    /// - What: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; `OTEL_TRACES_SAMPLER` and
    ///   `OTEL_TRACES_SAMPLER_ARG`; the batch's `OTEL_BSP_*`.
    /// - Off: `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` build a provider that
    ///   exports nothing, so the same binary runs without a collector. Another exporter or a
    ///   protocol other than `http/protobuf` is refused rather than ignored.
    ///
    /// The exporter follows no redirects (the collector's headers, an API key often, go to
    /// the configured endpoint only), reads at most 4 MiB of an answer, and its errors never
    /// carry the endpoint's URL.
    ///
    /// Spans are batched and sent from a thread of the exporter's own (with its own small
    /// runtime), never from the application's tasks: a slow or absent collector costs a
    /// request nothing, and the batch queue's bound (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 spans)
    /// drops rather than grows. `from_env` also installs the provider and W3C Trace Context
    /// as OpenTelemetry's globals.
    ///
    /// ```no_run
    /// use tracing_subscriber::prelude::*;
    ///
    /// # fn main() -> Result<(), outworx_hooks::otel::OtelError> {
    /// let otel = outworx_hooks::otel::Otel::from_env()?;
    /// tracing_subscriber::registry()
    ///     .with(otel.layer())
    ///     .with(tracing_subscriber::fmt::layer())
    ///     .init();
    /// otel.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct Otel {
        provider: SdkTracerProvider,
        thread: Option<ExportThread>,
    }

    impl Otel {
        /// Builds the exporter and provider from `OTEL_*` (see the type's documentation).
        ///
        /// # Errors
        /// An unsupported protocol, an endpoint that is not a URL, or a thread that could not
        /// start.
        pub fn from_env() -> Result<Self, OtelError> {
            let var = |k: &str| {
                std::env::var(k)
                    .ok()
                    .map(|v| v.trim().to_ascii_lowercase())
                    .filter(|v| !v.is_empty())
            };
            let exporter = var("OTEL_TRACES_EXPORTER");
            if let Some(e) = exporter
                .as_deref()
                .filter(|e| !matches!(*e, "otlp" | "none"))
            {
                return Err(OtelError::Exporter(e.to_owned()));
            }
            let off = var("OTEL_SDK_DISABLED").as_deref() == Some("true")
                || exporter.as_deref() == Some("none");
            let resource = Resource::builder().build();
            if off {
                let provider = SdkTracerProvider::builder().with_resource(resource).build();
                return Ok(Self::install(provider, None));
            }
            if let Some(p) = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
                .filter(|p| p != "http/protobuf")
            {
                return Err(OtelError::Protocol(p));
            }
            let timeout = var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::from_secs(10), Duration::from_millis);
            let thread = ExportThread::start()?;
            let client = Client {
                // No redirects: a collector's API key (`OTEL_EXPORTER_OTLP_HEADERS`) goes to
                // the configured endpoint and nowhere else.
                http: reqwest::Client::builder()
                    .timeout(timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| OtelError::Start(e.to_string()))?,
                rt: thread.handle.clone(),
            };
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(client)
                .build()
                .map_err(|e| OtelError::Config(e.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            Ok(Self::install(provider, Some(thread)))
        }

        /// [`Otel::from_env`] when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
        /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, not empty), `None` otherwise: for a binary that
        /// exports only where a collector is configured.
        ///
        /// # Errors
        /// As [`Otel::from_env`].
        pub fn from_env_if_configured() -> Result<Option<Self>, OtelError> {
            let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
            if set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Self::from_env().map(Some)
            } else {
                Ok(None)
            }
        }

        fn install(provider: SdkTracerProvider, thread: Option<ExportThread>) -> Self {
            opentelemetry::global::set_tracer_provider(provider.clone());
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            Self { provider, thread }
        }

        /// The `tracing` layer that turns spans into OpenTelemetry spans.
        pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
        where
            S: tracing::Subscriber + for<'a> LookupSpan<'a>,
        {
            tracing_opentelemetry::layer().with_tracer(self.provider.tracer("outworx-hooks"))
        }

        /// The provider, for instrumentation of the application's own.
        #[must_use]
        pub fn provider(&self) -> &SdkTracerProvider {
            &self.provider
        }

        /// Exports what is buffered now (a test, or before a planned pause).
        ///
        /// # Errors
        /// The collector did not take the batch in time.
        pub fn flush(&self) -> Result<(), OtelError> {
            self.provider
                .force_flush()
                .map_err(|e| OtelError::Flush(e.to_string()))
        }

        /// Exports what is buffered and stops the exporter; call it before the process exits.
        /// Dropping an `Otel` does the same, ignoring the error.
        ///
        /// # Errors
        /// The collector did not take the last batch in time.
        pub fn shutdown(mut self) -> Result<(), OtelError> {
            self.stop()
        }

        fn stop(&mut self) -> Result<(), OtelError> {
            let r = match self.provider.shutdown() {
                Ok(()) | Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown) => Ok(()),
                Err(e) => Err(OtelError::Flush(e.to_string())),
            };
            drop(self.thread.take());
            r
        }
    }

    impl Drop for Otel {
        fn drop(&mut self) {
            let _ = self.stop();
        }
    }

    /// A thread with a small runtime of its own, where the exporter's requests run: the
    /// batch processor blocks its own thread on them, and the application's runtime (its
    /// flavour, its shutdown) never matters.
    #[derive(Debug)]
    struct ExportThread {
        handle: tokio::runtime::Handle,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        join: Option<std::thread::JoinHandle<()>>,
    }

    impl ExportThread {
        fn start() -> Result<Self, OtelError> {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (ready, handle) = std::sync::mpsc::sync_channel(1);
            // The runtime is built, run and dropped on its own thread: never inside the
            // application's runtime, where dropping one panics.
            let join = std::thread::Builder::new()
                .name("outworx-otel".to_owned())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                    // A request still resolving a name is not waited for.
                    rt.shutdown_timeout(Duration::from_secs(1));
                })
                .map_err(|e| OtelError::Start(e.to_string()))?;
            let handle = handle
                .recv()
                .map_err(|e| OtelError::Start(e.to_string()))?
                .map_err(OtelError::Start)?;
            Ok(Self {
                handle,
                stop: Some(stop),
                join: Some(join),
            })
        }
    }

    impl Drop for ExportThread {
        fn drop(&mut self) {
            if let Some(s) = self.stop.take() {
                let _ = s.send(());
            }
            if let Some(j) = self.join.take() {
                let _ = j.join();
            }
        }
    }

    /// `opentelemetry-http`'s client over this crate's reqwest, run on the export thread.
    #[derive(Debug)]
    struct Client {
        http: reqwest::Client,
        rt: tokio::runtime::Handle,
    }

    #[async_trait::async_trait]
    impl opentelemetry_http::HttpClient for Client {
        async fn send_bytes(
            &self,
            request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
            let http = self.http.clone();
            self.rt
                .spawn(async move {
                    // Errors without the URL, which may carry credentials.
                    let request =
                        reqwest::Request::try_from(request).map_err(|e| e.without_url())?;
                    let mut answer = http.execute(request).await.map_err(|e| e.without_url())?;
                    let mut out = http::Response::builder().status(answer.status());
                    if let Some(h) = out.headers_mut() {
                        h.clone_from(answer.headers());
                    }
                    let mut body = Vec::new();
                    while let Some(chunk) = answer.chunk().await.map_err(|e| e.without_url())? {
                        if body.len() + chunk.len() > MAX_ANSWER {
                            return Err("the collector's answer is larger than 4 MiB".into());
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok(out.body(Bytes::from(body))?)
                })
                .await?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::well_formed;

    #[test]
    fn only_the_exact_version_00_form_is_taken() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(well_formed(good));
        assert!(well_formed(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        ));
        for bad in [
            "",
            "00-1-1-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9é2b7-1",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
        // Every cut of a good one is refused, and nothing panics on any byte string.
        for n in 0..good.len() {
            assert!(!well_formed(&good[..n]));
        }
    }
}
