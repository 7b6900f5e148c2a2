//! The conformance suite (`tests/suite/`) on PostgreSQL's advisory locks, `postgres://` at
//! `$LOCKATTR_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! `cargo test -p lockattr-tests --features postgres --test conformance_postgres`

#[path = "../suite/mod.rs"]
mod suite;

use std::time::Duration;

fn profile() -> suite::Profile {
    suite::Profile {
        url: lockattr_tests::postgres_url(),
        // The server ends a stalled holder's session through `idle_session_timeout`, 0.5 s
        // after its deadline.
        short_ttl: Duration::from_secs(1),
    }
}

suite::conformance!(profile);
suite::processes!(profile);
