//! The conformance suite (`tests/suite/`) on Redis, `redis://` at `$LOCKATTR_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`).
//!
//! `cargo test -p lockattr-tests --features redis --test conformance_redis`

#[path = "../suite/mod.rs"]
mod suite;

use std::time::Duration;

fn profile() -> suite::Profile {
    suite::Profile {
        url: lockattr_tests::redis_url(),
        short_ttl: Duration::from_millis(300),
    }
}

suite::conformance!(profile);
suite::processes!(profile);
