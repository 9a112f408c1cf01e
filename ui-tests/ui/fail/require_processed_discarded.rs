use outworx_hooks::{Track, webhook};

// Discarding the Track marks nothing: `let _ = &track;`, `&track;`, `forget` and `drop(track)` hand it
// to nothing that could mark it.
#[webhook(provider = "github", secret = "s", require_processed)]
async fn handler(track: Track) -> &'static str {
    let _ = &track;
    let _ = track.clone();
    &track;
    std::mem::forget(track.clone());
    drop(track);
    "ok"
}

fn main() {}
