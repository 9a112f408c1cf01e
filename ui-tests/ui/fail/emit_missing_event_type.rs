use outworx_hooks::emit;

#[emit(include_headers)]
async fn handler() -> &'static str {
    "ok"
}

fn main() {}
