// Each route has one malformed value; every one is reported at its own token.
use outworx_hooks::security::SignedRequest;
use outworx_hooks::{Track, webhook};

fn check(_: &SignedRequest<'_>) -> bool {
    true
}

#[webhook(provider = "stripe", secret = "whsec_x", ttl = true)]
async fn ttl_not_an_amount() {}

#[webhook(provider = "stripe", secret = "whsec_x", ttl = 99999999999999999999999)]
async fn ttl_not_a_u64() {}

#[webhook(provider = "stripe", secret = "whsec_x", ttl = "300000000000000000d")]
async fn ttl_overflows() {}

#[webhook(provider = "stripe", secret = "whsec_x", max_body = 0)]
async fn max_body_zero() {}

#[webhook(provider = "github", secret = "x", idempotency = header(5))]
async fn header_not_a_string() {}

#[webhook(provider = "github", secret = "x", idempotency = header("a", "b"))]
async fn header_two_names() {}

#[webhook(provider = "stripe", secret = "  ")]
async fn secret_blank() {}

#[webhook(provider = "stripe", secret = env(5))]
async fn env_not_a_string() {}

#[webhook(provider = "stripe", secret = env())]
async fn env_no_name() {}

#[webhook(provider = "stripe", secret = [])]
async fn no_secrets() {}

#[webhook(provider = "stripe", secret = "whsec_x", allow_ips = [])]
async fn no_sources() {}

#[webhook(verifier = check, idempotency = body.id)]
async fn body_key_without_a_type(body: String) {
    let _ = body;
}

#[webhook(provider = "stripe", secret = "whsec_x", require_processed)]
async fn unnamed_track(_: Track) {}

struct Handlers;

impl Handlers {
    #[webhook(provider = "stripe", secret = "whsec_x")]
    async fn method(&self) {}
}

fn main() {}
