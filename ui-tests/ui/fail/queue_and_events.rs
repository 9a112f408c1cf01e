use outworx_hooks::webhook;

// The inbox holds each delivery once by its key: `queue` needs `idempotency`.
#[webhook(provider = "stripe", secret = "whsec_x", queue)]
async fn no_key() -> &'static str {
    "ok"
}

// `queue(..)` takes attempts (1 to 100) and a backoff (1 s to 1 h).
#[webhook(provider = "stripe", secret = "whsec_x", idempotency, queue(attempts = 0, backoff = "2h", tries = 3))]
async fn bad_options() -> &'static str {
    "ok"
}

// Event patterns are types, prefixes with `.*`, or `*`.
#[webhook(provider = "stripe", secret = "whsec_x", events = ["invoice paid", "*.created", "customer.*"])]
async fn bad_patterns() -> &'static str {
    "ok"
}

// An empty list lets nothing through.
#[webhook(provider = "stripe", secret = "whsec_x", events = [])]
async fn no_patterns() -> &'static str {
    "ok"
}

// Twilio sends no event type: `events` has nothing to filter on.
#[webhook(provider = "twilio", secret = "twilio-token", events = ["message.received"])]
async fn no_type() -> &'static str {
    "ok"
}

fn main() {}
