//! What the sending side stores and answers: endpoints, messages, deliveries and attempts,
//! and the checks every value passes before it is stored.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::SendError;
use super::limits::{MAX_EVENT_TYPE_LEN, MAX_METADATA_BYTES, MAX_PATTERNS, MAX_TEXT_LEN};

/// The wire format of an endpoint's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Standard Webhooks: the body `{"type", "timestamp", "data"}`, the headers `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature` (`v1` HMAC with a `whsec_` secret, or
    /// `v1a` Ed25519 with a `whsk_` key). `#[webhook(provider = "standard")]` verifies it.
    #[default]
    Standard,
    /// The Python package `fastapihooks`: the raw payload, `X-Fastapihooks-Event`, and
    /// `X-Fastapihooks-Signature: sha256=<hex HMAC-SHA256 of the body, keyed by the secret's
    /// bytes>`. For receivers written for it; it carries no timestamp, so it can be replayed.
    Fastapihooks,
    /// As Svix sends: the payload itself is the body, byte for byte, signed as Standard
    /// Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), so Svix's own
    /// `Webhook.verify` and every Standard Webhooks library accept it. The Svix-compatible
    /// API ([`super::svix`]) creates its endpoints in this format.
    Svix,
    /// [`Format::Svix`] with Svix's header names (`svix-id`, `svix-timestamp`,
    /// `svix-signature`), for receivers that read only those.
    #[serde(rename = "svix-headers")]
    SvixHeaders,
}

impl Format {
    /// `standard` or `fastapihooks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Standard => "standard",
            Format::Fastapihooks => "fastapihooks",
            Format::Svix => "svix",
            Format::SvixHeaders => "svix-headers",
        }
    }

    /// Whether it is signed as Standard Webhooks (`whsec_` or `whsk_` secrets).
    pub fn is_standard(self) -> bool {
        !matches!(self, Format::Fastapihooks)
    }
}

impl FromStr for Format {
    type Err = SendError;
    fn from_str(s: &str) -> Result<Self, SendError> {
        match s {
            "standard" => Ok(Format::Standard),
            "fastapihooks" => Ok(Format::Fastapihooks),
            "svix" => Ok(Format::Svix),
            "svix-headers" => Ok(Format::SvixHeaders),
            _ => Err(SendError::invalid(
                "format",
                "expected `standard`, `fastapihooks`, `svix` or `svix-headers`",
            )),
        }
    }
}

/// How the sender authenticates to an endpoint, beside the signature. The values never
/// appear in `Debug`, logs or answers.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Auth {
    /// Nothing beside the signature.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// `Authorization: Basic <base64 user:password>`.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// One header of the receiver's choosing.
    Header {
        /// The header's name.
        name: String,
        /// Its value.
        value: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl Auth {
    /// `none`, `bearer`, `basic` or `header`.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Bearer { .. } => "bearer",
            Auth::Basic { .. } => "basic",
            Auth::Header { .. } => "header",
        }
    }

    /// The header this auth adds to each request, if any.
    pub(crate) fn header(&self) -> Option<(http::HeaderName, http::HeaderValue)> {
        let (name, value) = match self {
            Auth::None => return None,
            Auth::Bearer { token } => (http::header::AUTHORIZATION, format!("Bearer {token}")),
            Auth::Basic { user, password } => (
                http::header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ),
            ),
            Auth::Header { name, value } => (
                http::HeaderName::from_bytes(name.as_bytes()).ok()?,
                value.clone(),
            ),
        };
        let mut value = http::HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some((name, value))
    }

    pub(crate) fn validate(&self) -> Result<(), SendError> {
        let values: &[&str] = match self {
            Auth::None => &[],
            Auth::Bearer { token } => &[token],
            Auth::Basic { user, password } => {
                if user.contains(':') {
                    return Err(SendError::invalid(
                        "auth",
                        "a basic user cannot contain `:`",
                    ));
                }
                &[user, password]
            }
            Auth::Header { name, value } => {
                let lower = name.to_ascii_lowercase();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(SendError::invalid(
                        "auth",
                        "the header name is not a valid header name",
                    ));
                }
                if RESERVED_HEADERS.contains(&lower.as_str())
                    || lower.starts_with("webhook-")
                    || lower.starts_with("x-fastapihooks-")
                {
                    return Err(SendError::invalid(
                        "auth",
                        "the header would replace one the sender sets (content-type, host, the signature headers)",
                    ));
                }
                &[value]
            }
        };
        for v in values {
            if v.is_empty() || v.len() > MAX_TEXT_LEN {
                return Err(SendError::invalid("auth", "each value is 1 to 256 bytes"));
            }
            if http::HeaderValue::from_str(v).is_err() || v.contains(['\r', '\n']) {
                return Err(SendError::invalid(
                    "auth",
                    "a value has characters a header cannot carry",
                ));
            }
        }
        Ok(())
    }
}

const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
];

impl FromStr for Auth {
    type Err = SendError;
    /// `none`, `bearer:TOKEN`, `basic:USER:PASSWORD` or `header:NAME:VALUE`.
    fn from_str(s: &str) -> Result<Self, SendError> {
        let bad = || {
            SendError::invalid(
                "auth",
                "expected `none`, `bearer:TOKEN`, `basic:USER:PASSWORD` or `header:NAME:VALUE`",
            )
        };
        let auth = match s.split_once(':') {
            None if s == "none" => Auth::None,
            Some(("bearer", token)) => Auth::Bearer {
                token: token.to_owned(),
            },
            Some(("basic", rest)) => {
                let (user, password) = rest.split_once(':').ok_or_else(bad)?;
                Auth::Basic {
                    user: user.to_owned(),
                    password: password.to_owned(),
                }
            }
            Some(("header", rest)) => {
                let (name, value) = rest.split_once(':').ok_or_else(bad)?;
                Auth::Header {
                    name: name.to_owned(),
                    value: value.to_owned(),
                }
            }
            _ => return Err(bad()),
        };
        auth.validate()?;
        Ok(auth)
    }
}

/// An endpoint to create: where, for which events, how it is signed and authenticated.
///
/// ```
/// use outworx_hooks::send::{Auth, NewEndpoint};
///
/// let ep = NewEndpoint::new("https://example.com/hooks")
///     .event("order.*")
///     .owner("acme")
///     .auth(Auth::Bearer { token: "t0ken".into() });
/// assert_eq!(ep.events, ["order.*"]);
/// ```
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NewEndpoint {
    /// The URL messages are posted to.
    pub url: String,
    /// Event patterns: `order.created`, `order.*`, or `*` (also when empty).
    #[serde(default)]
    pub events: Vec<String>,
    /// Authentication beside the signature.
    #[serde(default)]
    pub auth: Auth,
    /// The wire format.
    #[serde(default)]
    pub format: Format,
    /// The signing secret: `whsec_<base64>`, or `whsk_<base64 seed>` for Ed25519 (`v1a`);
    /// any text for the `fastapihooks` format. Generated when absent.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// Free JSON, returned as stored (at most 4 KiB).
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The tenant the endpoint belongs to (the management router sets it from the request).
    #[serde(default)]
    pub owner: String,
    /// A name of the caller's choosing, unique for its owner (the Svix API's `uid`).
    #[serde(default)]
    pub uid: Option<String>,
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// Only messages sent on one of these channels (at most 10); `None`: every message.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Headers added to every request (they never replace the signature's or the
    /// authentication's). Their values are never in `Debug` or a log.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Messages per second the receiver asked for (stored and answered; not yet enforced).
    #[serde(default)]
    pub rate_limit: Option<u16>,
    /// Created disabled: nothing is queued for it until it is enabled.
    #[serde(default)]
    pub disabled: bool,
}

impl fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("auth", &self.auth)
            .field("format", &self.format)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("metadata", &self.metadata)
            .field("owner", &self.owner)
            .field("uid", &self.uid)
            .field("channels", &self.channels)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

impl NewEndpoint {
    /// An endpoint for every event, signed with a generated `whsec_` secret.
    pub fn new(url: impl Into<String>) -> Self {
        NewEndpoint {
            url: url.into(),
            ..NewEndpoint::default()
        }
    }

    /// Adds an event pattern.
    pub fn event(mut self, pattern: impl Into<String>) -> Self {
        self.events.push(pattern.into());
        self
    }

    /// Sets the owner (tenant).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Sets the authentication.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the wire format.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Sets the secret instead of generating one.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Sets one metadata value.
    pub fn metadata(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// Takes only messages sent on this channel (or another one given).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channels
            .get_or_insert_with(Vec::new)
            .push(channel.into());
        self
    }

    /// Adds a header to every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// A change to an endpoint; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EndpointUpdate {
    /// A new URL.
    pub url: Option<String>,
    /// New event patterns.
    pub events: Option<Vec<String>>,
    /// New authentication.
    pub auth: Option<Auth>,
    /// A new format.
    pub format: Option<Format>,
    /// New metadata.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// A stored endpoint, as answered: everything but its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Endpoint {
    /// `ep_...`.
    pub id: String,
    /// The tenant.
    pub owner: String,
    /// Where messages go.
    pub url: String,
    /// Event patterns; empty means every event.
    pub events: Vec<String>,
    /// The authentication's kind (`none`, `bearer`, `basic`, `header`); never its values.
    pub auth: String,
    /// The wire format.
    pub format: Format,
    /// Stored metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Whether messages are sent to it.
    pub enabled: bool,
    /// Why it was disabled (by an operator, a 410, or days of failures).
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed, in ms since 1970; `None` while healthy.
    pub failing_since: Option<i64>,
    /// For a `v1a` (Ed25519) endpoint: the `whpk_` public key its receiver verifies with.
    pub public_key: Option<String>,
    /// Created, in ms since 1970.
    pub created_at: i64,
    /// Last changed, in ms since 1970.
    pub updated_at: i64,
    /// The owner's name for it, unique for the owner.
    pub uid: Option<String>,
    /// Free text for people.
    pub description: String,
    /// The channels it takes; `None`: every message.
    pub channels: Option<Vec<String>>,
    /// Messages per second its receiver asked for (stored, not yet enforced).
    pub rate_limit: Option<u16>,
}

impl Endpoint {
    /// Whether the endpoint takes events of this type.
    pub fn wants(&self, event_type: &str) -> bool {
        super::filter::matches_any(&self.events, event_type)
    }

    /// Whether the endpoint takes a message sent on these channels: it takes every message
    /// when it names no channel, and otherwise only one sent on a channel it names.
    pub fn takes_channels(&self, message: Option<&[String]>) -> bool {
        super::filter::channels_match(self.channels.as_deref(), message)
    }
}

/// How an endpoint is doing, for an operator's overview: its recent attempts' success rate,
/// its last attempt, and how many of its deliveries wait or are dead.
///
/// "Recent" is the endpoint's last `recent` attempts (see [`Emitter::endpoint_health`]), a
/// count rather than a time window: each endpoint's figure is read from its newest attempts by
/// index, so the cost does not grow with its history.
///
/// [`Emitter::endpoint_health`]: super::Emitter::endpoint_health
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointHealth {
    /// The endpoint (`ep_...`).
    pub endpoint_id: String,
    /// How many of its last attempts were looked at (fewer when it has had fewer).
    pub recent_attempts: u32,
    /// How many of those were answered 2xx.
    pub recent_succeeded: u32,
    /// The last attempt's HTTP status, when it was answered.
    pub last_status: Option<u16>,
    /// The last attempt's error, when it had no answer (connect, timeout, refused target).
    pub last_error: Option<String>,
    /// When the last attempt started, in ms since 1970.
    pub last_attempt_at: Option<i64>,
    /// Deliveries waiting for an attempt (pending or sending).
    pub waiting: u64,
    /// Dead deliveries (replay them once it is fixed).
    pub dead: u64,
}

/// A created endpoint, or a rotated secret: the secret is in this answer and never again.
#[derive(Clone, Serialize)]
#[non_exhaustive]
pub struct CreatedEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its signing secret (for `v1a`, the private key stays with us: this is the `whpk_`
    /// public key the receiver needs).
    pub secret: String,
}

impl fmt::Debug for CreatedEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedEndpoint")
            .field("endpoint", &self.endpoint)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Leased by a worker, an attempt in flight.
    Sending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed, the endpoint was disabled or deleted: see `last_error`.
    Dead,
}

impl DeliveryStatus {
    /// Its name, as stored and answered (`pending`, `sending`, `delivered`, `dead`).
    ///
    /// ```
    /// assert_eq!(outworx_hooks::send::DeliveryStatus::Dead.as_str(), "dead");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub(crate) fn parse(s: &str) -> DeliveryStatus {
        match s {
            "sending" => DeliveryStatus::Sending,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            _ => DeliveryStatus::Pending,
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = SendError;
    fn from_str(s: &str) -> Result<Self, SendError> {
        match s {
            "pending" | "sending" | "delivered" | "dead" => Ok(DeliveryStatus::parse(s)),
            _ => Err(SendError::invalid(
                "status",
                "expected pending, sending, delivered or dead",
            )),
        }
    }
}

/// One message to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// The message (`msg_...`).
    pub message_id: String,
    /// The endpoint (`ep_...`).
    pub endpoint_id: String,
    /// The message's event type.
    pub event_type: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made in the current round (a replay starts a new round).
    pub attempts: u32,
    /// When the next attempt is due, in ms since 1970.
    pub next_attempt_at: i64,
    /// The last attempt's HTTP status.
    pub last_status: Option<u16>,
    /// The last attempt's error, or why it is dead.
    pub last_error: Option<String>,
    /// Last change, in ms since 1970.
    pub updated_at: i64,
}

/// One HTTP attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attempt {
    /// The delivery.
    pub delivery_id: i64,
    /// The message.
    pub message_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// Which attempt of its round (1-based).
    pub attempt: u32,
    /// When it started, in ms since 1970.
    pub at: i64,
    /// The HTTP status, when there was an answer.
    pub status_code: Option<u16>,
    /// How long it took.
    pub duration_ms: u64,
    /// Why it failed without an answer (connect, timeout, refused target).
    pub error: Option<String>,
    /// The first 4 KiB of the response body (lossy UTF-8).
    pub response: String,
}

/// A message to send: its event type, its payload (JSON), and optionally an idempotency key
/// and an owner.
///
/// ```
/// use outworx_hooks::send::NewMessage;
///
/// let m = NewMessage::new("order.created", &serde_json::json!({"id": 7}))?
///     .idempotency_key("order-7")
///     .owner("acme");
/// assert_eq!(m.payload(), r#"{"id":7}"#);
/// # Ok::<(), outworx_hooks::send::SendError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub(crate) event_type: String,
    pub(crate) payload: String,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) owner: String,
    /// Only to this endpoint (a test message), instead of every subscriber.
    pub(crate) only_endpoint: Option<String>,
    /// The channels it is sent on: only endpoints taking one of them, or taking every
    /// channel, receive it.
    pub(crate) channels: Option<Vec<String>>,
}

impl fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("event_type", &self.event_type)
            .field("payload_bytes", &self.payload.len())
            .field("idempotency_key", &self.idempotency_key)
            .field("owner", &self.owner)
            .field("channels", &self.channels)
            .finish()
    }
}

impl NewMessage {
    /// A message whose payload is `payload` as JSON.
    pub fn new(event_type: impl Into<String>, payload: &impl Serialize) -> Result<Self, SendError> {
        let payload = serde_json::to_string(payload)
            .map_err(|e| SendError::invalid("payload", format!("it does not serialize: {e}")))?;
        Ok(Self::from_json_text(event_type.into(), payload))
    }

    /// A message whose payload is this JSON text, checked to be JSON when sent.
    pub fn json(event_type: impl Into<String>, json: impl Into<String>) -> Self {
        Self::from_json_text(event_type.into(), json.into())
    }

    fn from_json_text(event_type: String, payload: String) -> Self {
        NewMessage {
            event_type,
            payload,
            idempotency_key: None,
            owner: String::new(),
            only_endpoint: None,
            channels: None,
        }
    }

    /// Sends it on this channel too (at most 5): an endpoint that names channels receives it
    /// only when it names one of its channels.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channels
            .get_or_insert_with(Vec::new)
            .push(channel.into());
        self
    }

    /// A repeated send with the same key (and owner) is the same message: its first id is
    /// answered and nothing new is sent.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The tenant: only the owner's endpoints receive it.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The payload, as JSON text.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// Checks everything a store would refuse, before any I/O.
    pub(crate) fn validate(&self, max_payload: usize) -> Result<(), SendError> {
        validate_event_type(&self.event_type)?;
        if self.payload.len() > max_payload {
            return Err(SendError::TooLarge {
                size: self.payload.len(),
                limit: max_payload,
            });
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&self.payload).is_err() {
            return Err(SendError::invalid("payload", "it is not JSON"));
        }
        validate_text("owner", &self.owner, true)?;
        if let Some(k) = &self.idempotency_key {
            validate_text("idempotency_key", k, false)?;
        }
        super::filter::validate_channels(
            "channels",
            self.channels.as_deref(),
            super::limits::MAX_MESSAGE_CHANNELS,
        )
    }
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Sent {
    /// The message's id (`msg_...`): every endpoint receives it as `webhook-id`.
    pub message_id: String,
    /// How many endpoints it was queued for (0 for a repeat).
    pub deliveries: usize,
    /// Whether an earlier message had the same idempotency key (nothing new was queued).
    pub duplicate: bool,
}

/// `order.created`: 1 to 128 bytes of letters, digits and `. _ - : /`.
pub(crate) fn validate_event_type(t: &str) -> Result<(), SendError> {
    if outworx_hooks_providers::is_event_type(t) {
        return Ok(());
    }
    if t.is_empty() || t.len() > MAX_EVENT_TYPE_LEN {
        return Err(SendError::invalid("event_type", "it is 1 to 128 bytes"));
    }
    Err(SendError::invalid(
        "event_type",
        "it is made of letters, digits and `. _ - : /`",
    ))
}

pub(crate) fn validate_text(field: &'static str, v: &str, empty_ok: bool) -> Result<(), SendError> {
    if (!empty_ok && v.is_empty()) || v.len() > MAX_TEXT_LEN || v.chars().any(char::is_control) {
        return Err(SendError::invalid(
            field,
            "it is at most 256 bytes with no control characters",
        ));
    }
    Ok(())
}

/// Checks an endpoint's uid, description, channels and custom headers.
pub(crate) fn validate_endpoint_extras(
    uid: Option<&str>,
    description: &str,
    channels: Option<&[String]>,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<(), SendError> {
    if let Some(uid) = uid {
        validate_uid("uid", uid, "ep_")?;
    }
    if description.len() > super::limits::MAX_DESCRIPTION_LEN
        || description.chars().any(|c| c < '\u{9}')
    {
        return Err(SendError::invalid(
            "description",
            "it is at most 1 KiB with no control characters 0x00-0x08",
        ));
    }
    super::filter::validate_channels("channels", channels, super::limits::MAX_ENDPOINT_CHANNELS)?;
    super::filter::validate_headers(headers)
}

/// A uid (Svix's rule): 1 to 256 bytes of `[A-Za-z0-9-_.]`, not starting with its kind's id
/// prefix (so an id and a uid never collide).
pub(crate) fn validate_uid(field: &'static str, uid: &str, prefix: &str) -> Result<(), SendError> {
    if !super::filter::is_name(uid, MAX_TEXT_LEN) {
        return Err(SendError::invalid(
            field,
            "it is 1 to 256 bytes of letters, digits and `- _ .`",
        ));
    }
    if uid.starts_with(prefix) {
        return Err(SendError::invalid(
            field,
            format!("it may not start with `{prefix}`, the prefix of ids"),
        ));
    }
    Ok(())
}

/// Checks an endpoint's fields (not its URL's target, which the [`super::TargetPolicy`] does).
pub(crate) fn validate_endpoint_fields(
    events: &[String],
    auth: &Auth,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), SendError> {
    if events.len() > MAX_PATTERNS {
        return Err(SendError::invalid("events", "at most 64 patterns"));
    }
    for p in events {
        super::filter::validate_pattern(p)?;
    }
    auth.validate()?;
    if crate::wire::json_size(metadata) > MAX_METADATA_BYTES {
        return Err(SendError::invalid("metadata", "at most 4 KiB of JSON"));
    }
    Ok(())
}
