//! Why an inbox operation failed.

/// Why an inbox operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The database failed; nothing was committed.
    #[error("inbox: {0}")]
    Store(String),
    /// A value was refused.
    #[error("invalid {0}")]
    Invalid(String),
    /// The database did not answer in time. The commit may still land: the provider's retry
    /// is then answered as a duplicate, never run twice.
    #[error("inbox: the database did not answer within {} ms", .0.as_millis())]
    Timeout(std::time::Duration),
}

impl From<sqlx::Error> for InboxError {
    fn from(e: sqlx::Error) -> Self {
        InboxError::Store(e.to_string())
    }
}
