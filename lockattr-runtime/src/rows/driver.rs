//! What each server does differently, behind one sealed trait.

use std::time::Duration;

#[cfg(any(feature = "postgres", feature = "mysql"))]
use sqlx::error::DatabaseError;
use sqlx::{Database, Executor};

use super::query::Parts;
use super::scan::Dialect;
use super::server::{Failure, Policy, Server};
use super::BoxFuture;

/// What each server does differently; implemented for the compiled-in databases only.
pub trait Driver: Database {
    /// What messages call this kind of server before its version is known.
    const KIND: &'static str;
    /// How the server reads strings and comments.
    const DIALECT: Dialect;
    /// Whether the session's lock timeout is set back after a failed statement.
    const RESTORE_AFTER_ERROR: bool;

    /// Reads the server's kind and version (and, MySQL, its lock wait timeout).
    fn detect(conn: &mut Self::Connection) -> BoxFuture<'_, Result<Server, sqlx::Error>>;

    /// Sets the lock timeout to `wait`; returns the value to set back.
    fn set_wait<'a>(
        conn: &'a mut Self::Connection,
        server: &'a Server,
        wait: Duration,
    ) -> BoxFuture<'a, Result<String, sqlx::Error>>;

    /// Sets the lock timeout back to `old`.
    fn restore(conn: &mut Self::Connection, old: String) -> BoxFuture<'_, Result<(), sqlx::Error>>;

    /// Runs the query: every row (`all`) or at most one.
    fn run(
        conn: &mut Self::Connection,
        query: Parts<Self>,
        all: bool,
    ) -> BoxFuture<'_, Result<Vec<Self::Row>, sqlx::Error>>;

    /// What a failed statement means under `policy`.
    fn failure(error: &sqlx::Error, policy: &Policy) -> Failure;

    /// The connection as an sqlx executor (for the executor a `Map` runs on, which
    /// delegates `prepare_with` and `describe` to it).
    #[cfg(feature = "query-macros")]
    fn executor(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self>;
}

/// [`Driver::run`] for a database whose connections are sqlx executors (all of them).
pub(super) fn run<DB>(
    conn: &mut DB::Connection,
    query: Parts<DB>,
    all: bool,
) -> BoxFuture<'_, Result<Vec<DB::Row>, sqlx::Error>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    Box::pin(async move {
        match all {
            true => conn.fetch_all(query).await,
            false => Ok(conn.fetch_optional(query).await?.into_iter().collect()),
        }
    })
}

/// The server's own error inside `error`, if that is what it is.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) fn server_error<E: DatabaseError>(error: &sqlx::Error) -> Option<&E> {
    match error {
        sqlx::Error::Database(e) => e.try_downcast_ref::<E>(),
        _ => None,
    }
}
