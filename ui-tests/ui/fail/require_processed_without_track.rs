use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x", require_processed)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
