//! The conformance suite (`tests/suite/`) on MySQL / MariaDB's `GET_LOCK`, `mysql://` at
//! `$LOCKATTR_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`).
//!
//! `cargo test -p lockattr-tests --features mysql --test conformance_mysql`

#[path = "../suite/mod.rs"]
mod suite;

use std::time::Duration;

fn profile() -> suite::Profile {
    suite::Profile {
        url: lockattr_tests::mysql_url(),
        // The server ends a stalled holder's session through `wait_timeout`, in whole
        // seconds.
        short_ttl: Duration::from_secs(2),
    }
}

suite::conformance!(profile);
suite::processes!(profile);
