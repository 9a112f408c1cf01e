//! The provider catalog (`outworx-hooks-providers`) is the one table: the docs' provider page,
//! the README's provider list and the attribute's all-providers case are checked against it,
//! row by row, so none of them can drift.

use outworx_hooks::security::Provider;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_providers_page_is_the_catalog() {
    let page = read("docs/providers.md");
    let rows: Vec<(String, String, String)> = page
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| [`")?;
            let (name, rest) = rest.split_once("`](")?;
            let (docs, rest) = rest.split_once(") | ")?;
            let summary = rest.strip_suffix(" |")?;
            Some((name.to_owned(), docs.to_owned(), summary.to_owned()))
        })
        .collect();
    let catalog: Vec<(String, String, String)> = Provider::ALL
        .iter()
        .map(|p| {
            let s = p.spec();
            (s.name.to_owned(), s.docs.to_owned(), s.summary.to_owned())
        })
        .collect();
    assert_eq!(rows, catalog, "docs/providers.md differs from the catalog");
}

#[test]
fn the_readme_lists_every_provider_in_order() {
    let listing = Provider::ALL
        .iter()
        .map(|p| format!("`{}`", p.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("{} providers", Provider::ALL.len())) && readme.contains(&listing),
        "the README's provider list is not the catalog's: {listing}"
    );
}

#[test]
fn the_attribute_case_covers_every_provider() {
    let case = read("ui-tests/ui/pass/all_providers.rs");
    for p in Provider::ALL {
        assert!(
            case.contains(&format!("provider = \"{}\"", p.name())),
            "ui-tests/ui/pass/all_providers.rs has no route for {p}"
        );
    }
}
