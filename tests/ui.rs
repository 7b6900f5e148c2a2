//! Every compile-time check of `#[distributed_lock]`, with its reviewed `.stderr` snapshot
//! (`ui/fail`), and the shapes of function it accepts, each compiled under
//! `#![deny(warnings)]` and run (`ui/pass`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
