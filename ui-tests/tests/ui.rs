//! Compile-time checks of `#[webhook]`: every misuse is an error at its token with a fix
//! (`ui/fail/*.rs` with their `.stderr`), and every accepted form compiles (`ui/pass`).
//! Regenerate the expected output with `TRYBUILD=overwrite` and review the diff like code.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}
