//! Writes each Rust block of the workspace README that follows a `<!-- readme-example: NAME -->`
//! marker to `$OUT_DIR/NAME.rs`, for the `readme-NAME` binaries to include: the README's text is
//! the one source, compiled (and run by `tests/readme.rs`) as it is written.

use std::path::Path;

fn main() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    println!("cargo:rerun-if-changed={}", readme.display());
    let text = match std::fs::read_to_string(&readme) {
        Ok(t) => t,
        Err(e) => panic!("reading {}: {e}", readme.display()),
    };
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("<!-- readme-example: ") {
        rest = &rest[at + "<!-- readme-example: ".len()..];
        let name = rest.split_once(" -->").map(|(n, _)| n.trim()).unwrap_or("");
        let open = "```rust\n";
        let Some(start) = rest.find(open) else {
            panic!("README: the marker `{name}` has no ```rust block after it")
        };
        let code = &rest[start + open.len()..];
        let Some(end) = code.find("\n```") else {
            panic!("README: the block of `{name}` does not end")
        };
        let file = Path::new(&out).join(format!("{name}.rs"));
        std::fs::write(&file, &code[..=end]).expect("write to OUT_DIR");
        found.push(name.to_owned());
        rest = &code[end..];
    }
    for wanted in ["receive", "send"] {
        assert!(
            found.iter().any(|f| f == wanted),
            "README: no `<!-- readme-example: {wanted} -->` block (found {found:?})"
        );
    }
}
