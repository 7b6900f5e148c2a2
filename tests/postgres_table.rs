//! `postgres://…?mode=table` beyond the conformance suite: the tables are created on first
//! use, two `table=` names do not interfere, killed sessions and a real server restart do
//! not lose the lease (nor need a new `connect`), fair waiting across processes, and a held
//! lease holds no connection.
//!
//! Needs only the `postgres` feature and the PostgreSQL of `scripts/services.sh`
//! (`LOCKATTR_TEST_POSTGRES_URL`); a server that cannot be reached fails the test. The
//! restart test starts a private server of its own (its own folder and port, from the same
//! packages), so that restarting it disturbs nobody.

mod suite;
mod table_support;

use lockattr_tests::as_postgres;
use lockattr_tests::{postgres_url, with_param};
use sqlx::Connection;
use suite::{block_on, take, unique};
use table_support::{connect, TTL};

/// The shared test database in table mode.
fn table_url() -> String {
    with_param(&postgres_url(), "mode=table")
}

table_support::server_table_checks!(admin, table_url, "postgres");

async fn admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&postgres_url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", postgres_url()))
}

#[test]
fn bad_table_names_are_refused() {
    block_on(table_support::refused_as_invalid(&[
        with_param(&table_url(), "table=x;drop"),
        with_param(&table_url(), "tabel=x"),
    ]));
}

#[test]
fn postgres_sessions_killed_during_a_hold() {
    block_on(async {
        let app = format!("lockattr_restart_{}", std::process::id());
        let url = with_param(&table_url(), &format!("application_name={app}"));
        table_support::survives_killed_sessions(&url, async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k",
            )
            .bind(&app)
            .fetch_one(&mut admin().await)
            .await
            .unwrap();
            n as u64
        })
        .await;
    });
}

/// A lease is a row: 1,000 held locks keep no connection busy, and one handle never opens
/// more than its pool's 8 connections.
#[test]
fn a_thousand_held_locks_use_few_connections() {
    block_on(async {
        let app = format!("lockattr_many_{}", std::process::id());
        let locks = connect(&with_param(
            &table_url(),
            &format!("application_name={app}"),
        ))
        .await;
        let prefix = unique("many");
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (locks, prefix) = (locks.clone(), prefix.clone());
            tasks.push(tokio::spawn(async move {
                let mut guards = Vec::new();
                for i in 0..125 {
                    let key = format!("{prefix}:{t}:{i}");
                    guards.push(take(&locks, key, TTL).await.unwrap());
                }
                guards
            }));
        }
        let mut guards = Vec::new();
        for t in tasks {
            guards.extend(t.await.unwrap());
        }
        assert_eq!(guards.len(), 1000);
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app)
                .fetch_one(&mut admin().await)
                .await
                .unwrap();
        assert!((1..=8).contains(&n), "{n} connections for 1,000 held locks");
        for g in guards {
            g.release().await.unwrap();
        }
    });
}

#[test]
fn unreachable_database_is_a_backend_error() {
    block_on(table_support::unreachable_database_is_a_backend_error(
        "postgres://postgres:hunter2@127.0.0.1:1/test?mode=table",
    ));
}

/// A private PostgreSQL server (its own folder and port), restarted for real during a
/// hold: the lease survives, and the same handle goes on without a new `connect`.
#[test]
fn postgres_restarted_during_a_hold() {
    let dir = suite::scratch_dir("pg");
    let _ = std::process::Command::new("chown")
        .args(["postgres:postgres", &dir.display().to_string()])
        .status();
    let data = dir.join("data");
    let data = data.display().to_string();
    let port = 20000 + std::process::id() % 20000;
    as_postgres("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"]);
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        dir.display()
    );
    let log = dir.join("log").display().to_string();
    as_postgres(
        "pg_ctl",
        &["-D", &data, "-o", &opts, "-l", &log, "-w", "start"],
    );
    struct Stop(String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(|| {
                as_postgres("pg_ctl", &["-D", &self.0, "-m", "immediate", "stop"])
            });
        }
    }
    let stop = Stop(data.clone());
    block_on(async {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?mode=table");
        table_support::survives_a_restart(&url, async {
            as_postgres(
                "pg_ctl",
                &[
                    "-D", &data, "-o", &opts, "-l", &log, "-m", "fast", "-w", "restart",
                ],
            );
        })
        .await;
    });
    drop(stop);
    let _ = std::fs::remove_dir_all(&dir);
}
