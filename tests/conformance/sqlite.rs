//! The conformance suite (`tests/suite/`) on SQLite, `sqlite://`: a lease table in a file
//! under the temp folder, fresh for each run of this target.
//!
//! `cargo test -p lockattr-tests --features sqlite --test conformance_sqlite`

#[path = "../suite/mod.rs"]
mod suite;

use std::time::Duration;

fn profile() -> suite::Profile {
    suite::Profile {
        url: format!(
            "sqlite://{}",
            suite::scratch_dir("conformance").join("locks.db").display()
        ),
        short_ttl: Duration::from_millis(300),
    }
}

suite::conformance!(profile);
suite::processes!(profile);
