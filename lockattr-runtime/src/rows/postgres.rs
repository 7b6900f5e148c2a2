//! PostgreSQL: the version from the connection's start-up parameters, `lock_timeout` set
//! transaction-locally with `set_config(…, true)`, SQLSTATE 55P03 for a refused lock.

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgDatabaseError, PgRow};
use sqlx::Postgres;

use super::driver::{self, Driver};
use super::query::Parts;
use super::scan::Dialect;
use super::server::{postgres_failure, Failure, Policy, Server};
use super::BoxFuture;

impl Driver for Postgres {
    const KIND: &'static str = "postgres";
    const DIALECT: Dialect = Dialect::Postgres;
    // A failed statement aborts the transaction, and its `set_config(…, true)` with it.
    const RESTORE_AFTER_ERROR: bool = false;

    fn detect(conn: &mut PgConnection) -> BoxFuture<'_, Result<Server, sqlx::Error>> {
        Box::pin(async move {
            let num = match conn.server_version_num() {
                Some(num) => num,
                None => {
                    let text: String =
                        sqlx::query_scalar("SELECT current_setting('server_version_num')")
                            .fetch_one(&mut *conn)
                            .await?;
                    text.trim().parse().unwrap_or(0)
                }
            };
            Ok(Server::postgres(num))
        })
    }

    fn set_wait<'a>(
        conn: &'a mut PgConnection,
        _server: &'a Server,
        wait: Duration,
    ) -> BoxFuture<'a, Result<String, sqlx::Error>> {
        // `lock_timeout` counts milliseconds, and 0 turns it off: round up, at least 1 ms.
        let ms = wait.as_nanos().div_ceil(1_000_000).max(1);
        Box::pin(async move {
            let (old, _): (String, String) = sqlx::query_as(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', $1, true)",
            )
            .bind(format!("{ms}ms"))
            .fetch_one(&mut *conn)
            .await?;
            Ok(old)
        })
    }

    fn restore(conn: &mut PgConnection, old: String) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query("SELECT set_config('lock_timeout', $1, true)")
                .bind(old)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }

    fn run(
        conn: &mut Self::Connection,
        query: Parts<Postgres>,
        all: bool,
    ) -> BoxFuture<'_, Result<Vec<PgRow>, sqlx::Error>> {
        driver::run::<Postgres>(conn, query, all)
    }

    #[cfg(feature = "query-macros")]
    fn executor(conn: &mut Self::Connection) -> impl sqlx::Executor<'_, Database = Self> {
        conn
    }

    fn failure(error: &sqlx::Error, policy: &Policy) -> Failure {
        driver::server_error::<PgDatabaseError>(error)
            .map_or(Failure::Other, |e| postgres_failure(e.code(), policy))
    }
}
