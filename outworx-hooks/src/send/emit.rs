//! `#[emit]` and [`EmitLayer`]: after a handler answers 2xx, its answer (or a transform of
//! it) becomes a message, committed to the outbox before the response leaves. One function,
//! [`emit_around`], does it for both.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::SendError;
use super::emitter::Emitter;
use super::limits::MAX_KEPT_REQUEST;
use super::model::NewMessage;
use crate::util::BoxFuture;

/// What a `transform` or an `owner` function sees.
pub struct EmitContext<'a> {
    event_type: &'a str,
    response: &'a serde_json::Value,
    headers: Option<&'a HeaderMap>,
    request_body: Option<&'a [u8]>,
}

impl std::fmt::Debug for EmitContext<'_> {
    // The request's headers may carry credentials: their names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmitContext")
            .field("event_type", &self.event_type)
            .field("response", &self.response)
            .field(
                "headers",
                &self.headers.map(|h| h.keys().collect::<Vec<_>>()),
            )
            .field("request_body_bytes", &self.request_body.map(<[u8]>::len))
            .finish()
    }
}

impl<'a> EmitContext<'a> {
    /// The event type being emitted.
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    /// The handler's response, as JSON.
    pub fn response(&self) -> &'a serde_json::Value {
        self.response
    }

    /// The request's headers (with `include_headers`, and always for `owner`).
    pub fn headers(&self) -> Option<&'a HeaderMap> {
        self.headers
    }

    /// The request's raw body, kept aside before the extractors read it (with
    /// `include_request`).
    pub fn request_body(&self) -> Option<&'a [u8]> {
        self.request_body
    }
}

/// What a `transform` returns: the payload, or `None` to emit nothing for this response.
#[diagnostic::on_unimplemented(
    message = "a transform returns `serde_json::Value` or `Option<serde_json::Value>`, not `{Self}`",
    label = "this transform's return type is not a payload"
)]
pub trait IntoPayload {
    /// The payload.
    fn into_payload(self) -> Option<serde_json::Value>;
}

impl IntoPayload for serde_json::Value {
    fn into_payload(self) -> Option<serde_json::Value> {
        Some(self)
    }
}

impl IntoPayload for Option<serde_json::Value> {
    fn into_payload(self) -> Option<serde_json::Value> {
        self
    }
}

/// What an `owner` function returns: the tenant, or `None` for the default one (`""`).
#[diagnostic::on_unimplemented(
    message = "an owner function returns `String`, `&str` or `Option<String>`, not `{Self}`",
    label = "this owner function's return type is not an owner"
)]
pub trait IntoOwner {
    /// The owner.
    fn into_owner(self) -> Option<String>;
}

impl IntoOwner for String {
    fn into_owner(self) -> Option<String> {
        Some(self)
    }
}

impl IntoOwner for &str {
    fn into_owner(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl IntoOwner for Option<String> {
    fn into_owner(self) -> Option<String> {
        self
    }
}

type TransformFn = Arc<dyn Fn(&EmitContext<'_>) -> Option<serde_json::Value> + Send + Sync>;
type OwnerFn = Arc<dyn Fn(&EmitContext<'_>) -> Option<String> + Send + Sync>;

/// What one `#[emit]` (or [`EmitLayer`]) emits.
#[derive(Clone)]
pub struct EmitSpec {
    pub(crate) event_type: Cow<'static, str>,
    pub(crate) transform: Option<TransformFn>,
    pub(crate) owner: Option<OwnerFn>,
    pub(crate) include_headers: bool,
    pub(crate) include_request: bool,
    pub(crate) emitter: Option<Emitter>,
}

impl std::fmt::Debug for EmitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmitSpec")
            .field("event_type", &self.event_type)
            .field("transform", &self.transform.is_some())
            .field("owner", &self.owner.is_some())
            .field("include_headers", &self.include_headers)
            .field("include_request", &self.include_request)
            .finish_non_exhaustive()
    }
}

impl EmitSpec {
    #[doc(hidden)]
    pub fn new(event_type: impl Into<Cow<'static, str>>) -> Self {
        EmitSpec {
            event_type: event_type.into(),
            transform: None,
            owner: None,
            include_headers: false,
            include_request: false,
            emitter: None,
        }
    }

    #[doc(hidden)]
    pub fn transform<P: IntoPayload>(
        mut self,
        f: impl Fn(&EmitContext<'_>) -> P + Send + Sync + 'static,
    ) -> Self {
        self.transform = Some(Arc::new(move |c| f(c).into_payload()));
        self
    }

    #[doc(hidden)]
    pub fn owner<O: IntoOwner>(
        mut self,
        f: impl Fn(&EmitContext<'_>) -> O + Send + Sync + 'static,
    ) -> Self {
        self.owner = Some(Arc::new(move |c| f(c).into_owner()));
        self
    }

    #[doc(hidden)]
    pub fn include_headers(mut self) -> Self {
        self.include_headers = true;
        self
    }

    #[doc(hidden)]
    pub fn include_request(mut self) -> Self {
        self.include_request = true;
        self
    }
}

/// Runs `handler` and, when it answers 2xx, commits its message before answering. A request
/// that cannot have its message (no emitter, a response that is not JSON or too large, the
/// outbox failing) is answered 500 and says why in the log; a non-2xx answer emits nothing.
#[doc(hidden)]
pub async fn emit_around<F, Fut>(spec: &EmitSpec, req: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    use tracing::Instrument as _;
    // One span around the handler and the commit: the message's trace context is this
    // span's, so its attempts (and the receiver's spans) join the request's trace.
    let span = tracing::info_span!(
        "webhook.emit",
        "webhook.event_type" = %spec.event_type,
        "http.response.status_code" = tracing::field::Empty,
    );
    let response = emit_around_in(spec, req, handler)
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn emit_around_in<F, Fut>(spec: &EmitSpec, req: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let emitter = spec
        .emitter
        .clone()
        .or_else(|| req.extensions().get::<Emitter>().cloned())
        .or_else(Emitter::installed);
    let Some(emitter) = emitter else {
        // Refuse before the handler runs: its work would be done with no message.
        return refuse(&spec.event_type, &SendError::NoEmitter);
    };
    let headers = (spec.include_headers || spec.owner.is_some()).then(|| req.headers().clone());
    let (req, kept) = if spec.include_request {
        let (parts, body) = req.into_parts();
        match axum::body::to_bytes(body, MAX_KEPT_REQUEST).await {
            Ok(bytes) => (
                Request::from_parts(parts, Body::from(bytes.clone())),
                Some(bytes),
            ),
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is over the 2 MiB this route keeps aside",
                )
                    .into_response();
            }
        }
    } else {
        (req, None)
    };

    let response = handler(req).await;
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let limit = emitter.shared.max_payload;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        let e = SendError::invalid(
            "response",
            format!("the response is over the {limit}-byte message limit (or failed mid-body)"),
        );
        return refuse(&spec.event_type, &e);
    };
    let message = match message(spec, &bytes, headers.as_ref(), kept.as_ref()) {
        Ok(Some(m)) => m,
        Ok(None) => return Response::from_parts(parts, Body::from(bytes)),
        Err(e) => return refuse(&spec.event_type, &e),
    };
    // Counted against the owner's quota, never refused by it: the handler has run, and a
    // 429 would have the client run it again for an event that was never sent.
    let send = emitter.send_message_with(message, false);
    let committed = match emitter.shared.commit_timeout {
        Some(t) => tokio::time::timeout(t, send)
            .await
            .unwrap_or(Err(SendError::Timeout(t))),
        None => send.await,
    };
    match committed {
        Ok(_) => Response::from_parts(parts, Body::from(bytes)),
        Err(e) => refuse(&spec.event_type, &e),
    }
}

/// An outbox outage fails every emitting request: one line every 10 s says so. (Any other
/// refusal, a route's own fault, is logged each time.)
static REFUSED: crate::util::Every = crate::util::Every::new(std::time::Duration::from_secs(10));

/// The message for a 2xx response, or `None` when the transform says to emit nothing.
fn message(
    spec: &EmitSpec,
    body: &Bytes,
    headers: Option<&HeaderMap>,
    request: Option<&Bytes>,
) -> Result<Option<NewMessage>, SendError> {
    if spec.transform.is_none() && spec.owner.is_none() {
        // The payload is the response's bytes, checked to be JSON, never re-encoded.
        let text = std::str::from_utf8(body)
            .map_err(|_| SendError::invalid("response", "it is not UTF-8 JSON"))?;
        return Ok(Some(NewMessage::json(spec.event_type.as_ref(), text)));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| SendError::invalid("response", "it is not JSON"))?;
    let cx = EmitContext {
        event_type: &spec.event_type,
        response: &value,
        headers: headers.filter(|_| spec.include_headers || spec.owner.is_some()),
        request_body: request.map(|b| &b[..]),
    };
    let owner = spec.owner.as_ref().and_then(|f| f(&cx)).unwrap_or_default();
    let payload = match &spec.transform {
        Some(f) => match f(&cx) {
            Some(p) => p,
            None => return Ok(None),
        },
        None => value.clone(),
    };
    Ok(Some(
        NewMessage::new(spec.event_type.as_ref(), &payload)?.owner(owner),
    ))
}

fn refuse(event_type: &str, e: &SendError) -> Response {
    if let SendError::RateLimited { retry_after, .. } = e {
        let body = serde_json::json!({"error": e.to_string(), "event_type": event_type});
        let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(retry_after.as_secs().max(1)),
        );
        return r;
    }
    let outage = matches!(
        e,
        SendError::Store(_) | SendError::Timeout(_) | SendError::Uncertain
    );
    if !outage {
        tracing::error!(event_type, error = %e, "the webhook message could not be committed; answering 500");
    } else if let Some(held) = REFUSED.allow() {
        tracing::error!(event_type, held, error = %e, "the webhook message could not be committed; answering 500");
    }
    let body = serde_json::json!({
        "error": "the webhook message could not be committed",
        "event_type": event_type,
    });
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// `#[emit]` at run time, for those who prefer no macro: after a 2xx, the response becomes
/// a message of `event_type`.
///
/// ```
/// use axum::{Json, Router, routing::post};
/// use outworx_hooks::send::EmitLayer;
///
/// async fn create_order() -> Json<serde_json::Value> {
///     Json(serde_json::json!({"id": 7}))
/// }
///
/// let app: Router = Router::new().route(
///     "/orders",
///     post(create_order).layer(EmitLayer::new("order.created")),
/// );
/// ```
#[derive(Clone, Debug)]
pub struct EmitLayer {
    spec: Arc<EmitSpec>,
}

impl EmitLayer {
    /// Emits `event_type` after each 2xx.
    pub fn new(event_type: impl Into<Cow<'static, str>>) -> Self {
        EmitLayer {
            spec: Arc::new(EmitSpec::new(event_type)),
        }
    }

    fn map(self, f: impl FnOnce(EmitSpec) -> EmitSpec) -> Self {
        let spec = Arc::unwrap_or_clone(self.spec);
        EmitLayer {
            spec: Arc::new(f(spec)),
        }
    }

    /// The payload is `f`'s answer instead of the response (`None`: emit nothing).
    pub fn transform<P: IntoPayload>(
        self,
        f: impl Fn(&EmitContext<'_>) -> P + Send + Sync + 'static,
    ) -> Self {
        self.map(|s| s.transform(f))
    }

    /// The owner (tenant) is `f`'s answer.
    pub fn owner<O: IntoOwner>(
        self,
        f: impl Fn(&EmitContext<'_>) -> O + Send + Sync + 'static,
    ) -> Self {
        self.map(|s| s.owner(f))
    }

    /// The transform sees the request's headers.
    pub fn include_headers(self) -> Self {
        self.map(EmitSpec::include_headers)
    }

    /// The transform sees the request's raw body (kept aside, up to 2 MiB).
    pub fn include_request(self) -> Self {
        self.map(EmitSpec::include_request)
    }

    /// Uses this emitter (instead of an `Extension<Emitter>` or the installed one).
    pub fn emitter(self, emitter: Emitter) -> Self {
        self.map(|mut s| {
            s.emitter = Some(emitter);
            s
        })
    }
}

impl<S> tower::Layer<S> for EmitLayer {
    type Service = EmitService<S>;
    fn layer(&self, inner: S) -> EmitService<S> {
        EmitService {
            inner,
            spec: Arc::clone(&self.spec),
        }
    }
}

/// The service of [`EmitLayer`].
#[derive(Clone, Debug)]
pub struct EmitService<S> {
    inner: S,
    spec: Arc<EmitSpec>,
}

impl<S> tower::Service<Request> for EmitService<S>
where
    S: tower::Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was made ready serves this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let spec = Arc::clone(&self.spec);
        Box::pin(async move {
            let response = emit_around(&spec, req, |req| async move {
                match inner.call(req).await {
                    Ok(r) => r.into_response(),
                    Err(never) => match never {},
                }
            })
            .await;
            Ok(response)
        })
    }
}
