//! Answers given without running the handler (a refusal, a handshake, a duplicate's replay,
//! an in-flight 409, a store outage): one path, [`Verified::without_handler`], reports each
//! as one event.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::Verified;
use crate::store::CachedResponse;

impl Verified {
    /// Answers a body the handler's type cannot read: a 500, so the provider retries after
    /// the handler is fixed; reported with the parse error.
    pub fn reject_body(self, error: String) -> Response {
        let message = format!("the verified body does not match the handler's type: {error}");
        tracing::error!(handler = self.route.handler, "{message}");
        let public = "the webhook handler could not read this event; retry later";
        self.refuse(StatusCode::INTERNAL_SERVER_ERROR, public, message)
    }

    /// A refusal: `public` is all the sender sees; `detail` (which may name variables, types
    /// or parse errors) goes to the event's `error_message` only.
    pub(super) fn refuse(
        self,
        status: StatusCode,
        public: &'static str,
        detail: String,
    ) -> Response {
        let note = Note {
            error: Some(detail),
            ..Note::default()
        };
        self.without_handler((status, public).into_response(), note)
    }

    /// Answers without running the handler, reporting one event with what `note` adds.
    pub(super) fn without_handler(self, resp: Response, note: Note) -> Response {
        let mut e = self.event(resp.status().as_u16(), note.event_type);
        e.error_message = note.error;
        e.processing_status = note.processing;
        if let Some((flag, value)) = note.flag {
            e.metadata
                .get_or_insert_with(Default::default)
                .insert(flag.into(), value);
        }
        self.rt.emit_in(e, &self.span, &self.outer);
        resp
    }
}

/// What the event of an answer given without the handler says beyond its status.
#[derive(Debug, Default)]
pub(super) struct Note {
    event_type: Option<String>,
    error: Option<String>,
    flag: Option<(&'static str, serde_json::Value)>,
    processing: Option<crate::event::ProcessingStatus>,
}

impl Note {
    /// A provider handshake of kind `kind` (also the event type), answered for the provider.
    pub(super) fn handshake(kind: &'static str) -> Note {
        Note::flag(Some(kind.to_owned()), "handshake", kind.into())
    }

    /// A delivery whose type is outside the route's `events`.
    pub(super) fn ignored(event_type: Option<String>) -> Note {
        Note {
            event_type,
            processing: Some(crate::event::ProcessingStatus::Ignored),
            ..Note::default()
        }
    }

    /// A delivery committed to the inbox (`id`; `duplicate` when it was there already).
    #[cfg(feature = "inbox")]
    pub(super) fn queued(event_type: Option<String>, id: i64, duplicate: bool) -> Note {
        let flag = if duplicate { "duplicate" } else { "inbox_id" };
        let value = if duplicate { true.into() } else { id.into() };
        Note {
            event_type,
            flag: Some((flag, value)),
            processing: Some(crate::event::ProcessingStatus::Queued),
            ..Note::default()
        }
    }

    /// A `queue` route's delivery the inbox did not take (it could not commit, or the route
    /// no longer takes a re-dispatch): the error says why.
    pub(super) fn not_queued(event_type: Option<String>, error: String) -> Note {
        Note {
            event_type,
            error: Some(error),
            ..Note::default()
        }
    }

    /// An answer about the delivery (duplicate, in flight, store outage), flagged in the
    /// event's metadata.
    pub(super) fn flag(
        event_type: Option<String>,
        flag: &'static str,
        value: serde_json::Value,
    ) -> Note {
        Note {
            event_type,
            flag: Some((flag, value)),
            ..Note::default()
        }
    }
}

pub(super) fn replay(cached: &CachedResponse) -> Response {
    let status = StatusCode::from_u16(cached.status).unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Body::from(cached.body.clone().unwrap_or_default()));
    *resp.status_mut() = status;
    if let Some(ct) = cached
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::try_from(c).ok())
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert("x-outworx-duplicate", HeaderValue::from_static("true"));
    resp
}
