use outworx_hooks::webhook;

#[webhook(secret = "whsec_x")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
