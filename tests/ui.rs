//! Every compile-time check of `#[distributed_lock]`, with its reviewed `.stderr` snapshot.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
}
