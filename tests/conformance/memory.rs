//! The conformance suite (`tests/suite/`) on the in-process backend, `memory://`
//! (no feature, no server).
//!
//! `cargo test -p lockattr-tests --test conformance_memory`

#[path = "../suite/mod.rs"]
mod suite;

use std::time::Duration;

fn profile() -> suite::Profile {
    suite::Profile {
        url: "memory://conformance".to_owned(),
        short_ttl: Duration::from_millis(300),
    }
}

suite::conformance!(profile);
