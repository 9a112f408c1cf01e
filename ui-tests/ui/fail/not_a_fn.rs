use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = "whsec_x")]
struct Handler;

fn main() {}
