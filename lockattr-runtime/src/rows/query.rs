//! The queries `lock` runs: sqlx's own, taken apart so that a clause can be appended.

use sqlx::{Database, Execute, FromRow, SqlStr};

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

fn parts<'q, DB: Database>(mut query: impl Execute<'q, DB>) -> Result<Parts<DB>, String> {
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

/// A query [`lock`](super::lock) accepts: `sqlx::query`, `query_as` or `query_scalar`, with its binds.
pub trait LockQuery<DB: Database>: Send {
    /// One row of the result: `DB::Row`, the `query_as` type, or the `query_scalar` value.
    type Output: Send;

    #[doc(hidden)]
    fn into_parts(self) -> Result<Parts<DB>, String>;

    #[doc(hidden)]
    fn decode(row: DB::Row) -> Result<Self::Output, sqlx::Error>;
}

impl<'q, DB, A> LockQuery<DB> for sqlx::query::Query<'q, DB, A>
where
    DB: Database,
    A: 'q + Send + sqlx::IntoArguments<DB>,
{
    type Output = DB::Row;

    fn into_parts(self) -> Result<Parts<DB>, String> {
        parts(self)
    }

    fn decode(row: DB::Row) -> Result<DB::Row, sqlx::Error> {
        Ok(row)
    }
}

impl<'q, DB, O, A> LockQuery<DB> for sqlx::query::QueryAs<'q, DB, O, A>
where
    DB: Database,
    O: Send + Unpin + for<'r> FromRow<'r, DB::Row>,
    A: 'q + Send + sqlx::IntoArguments<DB>,
{
    type Output = O;

    fn into_parts(self) -> Result<Parts<DB>, String> {
        parts(self)
    }

    fn decode(row: DB::Row) -> Result<O, sqlx::Error> {
        O::from_row(&row)
    }
}

impl<'q, DB, O, A> LockQuery<DB> for sqlx::query::QueryScalar<'q, DB, O, A>
where
    DB: Database,
    O: Send + Unpin,
    (O,): for<'r> FromRow<'r, DB::Row>,
    A: 'q + Send + sqlx::IntoArguments<DB>,
{
    type Output = O;

    fn into_parts(self) -> Result<Parts<DB>, String> {
        parts(self)
    }

    fn decode(row: DB::Row) -> Result<O, sqlx::Error> {
        <(O,)>::from_row(&row).map(|(o,)| o)
    }
}
