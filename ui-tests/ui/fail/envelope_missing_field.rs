use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x", idempotency = body.data.object.id)]
async fn handler(body: String) -> String {
    body
}

fn main() {}
