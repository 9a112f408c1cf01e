//! The SDK's module graph, as a list of allowed edges: each top-level module names the modules
//! it may use ([`ALLOWED`]), the list has no cycle, the receiving side and the sending side
//! never import each other, and inside a module its files do not import each other in a
//! circle either. An import outside the list fails here with its file and line; adding an
//! edge is a design decision, made in the list with its reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the SDK and the modules it may use (`crate::x` outside its tests).
const ALLOWED: &[(&str, &[&str])] = &[
    // The foundation both sides stand on.
    ("util", &[]),
    ("otel", &[]),
    ("queue", &[]),
    ("wire", &[]),
    ("body", &[]),
    ("envelope", &[]),
    ("track", &[]),
    ("security", &["body", "util"]),
    ("event", &["security", "util", "wire"]),
    ("metrics", &["event", "util"]),
    ("report", &["event", "metrics", "util", "wire"]),
    // The process runtime: its configuration, the idempotency store and the reporting every
    // delivery (received or sent) goes through.
    ("store", &["metrics", "security", "util", "wire"]),
    ("config", &["report", "store"]),
    ("route", &["config", "security"]),
    (
        "runtime",
        &["config", "event", "metrics", "report", "route", "store"],
    ),
    ("testing", &["security"]),
    // Receiving: the inbox knows nothing of the pipeline (the pipeline reads its marker).
    // `util`: a listed delivery's URL is redacted as events redact it.
    ("inbox", &["metrics", "otel", "queue", "util"]),
    (
        "pipeline",
        &[
            "body", "config", "event", "inbox", "otel", "route", "runtime", "security", "store",
            "track", "util", "wire",
        ],
    ),
    (
        "layer",
        &["inbox", "pipeline", "route", "security", "store", "util"],
    ),
    // Sending: signs with `security`'s scheme families, reports through the runtime.
    (
        "send",
        &[
            "event", "metrics", "otel", "queue", "runtime", "security", "util", "wire",
        ],
    ),
    // The list of every query with its plan, for the plan test: it plans the queries both
    // queues build, and nothing uses it.
    ("plans", &["inbox", "send"]),
];

/// The receiving side: nothing here may use the sending side, nor the reverse.
const RECEIVE: &[&str] = &[
    "body", "envelope", "store", "route", "track", "pipeline", "layer", "inbox",
];
/// The sending side.
const SEND: &[&str] = &["send"];

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

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../outworx-hooks/src")
}

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

/// The module path of a file under `src/`: `send/worker/mod.rs` is `["send", "worker"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// `source` as code: comments blanked (lines kept, so an offset still tells its line) and
/// without its trailing `mod tests` (test code may reach anywhere).
fn code(source: &str) -> String {
    without_tests(source)
        .lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l.split(" //").next().unwrap_or_default(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn without_tests(source: &str) -> &str {
    source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
}

/// The paths `code` names after `prefix` (`crate::`, `super::`), each as its first two
/// segments, with the line it starts on; groups (`crate::{a::b, c::{d, e}}`) are read item by
/// item.
fn paths(code: &str, prefix: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix) {
        let start = from + at + prefix.len();
        // `super::` inside `crate::a::super::` cannot happen; a word before it can.
        let before = code[..from + at].chars().next_back();
        from = start;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        let rest = &code[start..];
        let Some(group) = rest.strip_prefix('{') else {
            found.push((line, segments(rest)));
            continue;
        };
        let (mut depth, mut item) = (0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 0 => {
                    let head = segments(group[item..i].trim_start());
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

/// The first two `::` segments of a path (`a::b::C` is `["a", "b"]`).
fn segments(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while out.len() < 2 {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        rest = &rest[name.len()..];
        out.push(name);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

fn allowed(module: &str) -> Option<&'static [&'static str]> {
    ALLOWED.iter().find(|(m, _)| *m == module).map(|(_, a)| *a)
}

#[test]
fn the_scanner_reads_paths_groups_and_skips_comments() {
    let source = "use crate::store::Store;\n\
                  // crate::pipeline in a comment\n\
                  let x = crate::security::verify(a); // crate::layer after code\n\
                  use crate::{\n    event::DeliveryEvent,\n    util::{BoxFuture, intern},\n};\n\
                  use crate::{wire, body::skim};\n\
                  use super::worker::Worker;\n\
                  #[cfg(test)]\nmod tests {\n    use crate::layer;\n}\n";
    let names: Vec<(usize, String)> = paths(&code(source), "crate::")
        .into_iter()
        .map(|(l, s)| (l, s[0].clone()))
        .collect();
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
    assert_eq!(
        paths(&code(source), "super::"),
        vec![(9, vec!["worker".to_owned(), "Worker".to_owned()])]
    );
}

#[test]
fn the_allowed_edges_have_no_cycle() {
    // Kahn's algorithm: a module leaves once everything it uses has left.
    let mut left: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, uses)| (*m, uses.iter().copied().collect()))
        .collect();
    for (m, uses) in &left {
        for u in uses {
            assert!(
                allowed(u).is_some(),
                "`{m}` may use `{u}`, which has no entry"
            );
        }
    }
    while let Some(free) = left
        .iter()
        .find(|(_, uses)| uses.is_empty())
        .map(|(m, _)| *m)
    {
        left.remove(free);
        for uses in left.values_mut() {
            uses.remove(free);
        }
    }
    assert!(left.is_empty(), "a cycle among: {:?}", left.keys());
}

#[test]
fn sending_and_receiving_never_import_each_other() {
    for (m, uses) in ALLOWED {
        for (from, to) in [(RECEIVE, SEND), (SEND, RECEIVE)] {
            if from.contains(m) {
                let crossing: Vec<&&str> = uses.iter().filter(|u| to.contains(u)).collect();
                assert!(
                    crossing.is_empty(),
                    "`{m}` may use {crossing:?} across the sides"
                );
            }
        }
    }
}

#[test]
fn every_import_is_an_allowed_edge() {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let path = module_path(relative);
        let Some(module) = path.first() else { continue };
        let Some(may) = allowed(module) else {
            problems.push(format!(
                "{}: module `{module}` has no entry in ALLOWED",
                relative.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        let code = code(&source);
        if code.contains("super::super::") {
            problems.push(format!(
                "{}: `super::super::` reaches past its module; name it with `crate::`",
                relative.display()
            ));
        }
        for (line, used) in paths(&code, "crate::") {
            let used = ROOT_ITEMS
                .iter()
                .find(|(item, _)| *item == used[0])
                .map_or(used[0].as_str(), |(_, m)| m);
            if used == module || used == "__private" {
                continue;
            }
            if allowed(used).is_none() {
                problems.push(format!(
                    "{}:{line}: `crate::{used}` is neither a module nor a known root item \
                     (add it to ALLOWED or ROOT_ITEMS)",
                    relative.display()
                ));
            } else if !may.contains(&used) {
                problems.push(format!(
                    "{}:{line}: `{module}` uses `crate::{used}`, not an allowed edge",
                    relative.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Inside a module (`send`, `inbox`, `pipeline`, ..), the files it is split into do not
/// import each other in a circle: `send/emitter.rs` and `send/worker/` once did.
#[test]
fn no_module_is_a_circle_of_its_own_files() {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // For each top module: child -> the children it uses.
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    // The names each module's root re-exports, by the child that defines them.
    let mut reexports: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let path = module_path(file.strip_prefix(&src).unwrap());
        if path.len() != 1 {
            continue;
        }
        let code = code(&std::fs::read_to_string(file).unwrap());
        let names = reexports.entry(path[0].clone()).or_default();
        for line in code.lines().map(str::trim) {
            let Some(rest) = line
                .strip_prefix("pub use ")
                .or_else(|| line.strip_prefix("pub(crate) use "))
            else {
                continue;
            };
            let child: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let items = rest[child.len()..].trim_start_matches("::");
            for item in items.trim_matches(|c| "{};".contains(c)).split(',') {
                let item = item.trim().rsplit("::").next().unwrap_or_default();
                if !item.is_empty() {
                    names.insert(item.to_owned(), child.clone());
                }
            }
        }
    }
    for file in &files {
        let path = module_path(file.strip_prefix(&src).unwrap());
        if path.len() < 2 {
            continue;
        }
        let (top, child) = (&path[0], &path[1]);
        let code = code(&std::fs::read_to_string(file).unwrap());
        let mut used = Vec::new();
        for (_, p) in paths(&code, "crate::") {
            if p.first() == Some(top)
                && let Some(next) = p.get(1)
            {
                used.push(next.clone());
            }
        }
        // `super::x` in a child's own file (`send/emitter.rs`, `send/worker/mod.rs`) is a
        // sibling; deeper files' `super::` stay inside their child.
        if path.len() == 2 {
            for (_, p) in paths(&code, "super::") {
                used.extend(p.first().cloned());
            }
        }
        let names = &reexports[top];
        let uses = graphs
            .entry(top.clone())
            .or_default()
            .entry(child.clone())
            .or_default();
        for u in used {
            let u = names.get(&u).cloned().unwrap_or(u);
            if u != *child && !u.is_empty() && u.chars().next().is_some_and(char::is_lowercase) {
                uses.insert(u);
            }
        }
    }
    for (top, mut graph) in graphs {
        let children: BTreeSet<String> = graph.keys().cloned().collect();
        for uses in graph.values_mut() {
            uses.retain(|u| children.contains(u));
        }
        while let Some(free) = graph
            .iter()
            .find(|(_, uses)| uses.is_empty())
            .map(|(c, _)| c.clone())
        {
            graph.remove(&free);
            for uses in graph.values_mut() {
                uses.remove(&free);
            }
        }
        assert!(
            graph.is_empty(),
            "`{top}`'s files import each other in a circle: {graph:?}"
        );
    }
}
