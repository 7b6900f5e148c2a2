//! SQLite: no row locks. Every lock is `Unsupported`, naming SQLite's version and pointing
//! to the lease table (`sqlite://PATH`); nothing but `sqlite_version()` is sent.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Sqlite;

use super::driver::{self, Driver};
use super::query::Parts;
use super::scan::Dialect;
use super::server::{parse_version, Failure, Flavor, Policy, Server};
use super::BoxFuture;

impl Driver for Sqlite {
    const KIND: &'static str = "sqlite";
    // SQLite reads strings and comments as PostgreSQL does (no backslash escapes).
    const DIALECT: Dialect = Dialect::Postgres;
    const RESTORE_AFTER_ERROR: bool = false;

    fn detect(conn: &mut SqliteConnection) -> BoxFuture<'_, Result<Server, sqlx::Error>> {
        Box::pin(async move {
            let text: String = sqlx::query_scalar("SELECT sqlite_version()")
                .fetch_one(&mut *conn)
                .await?;
            let (major, minor, patch) = parse_version(&text);
            Ok(Server {
                flavor: Flavor::Sqlite,
                version: (major, minor, patch),
                name: format!("sqlite {major}.{minor}.{patch}"),
                lock_wait_timeout: None,
            })
        })
    }

    // Not reached: every lock clause is `Unsupported` on SQLite before a wait would be set.
    fn set_wait<'a>(
        _conn: &'a mut SqliteConnection,
        _server: &'a Server,
        _wait: Duration,
    ) -> BoxFuture<'a, Result<String, sqlx::Error>> {
        Box::pin(async { Err(no_row_locks()) })
    }

    fn restore(
        _conn: &mut SqliteConnection,
        _old: String,
    ) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async { Err(no_row_locks()) })
    }

    fn run(
        conn: &mut SqliteConnection,
        query: Parts<Sqlite>,
        all: bool,
    ) -> BoxFuture<'_, Result<Vec<SqliteRow>, sqlx::Error>> {
        driver::run::<Sqlite>(conn, query, all)
    }

    #[cfg(feature = "query-macros")]
    fn executor(conn: &mut Self::Connection) -> impl sqlx::Executor<'_, Database = Self> {
        conn
    }

    fn failure(_error: &sqlx::Error, _policy: &Policy) -> Failure {
        Failure::Other
    }
}

fn no_row_locks() -> sqlx::Error {
    sqlx::Error::InvalidArgument("SQLite has no row locks, so no lock timeout".to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Connection;

    use crate::rows::{lock, Mode};
    use crate::LockError;

    /// On a real SQLite database (in memory): every policy and mode is `Unsupported`,
    /// naming SQLite's version and the lease table, and the transaction goes on.
    #[tokio::test]
    async fn every_lock_is_unsupported_and_points_to_the_lease_table() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE jobs (id INTEGER PRIMARY KEY)")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut tx = conn.begin().await.unwrap();
        let query = || sqlx::query_scalar::<_, i64>("SELECT id FROM jobs");
        let results = [
            lock(&mut tx, query()).skip().fetch_all().await,
            lock(&mut tx, query()).error().fetch_all().await,
            lock(&mut tx, query())
                .wait(Duration::from_secs(1))
                .fetch_all()
                .await,
            lock(&mut tx, query())
                .mode(Mode::Share)
                .skip()
                .fetch_all()
                .await,
        ];
        for result in results {
            let e = result.unwrap_err();
            let LockError::Unsupported { backend, what, key } = &e else {
                panic!("{e}")
            };
            assert!(backend.starts_with("sqlite 3."), "{backend}");
            assert!(what.contains("sqlite://"), "{what}");
            assert!(key.contains("SELECT id FROM jobs"), "{key}");
        }
        sqlx::query("INSERT INTO jobs (id) VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}
