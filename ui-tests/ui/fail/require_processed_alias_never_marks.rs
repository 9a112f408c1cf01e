use outworx_hooks::{Track, webhook};

// An alias of the Track that is only bound marks nothing: `t` is never marked or handed on.
#[webhook(provider = "github", secret = "s", require_processed)]
async fn handler(track: Track) -> &'static str {
    let t = &track;
    let copy = track.clone();
    let _ = (t.is_marked(), copy.is_marked());
    "ok"
}

fn main() {}
