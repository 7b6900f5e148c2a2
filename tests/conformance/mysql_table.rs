//! The conformance suite (`tests/suite/`) on MySQL / MariaDB's lease table,
//! `mysql://…?mode=table` at `$LOCKATTR_TEST_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306/test`).
//!
//! `cargo test -p lockattr-tests --features mysql --test conformance_mysql_table`

#[path = "../suite/mod.rs"]
mod suite;

use std::time::Duration;

fn profile() -> suite::Profile {
    suite::Profile {
        url: lockattr_tests::with_param(&lockattr_tests::mysql_url(), "mode=table"),
        short_ttl: Duration::from_millis(300),
    }
}

suite::conformance!(profile);
suite::processes!(profile);
