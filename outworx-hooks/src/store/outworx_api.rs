//! `OutworxApiStore`: idempotency through the Outworx HTTP API (hosted, or `outworx serve`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::{CheckAnswer, CheckRequest, CompleteRequest};

use super::{
    BoxFuture, CachedResponse, Reservation, ReservationToken, Store, StoreError, fit_key, new_token,
};

/// The default time one API call may take before the store reports an error (and the
/// pipeline fails open).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Idempotency through the Outworx API (feature `outworx-api`).
///
/// The requests are those of the Python package 1.5: `POST {base}/api/sdk/idempotency/check`
/// with `{"key", "ttl"}` answers `{"status": "new" | "duplicate", "cached_status_code",
/// "cached_body"}`, and `POST {base}/api/sdk/idempotency/complete` with `{"key",
/// "response_status_code", "response_body"}` stores the response (the body as text; a body
/// that is not UTF-8 is stored lossily). Additive fields a server may use and others ignore:
/// `token` (the reservation, so a late owner cannot overwrite a takeover), `content_type`,
/// `{"key", "token", "release": true}` on `/complete` to free a key after a failure, and
/// `{"key", "token", "renew": true}` to keep a slow handler's reservation from going stale.
///
/// A `duplicate` without a cached status is read as a delivery still **in flight** (409, the
/// provider retries later) where the Python package would answer an empty 200 and lose the
/// event if the first run then fails. Every call is async with a timeout; any failure is a
/// [`StoreError`], which the pipeline answers by failing open (or 503 when configured).
///
/// ```no_run
/// use outworx_hooks::{Config, store::OutworxApiStore};
/// let store = OutworxApiStore::new("http://127.0.0.1:8787", "ohk_0123456789abcdef0123456789abcdef");
/// let _guard = outworx_hooks::init(Config::from_env().store(store));
/// ```
#[derive(Clone)]
pub struct OutworxApiStore {
    client: reqwest::Client,
    base: String,
    api_key: String,
    timeout: Duration,
}

impl std::fmt::Debug for OutworxApiStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutworxApiStore")
            .field("base", &self.base)
            .field("api_key", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("outworx api: {e}"))
}

impl OutworxApiStore {
    /// A store speaking to the API at `base` (`http://127.0.0.1:8787`), or beside the ingest
    /// endpoint when given one (`https://hooks.outworx.io/api/ingest`).
    pub fn new(base: impl Into<String>, api_key: impl Into<String>) -> Self {
        let base = base.into();
        let base = base.trim_end_matches('/');
        OutworxApiStore {
            client: reqwest::Client::new(),
            base: base.strip_suffix("/api/ingest").unwrap_or(base).to_owned(),
            api_key: api_key.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// How long one call may take (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn post<B: Serialize, A: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<A, StoreError> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .timeout(self.timeout)
            .json(body)
            .send()
            .await
            .map_err(err)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(format!("{path} answered {status}")));
        }
        resp.json().await.map_err(err)
    }
}

impl Store for OutworxApiStore {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(async move {
            let token = new_token()?;
            let answer: CheckAnswer = self
                .post(
                    "/api/sdk/idempotency/check",
                    &CheckRequest {
                        key: fit_key(key).into_owned(),
                        ttl: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
                        token: Some(token.0.clone()),
                    },
                )
                .await?;
            let cached_status = match answer.cached_status_code {
                None => None,
                Some(s) => Some(
                    u16::try_from(s)
                        .map_err(|_| err(format!("the cached status {s} is not an HTTP status")))?,
                ),
            };
            match (answer.status.as_str(), cached_status) {
                ("new", _) => Ok(Reservation::New(token)),
                ("duplicate", Some(status)) => Ok(Reservation::Duplicate(CachedResponse {
                    status,
                    content_type: answer.cached_content_type,
                    body: answer.cached_body.map(bytes::Bytes::from),
                })),
                ("duplicate" | "in_flight", None) | ("in_flight", _) => Ok(Reservation::InFlight),
                (other, _) => Err(err(format!("unknown check status `{other}`"))),
            }
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
        response: CachedResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let body = CompleteRequest {
                key: fit_key(key).into_owned(),
                token: Some(token.0.clone()),
                response_status_code: Some(i64::from(response.status)),
                // The API keeps bodies as text: one that is not UTF-8 is replayed by status
                // only, never altered (a lossy copy could also outgrow the server's limit).
                response_body: response
                    .body
                    .as_ref()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .map(str::to_owned),
                content_type: response.content_type,
                ttl: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
                ..CompleteRequest::default()
            };
            self.post::<_, serde_json::Value>("/api/sdk/idempotency/complete", &body)
                .await
                .map(drop)
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.signal(key, token, Signal::Release).await })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.signal(key, token, Signal::Renew).await })
    }
}

/// What a bodiless `/complete` call asks for.
#[derive(Clone, Copy)]
enum Signal {
    Release,
    Renew,
}

impl OutworxApiStore {
    async fn signal(
        &self,
        key: &str,
        token: &ReservationToken,
        signal: Signal,
    ) -> Result<(), StoreError> {
        let body = CompleteRequest {
            key: fit_key(key).into_owned(),
            token: Some(token.0.clone()),
            release: matches!(signal, Signal::Release),
            renew: matches!(signal, Signal::Renew),
            ..CompleteRequest::default()
        };
        self.post::<_, serde_json::Value>("/api/sdk/idempotency/complete", &body)
            .await
            .map(drop)
    }
}
