use outworx_hooks::webhook;

#[webhook(provider = "strpe", secret = "whsec_x")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
