use outworx_hooks::webhook;

#[webhook(provider = "stripe")]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
