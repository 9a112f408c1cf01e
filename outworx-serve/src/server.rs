//! The connection loop of `outworx serve`: HTTP/1.1 with a deadline for each request's
//! headers and one for the whole request, a bound on connections served at once, the peer's
//! address for the handlers, and a graceful stop.
//!
//! `axum::serve` has none of those bounds, and the ingress needs no key: a client that opens
//! connections and sends its headers a byte a minute must not hold the server.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// The bounds of [`run`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the connections finish
/// (for at most the request timeout).
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: past the bound, new connections wait in the backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let timeout = limits.request_timeout;
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let answer = app.oneshot(req.map(axum::body::Body::new));
                match tokio::time::timeout(timeout, answer).await {
                    Ok(r) => r,
                    Err(_) => Ok(timed_out()),
                }
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            // A connection error (a reset, a malformed request) ends only that connection.
            let _ = watched.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.request_timeout, graceful.shutdown()).await;
    Ok(())
}

fn timed_out() -> axum::response::Response {
    axum::response::IntoResponse::into_response((
        http::StatusCode::REQUEST_TIMEOUT,
        "the request took too long",
    ))
}
