use outworx_hooks::webhook;

#[webhook(provider = "github", secret = "s", idempotency = body.id)]
async fn handler(body: String) -> String {
    body
}

fn main() {}
