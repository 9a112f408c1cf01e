//! Why a send, an endpoint change or a query failed.

/// Why a send, an endpoint change or a query failed. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A value was refused before anything was stored.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why, and what is accepted.
        reason: String,
    },
    /// The payload is over the emitter's limit.
    #[error("the payload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit ([`EmitterBuilder::max_payload`](super::EmitterBuilder::max_payload)).
        limit: usize,
    },
    /// The target address is not allowed ([`TargetPolicy`](super::TargetPolicy)).
    #[error("target refused: {0}")]
    Target(String),
    /// The outbox's database failed; nothing was committed.
    #[error("outbox: {0}")]
    Store(String),
    /// The outbox's database did not answer in time
    /// ([`EmitterBuilder::commit_timeout`](super::EmitterBuilder::commit_timeout)); the
    /// message may still be committed and sent.
    #[error("outbox: the database did not answer within {} ms", .0.as_millis())]
    Timeout(std::time::Duration),
    /// The send's commit was cut off before it answered (the runtime running it shut down):
    /// the message may or may not be committed. Send it again with an idempotency key to be
    /// sure it is sent once.
    #[error("outbox: the commit was cut off before it answered; the message may be committed")]
    Uncertain,
    /// No such endpoint or message for this owner.
    #[error("not found")]
    NotFound,
    /// A uid or an event id is already taken by another of the owner's items.
    #[error("a conflict has occurred: that uid is taken")]
    Conflict,
    /// The caller may not do this to an existing item: a tenant enabling an endpoint an
    /// operator disabled.
    #[error("{0}")]
    Forbidden(String),
    /// The owner is over a quota ([`Quotas`](super::Quotas)): try again after `retry_after`.
    #[error("rate limited: {what}; retry in {} s", .retry_after.as_secs().max(1))]
    RateLimited {
        /// Which quota (`messages`, `test calls`).
        what: &'static str,
        /// How long until the quota allows it.
        retry_after: std::time::Duration,
    },
    /// The system gave no randomness for an id or a secret.
    #[error("the system has no randomness to give for an id or a secret")]
    Randomness,
    /// `#[emit]` ran with no emitter: neither `Emitter::install` nor an `Extension<Emitter>`.
    #[error(
        "no Emitter: call `emitter.install()` at start, or add `Extension(emitter)` to the router"
    )]
    NoEmitter,
}

impl SendError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        SendError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Whether the caller's input was at fault (a 4xx), rather than the outbox (a 5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SendError::Invalid { .. }
                | SendError::TooLarge { .. }
                | SendError::Target(_)
                | SendError::NotFound
                | SendError::Conflict
                | SendError::Forbidden(_)
                | SendError::RateLimited { .. }
        )
    }
}

impl From<serde_json::Error> for SendError {
    fn from(e: serde_json::Error) -> Self {
        SendError::Store(format!("encoding: {e}"))
    }
}

impl From<sqlx::Error> for SendError {
    fn from(e: sqlx::Error) -> Self {
        SendError::Store(e.to_string())
    }
}
