use outworx_hooks::webhook;

// Every misuse is reported, each at its own token.
#[webhook(provider = "githib", secret = env("1BAD"), ttl = 10, require_processed)]
fn handler() -> &'static str {
    "ok"
}

fn main() {}
