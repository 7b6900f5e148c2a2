//! MySQL / MariaDB: the version and the session's `innodb_lock_wait_timeout` in one
//! round trip, the timeout set for the statement and set back after it, errors 1205 and
//! 3572 for a refused lock.

use std::time::Duration;

use sqlx::mysql::{MySqlConnection, MySqlDatabaseError, MySqlRow};
use sqlx::{Executor, MySql};

use super::driver::{self, Driver};
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
        conn: &mut Self::Connection,
        query: Parts<MySql>,
        all: bool,
    ) -> BoxFuture<'_, Result<Vec<MySqlRow>, sqlx::Error>> {
        driver::run::<MySql>(conn, query, all)
    }

    #[cfg(feature = "query-macros")]
    fn executor(conn: &mut Self::Connection) -> impl sqlx::Executor<'_, Database = Self> {
        conn
    }

    fn failure(error: &sqlx::Error, policy: &Policy) -> Failure {
        driver::server_error::<MySqlDatabaseError>(error)
            .map_or(Failure::Other, |e| mysql_failure(e.number(), policy))
    }
}

/// `SET SESSION innodb_lock_wait_timeout = seconds` (a number lockattr wrote or read).
async fn set_timeout(conn: &mut MySqlConnection, seconds: &str) -> Result<(), sqlx::Error> {
    debug_assert!(seconds.bytes().all(|b| b.is_ascii_digit()));
    let sql = format!("SET SESSION innodb_lock_wait_timeout = {seconds}");
    conn.execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}
