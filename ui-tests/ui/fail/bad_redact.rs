use outworx_hooks::webhook;

#[webhook(provider = "github", secret = "s", redact = ["x-hook-secret", "x hook"])]
async fn handler() {}

fn main() {}
