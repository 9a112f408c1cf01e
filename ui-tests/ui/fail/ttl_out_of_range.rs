use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x", idempotency, ttl = 30)]
async fn too_short() -> &'static str {
    "ok"
}

#[webhook(provider = "stripe", secret = "whsec_x", idempotency, ttl = "30d")]
async fn too_long() -> &'static str {
    "ok"
}

#[webhook(provider = "stripe", secret = "whsec_x", idempotency, ttl = "1 fortnight")]
async fn no_unit() -> &'static str {
    "ok"
}

fn main() {}
