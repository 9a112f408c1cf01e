use outworx_hooks::webhook;

#[webhook(provider = "github", secret = "s", idempotency = header("x github delivery"))]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
