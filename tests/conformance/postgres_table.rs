//! The conformance suite (`tests/suite/`) on PostgreSQL's lease table, `postgres://…?mode=table` at
//! `$LOCKATTR_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! `cargo test -p lockattr-tests --features postgres --test conformance_postgres_table`

#[path = "../suite/mod.rs"]
mod suite;

use std::time::Duration;

fn profile() -> suite::Profile {
    suite::Profile {
        url: lockattr_tests::with_param(&lockattr_tests::postgres_url(), "mode=table"),
        short_ttl: Duration::from_millis(300),
    }
}

suite::conformance!(profile);
suite::processes!(profile);
