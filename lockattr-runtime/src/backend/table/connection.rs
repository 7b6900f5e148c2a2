//! Running one statement: a connection from the pool (or its small stash), the statement,
//! and a retry on a fresh connection when the old one broke.

use std::sync::Mutex;
use std::time::Duration;

use sqlx::Row;

use super::sql::{bound, Bindings, QueryOutcome, Statement};
use super::LeaseTable;
use crate::backend::wait;
use crate::backend::BackendResult;
use crate::error::BoxError;
use crate::url::Secrets;

/// Connections per backend handle on a server.
pub(super) const MAX_CONNECTIONS: u32 = 8;
/// Attempts of one statement whose connection failed (a pool holds at most
/// [`MAX_CONNECTIONS`], all of which may have been closed by a restart).
const MAX_ATTEMPTS: u32 = MAX_CONNECTIONS + 2;
/// Connections kept out of the pool for reuse.
const STASHED_CONNECTIONS: usize = 2;

/// The connection pool of a lease table, on whichever server it lives.
pub(super) enum ServerPool {
    #[cfg(feature = "sqlite")]
    Sqlite(StashedPool<sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(StashedPool<sqlx::Postgres>),
    #[cfg(feature = "mysql")]
    MySql(StashedPool<sqlx::MySql>),
}

/// A pool with a small stash of connections in front: sqlx returns a dropped connection to
/// its pool through a spawned task, which costs more than a statement on a fast database;
/// an uncontended lock reuses a stashed connection instead.
pub(super) struct StashedPool<DB: sqlx::Database> {
    pub pool: sqlx::Pool<DB>,
    stash: Mutex<Vec<sqlx::pool::PoolConnection<DB>>>,
}

impl<DB: sqlx::Database> StashedPool<DB> {
    pub(super) fn new(pool: sqlx::Pool<DB>) -> Self {
        StashedPool {
            pool,
            stash: Mutex::new(Vec::with_capacity(STASHED_CONNECTIONS)),
        }
    }

    async fn get(&self) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
        let stashed = self.stash.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match stashed {
            Some(conn) => Ok(conn),
            None => self.pool.acquire().await,
        }
    }

    /// Whether every connection the pool may open is open (and, when this is asked after
    /// a wait, in use).
    fn is_full(&self) -> bool {
        self.pool.size() >= self.pool.options().get_max_connections()
    }

    /// Takes a connection back after a statement; a broken one is closed.
    fn put(&self, mut conn: sqlx::pool::PoolConnection<DB>, broken: bool) {
        if broken {
            conn.close_on_drop();
            return;
        }
        let mut stash = self.stash.lock().unwrap_or_else(|e| e.into_inner());
        if stash.len() < STASHED_CONNECTIONS {
            stash.push(conn);
        }
    }
}

/// Why a statement did not run, before it becomes the caller's error.
pub(super) enum Failure {
    /// The driver's error.
    Driver(sqlx::Error),
    /// No connection within the URL's `connect_timeout_ms`: the server did not complete a
    /// new one, or (`busy`) every connection of the pool stayed in use.
    NoConnection { waited: Duration, busy: bool },
    /// The server did not answer the statement within the URL's `timeout_ms`.
    NoAnswer(Duration),
}

impl Failure {
    /// The caller's error: the driver's message with the URL's `secrets` scrubbed out (its
    /// `Debug` too: the driver's error itself is not kept); a wait that ran out names the
    /// URL parameter and its value.
    pub(super) fn into_error(self, secrets: &Secrets) -> BoxError {
        match self {
            Failure::Driver(e) => secrets.error(e),
            Failure::NoConnection {
                waited,
                busy: false,
            } => format!(
                "no new connection to the database within `connect_timeout_ms={}`: it was \
                 refused or not answered",
                waited.as_millis()
            )
            .into(),
            Failure::NoConnection { waited, busy: true } => format!(
                "all {MAX_CONNECTIONS} connections of this handle stayed busy for \
                 `connect_timeout_ms={}`",
                waited.as_millis()
            )
            .into(),
            Failure::NoAnswer(limit) => format!(
                "the database did not answer within `timeout_ms={}`; the connection was closed",
                limit.as_millis()
            )
            .into(),
        }
    }

    /// The connection that ran the statement is unusable: close it rather than reuse it.
    fn is_broken(&self) -> bool {
        match self {
            Failure::Driver(e) => is_broken(e),
            // The statement may still be on its way: nothing else can use the connection.
            Failure::NoAnswer(_) => true,
            Failure::NoConnection { .. } => false,
        }
    }
}

/// Runs `$body` with `$conn` (a pooled connection of whichever server this is), retrying
/// on a fresh connection when the connection failed or the server asked for a retry.
/// Evaluates to `Result<_, Failure>`.
macro_rules! on_connection {
    ($table:expr, |$conn:ident| $body:expr) => {{
        let table: &LeaseTable = $table;
        let mut attempt = 1;
        loop {
            #[cfg(feature = "sqlite")]
            if let Err(e) = table.check_sqlite_file() {
                break Err(Failure::Driver(e));
            }
            let result = match &table.pool {
                #[cfg(feature = "sqlite")]
                ServerPool::Sqlite(pooled) => on_connection!(@once table, pooled, |$conn| $body),
                #[cfg(feature = "postgres")]
                ServerPool::Postgres(pooled) => on_connection!(@once table, pooled, |$conn| $body),
                #[cfg(feature = "mysql")]
                ServerPool::MySql(pooled) => on_connection!(@once table, pooled, |$conn| $body),
            };
            match result {
                Err(Failure::Driver(e)) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    let error = table.secrets.scrub(&e.to_string());
                    tracing::debug!(backend = %table.backend, attempt, %error, "statement failed, retrying");
                    attempt += 1;
                    if !is_broken(&e) {
                        tokio::time::sleep(wait::jitter(Duration::from_millis(2))).await;
                    }
                }
                other => break other,
            }
        }
    }};
    (@once $table:ident, $pooled:ident, |$conn:ident| $body:expr) => {
        match $pooled.get().await {
            Err(e) => Err($table.connect_failure(e, $pooled.is_full())),
            Ok(mut $conn) => {
                let r = $table.bounded(async { $body }).await;
                $pooled.put($conn, r.as_ref().is_err_and(Failure::is_broken));
                r
            }
        }
    };
}

/// The connection is unusable: close it rather than return it to the pool.
fn is_broken(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 57P01-03: PostgreSQL shutting down or terminated the session; 08: connection
            // exceptions; 70100: MySQL killed the connection.
            c.starts_with("57P0") || c.starts_with("08") || c == "70100"
        }),
        _ => false,
    }
}

/// The statement may be run again: the connection broke, or the database reports a
/// deadlock or serialization failure (InnoDB's gap locks on concurrent first inserts).
fn is_retryable(e: &sqlx::Error) -> bool {
    is_broken(e)
        || matches!(e, sqlx::Error::Database(db)
            if db.code().is_some_and(|c| c == "40001" || c == "40P01"))
}

impl LeaseTable {
    /// Runs a statement that returns no rows: `(rows affected, last insert id)` (the id on
    /// MySQL only).
    pub(super) async fn execute(
        &self,
        statement: &Statement,
        bindings: &Bindings<'_>,
    ) -> BackendResult<(u64, u64)> {
        on_connection!(self, |conn| {
            let query = bound!(statement, bindings);
            query
                .execute(&mut *conn)
                .await
                .map(|r| r.rows_and_insert_id())
        })
        .map_err(|f| self.error(f))
    }

    /// Runs a statement that returns at most one row of one integer.
    pub(super) async fn fetch_i64(
        &self,
        statement: &Statement,
        bindings: &Bindings<'_>,
    ) -> BackendResult<Option<i64>> {
        on_connection!(self, |conn| {
            let query = bound!(statement, bindings);
            match query.fetch_optional(&mut *conn).await {
                Ok(Some(row)) => row.try_get::<i64, _>(0).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|f| self.error(f))
    }

    /// Runs a statement that returns leases as rows of `(name, fence, milliseconds left,
    /// holder)`, for [`Admin`](crate::backend::admin::Admin).
    pub(super) async fn fetch_leases(
        &self,
        statement: &Statement,
        bindings: &Bindings<'_>,
    ) -> BackendResult<Vec<(String, i64, i64, String)>> {
        on_connection!(self, |conn| {
            let query = bound!(statement, bindings);
            match query.fetch_all(&mut *conn).await {
                Ok(rows) => rows
                    .iter()
                    .map(|row| {
                        Ok((
                            row.try_get(0)?,
                            row.try_get(1)?,
                            row.try_get(2)?,
                            row.try_get(3)?,
                        ))
                    })
                    .collect(),
                Err(e) => Err(e),
            }
        })
        .map_err(|f| self.error(f))
    }

    /// Runs one statement without parameters whose result is not needed (DDL).
    pub(super) async fn run_ddl(&self, ddl: &str) -> Result<(), Failure> {
        let ddl: std::sync::Arc<str> = std::sync::Arc::from(ddl);
        on_connection!(self, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(ddl.clone()))
                .persistent(false)
                .execute(&mut *conn)
                .await
                .map(|_| ())
        })
    }

    /// `statement`, given up after the URL's `timeout_ms`.
    async fn bounded<T>(
        &self,
        statement: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Failure> {
        match self.timeouts.statement {
            None => statement.await.map_err(Failure::Driver),
            Some(limit) => match tokio::time::timeout(limit, statement).await {
                Ok(answer) => answer.map_err(Failure::Driver),
                Err(_) => Err(Failure::NoAnswer(limit)),
            },
        }
    }

    /// A pool that gave no connection: `connect_timeout_ms` ran out, or the driver failed.
    fn connect_failure(&self, e: sqlx::Error, busy: bool) -> Failure {
        match (e, self.timeouts.connect) {
            (sqlx::Error::PoolTimedOut, Some(waited)) => Failure::NoConnection { waited, busy },
            (e, _) => Failure::Driver(e),
        }
    }

    /// The caller's error for `failure`, scrubbed of the URL's secrets.
    pub(super) fn error(&self, failure: Failure) -> BoxError {
        failure.into_error(&self.secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::BackendUrl;

    #[test]
    fn driver_errors_are_scrubbed_in_display_and_debug() {
        let secrets = BackendUrl::parse("mysql://root:hunter2@db/app?mode=table")
            .unwrap()
            .secrets();
        let driver = sqlx::Error::Protocol("the server echoed hunter2".into());
        let e = Failure::Driver(driver).into_error(&secrets);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("the server echoed ***"), "{shown}");
    }

    #[test]
    fn timeouts_name_their_parameter_and_value() {
        let secrets = Secrets::default();
        let waited = Duration::from_millis(300);
        let e = Failure::NoConnection {
            waited,
            busy: false,
        };
        assert!(e
            .into_error(&secrets)
            .to_string()
            .contains("`connect_timeout_ms=300`"));
        let e = Failure::NoAnswer(waited).into_error(&secrets);
        assert!(e.to_string().contains("`timeout_ms=300`"), "{e}");
    }
}
