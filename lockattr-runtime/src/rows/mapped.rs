//! sqlx's `Map` (the output of the `query!` macros, `.map`, `.try_map`): its row mapper is
//! private, so the `Map` is run on an executor of lockattr's that takes its SQL apart,
//! appends the clause and runs the lock exactly as for the other queries, and gives the rows
//! back for the `Map` to map.

use std::fmt;

use futures_util::{stream, StreamExt, TryStreamExt};
use sqlx::Describe;
use sqlx::{Database, Either, Execute, Executor, IntoArguments, SqlStr};

use super::query::{parts, Locked, Locking};
use super::{BoxFuture, LockQuery, RowDatabase};
use crate::error::LockError;

/// The executor a `Map` runs on: it runs the one statement the `Map` gives it under the lock.
struct Locker<'a, DB: Database> {
    locking: Locking<'a, DB>,
    /// Why the lock failed (the `Map` only sees a placeholder `sqlx::Error`).
    failed: Option<LockError>,
    /// The statement and server, once the statement ran.
    ran: Option<(String, String)>,
}

impl<DB: Database> fmt::Debug for Locker<'_, DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker")
            .field("mode", &self.locking.mode)
            .field("policy", &self.locking.policy)
            .finish_non_exhaustive()
    }
}

impl<DB: RowDatabase> Locker<'_, DB> {
    /// Runs `query` under the lock: every row (`all`) or at most one.
    async fn rows<'q>(
        &mut self,
        query: impl Execute<'q, DB>,
        all: bool,
    ) -> Result<Vec<DB::Row>, sqlx::Error> {
        if self.failed.is_some() || self.ran.is_some() {
            // sqlx's `Map` runs one statement; a second would lock outside the policy's check.
            return Err(sqlx::Error::Protocol(
                "a row lock runs one statement".to_owned(),
            ));
        }
        match self.locking.rows(parts(query), all).await {
            Ok(Locked { rows, key, backend }) => {
                self.ran = Some((key, backend));
                Ok(rows)
            }
            Err(e) => {
                self.failed = Some(e);
                Err(sqlx::Error::Protocol("the row lock failed".to_owned()))
            }
        }
    }

    /// What the `Map` gave back, with the lock's own error in place of its placeholder.
    fn finish<O>(self, result: Result<Vec<O>, sqlx::Error>) -> Result<Locked<O>, LockError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match (result, self.ran) {
            (Ok(rows), Some((key, backend))) => Ok(Locked { rows, key, backend }),
            // The mapper's own error (a column that does not decode).
            (Err(e), Some((key, backend))) => Err(LockError::backend(&backend, Some(&key), e)),
            (result, None) => Err(LockError::backend(
                DB::KIND,
                None,
                result.err().unwrap_or_else(|| {
                    sqlx::Error::Protocol("the query ran no statement".to_owned())
                }),
            )),
        }
    }
}

impl<'x, DB: RowDatabase> Executor<'x> for &'x mut Locker<'_, DB> {
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> stream::BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'x: 'e,
        E: 'q + Execute<'q, DB>,
    {
        stream::once(self.rows(query, true))
            .map_ok(|rows| stream::iter(rows.into_iter().map(|row| Ok(Either::Right(row)))))
            .try_flatten()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'x: 'e,
        E: 'q + Execute<'q, DB>,
    {
        Box::pin(async move { Ok(self.rows(query, false).await?.into_iter().next()) })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, sqlx::Error>>
    where
        'x: 'e,
    {
        DB::executor(self.locking.conn).prepare_with(sql, parameters)
    }

    // Present because `query-macros` turns on sqlx's `macros`, hence `sqlx-core/offline`.
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<DB>, sqlx::Error>>
    where
        'x: 'e,
    {
        DB::executor(self.locking.conn).describe(sql)
    }
}

impl<'q, DB, F, O, A> LockQuery<DB> for sqlx::query::Map<'q, DB, F, A>
where
    DB: RowDatabase,
    F: FnMut(DB::Row) -> Result<O, sqlx::Error> + Send,
    O: Send + Unpin,
    A: 'q + Send + IntoArguments<DB>,
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
        Box::pin(async move {
            let mut locker = Locker {
                locking,
                failed: None,
                ran: None,
            };
            let result = match all {
                true => self.fetch_all(&mut locker).await,
                false => self.fetch_optional(&mut locker).await.map(Vec::from_iter),
            };
            locker.finish(result)
        })
    }
}
