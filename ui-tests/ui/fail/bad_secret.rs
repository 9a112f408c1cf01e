use outworx_hooks::webhook;

#[webhook(provider = "stripe", secret = env(""))]
async fn empty_var() -> &'static str {
    "ok"
}

#[webhook(provider = "stripe", secret = 42)]
async fn number() -> &'static str {
    "ok"
}

#[webhook(provider = "stripe", secret = vault("stripe"))]
async fn unknown_form() -> &'static str {
    "ok"
}

fn main() {}
