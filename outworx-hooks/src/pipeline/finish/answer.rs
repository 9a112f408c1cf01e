//! The handler's answer: what is sent, cached for retries and reported. Its body is read
//! only as far as something keeps it.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header;

use super::HandlerError;
use crate::store::{CachedResponse, MAX_CACHED_BODY};
use crate::util::panic_message;

/// The handler's answer: what is sent, cached for retries and reported. Its body is read only
/// as far as something keeps it (see [`Held`]). A panic, or a body that fails while it is
/// read here, becomes a 500 with the reason in `error`.
pub(super) struct Answered {
    pub(super) status: http::StatusCode,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Held,
    pub(super) error: Option<String>,
}

/// A response body as far as it was read.
pub(super) enum Held {
    /// Read whole.
    Whole(Bytes),
    /// Longer than what is kept: its first bytes (at least that much), then the rest, sent
    /// as it comes; `length` is the length the body declared exactly, if it did.
    Partial {
        head: Bytes,
        rest: Body,
        length: Option<u64>,
    },
}

/// Reads `body` until it ends or more than `keep` bytes are in hand (the frame that crosses
/// `keep` is the last one read). Frames are kept as they come: one frame is never copied.
async fn read_up_to(mut body: Body, keep: usize) -> Result<Held, axum::Error> {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    let length = body.size_hint().exact();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut held = 0usize;
    let whole = loop {
        if held > keep {
            break body.is_end_stream();
        }
        match body.frame().await {
            None => break true,
            Some(frame) => {
                if let Ok(data) = frame?.into_data()
                    && !data.is_empty()
                {
                    held = held.saturating_add(data.len());
                    frames.push(data);
                }
            }
        }
    };
    let head = match frames.len() {
        0 => Bytes::new(),
        1 => frames.swap_remove(0),
        _ => {
            let mut all = bytes::BytesMut::with_capacity(held);
            for f in &frames {
                all.extend_from_slice(f);
            }
            all.freeze()
        }
    };
    Ok(if whole {
        Held::Whole(head)
    } else {
        Held::Partial {
            head,
            rest: body,
            length,
        }
    })
}

impl Answered {
    /// The handler's outcome, its body read as far as `keep` bytes (0: not at all, sent as
    /// it comes).
    pub(super) async fn of(outcome: std::thread::Result<Response>, keep: usize) -> Answered {
        let failed = |body: &'static [u8], error: String| Answered {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            headers: http::HeaderMap::new(),
            body: Held::Whole(Bytes::from_static(body)),
            error: Some(error),
        };
        let resp = match outcome {
            Ok(resp) => resp,
            Err(p) => {
                let why = format!("handler panicked: {}", panic_message(&*p));
                return failed(b"internal error", why);
            }
        };
        let (parts, body) = resp.into_parts();
        // Nothing keeps any of it: sent as it comes, never held in memory here.
        let read = if keep == 0 {
            Ok(Held::Partial {
                head: Bytes::new(),
                rest: body,
                length: None,
            })
        } else {
            read_up_to(body, keep).await
        };
        match read {
            Ok(body) => Answered {
                status: parts.status,
                headers: parts.headers,
                body,
                error: parts.extensions.get::<HandlerError>().map(|e| e.0.clone()),
            },
            Err(e) => failed(
                b"the handler's response body failed",
                format!("the handler's response body failed: {e}"),
            ),
        }
    }

    /// What a retry of this delivery is answered with (a body past
    /// [`MAX_CACHED_BODY`] is not kept).
    pub(super) fn cached(&self) -> CachedResponse {
        CachedResponse {
            status: self.status.as_u16(),
            content_type: self
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: match &self.body {
                Held::Whole(b) if b.len() <= MAX_CACHED_BODY => Some(b.clone()),
                // Longer: a retry is answered with the status alone.
                _ => None,
            },
        }
    }

    /// The body's first bytes as read (all of it when it was read whole).
    pub(super) fn head(&self) -> &[u8] {
        match &self.body {
            Held::Whole(b) | Held::Partial { head: b, .. } => b,
        }
    }

    pub(super) fn into_response(mut self) -> Response {
        let body = match self.body {
            Held::Whole(b) => Body::from(b),
            Held::Partial { head, rest, .. } if head.is_empty() => rest,
            Held::Partial { head, rest, length } => {
                use futures_util::StreamExt as _;
                // The chained body cannot say its length: keep the one the handler's did.
                if let Some(n) = length {
                    self.headers
                        .entry(header::CONTENT_LENGTH)
                        .or_insert_with(|| http::HeaderValue::from(n));
                }
                let first = futures_util::stream::once(async move { Ok(head) });
                Body::from_stream(first.chain(rest.into_data_stream()))
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}
