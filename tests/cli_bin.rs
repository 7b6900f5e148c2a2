//! The `lockattr` operator CLI, built in this package so that `tests/cli.rs` can run it
//! (`CARGO_BIN_EXE_…` names only the binaries of the test's own package). It is the same
//! one line as `lockattr/src/bin/lockattr.rs`: everything else is `lockattr::cli`.

fn main() {
    std::process::exit(lockattr::cli::main());
}
