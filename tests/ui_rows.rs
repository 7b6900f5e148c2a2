//! The compile-time checks of `lockattr::rows` (feature `postgres`), each with its reviewed
//! `.stderr`: a lock outside a transaction, a lock without a policy or with two, and a
//! literal query that cannot take a lock clause.

#[test]
fn ui_rows() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui_rows/*.rs");
}
