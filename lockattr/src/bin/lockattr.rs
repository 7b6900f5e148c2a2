//! `lockattr`: list, inspect and force-release the locks of a lockattr backend. Run
//! `lockattr --help`; the code is in [`lockattr::cli`].

fn main() {
    std::process::exit(lockattr::cli::main());
}
