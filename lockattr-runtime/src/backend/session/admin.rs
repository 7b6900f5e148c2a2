//! Listing, inspecting and force-releasing session locks, for operators ([`Admin`]).
//!
//! Each call opens a session of its own (within `connect_timeout_ms`), runs its statements
//! (within `timeout_ms`) and closes it: the backend's pooled sessions hold locks, and an
//! operator's query never waits behind them.
//!
//! What a session lock tells: the server knows which session holds a lock, not its lease.
//! So the fencing token and the time left are unknown (the token lives in the holder's
//! process, the deadline in its keeper), and the owner is the session: its client address,
//! the server's id for it, and, on PostgreSQL, the holder's host and pid from the
//! session's `application_name` (`lockattr <pid>@<host>`, set once when the session
//! opens, unless the URL sets its own).
//!
//! A forced release ends the **session** that holds the key (`pg_terminate_backend`,
//! `KILL CONNECTION`): a session lock can only be released by its own session. Every
//! other lock on that session is lost too (a process hosts all its locks on at most 8
//! sessions); each holder learns it as `Lost` at its next heartbeat, renewal or release.
//! The next holder's token comes from the fencing sequence (or counter table), which a
//! killed session does not touch, so it is greater. The operator's role needs the right
//! to end other sessions (PostgreSQL: superuser, the holder's role, or
//! `pg_signal_backend`; MySQL: `CONNECTION_ADMIN` or `SUPER`, or the holder's user).

use std::future::Future;

use super::options::statement_timer;
use super::{SessionBackend, SessionSql};
use crate::backend::admin::{Admin, HeldLock};
use crate::backend::{BackendResult, BoxFuture};
use crate::error::BoxError;

/// One server's statements for [`Admin`], on a session opened for the purpose.
pub(crate) trait AdminSql: SessionSql {
    /// The locks held now whose stored key starts with `prefix`, where the server can
    /// list them (else a [`CannotList`](crate::backend::admin::CannotList) error).
    fn held<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        prefix: &'a str,
    ) -> impl Future<Output = Result<Vec<HeldLock>, BoxError>> + Send + 'a;

    /// The lock stored as `stored`, if held.
    fn inspect<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        stored: &'a str,
    ) -> impl Future<Output = Result<Option<HeldLock>, BoxError>> + Send + 'a;

    /// Ends the session holding `stored`; whether one did.
    fn force_release<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        stored: &'a str,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send + 'a;
}

impl<D: AdminSql> SessionBackend<D> {
    /// A session of its own, opened within `connect_timeout_ms`.
    async fn own_session(&self) -> BackendResult<D::Conn> {
        self.pool.options.connect(self.pool.sql.connect()).await
    }

    /// `work` (statements on a session of its own), bounded by `timeout_ms`.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, BoxError>>,
    ) -> BackendResult<T> {
        let mut timer = statement_timer();
        self.pool.options.statement(timer.as_mut(), work).await
    }
}

impl<D: AdminSql> Admin for SessionBackend<D> {
    fn held<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<HeldLock>>> {
        Box::pin(async move {
            let mut conn = self.own_session().await?;
            self.bounded(self.pool.sql.held(&mut conn, prefix)).await
        })
    }

    fn inspect<'a>(
        &'a self,
        stored_key: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<HeldLock>>> {
        Box::pin(async move {
            let mut conn = self.own_session().await?;
            self.bounded(self.pool.sql.inspect(&mut conn, stored_key))
                .await
        })
    }

    fn force_release<'a>(&'a self, stored_key: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let mut conn = self.own_session().await?;
            self.bounded(self.pool.sql.force_release(&mut conn, stored_key))
                .await
        })
    }
}
