use outworx_hooks::emit;

// A transform must take `&EmitContext<'_>`: rustc says so at the transform's name.
fn takes_a_string(s: String) -> serde_json::Value {
    serde_json::Value::String(s)
}

#[emit("order.created", transform = takes_a_string)]
async fn handler() -> &'static str {
    "ok"
}

// And return a payload (`Value` or `Option<Value>`).
fn returns_text(_: &outworx_hooks::send::EmitContext<'_>) -> String {
    String::new()
}

#[emit("order.created", transform = returns_text)]
async fn handler2() -> &'static str {
    "ok"
}

fn main() {}
