//! The SDK's modules depend on each other one way: each uses only the modules before it in
//! [`LAYERS`], so no cycle can form. A module that reaches up fails here, with the file and
//! line; a new module fails until it is given its place.

use std::path::{Path, PathBuf};

/// The SDK's top-level modules, bottom up (the order `lib.rs` and ARCHITECTURE.md describe).
const LAYERS: &[&str] = &[
    "util", "otel", "queue", "wire", "body", "security", "event", "metrics", "envelope", "store",
    "report", "config", "route", "runtime", "track", "inbox", "pipeline", "layer", "send",
    "testing",
];

/// The crate root's re-exports, by the module that defines them: `crate::Config` is a use of
/// `config`.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Config", "config"),
    ("ConfigError", "config"),
    ("DEFAULT_ENDPOINT", "config"),
    ("SecretProblem", "config"),
    ("Guard", "runtime"),
    ("init", "runtime"),
    ("Sink", "report"),
    ("Subscription", "report"),
    ("TracingSink", "report"),
    ("subscribe", "report"),
    ("OnError", "report"),
    ("OutworxSink", "report"),
    ("OutworxSinkOptions", "report"),
    ("ReportError", "report"),
    ("KeyFn", "layer"),
    ("OutworxHooksLayer", "layer"),
    ("OutworxHooksService", "layer"),
    ("TrackOptions", "layer"),
    ("Provider", "security"),
    ("MemoryStore", "store"),
    ("Track", "track"),
    ("TrackRejection", "track"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules `source` names as `crate::module` (also in `crate::{a::b, c::{d, e}}`), with
/// the line each path starts on; comments and the trailing `mod tests` are not code the
/// module depends on.
fn uses(source: &str) -> Vec<(usize, String)> {
    let code = without_tests(source);
    // Comments blanked, lines kept, so an offset still tells its line.
    let code = code
        .lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l.split(" //").next().unwrap_or_default(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at + "crate::".len();
        let line = code[..start].matches('\n').count() + 1;
        let rest = &code[start..];
        from = start;
        let Some(group) = rest.strip_prefix('{') else {
            found.push((line, ident(rest)));
            continue;
        };
        // The group's items at depth 0, each up to its comma or the closing brace.
        let (mut depth, mut item) = (0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 0 => {
                    let head = ident(group[item..i].trim_start());
                    if !head.is_empty() {
                        found.push((line, head));
                    }
                    item = i + 1;
                    if c == '}' {
                        from = start + 1 + i;
                        break;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
    }
    found
}

/// `source` without its trailing `mod tests` (test code may reach anywhere).
fn without_tests(source: &str) -> &str {
    source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
}

/// Whether code (not a comment, not a test) says `super::super::`, a path the scanner cannot
/// place.
fn uses_super_super(source: &str) -> bool {
    without_tests(source)
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .any(|l| l.contains("super::super::"))
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn the_scanner_reads_paths_groups_and_skips_comments() {
    let source = "use crate::store::Store;\n\
                  // crate::pipeline in a comment\n\
                  let x = crate::security::verify(a); // crate::layer after code\n\
                  use crate::{\n    event::DeliveryEvent,\n    util::{BoxFuture, intern},\n};\n\
                  use crate::{wire, body::skim};\n\
                  #[cfg(test)]\nmod tests {\n    use crate::layer;\n}\n";
    let names: Vec<(usize, String)> = uses(source);
    let expected = [
        (1, "store"),
        (3, "security"),
        (4, "event"),
        (4, "util"),
        (8, "wire"),
        (8, "body"),
    ];
    assert_eq!(
        names,
        expected.map(|(n, m)| (n, m.to_owned())).to_vec(),
        "comments and tests are not dependencies"
    );
}

#[test]
fn sdk_modules_depend_only_on_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../outworx-hooks/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "lib" {
            continue;
        }
        let Some(level) = LAYERS.iter().position(|l| *l == module) else {
            problems.push(format!(
                "{}: module `{module}` has no place in LAYERS",
                relative.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        if uses_super_super(&source) {
            problems.push(format!(
                "{}: `super::super::` reaches past its module; name it with `crate::`",
                relative.display()
            ));
        }
        for (line, used) in uses(&source) {
            let used = ROOT_ITEMS
                .iter()
                .find(|(item, _)| *item == used)
                .map_or(used.as_str(), |(_, m)| m);
            let Some(at) = LAYERS.iter().position(|l| *l == used) else {
                if used != "__private" {
                    problems.push(format!(
                        "{}:{line}: `crate::{used}` is neither a layer nor a known root item \
                         (add it to LAYERS or ROOT_ITEMS)",
                        relative.display()
                    ));
                }
                continue;
            };
            if at > level {
                problems.push(format!(
                    "{}:{line}: `{module}` uses `crate::{used}`, a layer above it",
                    relative.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
