use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x")]
async fn handler<T>() -> &'static str {
    "ok"
}

fn main() {}
