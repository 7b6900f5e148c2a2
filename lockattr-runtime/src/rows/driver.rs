//! What each server does differently, behind one sealed trait.

use std::time::Duration;

use sqlx::Database;

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
}
