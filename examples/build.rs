//! Writes each fenced block of the workspace README that directly follows a
//! `<!-- readme: NAME/PATH -->` marker to `$OUT_DIR/readme/NAME/PATH`: the files of a fresh
//! crate (`receive/Cargo.toml`, `receive/src/main.rs`), which `tests/readme.rs` builds and runs.
//! The README's text is the one source.

use std::path::Path;

const MARKER: &str = "<!-- readme: ";

fn main() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    println!("cargo:rerun-if-changed={}", readme.display());
    let text = match std::fs::read_to_string(&readme) {
        Ok(t) => t.replace("\r\n", "\n"),
        Err(e) => panic!("reading {}: {e}", readme.display()),
    };
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("readme");
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(MARKER) {
        rest = &rest[at + MARKER.len()..];
        let Some((name, after)) = rest.split_once(" -->") else {
            panic!("README: a `{MARKER}` marker is not closed")
        };
        let name = name.trim();
        // The block must come next: nothing but blank lines between the marker and the fence.
        let after = after.trim_start_matches(['\n', ' ']);
        let Some(fenced) = after.strip_prefix("```") else {
            panic!("README: the marker `{name}` is not followed by a fenced block")
        };
        let Some((_lang, body)) = fenced.split_once('\n') else {
            panic!("README: the block of `{name}` is empty")
        };
        let Some(end) = body.find("\n```") else {
            panic!("README: the block of `{name}` does not end")
        };
        let file = out.join(name);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).expect("create a directory in OUT_DIR");
        }
        std::fs::write(&file, &body[..=end]).expect("write to OUT_DIR");
        found.push(name.to_owned());
        rest = &body[end..];
    }
    for wanted in [
        "receive/Cargo.toml",
        "receive/src/main.rs",
        "send/Cargo.toml",
        "send/src/main.rs",
    ] {
        assert!(
            found.iter().any(|f| f == wanted),
            "README: no `{MARKER}{wanted} -->` block (found {found:?})"
        );
    }
}
