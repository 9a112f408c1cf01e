//! `OutworxHooksService`: the pipeline in front of any tower service.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use tower::Service;

use super::OutworxHooksLayer;
use super::options::EventType;
use crate::pipeline::{HandlerError, Verified, receive_route};
use crate::route::{KeyOrigin, RouteHandle};
use crate::store::BoxFuture;

/// The service [`OutworxHooksLayer`] wraps around `S`.
#[derive(Clone, Debug)]
pub struct OutworxHooksService<S> {
    pub(crate) inner: S,
    pub(crate) layer: OutworxHooksLayer,
}

impl OutworxHooksLayer {
    fn keys(&self, v: &Verified) -> (Option<String>, Option<String>) {
        let o = &self.options;
        let wants_json = o.key.is_some() || matches!(o.event_type, Some(EventType::Field(_)));
        let json: Option<serde_json::Value> = if wants_json { v.json_opt() } else { None };
        let (natural, default_type) =
            v.provider_defaults(o.natural_key && o.key.is_none(), o.event_type.is_none());
        let key = match &o.key {
            Some(f) => f(v.parts(), json.as_ref(), &v.parts().headers),
            None => natural,
        };
        let event_type = match &o.event_type {
            Some(EventType::Header(h)) => v.header(h),
            Some(EventType::Field(path)) => {
                let mut at = json.as_ref();
                for seg in path {
                    at = at.and_then(|j| j.get(seg));
                }
                at.and_then(crate::pipeline::IntoKey::into_key)
            }
            None => default_type,
        };
        (key, event_type)
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for OutworxHooksService<S>
where
    S: Service<Request, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display + Send,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service is driven to readiness in `call`, on its own clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let layer = self.layer.clone();
        Box::pin(async move {
            let route = RouteHandle::Shared(layer.route.clone());
            let v = match receive_route(route, req.map(Body::new)).await {
                Ok(v) => v,
                Err(resp) => return Ok(resp),
            };
            let (key, event_type) = layer.keys(&v);
            let o = &layer.options;
            let origin = if o.key.is_none() && o.natural_key {
                KeyOrigin::Natural
            } else {
                KeyOrigin::Given
            };
            let resp = v
                .finish(key, origin, event_type, move |parts, bytes| async move {
                    let mut inner = inner;
                    let req = Request::from_parts(parts, Body::from(bytes));
                    let ready = std::future::poll_fn(|cx| inner.poll_ready(cx)).await;
                    let result = match ready {
                        Ok(()) => inner.call(req).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(resp) => resp.map(Body::new),
                        Err(e) => {
                            let mut resp = (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                                .into_response();
                            resp.extensions_mut()
                                .insert(HandlerError(format!("the inner service failed: {e}")));
                            resp
                        }
                    }
                })
                .await;
            Ok(resp)
        })
    }
}
