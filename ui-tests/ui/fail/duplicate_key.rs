use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x", provider = "github")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
