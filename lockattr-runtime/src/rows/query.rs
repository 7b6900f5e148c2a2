//! The queries `lock` runs: sqlx's own, taken apart so that a clause can be appended.

use sqlx::{Database, Execute, FromRow, SqlStr};

use super::server::Policy;
use super::{BoxFuture, Mode, RowDatabase};
use crate::error::LockError;

/// A query's SQL, binds and caching flag, taken apart so that the clause can be appended.
pub struct Parts<DB: Database> {
    pub(crate) sql: SqlStr,
    arguments: Option<DB::Arguments>,
    persistent: bool,
}

impl<'q, DB: Database> Execute<'q, DB> for Parts<DB> {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&DB::Statement> {
        None
    }

    fn take_arguments(&mut self) -> Result<Option<DB::Arguments>, sqlx::error::BoxDynError> {
        Ok(self.arguments.take())
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// The lock asked for, on the transaction's connection: what a [`LockQuery`] is run with.
pub struct Locking<'a, DB: Database> {
    pub(super) conn: &'a mut DB::Connection,
    pub(super) mode: Mode,
    pub(super) of: Vec<String>,
    pub(super) policy: Policy,
}

/// Rows a lock came back with, and what errors about them name.
pub struct Locked<O> {
    pub(super) rows: Vec<O>,
    /// The statement run (shortened, with its clause).
    pub(super) key: String,
    /// The server and version.
    pub(super) backend: String,
}

/// `query` taken apart, or why it cannot be.
pub(super) fn parts<'q, DB: Database>(
    mut query: impl Execute<'q, DB>,
) -> Result<Parts<DB>, String> {
    if query.statement().is_some() {
        return Err("a prepared statement's SQL cannot be given a lock clause".to_owned());
    }
    let arguments = query
        .take_arguments()
        .map_err(|e| format!("its arguments could not be encoded: {e}"))?;
    let persistent = query.persistent();
    Ok(Parts {
        sql: query.sql(),
        arguments,
        persistent,
    })
}

/// A query [`lock`](super::lock) accepts: `sqlx::query`, `query_as` or `query_scalar` with its
/// binds, and (feature `query-macros`) the output of the `query!` / `query_as!` /
/// `query_scalar!` macros or of `.map` / `.try_map` (sqlx's `Map`).
pub trait LockQuery<DB: Database>: Send {
    /// One row of the result: `DB::Row`, the `query_as` type, the `query_scalar` value, or
    /// what the `Map` maps a row to (the `query!` macros' record).
    type Output: Send;

    /// Runs the query under the lock (every row or at most one).
    #[doc(hidden)]
    fn fetch<'a>(
        self,
        locking: Locking<'a, DB>,
        all: bool,
    ) -> BoxFuture<'a, Result<Locked<Self::Output>, LockError>>
    where
        Self: 'a,
        Self::Output: 'a;
}

/// [`LockQuery::fetch`] for a query sqlx lets be taken apart: the rows decoded with `decode`.
fn fetch_decoded<'a, 'q, DB, O>(
    query: impl Execute<'q, DB> + 'a,
    mut locking: Locking<'a, DB>,
    all: bool,
    decode: fn(DB::Row) -> Result<O, sqlx::Error>,
) -> BoxFuture<'a, Result<Locked<O>, LockError>>
where
    DB: RowDatabase,
    O: Send + 'a,
{
    let parts = parts(query);
    Box::pin(async move { locking.rows(parts, all).await?.decode(decode) })
}

impl<'q, DB, A> LockQuery<DB> for sqlx::query::Query<'q, DB, A>
where
    DB: RowDatabase,
    A: 'q + Send + sqlx::IntoArguments<DB>,
{
    type Output = DB::Row;

    fn fetch<'a>(
        self,
        locking: Locking<'a, DB>,
        all: bool,
    ) -> BoxFuture<'a, Result<Locked<DB::Row>, LockError>>
    where
        Self: 'a,
    {
        fetch_decoded(self, locking, all, Ok)
    }
}

impl<'q, DB, O, A> LockQuery<DB> for sqlx::query::QueryAs<'q, DB, O, A>
where
    DB: RowDatabase,
    O: Send + Unpin + for<'r> FromRow<'r, DB::Row>,
    A: 'q + Send + sqlx::IntoArguments<DB>,
{
    type Output = O;

    fn fetch<'a>(
        self,
        locking: Locking<'a, DB>,
        all: bool,
    ) -> BoxFuture<'a, Result<Locked<O>, LockError>>
    where
        Self: 'a,
        O: 'a,
    {
        fetch_decoded(self, locking, all, |row| O::from_row(&row))
    }
}

impl<'q, DB, O, A> LockQuery<DB> for sqlx::query::QueryScalar<'q, DB, O, A>
where
    DB: RowDatabase,
    O: Send + Unpin,
    (O,): for<'r> FromRow<'r, DB::Row>,
    A: 'q + Send + sqlx::IntoArguments<DB>,
{
    type Output = O;

    fn fetch<'a>(
        self,
        locking: Locking<'a, DB>,
        all: bool,
    ) -> BoxFuture<'a, Result<Locked<O>, LockError>>
    where
        Self: 'a,
        O: 'a,
    {
        fetch_decoded(self, locking, all, |row| {
            <(O,)>::from_row(&row).map(|(o,)| o)
        })
    }
}
