use outworx_hooks::webhook;

#[webhook(provider = "hubspot", secret = "s", idempotency)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
