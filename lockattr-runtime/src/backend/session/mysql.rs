//! `mysql://` (or `mariadb://`): MySQL / MariaDB user-level locks (`GET_LOCK`).
//!
//! ```text
//! mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?prefix=…&connect_timeout_ms=…&timeout_ms=…&max_waiting=…&ssl-mode=…]
//! ```
//!
//! - **Keys**: the stored key (prefix + key) is the lock name. Names longer than the server
//!   takes (MariaDB: 192 bytes, MySQL 8: 64 characters; the backend asks `VERSION()`) are
//!   shortened by [`storage_key`](crate::key::storage_key)'s stable hashed form.
//!   MariaDB compares lock names case-sensitively; MySQL 8 documents them as
//!   case-insensitive, so on MySQL keys that differ only in case take the same lock
//!   (they exclude each other; no two holders ever share one key).
//! - **Sessions**: as for PostgreSQL: the backend's own
//!   connections, at most 8 holding any number of locks, one more per waiter while it
//!   waits, up to `max_waiting` (default 32; more waiters queue in the process, first come
//!   first served). `GET_LOCK` is re-entrant within a session; the backend refuses a second take of
//!   a key it holds before asking the server, so re-entrancy never shows.
//! - **Expiry**: enforced by the server through `SET SESSION wait_timeout`, kept at the
//!   earliest deadline of the session's leases plus 0.5 s, rounded up to whole seconds
//!   (the variable's unit): a stalled holder loses its locks up to 1.5 s after its ttl; a
//!   holder that dies loses them at once. Use ttls of 2 s or more.
//! - **Waiting**: `GET_LOCK(name, timeout)` waits in the server's queue, which hands the
//!   lock to the oldest waiter on release.
//! - **Fencing tokens**: on MariaDB, `NEXTVAL(lockattr_fence)` (a sequence, created on first
//!   use: `CREATE SEQUENCE IF NOT EXISTS lockattr_fence;`) in the statement that takes the
//!   lock. MySQL has no sequences: there, a one-row counter table
//!   (`CREATE TABLE IF NOT EXISTS lockattr_fence_counter (id TINYINT PRIMARY KEY,
//!   fence BIGINT UNSIGNED NOT NULL)`) is incremented with `LAST_INSERT_ID(fence + 1)` in a
//!   second statement after a successful `GET_LOCK`.
//! - **Storage format** (`docs/design.md`, "Mixed versions"): recorded as the comment of the
//!   sequence (MariaDB) or counter table (MySQL), `COMMENT = 'lockattr format 1'`, when the
//!   backend creates it (or finds it without a comment: `ALTER TABLE … COMMENT`). `open`
//!   refuses one whose comment records a newer format, saying to upgrade; a comment of
//!   your own is left alone.
//! - **Timeouts** (`docs/design.md`, "Timeouts"): `connect_timeout_ms` (default 5000)
//!   bounds opening a session, `timeout_ms` (default 5000) every statement that does not
//!   wait in the server; a `GET_LOCK` wait is bounded by its wait plus `timeout_ms`. A
//!   statement that runs out of time closes its session (its leases are lost), and the
//!   error names the parameter and its value.
//! - **`min_hold`** is [`Unsupported`](crate::LockError::Unsupported).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use super::options::statement_timer;
use super::{
    client_url, format_comment, parse_format_comment, SessionBackend, SessionOptions, SessionSql,
};
use crate::backend::{format_refused, FORMAT};
use crate::error::{BoxError, LockError};
use crate::url::{BackendUrl, Secrets};

/// MariaDB's longest lock name, in bytes.
const MARIADB_MAX_NAME: usize = 192;
/// MySQL 8's longest lock name (64 characters; 64 bytes are at most 64 characters).
const MYSQL_MAX_NAME: usize = 64;

/// Statements of the MySQL / MariaDB backend.
pub(crate) struct MySql {
    options: MySqlConnectOptions,
    /// The URL's password, scrubbed from every driver error (which may echo it).
    secrets: Secrets,
    /// MariaDB: fencing tokens from a sequence; MySQL: from the counter table.
    sequence: bool,
}

/// A session and the `wait_timeout` it was last given.
pub(crate) struct MyConn {
    conn: MySqlConnection,
    wait_timeout: u64,
}

/// `wait_timeout` for an idle limit: whole seconds, rounded up, at least 1.
fn wait_secs(idle: Duration) -> u64 {
    idle.as_millis().div_ceil(1000).clamp(1, 31_536_000) as u64
}

impl MySql {
    /// Sets the session's `wait_timeout` if it differs from what `idle` needs (a session
    /// without leases keeps what it had until its keeper relaxes it, a heartbeat later:
    /// back-to-back takes and releases then need no `SET` at all).
    async fn set_idle(&self, conn: &mut MyConn, idle: Option<Duration>) -> Result<(), BoxError> {
        let Some(idle) = idle else {
            return Ok(());
        };
        let secs = wait_secs(idle);
        if conn.wait_timeout != secs {
            // The value is a number formatted here, never user input.
            sqlx::raw_sql(AssertSqlSafe(format!("SET SESSION wait_timeout = {secs}")))
                .execute(&mut conn.conn)
                .await
                .map_err(|e| self.secrets.error(e))?;
            conn.wait_timeout = secs;
        }
        Ok(())
    }

    /// The next fencing token, after a successful `GET_LOCK`.
    async fn next_fence(&self, conn: &mut MyConn) -> Result<u64, BoxError> {
        if self.sequence {
            let fence: i64 = sqlx::query_scalar("SELECT NEXTVAL(lockattr_fence)")
                .fetch_one(&mut conn.conn)
                .await
                .map_err(|e| self.secrets.error(e))?;
            return Ok(fence as u64);
        }
        let done = sqlx::query(
            "UPDATE lockattr_fence_counter SET fence = LAST_INSERT_ID(fence + 1) WHERE id = 1",
        )
        .execute(&mut conn.conn)
        .await
        .map_err(|e| self.secrets.error(e))?;
        Ok(done.last_insert_id())
    }

    /// `GET_LOCK(key, wait)` and, if granted, the fencing token. An immediate take on
    /// MariaDB does both in one statement. A wait does not: a statement that names the
    /// sequence holds a metadata lock on it while it waits, which would stall DDL on it
    /// (such as another process's `CREATE SEQUENCE IF NOT EXISTS`).
    async fn lock(&self, conn: &mut MyConn, key: &str, wait: f64) -> Result<Option<u64>, BoxError> {
        if self.sequence && wait == 0.0 {
            let row = sqlx::query("SELECT IF(GET_LOCK(?, 0) = 1, NEXTVAL(lockattr_fence), NULL)")
                .bind(key)
                .fetch_one(&mut conn.conn)
                .await
                .map_err(|e| self.secrets.error(e))?;
            let fence: Option<i64> = row.try_get(0).map_err(|e| self.secrets.error(e))?;
            return Ok(fence.map(|f| f as u64));
        }
        let row = sqlx::query("SELECT GET_LOCK(?, ?)")
            .bind(key)
            .bind(wait)
            .fetch_one(&mut conn.conn)
            .await
            .map_err(|e| self.secrets.error(e))?;
        let got: Option<i64> = row.try_get(0).map_err(|e| self.secrets.error(e))?;
        if got != Some(1) {
            return Ok(None);
        }
        Ok(Some(self.next_fence(conn).await?))
    }
}

impl SessionSql for MySql {
    type Conn = MyConn;
    /// Shared, so that the books and a release hold one copy of the name.
    type Key = Arc<str>;

    const KIND: &'static str = "mysql";

    fn lock_key(&self, stored: &str) -> Arc<str> {
        Arc::from(stored)
    }

    async fn connect(&self) -> Result<MyConn, BoxError> {
        let conn = MySqlConnection::connect_with(&self.options)
            .await
            .map_err(|e| self.secrets.error(e))?;
        Ok(MyConn {
            conn,
            wait_timeout: 0,
        })
    }

    async fn try_lock(
        &self,
        conn: &mut MyConn,
        key: &Arc<str>,
        idle: Option<Duration>,
    ) -> Result<Option<u64>, BoxError> {
        self.set_idle(conn, idle).await?;
        self.lock(conn, key, 0.0).await
    }

    async fn lock_wait(
        &self,
        conn: &mut MyConn,
        key: &Arc<str>,
        wait: Duration,
        idle: Option<Duration>,
    ) -> Result<Option<u64>, BoxError> {
        self.set_idle(conn, idle).await?;
        self.lock(conn, key, wait.as_secs_f64()).await
    }

    async fn unlock(
        &self,
        conn: &mut MyConn,
        keys: &[Arc<str>],
        idle: Option<Duration>,
    ) -> Result<usize, BoxError> {
        self.set_idle(conn, idle).await?;
        let mut released = 0;
        for key in keys {
            let row = sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(&**key)
                .fetch_one(&mut conn.conn)
                .await
                .map_err(|e| self.secrets.error(e))?;
            let one: Option<i64> = row.try_get(0).map_err(|e| self.secrets.error(e))?;
            released += usize::from(one == Some(1));
        }
        Ok(released)
    }

    async fn relax(&self, conn: &mut MyConn) -> Result<(), BoxError> {
        sqlx::query("SET SESSION wait_timeout = @@GLOBAL.wait_timeout")
            .execute(&mut conn.conn)
            .await
            .map_err(|e| self.secrets.error(e))?;
        // Unknown as a number: the next lease sets its own.
        conn.wait_timeout = 0;
        Ok(())
    }

    async fn clock(&self, conn: &mut MyConn) -> Result<Duration, BoxError> {
        let micros: i64 =
            sqlx::query_scalar("SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)")
                .fetch_one(&mut conn.conn)
                .await
                .map_err(|e| self.secrets.error(e))?;
        Ok(Duration::from_micros(micros.max(0) as u64))
    }

    async fn ping(&self, conn: &mut MyConn, idle: Option<Duration>) -> Result<(), BoxError> {
        self.set_idle(conn, idle).await?;
        sqlx::query("SELECT 1")
            .execute(&mut conn.conn)
            .await
            .map_err(|e| self.secrets.error(e))?;
        Ok(())
    }
}

/// Creates the fencing sequence (MariaDB) or counter table (MySQL) if missing, with the
/// storage format recorded as its comment (and records it on one an older lockattr left
/// without). Returns the format recorded, `None` if there is none.
async fn ensure_fence(
    conn: &mut MySqlConnection,
    sequence: bool,
    secrets: &Secrets,
) -> Result<Option<u32>, sqlx::Error> {
    let name = if sequence {
        "lockattr_fence"
    } else {
        "lockattr_fence_counter"
    };
    // Look before creating: `CREATE … IF NOT EXISTS` takes a metadata lock that waits for
    // every running statement that uses the object.
    let comment: Option<String> = sqlx::query_scalar(
        "SELECT table_comment FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name = ?",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    let marker = format_comment();
    match comment.as_deref() {
        // A comment of the operator's own is left alone.
        Some(comment) if !comment.is_empty() => return Ok(parse_format_comment(comment)),
        Some(_) => {
            // The names and the comment are constants, never user input.
            let sql = format!("ALTER TABLE {name} COMMENT = '{marker}'");
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
                // The object is the same whether marked or not (format 1 only added the
                // mark), so it is used; the warning says how to mark it.
                tracing::warn!(
                    backend = MySql::KIND,
                    error = %secrets.scrub(&e.to_string()),
                    "could not record lockattr's storage format on `{name}`; with the ALTER \
                     privilege, run `ALTER TABLE {name} COMMENT = '{marker}'`"
                );
                return Ok(None);
            }
            return Ok(Some(FORMAT));
        }
        None => {}
    }
    if sequence {
        let sql = format!("CREATE SEQUENCE IF NOT EXISTS lockattr_fence COMMENT = '{marker}'");
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
    } else {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS lockattr_fence_counter \
             (id TINYINT PRIMARY KEY, fence BIGINT UNSIGNED NOT NULL) ENGINE = InnoDB \
             COMMENT = '{marker}'"
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
        sqlx::query("INSERT IGNORE INTO lockattr_fence_counter (id, fence) VALUES (1, 0)")
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(FORMAT))
}

/// Opens `mysql://…` / `mariadb://…`: checks the URL, connects once (an unreachable server
/// is an error here), learns the server's name limit and creates the fencing sequence or
/// table if missing.
pub(crate) async fn open(url: &BackendUrl) -> Result<SessionBackend<MySql>, LockError> {
    let client = client_url(url, "mysql", crate::backend::MYSQL_CLIENT_PARAMS)?;
    let options = SessionOptions::from_url(url)?;
    let secrets = url.secrets();
    let failed = |e: BoxError| LockError::backend(&url.redacted, None, e);
    let connect_options = MySqlConnectOptions::from_str(&client)
        .map_err(|e| {
            url.invalid(format!(
                "not a MySQL URL: {}",
                secrets.scrub(&e.to_string())
            ))
        })?
        .disable_statement_logging();
    let mut dialect = MySql {
        options: connect_options,
        secrets: secrets.clone(),
        sequence: false,
    };
    let mut first = options.connect(dialect.connect()).await.map_err(failed)?;
    let mut timer = statement_timer();
    let version: String = options
        .statement(timer.as_mut(), async {
            sqlx::query_scalar("SELECT VERSION()")
                .fetch_one(&mut first.conn)
                .await
                .map_err(|e| secrets.error(e))
        })
        .await
        .map_err(failed)?;
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let format = options
        .statement(timer.as_mut(), async {
            ensure_fence(&mut first.conn, mariadb, &secrets)
                .await
                .map_err(|e| secrets.error(e))
        })
        .await
        .map_err(failed)?;
    match format {
        Some(found) if found > FORMAT => {
            let place = match mariadb {
                true => "the MariaDB sequence `lockattr_fence`",
                false => "the MySQL table `lockattr_fence_counter`",
            };
            return Err(format_refused(url, place, found));
        }
        _ => {}
    }
    let max_name = if mariadb {
        MARIADB_MAX_NAME
    } else {
        MYSQL_MAX_NAME
    };
    dialect.sequence = mariadb;
    Ok(SessionBackend::new(dialect, first, max_name, options))
}

/// The operator's statements (see `session/admin.rs`). Held locks are listed from
/// `performance_schema.metadata_locks` (`USER LEVEL LOCK`), which needs the server started
/// with `performance_schema = ON` and the instrument `wait/lock/metadata/sql/mdl` enabled
/// (MySQL 8's defaults; MariaDB has both off by default: start it with
/// `--performance-schema=ON --performance-schema-instrument='wait/lock/metadata/sql/mdl=ON'`).
/// Without them `held` answers that it cannot list, rather than an empty list; `inspect`
/// and a forced release work on every server (`IS_USED_LOCK`, then `KILL CONNECTION`).
/// The owner is the holding connection: its id and client address (`PROCESSLIST`).
impl super::admin::AdminSql for MySql {
    async fn held(
        &self,
        conn: &mut MyConn,
        prefix: &str,
    ) -> Result<Vec<crate::backend::admin::HeldLock>, BoxError> {
        use crate::backend::admin::CannotList;
        let scrub = |e| self.secrets.error(e);
        let (on, instrument): (i64, Option<String>) = sqlx::query_as(
            "SELECT CAST(@@performance_schema AS SIGNED), (SELECT ENABLED FROM \
             performance_schema.setup_instruments WHERE NAME = 'wait/lock/metadata/sql/mdl')",
        )
        .fetch_one(&mut conn.conn)
        .await
        .map_err(scrub)?;
        if on != 1 || instrument.as_deref() != Some("YES") {
            return Err(Box::new(CannotList(
                "the server does not record user-level locks in \
                 `performance_schema.metadata_locks` (it needs `performance_schema = ON` and \
                 the instrument `wait/lock/metadata/sql/mdl`, off by default on MariaDB); \
                 `inspect KEY` works without them"
                    .into(),
            )));
        }
        let rows: Vec<(String, u64, Option<String>)> = sqlx::query_as(
            "SELECT CONVERT(m.OBJECT_NAME USING utf8mb4), CAST(t.PROCESSLIST_ID AS UNSIGNED), p.HOST \
             FROM performance_schema.metadata_locks m \
             JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID \
             LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.PROCESSLIST_ID \
             WHERE m.OBJECT_TYPE = 'USER LEVEL LOCK' AND m.LOCK_STATUS = 'GRANTED'",
        )
        .fetch_all(&mut conn.conn)
        .await
        .map_err(scrub)?;
        Ok(rows
            .into_iter()
            .filter(|(name, _, _)| name.starts_with(prefix))
            .map(|(name, id, host)| session_lock(name, id, host))
            .collect())
    }

    async fn inspect(
        &self,
        conn: &mut MyConn,
        stored: &str,
    ) -> Result<Option<crate::backend::admin::HeldLock>, BoxError> {
        let row: (Option<u64>, Option<String>) = sqlx::query_as(
            "SELECT c.id, (SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = c.id) \
             FROM (SELECT CAST(IS_USED_LOCK(?) AS UNSIGNED) AS id) c",
        )
        .bind(stored)
        .fetch_one(&mut conn.conn)
        .await
        .map_err(|e| self.secrets.error(e))?;
        Ok(row.0.map(|id| session_lock(stored.to_owned(), id, row.1)))
    }

    async fn force_release(&self, conn: &mut MyConn, stored: &str) -> Result<bool, BoxError> {
        let scrub = |e| self.secrets.error(e);
        let holder: Option<u64> = sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS UNSIGNED)")
            .bind(stored)
            .fetch_one(&mut conn.conn)
            .await
            .map_err(scrub)?;
        let Some(id) = holder else {
            return Ok(false);
        };
        // `id` is a number the server gave: nothing to escape.
        sqlx::query(AssertSqlSafe(format!("KILL CONNECTION {id}")))
            .persistent(false)
            .execute(&mut conn.conn)
            .await
            .map_err(scrub)?;
        // The killed connection frees its locks as it ends, soon after `KILL` returns:
        // wait for it (the caller bounds this by `timeout_ms`), so the key is free on return.
        loop {
            let still: Option<u64> = sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS UNSIGNED)")
                .bind(stored)
                .fetch_one(&mut conn.conn)
                .await
                .map_err(scrub)?;
            if still != Some(id) {
                return Ok(true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// A `GET_LOCK` lock held by connection `id` from `host`: its token and deadline are the
/// holder's own, unknown here.
fn session_lock(name: String, id: u64, host: Option<String>) -> crate::backend::admin::HeldLock {
    use crate::backend::admin::{Fence, HeldLock, Owner};
    let owner = Owner {
        host,
        session: Some(id),
        ..Owner::default()
    };
    HeldLock::new(name, Fence::Unknown, None).with_owner(Some(owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MySQL 8 has no sequences; its counter-table fencing path runs here on the MariaDB
    /// of the development machines (127.0.0.1:3306, root, database `test`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counter_table_fences_grow() {
        use crate::backend::{Acquire, Backend};
        use crate::token::OwnerToken;
        use std::time::Instant;

        let url = BackendUrl::parse("mysql://root@127.0.0.1:3306/test").unwrap();
        let options = MySqlConnectOptions::from_str(
            &client_url(&url, "mysql", crate::backend::MYSQL_CLIENT_PARAMS).unwrap(),
        )
        .unwrap();
        let mut conn = MySqlConnection::connect_with(&options)
            .await
            .expect("MariaDB answers on 127.0.0.1:3306");
        ensure_fence(&mut conn, false, &Secrets::default())
            .await
            .unwrap();
        let dialect = MySql {
            options,
            secrets: Default::default(),
            sequence: false,
        };
        let first = MyConn {
            conn,
            wait_timeout: 0,
        };
        let options = SessionOptions::from_url(&url).unwrap();
        let backend = SessionBackend::new(dialect, first, MYSQL_MAX_NAME, options);
        let key = format!("lockattr:counter-{}", std::process::id());
        let (a, b) = (OwnerToken::random().unwrap(), OwnerToken::random().unwrap());
        let ttl = Duration::from_secs(30);
        let clock = crate::backend::AttemptClock::default();
        let take = |owner| Acquire {
            key: &key,
            owner,
            ttl,
            attempt: &clock,
        };
        let one = backend.try_acquire(take(&a)).await.unwrap().unwrap();
        assert!(backend.try_acquire(take(&b)).await.unwrap().is_none());
        assert!(backend.release(&key, &a, Duration::ZERO).await.unwrap());
        let two = backend
            .acquire_until(take(&b), Instant::now() + Duration::from_secs(2))
            .await
            .unwrap()
            .unwrap();
        assert!(two.fence > one.fence, "{} then {}", one.fence, two.fence);
        assert!(backend.release(&key, &b, Duration::ZERO).await.unwrap());
    }

    #[test]
    fn wait_timeouts_are_whole_seconds_rounded_up() {
        assert_eq!(wait_secs(Duration::from_millis(10)), 1);
        assert_eq!(wait_secs(Duration::from_millis(2500)), 3);
        assert_eq!(wait_secs(Duration::from_secs(30)), 30);
    }
}
