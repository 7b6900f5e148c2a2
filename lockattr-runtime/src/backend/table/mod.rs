//! The lease table: `sqlite://PATH`, and `postgres://…?mode=table` / `mysql://…?mode=table`.
//!
//! Every lock is one row of a ShedLock-style table. A lock is taken by **one atomic
//! statement** that inserts the row, or takes over an existing row whose lease has ended,
//! and returns the new fencing token; `holder` names the process that took it last
//! (`host:pid`, for operators: lockattr never reads it). Every time is the **database's clock** (milliseconds
//! since the Unix epoch, computed inside the statement), never the caller's.
//!
//! | URL | database |
//! | --- | --- |
//! | `sqlite://locks.db`, `sqlite:///var/lib/app/locks.db` | a local SQLite file (created if missing; the path is used as written, relative to the working directory unless it starts with `/`): several processes on one host share locks with no server |
//! | `postgres://user@host/db?mode=table` (`postgresql://` too) | PostgreSQL; a lease outlives its connection, and no session state is used, so transaction pooling (PgBouncer) suits it: sqlx prepares its statements, which PgBouncer supports in transaction mode from 1.21 on with `max_prepared_statements` set (not tested here) |
//! | `mysql://user@host/db?mode=table` (`mariadb://` too) | MySQL 8 or MariaDB |
//!
//! Query parameters:
//!
//! - `prefix` (default `lockattr:`): the text every stored key starts with;
//! - `table` (default `lockattr_locks`): the table's name, an identifier of letters, digits
//!   and `_` (at most 48 bytes, not starting with a digit); the waiter table is this name
//!   followed by `_waiters`. Two names never interfere (SQLite and PostgreSQL compare
//!   unquoted names without case: `Locks` and `locks` are one table there);
//! - `mode=table`: on PostgreSQL and MySQL, use the lease table rather than session locks
//!   (SQLite accepts it and has nothing else);
//! - `busy_timeout` (SQLite only, milliseconds, default 5000): how long a statement waits for
//!   another process's write before failing with [`LockError::Backend`](crate::LockError);
//! - PostgreSQL and MySQL also take the connection parameters of their driver (`sslmode`,
//!   `application_name`, `ssl-ca`, …), which go to sqlx unchanged.
//!
//! # Semantics
//!
//! - **Fencing tokens** live in the row: a takeover sets `fence = fence + 1`. Release does not
//!   delete the row, it clears `token` and ends the lease (`lock_until` = now), so the fence
//!   is never reset. Rows are therefore never deleted by lockattr: one small row per key ever
//!   used. Deleting rows by hand resets the fences of those keys.
//! - **Release and extend** only touch a row whose `token` is the caller's 128-bit random
//!   owner token and whose lease has not ended.
//! - **`min_hold`** is kept by the database: an early release sets `lock_until` to the end of
//!   `min_hold` and clears the token, so the key stays taken even if the process exits.
//! - **Expiry** is `lock_until`, compared with the database's clock: a crashed or stopped
//!   holder loses the key after its ttl with no help from its process.
//! - **Waiting** is fair across processes. A waiter enqueues itself in the waiter table and
//!   gets a ticket from the database (an auto-increment key); a waiter may take the key only
//!   when no live waiter with a smaller ticket exists, and
//!   [`try_acquire`](crate::LockBuilder::try_acquire) (or the first, unqueued attempt of a
//!   wait) only when no live waiter exists at all. So a holder that releases and asks again
//!   does not jump ahead of processes already waiting. Waiters refresh their place every
//!   second; a waiter that dies, stalls or is dropped gives up its place at once (dropped) or
//!   within 3 s (killed, stopped). Waiters poll (5 ms, doubling to 50 ms, jittered); in the
//!   same process a release wakes them at once.
//! - **Lost connections** do not lose leases: a lease is a row, not a session. A statement
//!   that fails because the connection was closed (a database restart, a killed session) is
//!   retried on a fresh connection; the acquisition statement is idempotent for its owner
//!   token, so a retry never takes the key twice or leaks it.
//! - **SQLite**: WAL journal, `synchronous = NORMAL` (a power loss may lose the last
//!   commits, and with them the last fences handed out; an application crash loses nothing),
//!   and every write is a single statement, which SQLite runs as an immediate write
//!   transaction, waiting up to `busy_timeout` for other processes' writers. If the file is
//!   deleted or replaced while in use, every operation fails with a
//!   [`LockError::Backend`](crate::LockError) naming the file: locks in an unlinked file are
//!   no longer shared, and a new file would restart the fences.
//!
//! # The tables
//!
//! They are created on first use (`CREATE TABLE IF NOT EXISTS`) when
//! [`connect`](crate::connect) opens the backend. To manage the schema yourself, create them
//! beforehand; `{table}` stands for the `table` parameter, `lockattr_locks` by default.
//! Times are milliseconds since the Unix epoch on the database's clock.
//!
//! SQLite:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS {table} (
//!     name TEXT NOT NULL PRIMARY KEY, token TEXT, fence INTEGER NOT NULL,
//!     lock_until INTEGER NOT NULL, holder TEXT NOT NULL);
//! CREATE TABLE IF NOT EXISTS {table}_waiters (
//!     ticket INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
//!     alive_until INTEGER NOT NULL);
//! CREATE INDEX IF NOT EXISTS {table}_waiters_name ON {table}_waiters (name, ticket);
//! ```
//!
//! PostgreSQL:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS {table} (
//!     name TEXT NOT NULL PRIMARY KEY, token TEXT, fence BIGINT NOT NULL,
//!     lock_until BIGINT NOT NULL, holder TEXT NOT NULL);
//! CREATE TABLE IF NOT EXISTS {table}_waiters (
//!     ticket BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL,
//!     alive_until BIGINT NOT NULL);
//! CREATE INDEX IF NOT EXISTS {table}_waiters_name ON {table}_waiters (name, ticket);
//! ```
//!
//! MySQL / MariaDB (`name` is binary so that keys compare byte for byte, not case-folded):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS {table} (
//!     name VARBINARY(255) NOT NULL PRIMARY KEY, token CHAR(32) NULL, fence BIGINT NOT NULL,
//!     lock_until BIGINT NOT NULL, holder VARCHAR(255) NOT NULL) ENGINE = InnoDB;
//! CREATE TABLE IF NOT EXISTS {table}_waiters (
//!     ticket BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARBINARY(255) NOT NULL,
//!     alive_until BIGINT NOT NULL, KEY {table}_waiters_name (name, ticket)) ENGINE = InnoDB;
//! ```
//!
//! Keys longer than 255 bytes are hashed (see [`key`](crate::key)).
//!
//! # The statements
//!
//! Taking a key (SQLite and PostgreSQL; `:ticket` is the waiter's ticket, or the largest
//! integer for an unqueued attempt):
//!
//! ```sql
//! INSERT INTO {table} AS t (name, token, fence, lock_until, holder)
//! VALUES (:name, :token, 1, now_ms + :ttl_ms, :holder)
//! ON CONFLICT (name) DO UPDATE SET token = excluded.token, fence = t.fence + 1,
//!     lock_until = excluded.lock_until, holder = excluded.holder
//! WHERE t.token = excluded.token
//!    OR (t.lock_until <= now_ms AND NOT EXISTS (SELECT 1 FROM {table}_waiters w
//!        WHERE w.name = t.name AND w.ticket < :ticket AND w.alive_until > now_ms))
//! RETURNING fence
//! ```
//!
//! MySQL has neither `ON CONFLICT` nor `RETURNING`: the same condition guards each column of
//! an `INSERT … ON DUPLICATE KEY UPDATE`, and a takeover reports its fence through
//! `LAST_INSERT_ID(fence + 1)`; a first insert reads the fence back. Release is
//! `UPDATE {table} SET token = NULL, lock_until = LEAST(lock_until, now_ms + :keep_ms) WHERE
//! name = :name AND token = :token AND lock_until > now_ms`; extend sets `lock_until`
//! under the same condition.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;

use super::wait::{self, Poll, Waiting};
use super::{Acquire, Backend, BackendResult, BoxFuture, Capability, Granted};
use crate::error::{BoxError, LockError};
use crate::url::BackendUrl;

/// The table name used without `?table=`.
pub const DEFAULT_TABLE: &str = "lockattr_locks";

/// The URL of the embedded default: a lease table in `lockattr.db` in the working
/// directory, shared by every process started there.
#[cfg(feature = "sqlite")]
pub const EMBEDDED_DEFAULT_URL: &str = "sqlite://lockattr.db";

/// The longest stored key (the `name` column).
const MAX_KEY_LEN: usize = 255;
/// The longest `table=` name: the index name adds 13 bytes, and PostgreSQL stops at 63.
const MAX_TABLE_LEN: usize = 48;
/// How long a waiter's place lasts without a refresh.
const WAITER_LEASE: Duration = Duration::from_secs(3);
/// How often a waiter refreshes its place.
const WAITER_REFRESH: Duration = Duration::from_secs(1);
/// The first and the longest pause between two polls of a waiter.
const POLL: Poll = Poll::new(5, 50);
/// Attempts of one statement whose connection failed (a pool holds at most
/// [`MAX_CONNECTIONS`], all of which may have been closed by a restart).
const MAX_ATTEMPTS: u32 = MAX_CONNECTIONS + 2;
/// Connections per backend handle.
const MAX_CONNECTIONS: u32 = 8;
/// The ticket of an unqueued attempt: every live waiter is ahead of it.
const NO_TICKET: i64 = i64::MAX;

/// Whether `url` names the lease table: `sqlite://`, or a PostgreSQL / MySQL URL with
/// `mode=table`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn is_table_url(url: &BackendUrl) -> bool {
    url.scheme == "sqlite" || url.params.get("mode").map(String::as_str) == Some("table")
}

/// A lease table on SQLite, PostgreSQL or MySQL. Get one with
/// [`connect`](crate::connect)`("sqlite://locks.db")` or a `?mode=table` server URL; see the
/// [module docs](self) for its table, statements and semantics.
pub struct TableBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TableBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBackend")
            .field("backend", &self.inner.name)
            .field("table", &self.inner.table)
            .finish()
    }
}

enum Db {
    #[cfg(feature = "sqlite")]
    Sqlite(Pooled<sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(Pooled<sqlx::Postgres>),
    #[cfg(feature = "mysql")]
    MySql(Pooled<sqlx::MySql>),
}

/// Connections kept out of the pool for reuse.
const STASH: usize = 2;

/// A pool with a small stash of connections in front: sqlx returns a dropped connection to
/// its pool through a spawned task, which costs more than a statement on a fast database;
/// an uncontended lock reuses a stashed connection instead.
struct Pooled<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    stash: Mutex<Vec<sqlx::pool::PoolConnection<DB>>>,
}

impl<DB: sqlx::Database> Pooled<DB> {
    fn new(pool: sqlx::Pool<DB>) -> Self {
        Pooled {
            pool,
            stash: Mutex::new(Vec::with_capacity(STASH)),
        }
    }

    async fn get(&self) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
        let stashed = self.stash.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match stashed {
            Some(conn) => Ok(conn),
            None => self.pool.acquire().await,
        }
    }

    /// Takes a connection back after a statement; a broken one is closed.
    fn put(&self, mut conn: sqlx::pool::PoolConnection<DB>, broken: bool) {
        if broken {
            conn.close_on_drop();
            return;
        }
        let mut stash = self.stash.lock().unwrap_or_else(|e| e.into_inner());
        if stash.len() < STASH {
            stash.push(conn);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    #[cfg(feature = "sqlite")]
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "mysql")]
    MySql,
}

struct Inner {
    db: Db,
    dialect: Dialect,
    sql: Statements,
    table: String,
    /// `host:pid`, written to the `holder` column for operators.
    holder: String,
    /// The redacted URL, for logs.
    name: String,
    wakers: Arc<Wakers>,
    /// The SQLite file and its identity when opened.
    #[cfg(feature = "sqlite")]
    file: Option<(std::path::PathBuf, FileId)>,
}

/// One parameter of a statement.
#[derive(Debug, Clone, Copy)]
enum P {
    Name,
    Token,
    Ms,
    Ticket,
    Holder,
}

/// A statement in its dialect, with the order its parameters are bound in.
struct Stmt {
    sql: Arc<str>,
    binds: Vec<P>,
}

struct Args<'a> {
    name: &'a str,
    token: &'a str,
    ms: i64,
    ticket: i64,
    holder: &'a str,
}

struct Statements {
    create: Vec<String>,
    acquire: Stmt,
    /// MySQL: the fence of the row the caller holds.
    owned_fence: Stmt,
    release: Stmt,
    extend: Stmt,
    enqueue: Stmt,
    refresh: Stmt,
    leave: Stmt,
}

impl Dialect {
    fn now(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            #[cfg(feature = "postgres")]
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)",
            #[cfg(feature = "mysql")]
            Dialect::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
        }
    }

    fn least(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => "MIN",
            #[allow(unreachable_patterns)]
            _ => "LEAST",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => "sqlite",
            #[cfg(feature = "postgres")]
            Dialect::Postgres => "postgres",
            #[cfg(feature = "mysql")]
            Dialect::MySql => "mysql",
        }
    }

    fn is_mysql(self) -> bool {
        #[cfg(feature = "mysql")]
        if self == Dialect::MySql {
            return true;
        }
        false
    }

    /// Turns a template into this dialect's SQL: `{t}`, `{w}`, `{now}`, `{least}` are
    /// replaced, and `:name`-style parameters become `?N` (SQLite), `$N` (PostgreSQL) or
    /// `?` (MySQL, bound once per occurrence).
    fn stmt(self, table: &str, template: &str) -> Stmt {
        let text = template
            .replace("{w}", &format!("{table}_waiters"))
            .replace("{t}", table)
            .replace("{now}", self.now())
            .replace("{least}", self.least());
        let mut sql = String::with_capacity(text.len());
        let mut binds: Vec<P> = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(':') {
            sql.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let len = after.bytes().take_while(|b| b.is_ascii_lowercase()).count();
            let p = match &after[..len] {
                "name" => P::Name,
                "token" => P::Token,
                "ms" => P::Ms,
                "ticket" => P::Ticket,
                "holder" => P::Holder,
                other => panic!("unknown statement parameter `:{other}`"),
            };
            if self.is_mysql() {
                binds.push(p);
                sql.push('?');
            } else {
                let n = match binds.iter().position(|b| same(*b, p)) {
                    Some(i) => i + 1,
                    None => {
                        binds.push(p);
                        binds.len()
                    }
                };
                #[cfg(feature = "postgres")]
                if self == Dialect::Postgres {
                    sql.push_str(&format!("${n}"));
                    rest = &after[len..];
                    continue;
                }
                sql.push_str(&format!("?{n}"));
            }
            rest = &after[len..];
        }
        sql.push_str(rest);
        Stmt {
            sql: Arc::from(sql),
            binds,
        }
    }

    fn statements(self, table: &str) -> Statements {
        let create = match self {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => vec![
                format!("CREATE TABLE IF NOT EXISTS {table} (name TEXT NOT NULL PRIMARY KEY, token TEXT, fence INTEGER NOT NULL, lock_until INTEGER NOT NULL, holder TEXT NOT NULL)"),
                format!("CREATE TABLE IF NOT EXISTS {table}_waiters (ticket INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, alive_until INTEGER NOT NULL)"),
                format!("CREATE INDEX IF NOT EXISTS {table}_waiters_name ON {table}_waiters (name, ticket)"),
            ],
            #[cfg(feature = "postgres")]
            Dialect::Postgres => vec![
                format!("CREATE TABLE IF NOT EXISTS {table} (name TEXT NOT NULL PRIMARY KEY, token TEXT, fence BIGINT NOT NULL, lock_until BIGINT NOT NULL, holder TEXT NOT NULL)"),
                format!("CREATE TABLE IF NOT EXISTS {table}_waiters (ticket BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL, alive_until BIGINT NOT NULL)"),
                format!("CREATE INDEX IF NOT EXISTS {table}_waiters_name ON {table}_waiters (name, ticket)"),
            ],
            #[cfg(feature = "mysql")]
            Dialect::MySql => vec![
                format!("CREATE TABLE IF NOT EXISTS {table} (name VARBINARY(255) NOT NULL PRIMARY KEY, token CHAR(32) NULL, fence BIGINT NOT NULL, lock_until BIGINT NOT NULL, holder VARCHAR(255) NOT NULL) ENGINE = InnoDB"),
                format!("CREATE TABLE IF NOT EXISTS {table}_waiters (ticket BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARBINARY(255) NOT NULL, alive_until BIGINT NOT NULL, KEY {table}_waiters_name (name, ticket)) ENGINE = InnoDB"),
            ],
        };
        let no_waiter_ahead = "NOT EXISTS (SELECT 1 FROM {w} w WHERE w.name = :name \
             AND w.ticket < :ticket AND w.alive_until > {now})";
        let acquire = if self.is_mysql() {
            // Each assignment sees the columns assigned before it: the condition is first
            // decided on the old row (fence, token); once the token is ours, the
            // `token = VALUES(token)` arm keeps it true for the rest.
            let cond =
                format!("(token = VALUES(token) OR (lock_until <= {{now}} AND {no_waiter_ahead}))");
            format!(
                "INSERT INTO {{t}} (name, token, fence, lock_until, holder) \
                 VALUES (:name, :token, 1, {{now}} + :ms, :holder) \
                 ON DUPLICATE KEY UPDATE \
                 fence = IF({cond}, LAST_INSERT_ID(fence + 1), fence), \
                 token = IF({cond}, VALUES(token), token), \
                 holder = IF({cond}, VALUES(holder), holder), \
                 lock_until = IF({cond}, VALUES(lock_until), lock_until)"
            )
        } else {
            format!(
                "INSERT INTO {{t}} AS t (name, token, fence, lock_until, holder) \
                 VALUES (:name, :token, 1, {{now}} + :ms, :holder) \
                 ON CONFLICT (name) DO UPDATE SET token = excluded.token, fence = t.fence + 1, \
                 lock_until = excluded.lock_until, holder = excluded.holder \
                 WHERE t.token = excluded.token OR (t.lock_until <= {{now}} AND {no_waiter_ahead}) \
                 RETURNING fence"
            )
        };
        let enqueue = if self.is_mysql() {
            "INSERT INTO {w} (name, alive_until) VALUES (:name, {now} + :ms)"
        } else {
            "INSERT INTO {w} (name, alive_until) VALUES (:name, {now} + :ms) RETURNING ticket"
        };
        let s = |template: &str| self.stmt(table, template);
        Statements {
            create,
            acquire: s(&acquire),
            owned_fence: s("SELECT fence FROM {t} WHERE name = :name AND token = :token"),
            release: s(
                "UPDATE {t} SET token = NULL, lock_until = {least}(lock_until, {now} + :ms) \
                 WHERE name = :name AND token = :token AND lock_until > {now}",
            ),
            extend: s("UPDATE {t} SET lock_until = {now} + :ms \
                 WHERE name = :name AND token = :token AND lock_until > {now}"),
            enqueue: s(enqueue),
            refresh: s("UPDATE {w} SET alive_until = {now} + :ms \
                 WHERE ticket = :ticket AND alive_until > {now}"),
            leave: s(
                "DELETE FROM {w} WHERE ticket = :ticket OR (name = :name AND alive_until <= {now})",
            ),
        }
    }
}

fn same(a: P, b: P) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

/// Binds `args` to `stmt` in the order the statement wants them.
macro_rules! bound {
    ($stmt:expr, $args:expr) => {{
        let stmt: &Stmt = $stmt;
        let args: &Args<'_> = $args;
        let mut q = sqlx::query(AssertSqlSafe(stmt.sql.clone()));
        for p in &stmt.binds {
            q = match p {
                P::Name => q.bind(args.name),
                P::Token => q.bind(args.token),
                P::Ms => q.bind(args.ms),
                P::Ticket => q.bind(args.ticket),
                P::Holder => q.bind(args.holder),
            };
        }
        q
    }};
}

/// Runs `$body` with `$conn` (a pooled connection of whichever database this is), retrying
/// on a fresh connection when the connection failed or the database asked for a retry.
macro_rules! with_conn {
    ($inner:expr, |$conn:ident| $body:expr) => {{
        let inner: &Inner = $inner;
        let mut attempt = 1;
        loop {
            #[cfg(feature = "sqlite")]
            inner.check_file()?;
            let result = match &inner.db {
                #[cfg(feature = "sqlite")]
                Db::Sqlite(pooled) => {
                    let mut $conn = pooled.get().await?;
                    let r = $body;
                    pooled.put($conn, r.as_ref().is_err_and(is_broken));
                    r
                }
                #[cfg(feature = "postgres")]
                Db::Postgres(pooled) => {
                    let mut $conn = pooled.get().await?;
                    let r = $body;
                    pooled.put($conn, r.as_ref().is_err_and(is_broken));
                    r
                }
                #[cfg(feature = "mysql")]
                Db::MySql(pooled) => {
                    let mut $conn = pooled.get().await?;
                    let r = $body;
                    pooled.put($conn, r.as_ref().is_err_and(is_broken));
                    r
                }
            };
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(backend = %inner.name, attempt, error = %e, "statement failed, retrying");
                    attempt += 1;
                    if !is_broken(&e) {
                        tokio::time::sleep(crate::backend::wait::jitter(Duration::from_millis(2))).await;
                    }
                }
                other => break other.map_err(BoxError::from),
            }
        }
    }};
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

impl Inner {
    async fn execute(&self, stmt: &Stmt, args: &Args<'_>) -> BackendResult<(u64, u64)> {
        with_conn!(self, |conn| {
            let q = bound!(stmt, args);
            q.execute(&mut *conn).await.map(|r| done(&r))
        })
    }

    async fn fetch_i64(&self, stmt: &Stmt, args: &Args<'_>) -> BackendResult<Option<i64>> {
        with_conn!(self, |conn| {
            let q = bound!(stmt, args);
            match q.fetch_optional(&mut *conn).await {
                Ok(Some(row)) => row.try_get::<i64, _>(0).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn args<'a>(&'a self, name: &'a str, token: &'a str, ms: i64, ticket: i64) -> Args<'a> {
        Args {
            name,
            token,
            ms,
            ticket,
            holder: &self.holder,
        }
    }

    /// One attempt to take the key; `ticket` is the caller's place in the queue.
    async fn attempt(&self, req: &Acquire<'_>, ticket: i64) -> BackendResult<Option<Granted>> {
        req.attempt.start();
        let token = req.owner.to_hex();
        let args = self.args(req.key, &token, millis(req.ttl), ticket);
        let fence = if self.dialect.is_mysql() {
            let (rows, id) = self.execute(&self.sql.acquire, &args).await?;
            if rows == 2 && id > 0 {
                Some(id as i64)
            } else {
                // Inserted (fence 1) or left alone: only the row knows which.
                self.fetch_i64(&self.sql.owned_fence, &args).await?
            }
        } else {
            self.fetch_i64(&self.sql.acquire, &args).await?
        };
        Ok(fence.map(|f| Granted {
            fence: u64::try_from(f).unwrap_or_default(),
        }))
    }

    async fn enqueue(&self, key: &str) -> BackendResult<i64> {
        let args = self.args(key, "", millis(WAITER_LEASE), 0);
        if self.dialect.is_mysql() {
            let (_, id) = self.execute(&self.sql.enqueue, &args).await?;
            return i64::try_from(id).map_err(|_| "the waiter ticket overflowed".into());
        }
        self.fetch_i64(&self.sql.enqueue, &args)
            .await?
            .ok_or_else(|| "the waiter table returned no ticket".into())
    }

    /// Refreshes a waiter's place; false if it had lapsed.
    async fn refresh(&self, ticket: i64) -> BackendResult<bool> {
        let args = self.args("", "", millis(WAITER_LEASE), ticket);
        Ok(self.execute(&self.sql.refresh, &args).await?.0 > 0)
    }

    /// Gives up a waiter's place (and sweeps lapsed places of the same key), then wakes
    /// this process's other waiters for the key: one of them may be the head now.
    async fn leave(&self, key: &str, ticket: i64) -> BackendResult<()> {
        let args = self.args(key, "", 0, ticket);
        self.execute(&self.sql.leave, &args).await?;
        self.wakers.wake(key);
        Ok(())
    }

    async fn acquire_queued(
        self: &Arc<Self>,
        req: Acquire<'_>,
        deadline: Instant,
    ) -> BackendResult<Option<Granted>> {
        if let Some(granted) = self.attempt(&req, NO_TICKET).await? {
            return Ok(Some(granted));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        let mut place = Place {
            inner: self.clone(),
            key: req.key.to_owned(),
            ticket: self.enqueue(req.key).await?,
            queued: true,
        };
        let mut refreshed = Instant::now();
        let mut waiting = Waiting::new(deadline, POLL);
        loop {
            // Registered at once, so that a release between the try and the pause still
            // wakes this waiter.
            let woken = self.wakers.slot(req.key).notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(granted) = self.attempt(&req, place.ticket).await? {
                place.leave().await;
                return Ok(Some(granted));
            }
            if refreshed.elapsed() >= WAITER_REFRESH {
                if !self.refresh(place.ticket).await? {
                    // The place lapsed (this process stalled): queue again, at the end.
                    tracing::debug!(key = req.key, backend = %self.name, "waiter place lapsed, queueing again");
                    place.ticket = self.enqueue(req.key).await?;
                }
                refreshed = Instant::now();
            }
            if !waiting.pause(woken, None).await {
                place.leave().await;
                return Ok(None);
            }
        }
    }

    #[cfg(feature = "sqlite")]
    fn check_file(&self) -> Result<(), sqlx::Error> {
        let Some((path, id)) = &self.file else {
            return Ok(());
        };
        match FileId::of(path) {
            Ok(now) if now == *id => Ok(()),
            Ok(_) => Err(file_gone(path, "was replaced by another file")),
            Err(e) => Err(file_gone(path, &format!("is gone ({e})"))),
        }
    }
}

#[cfg(feature = "sqlite")]
fn file_gone(path: &std::path::Path, what: &str) -> sqlx::Error {
    sqlx::Error::Configuration(
        format!(
            "the SQLite lock file {} {what} since it was opened: locks in it are no longer \
             shared with other processes; reconnect to use a new file",
            path.display()
        )
        .into(),
    )
}

/// Rows affected and, on MySQL, the last insert id.
trait Done {
    fn done(&self) -> (u64, u64);
}

#[cfg(feature = "sqlite")]
impl Done for sqlx::sqlite::SqliteQueryResult {
    fn done(&self) -> (u64, u64) {
        (self.rows_affected(), 0)
    }
}

#[cfg(feature = "postgres")]
impl Done for sqlx::postgres::PgQueryResult {
    fn done(&self) -> (u64, u64) {
        (self.rows_affected(), 0)
    }
}

#[cfg(feature = "mysql")]
impl Done for sqlx::mysql::MySqlQueryResult {
    fn done(&self) -> (u64, u64) {
        (self.rows_affected(), self.last_insert_id())
    }
}

fn done(r: &impl Done) -> (u64, u64) {
    r.done()
}

/// A duration in whole milliseconds, rounded up, at least 1.
fn millis(d: Duration) -> i64 {
    i64::try_from(wait::millis(d).min(i64::MAX as u64 / 4)).unwrap_or(i64::MAX / 4)
}

/// A waiter's place in the queue, given up on drop (in the background).
struct Place {
    inner: Arc<Inner>,
    key: String,
    ticket: i64,
    queued: bool,
}

impl Place {
    async fn leave(&mut self) {
        self.queued = false;
        if let Err(e) = self.inner.leave(&self.key, self.ticket).await {
            tracing::warn!(key = %self.key, backend = %self.inner.name, error = %e, "leaving the waiter queue failed; the place lapses by itself");
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        let (inner, key, ticket) = (
            self.inner.clone(),
            std::mem::take(&mut self.key),
            self.ticket,
        );
        let what = format!("a waiter for `{key}` (backend {})", inner.name);
        wait::spawn_detached(format_args!("{what}"), async move {
            if let Err(e) = inner.leave(&key, ticket).await {
                tracing::debug!(key = %key, backend = %inner.name, error = %e, "leaving the waiter queue failed; the place lapses by itself");
            }
        });
    }
}

/// In-process wake-ups: a release wakes this process's waiters for the key at once (other
/// processes poll). Keys are spread over a few slots; a wake-up for a neighbour is spurious
/// but harmless.
struct Wakers {
    slots: [Notify; 64],
}

impl Wakers {
    /// The wakers of one database table, shared by every handle on it in this process.
    fn of(store: &str) -> Arc<Wakers> {
        static ALL: OnceLock<Mutex<HashMap<String, Arc<Wakers>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.entry(store.to_owned())
            .or_insert_with(|| {
                Arc::new(Wakers {
                    slots: std::array::from_fn(|_| Notify::new()),
                })
            })
            .clone()
    }

    fn slot(&self, key: &str) -> &Notify {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.slots[(h.finish() % 64) as usize]
    }

    fn wake(&self, key: &str) {
        self.slot(key).notify_waiters();
    }
}

/// The identity of a file, to notice that it was deleted or replaced.
#[cfg(feature = "sqlite")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

#[cfg(feature = "sqlite")]
impl FileId {
    fn of(path: &std::path::Path) -> std::io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(FileId(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(FileId(0, 0))
        }
    }
}

impl Backend for TableBackend {
    fn kind(&self) -> &'static str {
        self.inner.dialect.kind()
    }

    fn max_key_len(&self) -> usize {
        MAX_KEY_LEN
    }

    fn supports(&self, capability: Capability) -> bool {
        matches!(capability, Capability::MinHold | Capability::Extend)
    }

    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(async move { self.inner.attempt(&req, NO_TICKET).await })
    }

    fn acquire_until<'a>(
        &'a self,
        req: Acquire<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(self.inner.acquire_queued(req, deadline))
    }

    fn released<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.wakers.slot(key).notified())
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a crate::token::OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let token = owner.to_hex();
            let keep = if keep_for.is_zero() {
                0
            } else {
                millis(keep_for)
            };
            let args = self.inner.args(key, &token, keep, 0);
            let held = self.inner.execute(&self.inner.sql.release, &args).await?.0 > 0;
            if held && keep == 0 {
                self.inner.wakers.wake(key);
            }
            Ok(held)
        })
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a crate::token::OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let token = owner.to_hex();
            let args = self.inner.args(key, &token, millis(ttl), 0);
            Ok(self.inner.execute(&self.inner.sql.extend, &args).await?.0 > 0)
        })
    }
}

// ---- opening ------------------------------------------------------------------------------

/// lockattr's own query parameters, never passed to sqlx.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const OWN_PARAMS: &[&str] = &["prefix", "mode", "table"];

/// Opens the lease table `url` names (see [`is_table_url`]).
pub(crate) async fn open(url: &BackendUrl) -> Result<TableBackend, LockError> {
    let table = match url.params.get("table") {
        Some(t) => {
            check_table_name(t).map_err(|reason| url.invalid(reason))?;
            t.clone()
        }
        None => DEFAULT_TABLE.to_owned(),
    };
    #[allow(unused_variables)]
    let opened: Result<(Db, Dialect, String), LockError> = match url.scheme.as_str() {
        #[cfg(feature = "sqlite")]
        "sqlite" => open_sqlite(url).await,
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => open_postgres(url),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => open_mysql(url),
        other => Err(url.invalid(format!(
            "this build of lockattr has no lease table on `{other}` (enable its cargo feature)"
        ))),
    };
    let (db, dialect, store) = opened?;
    let inner = Inner {
        sql: dialect.statements(&table),
        wakers: Wakers::of(&format!("{store}\n{table}")),
        #[cfg(feature = "sqlite")]
        file: None,
        db,
        dialect,
        table,
        holder: holder(),
        name: url.redacted.clone(),
    };
    #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
    let mut inner = inner;
    inner
        .create_tables()
        .await
        .map_err(|e| LockError::backend(&url.redacted, None, e))?;
    #[cfg(feature = "sqlite")]
    #[allow(irrefutable_let_patterns)]
    if let Db::Sqlite(pooled) = &inner.db {
        let path = pooled.pool.connect_options().get_filename().to_path_buf();
        let id = FileId::of(&path).map_err(|e| LockError::backend(&url.redacted, None, e))?;
        inner.file = Some((path, id));
    }
    tracing::debug!(backend = %inner.name, table = %inner.table, "lease table ready");
    Ok(TableBackend {
        inner: Arc::new(inner),
    })
}

impl Inner {
    /// `CREATE TABLE IF NOT EXISTS`, retried: concurrent creation of one table can fail on
    /// PostgreSQL with a unique violation in its catalog, and then the table exists.
    async fn create_tables(&self) -> BackendResult<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.create_once().await {
                Ok(()) => return Ok(()),
                // Only an answer from the database is worth another try: an unreachable
                // one has already been retried for the pool's acquire timeout.
                Err(e)
                    if tries < 3 && matches!(e.downcast_ref(), Some(sqlx::Error::Database(_))) =>
                {
                    tracing::debug!(backend = %self.name, error = %e, "creating the lock tables failed, retrying");
                    tokio::time::sleep(crate::backend::wait::jitter(Duration::from_millis(20)))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn create_once(&self) -> BackendResult<()> {
        for ddl in &self.sql.create {
            let ddl: Arc<str> = Arc::from(ddl.as_str());
            with_conn!(self, |conn| {
                sqlx::query(AssertSqlSafe(ddl.clone()))
                    .persistent(false)
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
            })?;
        }
        Ok(())
    }
}

fn check_table_name(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TABLE_LEN
        && !t.as_bytes()[0].is_ascii_digit()
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`table={t}` is not a table name: use 1 to {MAX_TABLE_LEN} letters, digits and `_`, not starting with a digit"
        ))
    }
}

/// `host:pid` of this process.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    let holder = format!("{host}:{}", std::process::id());
    match holder.char_indices().nth(200) {
        Some((end, _)) => holder[..end].to_owned(),
        None => holder,
    }
}

/// An error from the driver's URL parser, as [`LockError::InvalidUrl`], with any password
/// that the message might echo replaced.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn driver_url_error(url: &BackendUrl, e: sqlx::Error) -> LockError {
    url.invalid(url.secrets().scrub(&e.to_string()))
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(60))
        // A dead connection is noticed by its first statement, which is retried on a
        // fresh one: no ping before every use.
        .test_before_acquire(false)
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &BackendUrl) -> Result<(Db, Dialect, String), LockError> {
    use std::str::FromStr;
    let driver = url.client_url(
        "postgres",
        OWN_PARAMS,
        crate::backend::POSTGRES_CLIENT_PARAMS,
    )?;
    let options = sqlx::postgres::PgConnectOptions::from_str(&driver)
        .map_err(|e| driver_url_error(url, e))?;
    let pool = pool_options().connect_lazy_with(options);
    Ok((Db::Postgres(Pooled::new(pool)), Dialect::Postgres, driver))
}

#[cfg(feature = "mysql")]
fn open_mysql(url: &BackendUrl) -> Result<(Db, Dialect, String), LockError> {
    use std::str::FromStr;
    let driver = url.client_url("mysql", OWN_PARAMS, crate::backend::MYSQL_CLIENT_PARAMS)?;
    let options = sqlx::mysql::MySqlConnectOptions::from_str(&driver)
        .map_err(|e| driver_url_error(url, e))?;
    let pool = pool_options().connect_lazy_with(options);
    Ok((Db::MySql(Pooled::new(pool)), Dialect::MySql, driver))
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &BackendUrl) -> Result<(Db, Dialect, String), LockError> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    url.check_params(&["prefix", "table", "mode", "busy_timeout"])?;
    if let Some(mode) = url.params.get("mode").filter(|m| *m != "table") {
        return Err(url.invalid(format!(
            "`mode={mode}`: SQLite has only the lease table (`mode=table`, the default)"
        )));
    }
    if url.rest.is_empty() {
        return Err(url.invalid(
            "expected `sqlite://PATH`, for example `sqlite://locks.db` or `sqlite:///var/lib/app/locks.db`",
        ));
    }
    if url.rest.contains(":memory:") || url.rest.starts_with("file:") {
        return Err(url.invalid(
            "expected a file path: an in-memory SQLite database is not shared between \
             connections; use `memory://` for locks inside one process",
        ));
    }
    let busy = match url.params.get("busy_timeout") {
        Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
            url.invalid(format!(
                "`busy_timeout={ms}` is not a number of milliseconds"
            ))
        })?),
        None => Duration::from_secs(5),
    };
    let path = std::path::Path::new(&url.rest);
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(busy);
    let pool = sqlx::pool::PoolOptions::new()
        .max_connections(4)
        .min_connections(0)
        .acquire_timeout(busy + Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(60))
        .test_before_acquire(false)
        .connect_lazy_with(options);
    // The file may not exist yet: name it by its canonical folder.
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let store = match (std::fs::canonicalize(folder), path.file_name()) {
        (Ok(folder), Some(file)) => folder.join(file).display().to_string(),
        _ => url.rest.clone(),
    };
    Ok((
        Db::Sqlite(Pooled::new(pool)),
        Dialect::Sqlite,
        format!("sqlite:{store}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers() {
        assert!(check_table_name("lockattr_locks").is_ok());
        assert!(check_table_name("Locks2").is_ok());
        for bad in ["", "1locks", "locks;drop", "a b", "a-b", &"x".repeat(49)] {
            assert!(check_table_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn millis_round_up() {
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::MAX), i64::MAX / 4);
    }

    async fn refused(url: &str) -> String {
        let parsed = BackendUrl::parse(url).unwrap();
        match open(&parsed).await {
            Err(e @ LockError::InvalidUrl { .. }) => {
                let msg = e.to_string();
                assert!(!msg.contains("hunter2"), "{msg}");
                msg
            }
            Err(e) => panic!("{url}: {e}"),
            Ok(_) => panic!("{url} was accepted"),
        }
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn bad_sqlite_urls_are_refused() {
        assert!(refused("sqlite://").await.contains("sqlite://PATH"));
        assert!(refused("sqlite://:memory:").await.contains("memory://"));
        assert!(refused("sqlite://x.db?mode=session")
            .await
            .contains("mode=session"));
        assert!(refused("sqlite://x.db?busy_timeout=soon")
            .await
            .contains("milliseconds"));
        assert!(refused("sqlite://x.db?table=a-b")
            .await
            .contains("table name"));
        assert!(refused("sqlite://u:hunter2@x.db?nope=1")
            .await
            .contains("`nope`"));
        assert!(!std::path::Path::new("x.db").exists());
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn bad_postgres_urls_are_refused_without_the_password() {
        refused("postgres://u:hunter2@[bad?mode=table").await;
        assert!(refused("postgres://u:hunter2@h/db?mode=table&tabel=x")
            .await
            .contains("`tabel`"));
    }

    #[cfg(feature = "mysql")]
    #[tokio::test]
    async fn bad_mysql_urls_are_refused_without_the_password() {
        refused("mysql://u:hunter2@[bad?mode=table").await;
        refused("mariadb://u:hunter2@h/db?mode=table&table=x;y").await;
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_parameters_are_numbered_once() {
        let s = Dialect::Postgres.stmt("t", "SELECT :name, :token, :name FROM {t}");
        assert_eq!(&*s.sql, "SELECT $1, $2, $1 FROM t");
        assert_eq!(s.binds.len(), 2);
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn mysql_parameters_are_bound_per_occurrence() {
        let s = Dialect::MySql.stmt("t", "SELECT :name, :token, :name FROM {w}");
        assert_eq!(&*s.sql, "SELECT ?, ?, ? FROM t_waiters");
        assert_eq!(s.binds.len(), 3);
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_parameters_are_numbered_once() {
        let s = Dialect::Sqlite.stmt("t", "SELECT :ms, :ticket, :ms");
        assert_eq!(&*s.sql, "SELECT ?1, ?2, ?1");
    }
}
