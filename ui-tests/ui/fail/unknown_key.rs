use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x", retries = 3)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
