use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x")]
fn handler() -> &'static str {
    "ok"
}

fn main() {}
