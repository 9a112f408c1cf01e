use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x", idempotency = payload.id)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
