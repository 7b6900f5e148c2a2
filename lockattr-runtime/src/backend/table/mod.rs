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
//!   a SQLite statement waits for nothing else;
//! - `connect_timeout_ms` (PostgreSQL and MySQL only, default 5000): the longest wait for a
//!   connection, whether a new one (a server that refuses or does not answer) or one of the
//!   handle's 8 that are all in use; then [`LockError::Backend`](crate::LockError) naming
//!   the parameter and its value;
//! - `timeout_ms` (PostgreSQL and MySQL only, default 5000): the longest wait for the
//!   answer to one statement (a server that stopped answering, a statement blocked behind
//!   another session's row lock); then the connection is closed and the operation fails
//!   with [`LockError::Backend`](crate::LockError) naming the parameter and its value. A
//!   statement whose connection broke is retried on a fresh connection (see below), each
//!   try bounded by these two. A statement given up on may still run on the server once it
//!   is unblocked (a server does not notice that its client left): an acquisition then
//!   holds the key until its ttl ends, under a token nobody was given;
//! - PostgreSQL and MySQL also take the connection parameters of their driver (`sslmode`,
//!   `application_name`, `ssl-ca`, …), which go to sqlx unchanged.
//!
//! Every driver message that reaches a [`LockError`] or a log line is
//! scrubbed of the URL's password first.
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
//! CREATE TABLE IF NOT EXISTS {table}_format (format INTEGER NOT NULL PRIMARY KEY);
//! INSERT INTO {table}_format (format) VALUES (1) ON CONFLICT (format) DO NOTHING;
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
//! CREATE TABLE IF NOT EXISTS {table}_format (format BIGINT NOT NULL PRIMARY KEY);
//! INSERT INTO {table}_format (format) VALUES (1) ON CONFLICT (format) DO NOTHING;
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
//! CREATE TABLE IF NOT EXISTS {table}_format (
//!     format BIGINT NOT NULL PRIMARY KEY) ENGINE = InnoDB;
//! INSERT INTO {table}_format (format) VALUES (1) ON DUPLICATE KEY UPDATE format = format;
//! ```
//!
//! Keys longer than 255 bytes are hashed (see [`key`](crate::key)).
//!
//! # Storage format
//!
//! `{table}_format` records the storage format of the lockattr builds that set the table
//! up: one row, `1` for this release. A handle that opens a table whose greatest recorded
//! format is above its own refuses it with [`LockError::Backend`](crate::LockError), telling
//! to upgrade lockattr in every process that shares the table, so that two releases that
//! disagree about the rows never share keys silently (`docs/design.md`, "Mixed versions").
//! A table without a row (created by an earlier release, or by hand) gets this build's.
//!
//! The marker is a table of its own, the same on the three servers, rather than a table
//! comment (PostgreSQL's `COMMENT ON TABLE` needs the table's owner, MySQL's
//! `ALTER TABLE … COMMENT` its `ALTER` privilege and a metadata lock that waits for every
//! open transaction on the table) or SQLite's `PRAGMA user_version`, which belongs to
//! whoever owns the file: nothing stops a `sqlite://` URL from naming an application's own
//! database, whose migrations may keep their version there. Reading and writing the marker
//! takes no more than the privileges the lease table already needs.
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wait;
use super::{Acquire, Backend, BackendResult, BoxFuture, Capability, ClockReading, Granted};
use crate::error::LockError;
use crate::url::{BackendUrl, Secrets};

mod admin;
mod connection;
mod open;
mod queue;
mod schema;
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite_file;

use connection::ServerPool;
use open::{TableOptions, Timeouts};
use queue::ReleaseWakers;
use sql::{Bindings, Server, TableStatements};

/// The table name used without `?table=`.
pub const DEFAULT_TABLE: &str = "lockattr_locks";

/// The URL of the embedded default: a lease table in `lockattr.db` in the working
/// directory, shared by every process started there.
#[cfg(feature = "sqlite")]
pub const EMBEDDED_DEFAULT_URL: &str = "sqlite://lockattr.db";

/// The longest stored key (the `name` column).
const MAX_KEY_LEN: usize = 255;
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
    table: Arc<LeaseTable>,
}

impl std::fmt::Debug for TableBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBackend")
            .field("backend", &self.table.backend)
            .field("table", &self.table.table)
            .finish()
    }
}

/// One lease table on one database: its connections, statements and waiters.
struct LeaseTable {
    pool: ServerPool,
    server: Server,
    sql: TableStatements,
    /// The table's name.
    table: String,
    /// `host:pid`, written to the `holder` column for operators.
    holder: String,
    /// The redacted URL, for logs.
    backend: String,
    /// The URL's passwords, scrubbed from every driver message.
    secrets: Secrets,
    timeouts: Timeouts,
    wakers: Arc<ReleaseWakers>,
    /// The SQLite file and its identity when opened.
    #[cfg(feature = "sqlite")]
    sqlite_file: Option<sqlite_file::SqliteFile>,
}

/// Opens the lease table `url` names (see [`is_table_url`]).
pub(crate) async fn open(url: &BackendUrl) -> Result<TableBackend, LockError> {
    let options = TableOptions::from_url(url)?;
    let server = options.server();
    #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
    let mut table = LeaseTable {
        pool: options.pool(),
        server,
        sql: server.statements(&options.table),
        wakers: ReleaseWakers::of(&format!("{}\n{}", options.store, options.table)),
        table: options.table,
        holder: open::holder(),
        backend: url.redacted.clone(),
        secrets: url.secrets(),
        timeouts: options.timeouts,
        #[cfg(feature = "sqlite")]
        sqlite_file: None,
    };
    table.set_up(url).await?;
    #[cfg(feature = "sqlite")]
    #[allow(irrefutable_let_patterns)]
    if let ServerPool::Sqlite(pooled) = &table.pool {
        let path = pooled.pool.connect_options().get_filename().to_path_buf();
        let file = sqlite_file::SqliteFile::open(&path)
            .map_err(|e| LockError::backend(&url.redacted, None, e))?;
        table.sqlite_file = Some(file);
    }
    tracing::debug!(backend = %table.backend, table = %table.table, "lease table ready");
    Ok(TableBackend {
        table: Arc::new(table),
    })
}

impl LeaseTable {
    fn bindings<'a>(&'a self, name: &'a str, token: &'a str, ms: i64, ticket: i64) -> Bindings<'a> {
        Bindings {
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
        let bindings = self.bindings(req.key, &token, millis(req.ttl), ticket);
        let fence = if self.server.is_mysql() {
            let (rows, id) = self.execute(&self.sql.acquire, &bindings).await?;
            if rows == 2 && id > 0 {
                Some(id as i64)
            } else {
                // Inserted (fence 1) or left alone: only the row knows which.
                self.fetch_i64(&self.sql.owned_fence, &bindings).await?
            }
        } else {
            self.fetch_i64(&self.sql.acquire, &bindings).await?
        };
        Ok(fence.map(|f| Granted {
            fence: u64::try_from(f).unwrap_or_default(),
        }))
    }
}

/// A duration in whole milliseconds, rounded up, at least 1, as the tables store it.
fn millis(d: Duration) -> i64 {
    i64::try_from(wait::millis(d).min(i64::MAX as u64 / 4)).unwrap_or(i64::MAX / 4)
}

impl Backend for TableBackend {
    fn kind(&self) -> &'static str {
        self.table.server.kind()
    }

    fn max_key_len(&self) -> usize {
        MAX_KEY_LEN
    }

    fn supports(&self, capability: Capability) -> bool {
        matches!(capability, Capability::MinHold | Capability::Extend)
    }

    fn admin(&self) -> Option<&dyn super::admin::Admin> {
        Some(self)
    }

    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(async move { self.table.attempt(&req, NO_TICKET).await })
    }

    fn acquire_until<'a>(
        &'a self,
        req: Acquire<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(self.table.acquire_queued(req, deadline))
    }

    fn released<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.table.wakers.slot(key).notified())
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
            let bindings = self.table.bindings(key, &token, keep, 0);
            let held = self
                .table
                .execute(&self.table.sql.release, &bindings)
                .await?
                .0
                > 0;
            if held && keep == 0 {
                self.table.wakers.wake(key);
            }
            Ok(held)
        })
    }

    /// The database's clock; `None` for a SQLite file, whose clock is this machine's.
    fn clock(&self) -> BoxFuture<'_, BackendResult<Option<ClockReading>>> {
        Box::pin(async move {
            if self.table.server.is_sqlite() {
                return Ok(None);
            }
            let bindings = self.table.bindings("", "", 0, 0);
            let sent = Instant::now();
            let ms = self
                .table
                .fetch_i64(&self.table.sql.clock, &bindings)
                .await?
                .ok_or("the database's clock gave no row")?;
            let time = Duration::from_millis(ms.max(0) as u64);
            Ok(Some(ClockReading::read_since(sent, time)))
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
            let bindings = self.table.bindings(key, &token, millis(ttl), 0);
            Ok(self
                .table
                .execute(&self.table.sql.extend, &bindings)
                .await?
                .0
                > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // SQLite waits only for other writers, bounded by `busy_timeout`.
        assert!(refused("sqlite://x.db?timeout_ms=100")
            .await
            .contains("`timeout_ms`"));
        assert!(!std::path::Path::new("x.db").exists());
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn bad_postgres_urls_are_refused_without_the_password() {
        refused("postgres://u:hunter2@[bad?mode=table").await;
        assert!(refused("postgres://u:hunter2@h/db?mode=table&tabel=x")
            .await
            .contains("`tabel`"));
        assert!(refused("postgres://u:hunter2@h/db?mode=table&timeout_ms=0")
            .await
            .contains("`timeout_ms`"));
    }

    #[cfg(feature = "mysql")]
    #[tokio::test]
    async fn bad_mysql_urls_are_refused_without_the_password() {
        refused("mysql://u:hunter2@[bad?mode=table").await;
        refused("mariadb://u:hunter2@h/db?mode=table&table=x;y").await;
        assert!(
            refused("mysql://u:hunter2@h/db?mode=table&connect_timeout_ms=soon")
                .await
                .contains("`connect_timeout_ms`")
        );
    }
}
