use outworx_hooks::emit;
use outworx_hooks::send::EmitContext;

fn reshape(cx: &EmitContext<'_>) -> serde_json::Value {
    cx.response().clone()
}

// Every misuse of the arguments is reported, each at its own token.
#[emit("order created", tranform = reshape, owner = "acme", include_request, include_request)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
