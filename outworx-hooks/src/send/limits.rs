//! Every bound the sending side puts on what it is given and what it keeps, in one place.
//! Each is enforced before anything is stored, with an error that names it.

/// Longest endpoint URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest event type or event pattern, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = outworx_hooks_providers::MAX_EVENT_TYPE_LEN;
/// Most event patterns on one endpoint.
pub const MAX_PATTERNS: usize = 64;
/// Most bytes of an endpoint's metadata (as JSON).
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest owner, idempotency key or auth value, in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Most endpoints one owner may have: every message is queued for each subscribed one, in
/// the sender's transaction, so the fan-out of one send is bounded.
pub const MAX_ENDPOINTS_PER_OWNER: usize = 100;
/// The first bytes of each attempt's response that are kept.
pub const RESPONSE_SNIPPET_BYTES: usize = 4096;
/// The message size limit by default: 256 KiB of payload
/// ([`EmitterBuilder::max_payload`](super::EmitterBuilder::max_payload) changes it).
pub const DEFAULT_MAX_PAYLOAD: usize = 256 * 1024;
/// Most rows one list answers.
pub const MAX_LIST: u32 = 1000;
/// The largest request body `#[emit(.., include_request)]` keeps aside (2 MiB, axum's own
/// default).
pub const MAX_KEPT_REQUEST: usize = 2 * 1024 * 1024;
/// Most channels an endpoint takes (as Svix).
pub const MAX_ENDPOINT_CHANNELS: usize = 10;
/// Most channels a message is sent on (as Svix).
pub const MAX_MESSAGE_CHANNELS: usize = 5;
/// Most custom headers on one endpoint.
pub const MAX_HEADERS: usize = 32;
/// Longest custom header value, in bytes (as Svix).
pub const MAX_HEADER_VALUE: usize = 4096;
/// Most bytes of an endpoint's custom headers, names and values together.
pub const MAX_HEADERS_BYTES: usize = 16 * 1024;
/// Longest endpoint or event type description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
