//! `mysql://…?mode=table` (MariaDB here) beyond the conformance suite: the tables are
//! created on first use, two `table=` names do not interfere, killed sessions and a real
//! server restart do not lose the lease (nor need a new `connect`), and fair waiting across
//! processes.
//!
//! Needs only the `mysql` feature and the MariaDB of `scripts/services.sh`
//! (`LOCKATTR_TEST_MYSQL_URL`); a server that cannot be reached fails the test. The restart
//! test starts a private server of its own (its own folder and port, from the same
//! packages), so that restarting it disturbs nobody.

mod suite;
mod table_support;

use lockattr_tests::{mysql_url, with_param, PrivateMariaDb};
use sqlx::{Connection, Executor};
use suite::block_on;

/// The shared test database in table mode.
fn table_url() -> String {
    with_param(&mysql_url(), "mode=table")
}

table_support::server_table_checks!(admin, table_url, "mysql");

/// The shared test server's URL with database `db` instead of its own.
fn url_of_database(db: &str) -> String {
    let url = mysql_url();
    let server = url
        .rsplit_once('/')
        .map_or(url.as_str(), |(server, _)| server);
    format!("{server}/{db}")
}

async fn admin() -> sqlx::MySqlConnection {
    sqlx::MySqlConnection::connect(&mysql_url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", mysql_url()))
}

#[test]
fn bad_table_names_are_refused() {
    block_on(table_support::refused_as_invalid(&[
        with_param(&table_url(), "table=1x"),
        with_param(&table_url(), "table=x;y"),
    ]));
}

#[test]
fn mysql_sessions_killed_during_a_hold() {
    block_on(async {
        // A database of its own, so that only this test's sessions are killed.
        let db = "lockattr_restart";
        let mut admin = admin().await;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE IF NOT EXISTS {db}"
            )))
            .await
            .unwrap();
        let url = with_param(&url_of_database(db), "mode=table");
        table_support::survives_killed_sessions(&url, async {
            let ids: Vec<u64> = sqlx::query_scalar(
                "SELECT CAST(id AS UNSIGNED) FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
            )
            .bind(db)
            .fetch_all(&mut admin)
            .await
            .unwrap();
            for id in &ids {
                let _ = admin
                    .execute(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
                    .await;
            }
            ids.len() as u64
        })
        .await;
    });
}

#[test]
fn unreachable_database_is_a_backend_error() {
    block_on(table_support::unreachable_database_is_a_backend_error(
        "mysql://root:hunter2@127.0.0.1:1/test?mode=table",
    ));
}

/// A private MariaDB, restarted for real during a hold: the lease survives, and the same
/// handle goes on without a new `connect`.
#[test]
fn mysql_restarted_during_a_hold() {
    block_on(async {
        let mut server = PrivateMariaDb::install();
        server.start().await;
        let url = format!("mysql://root@127.0.0.1:{}/test?mode=table", server.port);
        table_support::survives_a_restart(&url, async {
            server.stop();
            server.start().await;
        })
        .await;
    });
}

/// MariaDB refuses a password for `root`, which has none: the refusal shows no password in
/// the error or the logs.
#[test]
fn refused_login_never_shows_the_password() {
    const PASSWORD: &str = "Sw0rdf1sh-not-roots";
    let url = with_param(
        &table_support::with_password(&mysql_url(), PASSWORD),
        "mode=table",
    );
    table_support::refused_login_never_shows_the_password(&url, PASSWORD);
}
