use outworx_hooks::emit;

#[emit("order.created")]
fn not_async() -> &'static str {
    "ok"
}

#[emit("order.created")]
async fn generic<T>() -> &'static str {
    "ok"
}

#[emit("order.created")]
struct NotAFunction;

fn main() {}
