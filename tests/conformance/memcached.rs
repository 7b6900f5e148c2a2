//! The conformance suite (`tests/suite/`) on Memcached, `memcached://` at
//! `$LOCKATTR_TEST_MEMCACHED_URL` (default `memcached://127.0.0.1:11211`).
//!
//! `cargo test -p lockattr-tests --features memcached --test conformance_memcached`

#[path = "../suite/mod.rs"]
mod suite;

use std::time::Duration;

fn profile() -> suite::Profile {
    suite::Profile {
        url: lockattr_tests::memcached_url(),
        // Memcached counts whole seconds: the shortest ttl it takes.
        short_ttl: Duration::from_secs(1),
    }
}

suite::conformance!(profile);
suite::processes!(profile);
