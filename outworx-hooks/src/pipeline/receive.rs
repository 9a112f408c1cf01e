//! The front of the pipeline: a request is checked against `allow_ips`, its body read within
//! the route's limit, and its signature verified over the exact bytes; configuration faults,
//! refusals and handshakes are answered here.

use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use tracing::Instrument as _;

use super::Verified;
use super::respond::Note;
use crate::route::{Resolved, Route, RouteHandle};
use crate::runtime::runtime;
use crate::security::custom::{run_custom, run_dyn};
use crate::security::{FailureReason, Provider, SignatureResult, SignedRequest, handshake};

/// Reads, limits and verifies one delivery; answers early (403, 413, 401, 500, handshakes).
pub async fn receive(route: &'static Route, req: Request) -> Result<Verified, Response> {
    receive_route(RouteHandle::Static(route), req).await
}

/// [`receive`] for a route of either kind (a layer's is shared, not static).
pub(crate) async fn receive_route(route: RouteHandle, req: Request) -> Result<Verified, Response> {
    // One span per delivery, with OpenTelemetry's HTTP fields; `finish` and `emit` fill in
    // the rest (event type, key hash, verdict, status, processing status).
    let outer = tracing::Span::current();
    let span = tracing::info_span!(
        "webhook.receive",
        "http.request.method" = %req.method(),
        // The path the router saw first (a nested router strips its prefix from `uri`).
        "url.path" = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or(req.uri(), |o| &o.0)
            .path(),
        "webhook.provider" = route.provider.map_or("custom", crate::Provider::name),
        "webhook.route" = route.handler,
        "webhook.event_type" = tracing::field::Empty,
        "webhook.idempotency_key_hash" = tracing::field::Empty,
        "webhook.signature.valid" = tracing::field::Empty,
        "webhook.processing_status" = tracing::field::Empty,
        "webhook.inbox_id" = tracing::field::Empty,
        "http.response.status_code" = tracing::field::Empty,
    );
    // A sender's trace continues here; a run of the inbox's worker is already inside its own
    // span, in the trace of the delivery's receipt.
    #[cfg(feature = "inbox")]
    let dispatched = req.extensions().get::<crate::inbox::Dispatch>().is_some();
    #[cfg(not(feature = "inbox"))]
    let dispatched = false;
    if !dispatched {
        crate::otel::set_remote_parent(&span, req.headers());
    }
    receive_in(route, req, span.clone(), outer)
        .instrument(span)
        .await
}

async fn receive_in(
    route: RouteHandle,
    req: Request,
    span: tracing::Span,
    outer: tracing::Span,
) -> Result<Verified, Response> {
    let started = Instant::now();
    let arrived = SystemTime::now();
    let rt = runtime();
    let (parts, body) = req.into_parts();
    let mut v = Verified {
        route: route.clone(),
        rt,
        parts,
        body: Bytes::new(),
        started,
        arrived,
        span,
        outer,
        signature: None,
    };

    // The inbox's worker runs a delivery that was verified when it arrived: its stored
    // request is read as it is, with the verdict it had then.
    #[cfg(feature = "inbox")]
    if let Some(d) = v.parts.extensions.get::<crate::inbox::Dispatch>().cloned() {
        // Bounded when it arrived: read it whole, whatever the route's limit is now.
        v.body = axum::body::to_bytes(Body::new(body), usize::MAX)
            .await
            .unwrap_or_default();
        v.signature = Some(match d.signature_valid {
            Some(false) => SignatureResult::fail(
                FailureReason::HmacMismatch,
                "the signature did not verify when the delivery arrived",
            ),
            _ => SignatureResult::ok(),
        });
        return Ok(v);
    }
    let resolved = match route.resolved() {
        Ok(r) => r,
        // A configuration fault: 5xx so the provider retries after the fix, never 401.
        Err(problem) => {
            tracing::error!(handler = route.handler, location = %route.location(), "{problem}");
            return Err(v.refuse(StatusCode::INTERNAL_SERVER_ERROR, MISCONFIGURED, problem));
        }
    };
    // The source is checked before a byte of the body is read.
    if let Some(allow) = &resolved.allow
        && let Err((status, public, why)) = v.check_source(allow)
    {
        return Err(v.refuse(status, public, why));
    }

    let declared = v
        .parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body as u64) {
        let why = too_large(route.max_body);
        return Err(v.refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE, why));
    }
    v.body = match axum::body::to_bytes(Body::new(body), route.max_body).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => {
            let why = too_large(route.max_body);
            return Err(v.refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE, why));
        }
        Err(e) => {
            let why = format!("could not read the body: {e}");
            return Err(v.refuse(StatusCode::BAD_REQUEST, UNREADABLE, why));
        }
    };

    let verdict = v.verify(resolved).await;
    let valid = verdict.valid;
    v.span.record("webhook.signature.valid", valid);
    v.signature = Some(verdict);
    // A `queue` route stores only what verified, whatever `reject_invalid` says: storing
    // unauthenticated bodies would let anyone fill the inbox (100 forgeries of 1 MB, 100 MB).
    if !valid && (route.reject_invalid || route.queue.is_some()) {
        let resp = (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"invalid webhook signature"}"#,
        )
            .into_response();
        return Err(v.without_handler(resp, Note::default()));
    }
    let first_secret = resolved.first_secret.as_deref();
    if valid
        && let Some((resp, kind)) =
            handshake::answer(route.provider, &v.parts.headers, &v.body, first_secret)
    {
        return Err(v.without_handler(resp, Note::handshake(kind)));
    }
    Ok(v)
}

/// The body of a 500 for a configuration fault: the details go to the log and the event only.
const MISCONFIGURED: &str = "the webhook endpoint is misconfigured; retry later";

/// The body of a 413.
const TOO_LARGE: &str = "the request body is larger than this endpoint accepts";

/// The body of a 400 for a body that could not be read.
const UNREADABLE: &str = "the request body could not be read";

impl Verified {
    /// `allow_ips`: the client's address (through trusted proxies only) must be listed; the
    /// refusal's status, public body and reported reason otherwise.
    fn check_source(
        &self,
        allow: &[ipnet::IpNet],
    ) -> Result<(), (StatusCode, &'static str, String)> {
        let trusted = &self.rt.trusted_proxies;
        Err(match super::url::client_ip(&self.parts, trusted) {
            Some(ip) if super::url::allowed(allow, ip) => return Ok(()),
            Some(ip) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the source address {ip} is not in the route's allow_ips"),
            ),
            None if super::url::peer(&self.parts).is_none() => {
                let why = "allow_ips needs the peer address: serve the app with \
                           `into_make_service_with_connect_info::<SocketAddr>()`";
                tracing::error!(handler = self.route.handler, location = %self.route.location(), "{why}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    MISCONFIGURED,
                    why.to_owned(),
                )
            }
            None => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "a trusted proxy forwarded an X-Forwarded-For entry that is not an address"
                    .to_owned(),
            ),
        })
    }

    /// The signature verdict: the provider's scheme over the exact bytes (with the public URL
    /// for the schemes that sign it), or the route's custom verifier.
    async fn verify(&self, resolved: &Resolved) -> SignatureResult {
        let route = &*self.route;
        let public_base = self.rt.public_url.as_deref();
        let trusted = &self.rt.trusted_proxies;
        // Only URL-signing schemes (and custom verifiers) need the public URL.
        let url = (route.has_custom() || route.provider.is_some_and(Provider::signs_url))
            .then(|| super::url::public_url(&self.parts, public_base, trusted));
        let mut delivery = SignedRequest::new(&self.parts.headers, &self.body)
            .with_method(self.parts.method.as_str());
        if let Some(url) = &url {
            delivery = delivery.with_url(url);
        }
        let mut verdict = match (&resolved.verifier, route.custom, &route.dyn_verifier) {
            (Some(verifier), _, _) => verifier.verify(&delivery),
            (None, Some(custom), _) => run_custom(custom, &delivery),
            (None, None, Some(dynamic)) => {
                run_dyn(dynamic, self.body.clone(), self.parts.headers.clone()).await
            }
            (None, None, None) => {
                SignatureResult::fail(FailureReason::UnsupportedProvider, "no verifier")
            }
        };
        if !verdict.valid
            && url.is_some()
            && super::url::ignored_forwarding(&self.parts, public_base, trusted)
            && let Some(hint) = &mut verdict.hint
        {
            hint.push_str(
                "; X-Forwarded-Host/-Proto were ignored because the peer is not a trusted \
                 proxy: set Config::public_url or Config::trusted_proxies",
            );
        }
        verdict
    }
}

/// Whether a body error is axum's length limit (the body was larger than allowed).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn too_large(limit: usize) -> String {
    format!("the body is larger than the route's limit of {limit} bytes")
}
