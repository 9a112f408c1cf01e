use outworx_hooks::{Track, webhook};

struct Other;
impl Other {
    fn processed(&self) {}
}

#[webhook(provider = "stripe", secret = "whsec_x", require_processed)]
async fn handler(track: Track) -> &'static str {
    // track.processed() in a comment does not count,
    let _text = "track.processed()"; // nor in a string,
    Other.processed(); // nor on another value.
    let _ = track.is_marked();
    "ok"
}

fn main() {}
