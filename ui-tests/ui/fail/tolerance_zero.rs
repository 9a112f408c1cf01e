use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x", tolerance = 0)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
