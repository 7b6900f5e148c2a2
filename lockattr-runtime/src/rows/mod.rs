//! Row locks: lock the rows a query selects, inside the caller's own sqlx transaction, with
//! the attribute's `on_conflict` vocabulary (Django's `select_for_update`).
//!
//! | policy | clause | when another transaction holds a selected row |
//! | --- | --- | --- |
//! | [`skip()`](RowLock::skip) | `SKIP LOCKED` | the row is left out of the result |
//! | [`error()`](RowLock::error) | `NOWAIT` | [`LockError::Conflict`], at once |
//! | [`wait(d)`](RowLock::wait) | the server's lock timeout | wait up to `d`, then [`LockError::Timeout`] |
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn claim(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let mut tx = pool.begin().await?;
//! // `… FOR UPDATE SKIP LOCKED` is appended: the jobs other workers hold are left out.
//! let jobs: Vec<(i64, String)> = lockattr::rows::lock(
//!     &mut tx,
//!     sqlx::query_as("SELECT id, payload FROM jobs WHERE done = false ORDER BY id LIMIT 10"),
//! )
//! .skip()
//! .fetch_all()
//! .await?;
//! for (id, payload) in &jobs {
//!     // … process the payload …
//!     sqlx::query("UPDATE jobs SET done = true WHERE id = $1").bind(id).execute(&mut *tx).await?;
//! }
//! tx.commit().await?; // the row locks end here (or at rollback)
//! # Ok(())
//! # }
//! ```
//!
//! **Transactions only.** [`lock`] takes `&mut sqlx::Transaction`: rows locked outside a
//! transaction would be unlocked as soon as the statement ends, so that does not compile:
//!
//! ```compile_fail,E0308
//! # #[cfg(feature = "postgres")]
//! # async fn f(pool: sqlx::PgPool) {
//! let mut conn = pool.acquire().await.unwrap();
//! // error[E0308]: mismatched types: expected `&mut Transaction<'_, _>`, found `&mut PgConnection`
//! let _ = lockattr::rows::lock(&mut *conn, sqlx::query("SELECT id FROM jobs")).skip();
//! # }
//! # // Without PostgreSQL in this build, the same error code from elsewhere.
//! # #[cfg(not(feature = "postgres"))]
//! # const _: u8 = "";
//! ```
//!
//! The locks end when the transaction commits or rolls back. On PostgreSQL a `Conflict` or
//! `Timeout` aborts the transaction (roll it back); to go on after one, lock inside a
//! savepoint (`tx.begin()` gives a nested `Transaction`). On MySQL / MariaDB only the
//! statement fails.
//!
//! **One clause, always.** The query is the user's own `sqlx::query`, `query_as` or
//! `query_scalar`, with its binds and typed rows (a tuple, or a `#[derive(sqlx::FromRow)]`
//! type), and with the feature `query-macros` also the output of the `query!`,
//! `query_as!` and `query_scalar!` macros (or of `.map` / `.try_map`: sqlx's
//! `query::Map`), so the SQL stays checked at compile time and the rows come back as the
//! macro's record: `rows::lock(&mut tx, sqlx::query!("SELECT id FROM jobs WHERE done =
//! false LIMIT 10")).skip().fetch_all().await?` gives a `Vec` of records with an `id`
//! field. lockattr appends the clause, and a policy must be chosen exactly once before
//! anything can be fetched (a builder without one has no `fetch_*`, one with one has no
//! `skip`/`error`/`wait`). A query the clause cannot be
//! appended to is refused with [`LockError::InvalidOptions`] before anything is sent: not a
//! `SELECT`, a top-level `UNION`/`INTERSECT`/`EXCEPT`, a lock clause of its own (`FOR …`,
//! `LOCK IN SHARE MODE`), a `;`, a top-level `INTO`, and on PostgreSQL `DISTINCT`,
//! `GROUP BY`, `HAVING`, `WINDOW`. [`sql!`] makes the same check on a literal at compile
//! time; a `query!` literal is checked when it is locked, before it is sent (the macros take
//! only a literal, not `sql!`). A `Map` is run on an executor of lockattr's that takes the
//! statement the `Map` hands it, checks it and appends the clause as above, runs it under
//! the policy, and gives the rows back to the `Map`'s own mapper; a row the mapper cannot
//! decode is a [`LockError::Backend`] naming the statement. The feature turns on sqlx's
//! `macros` feature (which the macros need anyway): that executor must implement
//! `Executor::describe`, which sqlx has only with it.
//!
#![cfg_attr(
    all(feature = "query-macros", feature = "postgres"),
    doc = r#"
```no_run
# async fn claim(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
use sqlx::Row;
let mut tx = pool.begin().await?;
// The type `query!` expands to, built by hand (`query!` needs the table at compile time).
let ids: Vec<i64> = lockattr::rows::lock(
    &mut tx,
    sqlx::query("SELECT id FROM jobs WHERE done = false LIMIT 10")
        .try_map(|row: sqlx::postgres::PgRow| row.try_get("id")),
)
.skip()
.fetch_all()
.await?;
# Ok(())
# }
```
"#
)]
//!
//! **Modes and servers.** [`Mode::Update`] (`FOR UPDATE`, the default) everywhere;
//! [`Mode::Share`] (`FOR SHARE`, MariaDB's `LOCK IN SHARE MODE`); [`Mode::NoKeyUpdate`] and
//! [`Mode::KeyShare`] on PostgreSQL only; [`of`](RowLock::of) (lock only some tables' rows)
//! on PostgreSQL and MySQL 8. The server and its version are read when the lock is asked
//! for (PostgreSQL: from the connection, no round trip; MySQL / MariaDB: `SELECT VERSION()`
//! with the session's lock wait timeout, one round trip), and what it lacks is
//! [`LockError::Unsupported`] naming server and version, before any SQL is sent:
//!
//! | | PostgreSQL | MariaDB 10.6+ | MySQL 8 | SQLite |
//! | --- | --- | --- | --- | --- |
//! | `skip` | `SKIP LOCKED` | `SKIP LOCKED` | `SKIP LOCKED` | `Unsupported` |
//! | `error` | `NOWAIT` (SQLSTATE 55P03) | `NOWAIT` (error 1205) | `NOWAIT` (error 3572) | `Unsupported` |
//! | `wait(d)` | `lock_timeout` via `set_config(…, true)`, in ms, set back after the statement (55P03) | `innodb_lock_wait_timeout`, whole seconds rounded up (1205) | the same | `Unsupported` |
//! | modes | all four, `OF` | `Update`, `Share` | `Update`, `Share`, `OF` | none |
//!
//! After a `wait`, the session's lock timeout is set back to what it was, also when the
//! statement failed (MySQL / MariaDB; a PostgreSQL transaction whose statement failed is
//! aborted, and its transaction-local setting goes with it). SQLite has no row locks (a
//! writer locks the whole file): for a lock between processes use the lease table,
//! `sqlite://PATH` ([`connect`](crate::connect)).
//!
//! Errors name the statement (shortened, with its clause) as the key, and the server and
//! version as the backend (`postgres 16.4`, `mariadb 10.11.6`), never a URL or password.
//!
//! **Row locks or a distributed lock?** Row locks fit work on rows of the database the code
//! already writes to, committed together with the lock (a job queue, a balance update): they
//! cost nothing to set up and end with the transaction. A distributed lock
//! (`#[distributed_lock]`) fits work on anything else (files, an API, a cache), work longer
//! than a transaction should stay open, and locks shared by services on different
//! databases.

mod clause;
mod driver;
#[cfg(feature = "query-macros")]
mod mapped;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
mod scan;
mod server;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use sqlx::{Database, SqlSafeStr, Transaction};

use crate::error::LockError;
pub use query::LockQuery;
use query::{Locked, Locking};
pub use scan::{check_literal, Refusal};
use server::{Failure, Policy};

/// A future boxed for the per-server steps.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which rows lock and how strongly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `FOR UPDATE`: exclusive; the default.
    #[default]
    Update,
    /// `FOR NO KEY UPDATE` (PostgreSQL): exclusive, but lets `KeyShare` lockers (foreign-key
    /// checks) in.
    NoKeyUpdate,
    /// `FOR SHARE` (MariaDB: `LOCK IN SHARE MODE`): shared with other `Share` lockers.
    Share,
    /// `FOR KEY SHARE` (PostgreSQL): blocks only changes to the key.
    KeyShare,
}

impl Mode {
    fn sql(self) -> &'static str {
        match self {
            Mode::Update => "FOR UPDATE",
            Mode::NoKeyUpdate => "FOR NO KEY UPDATE",
            Mode::Share => "FOR SHARE",
            Mode::KeyShare => "FOR KEY SHARE",
        }
    }
}

/// The databases whose rows [`lock`] locks: PostgreSQL (feature `postgres`), MySQL and
/// MariaDB (`mysql`), and SQLite (`sqlite`), where every lock is [`LockError::Unsupported`].
pub trait RowDatabase: driver::Driver {}

impl<T: driver::Driver> RowDatabase for T {}

/// A [`RowLock`] whose policy is not chosen yet: it has no `fetch_*`.
#[derive(Debug)]
pub struct NoPolicy;

/// A [`RowLock`] with its policy: it can be fetched.
#[derive(Debug)]
pub struct WithPolicy(Policy);

/// Locks the rows `query` selects, in `tx`, until `tx` commits or rolls back.
///
/// Choose the policy with [`skip`](RowLock::skip), [`error`](RowLock::error) or
/// [`wait`](RowLock::wait), then fetch. See the [module docs](self).
pub fn lock<'t, 'c, DB, Q>(tx: &'t mut Transaction<'c, DB>, query: Q) -> RowLock<'t, 'c, DB, Q>
where
    DB: RowDatabase,
    Q: LockQuery<DB>,
{
    RowLock {
        tx,
        query,
        mode: Mode::Update,
        of: Vec::new(),
        policy: NoPolicy,
    }
}

/// A query about to lock its rows: made by [`lock`].
#[must_use = "nothing is locked until the rows are fetched"]
pub struct RowLock<'t, 'c, DB: Database, Q, P = NoPolicy> {
    tx: &'t mut Transaction<'c, DB>,
    query: Q,
    mode: Mode,
    of: Vec<String>,
    policy: P,
}

impl<'t, 'c, DB: RowDatabase, Q: LockQuery<DB>, P> RowLock<'t, 'c, DB, Q, P> {
    /// The lock's strength; [`Mode::Update`] unless set.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Locks only the rows of `table` (`OF table`; call again for more tables). PostgreSQL
    /// and MySQL 8; a plain or schema-qualified name (`jobs`, `app.jobs`).
    pub fn of(mut self, table: impl Into<String>) -> Self {
        self.of.push(table.into());
        self
    }
}

impl<'t, 'c, DB: RowDatabase, Q: LockQuery<DB>> RowLock<'t, 'c, DB, Q, NoPolicy> {
    fn policy(self, policy: Policy) -> RowLock<'t, 'c, DB, Q, WithPolicy> {
        RowLock {
            tx: self.tx,
            query: self.query,
            mode: self.mode,
            of: self.of,
            policy: WithPolicy(policy),
        }
    }

    /// `SKIP LOCKED`: rows another transaction holds are left out of the result.
    pub fn skip(self) -> RowLock<'t, 'c, DB, Q, WithPolicy> {
        self.policy(Policy::Skip)
    }

    /// `NOWAIT`: a row another transaction holds fails the query with
    /// [`LockError::Conflict`].
    pub fn error(self) -> RowLock<'t, 'c, DB, Q, WithPolicy> {
        self.policy(Policy::Error)
    }

    /// Waits up to `wait` for rows another transaction holds, then [`LockError::Timeout`].
    /// PostgreSQL counts milliseconds; MySQL / MariaDB whole seconds, rounded up.
    pub fn wait(self, wait: Duration) -> RowLock<'t, 'c, DB, Q, WithPolicy> {
        self.policy(Policy::Wait(wait))
    }
}

impl<'t, 'c, DB: RowDatabase, Q: LockQuery<DB>> RowLock<'t, 'c, DB, Q, WithPolicy> {
    /// Every row, locked (with `skip`: every row nobody else held).
    pub async fn fetch_all(self) -> Result<Vec<Q::Output>, LockError> {
        self.run(true, false).await
    }

    /// The first row, or `None`. The server locks every row the query selects, not only the
    /// first: write `LIMIT 1` to lock one.
    pub async fn fetch_optional(self) -> Result<Option<Q::Output>, LockError> {
        Ok(self.run(false, false).await?.into_iter().next())
    }

    /// The first row; no row is a [`LockError::Backend`] (`sqlx::Error::RowNotFound`). As with
    /// [`fetch_optional`](Self::fetch_optional), every row selected is locked.
    pub async fn fetch_one(self) -> Result<Q::Output, LockError> {
        let mut rows = self.run(false, true).await?;
        Ok(rows.remove(0))
    }

    /// Every row (`all`) or at most one; `one`: no row is `RowNotFound`.
    async fn run(self, all: bool, one: bool) -> Result<Vec<Q::Output>, LockError> {
        let RowLock {
            tx,
            query,
            mode,
            of,
            policy: WithPolicy(policy),
        } = self;
        let locking = Locking {
            conn: &mut **tx,
            mode,
            of,
            policy,
        };
        let Locked { rows, key, backend } = query.fetch(locking, all).await?;
        if one && rows.is_empty() {
            return Err(LockError::backend(
                &backend,
                Some(&key),
                sqlx::Error::RowNotFound,
            ));
        }
        Ok(rows)
    }
}

impl<DB: RowDatabase> Locking<'_, DB> {
    /// Checks the query, appends the clause and runs it under the policy: every row (`all`) or
    /// at most one. `parts` is the query taken apart, or why it could not be.
    async fn rows(
        &mut self,
        parts: Result<query::Parts<DB>, String>,
        all: bool,
    ) -> Result<Locked<DB::Row>, LockError> {
        let Locking {
            conn,
            mode,
            of,
            policy,
        } = self;
        let (conn, mode, policy) = (&mut **conn, *mode, *policy);
        let server = DB::detect(conn)
            .await
            .map_err(|e| LockError::backend(DB::KIND, None, e))?;
        let backend = server.name.clone();
        let invalid = |key: &str, reason: &str| LockError::InvalidOptions {
            key: key.to_owned(),
            backend: backend.clone(),
            reason: reason.to_owned(),
        };
        let mut parts = parts.map_err(|reason| invalid("(a prepared statement)", &reason))?;
        let label = clause::label(parts.sql.as_str());
        if let Some(bad) = of.iter().find(|t| !clause::is_table_name(t)) {
            return Err(invalid(
                &label,
                &format!("`{bad}` is not a plain table name for OF"),
            ));
        }
        if policy == Policy::Wait(Duration::ZERO) {
            return Err(invalid(
                &label,
                "the wait is zero: use `error()` for NOWAIT",
            ));
        }
        let lock_clause = clause::lock_clause(&server, mode, of, &policy).map_err(|what| {
            LockError::Unsupported {
                key: label.clone(),
                backend: backend.clone(),
                what,
            }
        })?;
        // After `Unsupported`: a server without row locks says so whatever the query.
        let scan = scan::scan(parts.sql.as_str(), DB::DIALECT)
            .map_err(|refusal| invalid(&label, refusal.message()))?;
        let sep = if scan.ends_in_line_comment { "\n" } else { " " };
        let sql = format!("{}{sep}{lock_clause}", parts.sql.as_str());
        let key = clause::label(&sql);
        parts.sql = sqlx::AssertSqlSafe(sql).into_sql_str();
        let failed = |e: sqlx::Error| LockError::backend(&backend, Some(&key), e);

        let old = match policy {
            Policy::Wait(wait) => Some(DB::set_wait(conn, &server, wait).await.map_err(failed)?),
            _ => None,
        };
        let started = Instant::now();
        let result = DB::run(conn, parts, all).await;
        if let Some(old) = old {
            if result.is_ok() || DB::RESTORE_AFTER_ERROR {
                if let Err(e) = DB::restore(conn, old).await {
                    if result.is_ok() {
                        return Err(failed(e));
                    }
                    tracing::warn!(key = %key, backend = %backend, error = %e,
                        "setting the lock timeout back failed after the statement failed");
                }
            }
        }
        let rows = result.map_err(|e| match DB::failure(&e, &policy) {
            Failure::Conflict => LockError::Conflict {
                key: key.clone(),
                backend: backend.clone(),
            },
            Failure::Timeout => LockError::Timeout {
                key: key.clone(),
                backend: backend.clone(),
                waited: started.elapsed(),
            },
            Failure::Other => failed(e),
        })?;
        tracing::debug!(key = %key, backend = %backend, rows = rows.len(), "rows locked");
        Ok(Locked { rows, key, backend })
    }
}

impl<O> Locked<O> {
    /// Each row decoded; a row that does not decode is a [`LockError::Backend`].
    fn decode<P>(
        self,
        decode: impl FnMut(O) -> Result<P, sqlx::Error>,
    ) -> Result<Locked<P>, LockError> {
        let Locked { rows, key, backend } = self;
        let rows = rows
            .into_iter()
            .map(decode)
            .collect::<Result<_, _>>()
            .map_err(|e| LockError::backend(&backend, Some(&key), e))?;
        Ok(Locked { rows, key, backend })
    }
}

/// Checks at compile time that a literal query can take a lock clause (see the
/// [module docs](self)), and gives it back as a `&'static str` for `sqlx::query_as`.
///
/// ```
/// const CLAIM: &str = lockattr::rows::sql!("SELECT id FROM jobs WHERE done = false LIMIT 10");
/// ```
///
/// A query with a clause of its own (or a `UNION`, a `;` …) does not compile:
///
/// ```compile_fail,E0080
/// // error[E0080]: evaluation panicked: the query already has a lock clause (FOR …, …
/// let _ = lockattr::rows::sql!("SELECT id FROM jobs FOR UPDATE");
/// ```
#[doc(inline)]
pub use crate::__lockattr_rows_sql as sql;

#[doc(hidden)]
#[macro_export]
macro_rules! __lockattr_rows_sql {
    ($sql:literal) => {{
        const SQL: &str = $sql;
        const _: () = if let ::core::result::Result::Err(refusal) = $crate::rows::check_literal(SQL)
        {
            ::core::panic!("{}", refusal.message())
        };
        SQL
    }};
}
