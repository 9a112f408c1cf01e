//! A delivery whose signature was checked: its request, raw body and verdict, what the
//! generated glue reads from it (the provider's natural key and event type, the handler's
//! typed body), and the event it is reported as.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::Request;
use bytes::Bytes;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::body::{self, skim};
use crate::event::{self, DeliveryEvent};
use crate::route::RouteHandle;
use crate::runtime::Runtime;
use crate::security::{SignatureResult, Source};

/// The request together with the router's state: the one extractor of a `#[webhook]`
/// handler, so the user's own extractors can run later with the same state.
#[derive(Debug)]
pub struct WithState<S>(pub Request, pub S);

impl<S: Clone + Send + Sync> axum::extract::FromRequest<S> for WithState<S> {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(WithState(req, state.clone()))
    }
}

/// Everything known about a delivery once its signature is checked.
pub struct Verified {
    pub(super) route: RouteHandle,
    pub(super) rt: Arc<Runtime>,
    pub(super) parts: Parts,
    pub(super) body: Bytes,
    pub(super) started: Instant,
    pub(super) arrived: SystemTime,
    /// The delivery's span (`webhook.receive`).
    pub(super) span: tracing::Span,
    /// The span the request arrived in (the application's, or none): the parent of the
    /// delivery's log line.
    pub(super) outer: tracing::Span,
    pub(super) signature: Option<SignatureResult>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("handler", &self.route.handler)
            .field("payload_size", &self.body.len())
            .finish_non_exhaustive()
    }
}

fn body_path(source: Option<Source>) -> Option<&'static [&'static str]> {
    match source {
        Some(Source::Body(p)) => Some(p),
        _ => None,
    }
}

/// Values usable as idempotency keys and event types.
pub trait IntoKey {
    /// The key text; `None` skips deduplication for this delivery.
    fn into_key(self) -> Option<String>;
}

impl IntoKey for &String {
    fn into_key(self) -> Option<String> {
        (!self.is_empty()).then(|| self.clone())
    }
}
impl IntoKey for &&str {
    fn into_key(self) -> Option<String> {
        (!self.is_empty()).then(|| (*self).to_owned())
    }
}
impl IntoKey for &str {
    fn into_key(self) -> Option<String> {
        (!self.is_empty()).then(|| self.to_owned())
    }
}
impl IntoKey for &std::borrow::Cow<'_, str> {
    fn into_key(self) -> Option<String> {
        (**self).into_key()
    }
}
macro_rules! int_keys {
    ($($t:ty),*) => { $( impl IntoKey for &$t { fn into_key(self) -> Option<String> { Some(self.to_string()) } } )* };
}
int_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);
impl<T> IntoKey for &Option<T>
where
    for<'a> &'a T: IntoKey,
{
    fn into_key(self) -> Option<String> {
        self.as_ref().and_then(IntoKey::into_key)
    }
}
impl IntoKey for &serde_json::Value {
    fn into_key(self) -> Option<String> {
        match self {
            serde_json::Value::String(s) => s.into_key(),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

impl Verified {
    /// The request line and headers.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// A request header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Parses the body as `T` (the handler's `Json<T>`), once.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }

    /// Parses the body as `T`, or `None` (a provider envelope for keys).
    pub fn json_opt<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The provider's natural idempotency key and event type, as asked for, in one pass.
    pub fn provider_defaults(
        &self,
        key: bool,
        event_type: bool,
    ) -> (Option<String>, Option<String>) {
        let (k, t) = self.default_sources(key, event_type);
        let [bk, bt] = skim(&self.body, [body_path(k), body_path(t)]);
        (self.resolve(k, bk), self.resolve(t, bt))
    }

    /// Parses the body as `T` (the handler's `Json<T>`) and reads the provider's natural key
    /// and event type, as asked for, in a single pass over the bytes when they are top-level
    /// fields (a second, borrowed pass otherwise).
    pub fn json_and_defaults<T: DeserializeOwned>(
        &self,
        key: bool,
        event_type: bool,
    ) -> Result<(T, Option<String>, Option<String>), String> {
        let (k, t) = self.default_sources(key, event_type);
        let (pk, pt) = (body_path(k), body_path(t));
        let top = |p: Option<&'static [&'static str]>| match p {
            Some([one]) => Ok(Some(*one)),
            Some(_) => Err(()),
            None => Ok(None),
        };
        let (value, [bk, bt]) = match (top(pk), top(pt)) {
            (Ok(a), Ok(b)) => body::parse(&self.body, [a, b]).map_err(|e| e.to_string())?,
            _ => (self.json()?, skim(&self.body, [pk, pt])),
        };
        Ok((value, self.resolve(k, bk), self.resolve(t, bt)))
    }

    pub(super) fn default_sources(
        &self,
        key: bool,
        event_type: bool,
    ) -> (Option<Source>, Option<Source>) {
        let Some(p) = self.route.provider else {
            return (None, None);
        };
        let d = p.spec();
        let pick = |want: bool, s: Option<Source>| if want { s } else { None };
        (pick(key, d.natural_key), pick(event_type, d.event_type))
    }

    pub(super) fn resolve(
        &self,
        source: Option<Source>,
        from_body: Option<String>,
    ) -> Option<String> {
        match source {
            Some(Source::Header(h)) => self.header(h),
            Some(Source::Body(_)) => from_body,
            None => None,
        }
    }

    pub(super) fn event(&self, status: u16, event_type: Option<String>) -> DeliveryEvent {
        let route = &*self.route;
        let sig = self.signature.as_ref();
        let metadata: serde_json::Map<String, serde_json::Value> = route
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string().into()))
            .collect();
        DeliveryEvent {
            provider: route.provider_name().to_owned(),
            status_code: status,
            success: (200..300).contains(&status),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            payload_size: self.body.len(),
            timestamp: event::iso8601(self.arrived),
            event_type,
            // Built only for a reader: most deployments' sinks (logs, metrics) never look.
            request_headers: (route.capture_headers && self.rt.wants_request_headers())
                .then(|| event::redact_headers(&self.parts.headers, &route.redact)),
            request_body: route.capture_body.then(|| event::capture(&self.body)),
            response_body: None,
            signature_valid: sig.map(|s| s.valid),
            signature_failure_reason: sig.and_then(|s| s.reason),
            error_message: None,
            metadata: (!metadata.is_empty()).then_some(metadata),
            source_url: Some(event::source_url(&self.parts.uri)),
            processing_status: None,
            processing_marked_at: None,
            processing_failure_reason: None,
            direction: None,
            handler: route.handler,
            signature_hint: sig.and_then(|s| s.hint.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_values() {
        assert_eq!((&Some(String::from("a"))).into_key(), Some("a".into()));
        assert_eq!((&None::<String>).into_key(), None);
        assert_eq!((&String::new()).into_key(), None);
        assert_eq!((&42u64).into_key(), Some("42".into()));
        assert_eq!((&serde_json::json!("x")).into_key(), Some("x".into()));
        assert_eq!((&serde_json::json!(null)).into_key(), None);
    }
}
