//! MySQL / MariaDB: the version and the session's `innodb_lock_wait_timeout` in one
//! round trip, the timeout set for the statement and set back after it, errors 1205 and
//! 3572 for a refused lock.

use std::time::Duration;

use sqlx::mysql::{MySqlConnection, MySqlDatabaseError, MySqlRow};
use sqlx::{Executor, MySql};

use super::driver::Driver;
use super::query::Parts;
use super::scan::Dialect;
use super::server::{mysql_failure, Failure, Policy, Server};
use super::BoxFuture;

impl Driver for MySql {
    const KIND: &'static str = "mysql";
    const DIALECT: Dialect = Dialect::MySql;
    // A lock wait timeout rolls back the statement, not the transaction: the session goes on.
    const RESTORE_AFTER_ERROR: bool = true;

    fn detect(conn: &mut MySqlConnection) -> BoxFuture<'_, Result<Server, sqlx::Error>> {
        Box::pin(async move {
            let (version, timeout): (String, i64) = sqlx::query_as(
                "SELECT VERSION(), CAST(@@SESSION.innodb_lock_wait_timeout AS SIGNED)",
            )
            .fetch_one(&mut *conn)
            .await?;
            Ok(Server::mysql(&version, Some(timeout)))
        })
    }

    fn set_wait<'a>(
        conn: &'a mut MySqlConnection,
        server: &'a Server,
        wait: Duration,
    ) -> BoxFuture<'a, Result<String, sqlx::Error>> {
        // Whole seconds, rounded up; at least 1 (MariaDB reads 0 as NOWAIT, MySQL refuses it).
        let seconds = wait.as_nanos().div_ceil(1_000_000_000).clamp(1, 1 << 30);
        let old = server.lock_wait_timeout.unwrap_or(50);
        Box::pin(async move {
            set_timeout(conn, &seconds.to_string()).await?;
            Ok(old.to_string())
        })
    }

    fn restore(conn: &mut MySqlConnection, old: String) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { set_timeout(conn, &old).await })
    }

    fn run(
        conn: &mut MySqlConnection,
        query: Parts<MySql>,
        all: bool,
    ) -> BoxFuture<'_, Result<Vec<MySqlRow>, sqlx::Error>> {
        Box::pin(async move {
            match all {
                true => conn.fetch_all(query).await,
                false => Ok(conn.fetch_optional(query).await?.into_iter().collect()),
            }
        })
    }

    fn failure(error: &sqlx::Error, policy: &Policy) -> Failure {
        match error {
            sqlx::Error::Database(e) => match e.try_downcast_ref::<MySqlDatabaseError>() {
                Some(my) => mysql_failure(my.number(), policy),
                None => Failure::Other,
            },
            _ => Failure::Other,
        }
    }
}

/// `SET SESSION innodb_lock_wait_timeout = seconds` (a number lockattr wrote or read).
async fn set_timeout(conn: &mut MySqlConnection, seconds: &str) -> Result<(), sqlx::Error> {
    debug_assert!(seconds.bytes().all(|b| b.is_ascii_digit()));
    let sql = format!("SET SESSION innodb_lock_wait_timeout = {seconds}");
    conn.execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}
