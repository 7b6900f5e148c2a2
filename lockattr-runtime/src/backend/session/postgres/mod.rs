//! `postgres://`: PostgreSQL session-level advisory locks (PostgreSQL 14 or later).
//!
//! ```text
//! postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?prefix=…&connect_timeout_ms=…&timeout_ms=…&max_waiting=…&sslmode=…&application_name=…]
//! ```
//!
//! - **Keys**: a stored key (prefix + key) becomes the 64-bit advisory key
//!   [`advisory_key`]: the first 8 bytes of the SHA-256 of the key's UTF-8 bytes, read as a
//!   big-endian `i64` (`pg_advisory_lock(bigint)`, never `hashtext` or a 32-bit hash). Two
//!   different keys take the same lock only if their hashes collide: about one chance in
//!   2^64 per pair (with a billion distinct keys, about 3%); a collision makes two keys
//!   exclude each other, never two holders share one key. Other code using single-`bigint`
//!   advisory locks on the same database shares this key space.
//!   In `pg_locks` a held key shows as `locktype = 'advisory'`, `objsubid = 1`, with the
//!   high 32 bits of the key in `classid` and the low 32 bits in `objid`.
//! - **Sessions**: the locks live on connections the backend opens itself and shares: at
//!   most 8 of them hold any number of locks; a wait in the server's queue takes a session
//!   of its own while it waits, at most `max_waiting` of them (default 32; more waiters
//!   queue in the process, first come first served). Session locks need a real session:
//!   do not point this URL at PgBouncer in transaction pooling mode.
//!   Each session's `application_name` is `lockattr <pid>@<host>` unless the URL sets
//!   one, so that an operator (`lockattr held`, `pg_stat_activity`) sees which process
//!   holds a lock; it is set once when the session opens.
//! - **Expiry**: enforced by the server through `idle_session_timeout`, kept by every
//!   statement at the time left to the earliest deadline of the session's leases plus
//!   0.5 s (the statement sets it only when that changes: back-to-back takes of one ttl
//!   find it set already); a holder whose process stalls loses its locks then, one that
//!   dies loses them at once.
//! - **Waiting**: `pg_advisory_lock` bounded by `lock_timeout`: the server hands the key to
//!   the oldest waiter when it is released (first come, first served, and a
//!   `pg_try_advisory_lock` never jumps ahead of a waiter).
//! - **Fencing tokens**: from one sequence for all keys, `lockattr_fence`, in blocks. Each
//!   backend owns a block, a number it took with `nextval`, and hands out the tokens
//!   `block × 2²⁰ + n` (n = 0, 1, 2, …). The statement that takes a lock checks, right
//!   after the lock is granted, that the sequence's last value is still this backend's
//!   block (`pg_sequence_last_value`, a read with no WAL): then nobody has taken a later
//!   block, so the next token of this block is greater than every token any backend gave
//!   before, for any key. Otherwise the same statement takes a new block with `nextval`.
//!   So a single busy process pays for a durable `nextval` once per 2²⁰ locks, and
//!   processes taking turns pay it once per take, as before. A sequence never goes back,
//!   even across a server crash, so tokens grow per key. It is created on first use; to
//!   manage the schema yourself: `CREATE SEQUENCE IF NOT EXISTS lockattr_fence;` (plain,
//!   `CACHE 1`: a cached sequence hands out numbers out of order between sessions), and
//!   grant the backend's role `USAGE` (or `SELECT` and `UPDATE`) on it: the check reads
//!   it with `pg_sequence_last_value`, which needs `SELECT` or `USAGE`, and `nextval`
//!   needs `USAGE` or `UPDATE`. `open` checks these privileges and fails naming the
//!   `GRANT` to run, rather than every take failing later.
//! - **`synchronous_commit = off`** (for the backend's role or database) breaks the "never
//!   goes back" above: a server crash can lose the latest `nextval`, and the same block,
//!   2²⁰ tokens, is then handed out again. `open` reads `SHOW synchronous_commit` and
//!   logs a warning (`tracing::warn!`) when it is `off`; keep it `on` (or `local`).
//! - **Storage format** (`docs/design.md`, "Mixed versions"): recorded as the sequence's
//!   comment, `COMMENT ON SEQUENCE lockattr_fence IS 'lockattr format 1'`, when the backend
//!   creates it (or finds it without a comment and owns it). `open` refuses a sequence
//!   whose comment records a newer format, saying to upgrade; a comment of your own is
//!   left alone. Managing the schema yourself, add that comment too.
//! - **Timeouts** (`docs/design.md`, "Timeouts"): `connect_timeout_ms` (default 5000)
//!   bounds opening a session, `timeout_ms` (default 5000) every statement that does not
//!   wait in the server; a wait in the server's queue is bounded by its wait plus
//!   `timeout_ms`. A statement that runs out of time closes its session (its leases are
//!   lost), and the error names the parameter and its value.
//! - **`min_hold`** is [`Unsupported`](crate::LockError::Unsupported): a session lock ends
//!   with the process that holds it.

mod admin;
mod fences;
mod setup;

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{Connection, Row};

use super::{SessionSql, HEARTBEAT};
use crate::error::BoxError;
use crate::url::Secrets;
use fences::Fences;
pub(crate) use setup::open;

/// The 64-bit advisory lock key of a stored key: the first 8 bytes of its SHA-256, as a
/// big-endian `i64`. Stable across releases (tested against fixed vectors).
///
/// ```
/// use lockattr_runtime::backend::postgres::advisory_key;
/// assert_eq!(advisory_key("lockattr:flush:acme"), -6_704_832_240_751_651_074);
/// ```
pub fn advisory_key(stored: &str) -> i64 {
    let digest = Sha256::digest(stored.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(head)
}

/// Statements of the PostgreSQL backend.
pub(crate) struct Postgres {
    options: PgConnectOptions,
    /// The URL's password, scrubbed from every driver error (which may echo it).
    secrets: Secrets,
    fences: std::sync::Mutex<Fences>,
}

/// A session and the `idle_session_timeout` it was last given.
pub(crate) struct PgConn {
    conn: PgConnection,
    /// The session's `idle_session_timeout` in milliseconds as last set (`0`: none), or
    /// `None` when unknown: a new session (the server's default may be anything), or one
    /// whose statement setting it was abandoned or failed.
    idle_ms: Option<i32>,
}

/// An empty session keeps a limit set by its last lease, instead of a statement clearing
/// it, if the limit is at least this long: the keeper gives the session the server's
/// default ([`SessionSql::relax`]) a heartbeat after its last use, well before the server
/// would end it for idling.
const KEEP_WHEN_EMPTY_MS: i32 = 4 * HEARTBEAT.as_millis() as i32;

/// `idle_session_timeout` in milliseconds, as `set_config` takes it: `0` for none.
fn idle_ms(idle: Option<Duration>) -> i32 {
    match idle {
        None => 0,
        Some(d) => {
            let ms = d.as_micros().div_ceil(1000).max(1);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

/// Whether a statement must set the session's limit to `wanted` (milliseconds, `0`: none)
/// when the session has `current` (`None`: unknown).
///
/// The server ends a session idle for longer than its limit, counted from the end of the
/// last statement, so a limit that is already the wanted number of milliseconds needs no
/// setting: that is the case of back-to-back takes and releases of one key (the take
/// wants `ttl` + grace, the release of the session's last lease leaves it). Any other
/// change is sent, in the statement itself: a limit is never left longer than wanted (the
/// stall guarantee), nor shorter than wanted while the session holds leases (a live
/// holder's session could then be ended between two heartbeats). The one exception is a
/// session left without leases, which holds nothing a stall could keep: it keeps a limit
/// of at least [`KEEP_WHEN_EMPTY_MS`] until its keeper relaxes it.
fn must_set(current: Option<i32>, wanted: i32) -> bool {
    match current {
        None => true,
        Some(current) if current == wanted => false,
        Some(current) if wanted == 0 => current < KEEP_WHEN_EMPTY_MS,
        Some(_) => true,
    }
}

impl PgConn {
    /// Runs `plain`, or `setting` (the same statement that also sets the idle limit, to
    /// its last parameter) when the session's limit is not `idle` already. The limit is
    /// recorded as unknown while a setting statement is on its way, so that one abandoned
    /// half-way (or failed) is followed by a setting one.
    async fn fetch_one<'q>(
        &mut self,
        plain: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        setting: impl FnOnce(i32) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        idle: Option<Duration>,
        secrets: &Secrets,
    ) -> Result<PgRow, BoxError> {
        let wanted = idle_ms(idle);
        if !must_set(self.idle_ms, wanted) {
            return plain
                .fetch_one(&mut self.conn)
                .await
                .map_err(|e| secrets.error(e));
        }
        drop(plain);
        self.idle_ms = None;
        let row = setting(wanted)
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| secrets.error(e))?;
        self.idle_ms = Some(wanted);
        Ok(row)
    }
}

/// Takes `$1` and answers NULL (taken by another session), `0` (granted, and the block
/// `$2` is still the sequence's latest) or a new block (granted). `CASE` evaluates the
/// check only after the grant: a check made before it could miss a block taken by the
/// holder this take waits behind.
const TRY_LOCK: &str = "SELECT CASE WHEN pg_try_advisory_lock($1) THEN \
     CASE WHEN pg_sequence_last_value('lockattr_fence') = $2 THEN 0 \
     ELSE nextval('lockattr_fence') END END";
const TRY_LOCK_SETTING: &str = "SELECT CASE WHEN pg_try_advisory_lock($1) THEN \
     CASE WHEN pg_sequence_last_value('lockattr_fence') = $2 THEN 0 \
     ELSE nextval('lockattr_fence') END END, \
     set_config('idle_session_timeout', $3::text, false)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";
const UNLOCK_SETTING: &str =
    "SELECT pg_advisory_unlock($1), set_config('idle_session_timeout', $2::text, false)";
const UNLOCK_MANY: &str =
    "SELECT (SELECT count(*) FROM unnest($1::int8[]) AS u(k) WHERE pg_advisory_unlock(u.k))";
const UNLOCK_MANY_SETTING: &str =
    "SELECT (SELECT count(*) FROM unnest($1::int8[]) AS u(k) WHERE pg_advisory_unlock(u.k)), \
            set_config('idle_session_timeout', $2::text, false)";

impl SessionSql for Postgres {
    type Conn = PgConn;
    type Key = i64;

    const KIND: &'static str = "postgres";

    fn lock_key(&self, stored: &str) -> i64 {
        advisory_key(stored)
    }

    async fn connect(&self) -> Result<PgConn, BoxError> {
        let conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(|e| self.secrets.error(e))?;
        Ok(PgConn {
            conn,
            idle_ms: None,
        })
    }

    async fn try_lock(
        &self,
        conn: &mut PgConn,
        key: &i64,
        idle: Option<Duration>,
    ) -> Result<Option<u64>, BoxError> {
        let key = *key;
        let block = self.presented_block();
        let row = conn
            .fetch_one(
                sqlx::query(TRY_LOCK).bind(key).bind(block),
                |ms| sqlx::query(TRY_LOCK_SETTING).bind(key).bind(block).bind(ms),
                idle,
                &self.secrets,
            )
            .await?;
        let answer: Option<i64> = row.try_get(0).map_err(|e| self.secrets.error(e))?;
        match answer {
            Some(answer) => Ok(Some(self.fence(conn, answer).await?)),
            None => Ok(None),
        }
    }

    async fn lock_wait(
        &self,
        conn: &mut PgConn,
        key: &i64,
        wait: Duration,
        idle: Option<Duration>,
    ) -> Result<Option<u64>, BoxError> {
        let wait_ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        let wanted = idle_ms(idle);
        // Unknown until the answer: a timeout rolls the settings back.
        conn.idle_ms = None;
        // `lock_timeout` is set before the wait (the CTEs run in order), the fence is
        // taken after the grant; an error (the timeout) rolls the settings back.
        let got = sqlx::query(
            "WITH t AS MATERIALIZED (SELECT set_config('lock_timeout', $2::text, false)), \
                  l AS MATERIALIZED (SELECT pg_advisory_lock($1) FROM t) \
             SELECT CASE WHEN pg_sequence_last_value('lockattr_fence') = $4 THEN 0 \
                    ELSE nextval('lockattr_fence') END, \
                    set_config('idle_session_timeout', $3::text, false), \
                    set_config('lock_timeout', '0', false) FROM l",
        )
        .bind(*key)
        .bind(wait_ms)
        .bind(wanted)
        .bind(self.presented_block())
        .fetch_one(&mut conn.conn)
        .await;
        match got {
            Ok(row) => {
                conn.idle_ms = Some(wanted);
                let answer: i64 = row.try_get(0).map_err(|e| self.secrets.error(e))?;
                Ok(Some(self.fence(conn, answer).await?))
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => Ok(None),
            Err(e) => Err(self.secrets.error(e)),
        }
    }

    async fn unlock(
        &self,
        conn: &mut PgConn,
        keys: &[i64],
        idle: Option<Duration>,
    ) -> Result<usize, BoxError> {
        if let [key] = keys {
            let key = *key;
            let row = conn
                .fetch_one(
                    sqlx::query(UNLOCK).bind(key),
                    |ms| sqlx::query(UNLOCK_SETTING).bind(key).bind(ms),
                    idle,
                    &self.secrets,
                )
                .await?;
            let released: bool = row.try_get(0).map_err(|e| self.secrets.error(e))?;
            return Ok(usize::from(released));
        }
        let row = conn
            .fetch_one(
                sqlx::query(UNLOCK_MANY).bind(keys),
                |ms| sqlx::query(UNLOCK_MANY_SETTING).bind(keys).bind(ms),
                idle,
                &self.secrets,
            )
            .await?;
        let released: i64 = row.try_get(0).map_err(|e| self.secrets.error(e))?;
        Ok(released as usize)
    }

    async fn relax(&self, conn: &mut PgConn) -> Result<(), BoxError> {
        if conn.idle_ms == Some(0) {
            return Ok(());
        }
        conn.idle_ms = None;
        sqlx::query("SELECT set_config('idle_session_timeout', '0', false)")
            .execute(&mut conn.conn)
            .await
            .map_err(|e| self.secrets.error(e))?;
        conn.idle_ms = Some(0);
        Ok(())
    }

    async fn clock(&self, conn: &mut PgConn) -> Result<Duration, BoxError> {
        let micros: i64 = sqlx::query_scalar(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        )
        .fetch_one(&mut conn.conn)
        .await
        .map_err(|e| self.secrets.error(e))?;
        Ok(Duration::from_micros(micros.max(0) as u64))
    }

    async fn ping(&self, conn: &mut PgConn, idle: Option<Duration>) -> Result<(), BoxError> {
        let wanted = idle_ms(idle);
        conn.idle_ms = None;
        sqlx::query("SELECT set_config('idle_session_timeout', $1::text, false)")
            .bind(wanted)
            .execute(&mut conn.conn)
            .await
            .map_err(|e| self.secrets.error(e))?;
        conn.idle_ms = Some(wanted);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed vectors (checked with `printf %s KEY | sha256sum`): changing them moves every
    /// key of a released version to another advisory lock.
    #[test]
    fn advisory_keys_are_stable() {
        assert_eq!(advisory_key("lockattr:flush:acme"), VECTOR_FLUSH_ACME);
        assert_eq!(advisory_key(""), VECTOR_EMPTY);
        assert_eq!(advisory_key("lockattr:import:2024-05"), VECTOR_IMPORT);
    }

    /// `e3b0c44298fc1c14…`, the SHA-256 of nothing.
    const VECTOR_EMPTY: i64 = i64::from_be_bytes([0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14]);
    /// `a2f3a699cb6956fe…`
    const VECTOR_FLUSH_ACME: i64 = -6_704_832_240_751_651_074;
    /// `1e513c1a4a83e047…`
    const VECTOR_IMPORT: i64 = 2_184_593_377_868_374_087;

    #[test]
    fn idle_limits_are_whole_milliseconds() {
        assert_eq!(idle_ms(None), 0);
        assert_eq!(idle_ms(Some(Duration::from_micros(10))), 1);
        assert_eq!(idle_ms(Some(Duration::from_millis(2500))), 2500);
        assert_eq!(idle_ms(Some(Duration::from_secs(86_400 * 40))), i32::MAX);
    }

    #[test]
    fn the_idle_limit_is_sent_only_when_it_changes() {
        // Unknown: always sent.
        assert!(must_set(None, 30_500));
        assert!(must_set(None, 0));
        // Back-to-back takes of one ttl: the take finds what the last take set.
        assert!(!must_set(Some(30_500), 30_500));
        assert!(!must_set(Some(0), 0));
        // Never left longer than wanted, nor shorter while leases are held.
        assert!(must_set(Some(30_500), 30_499));
        assert!(must_set(Some(1_000), 30_500));
        assert!(must_set(Some(0), 30_500));
        // An empty session keeps a long limit until its keeper relaxes it, not a short one.
        assert!(!must_set(Some(30_500), 0));
        assert!(!must_set(Some(KEEP_WHEN_EMPTY_MS), 0));
        assert!(must_set(Some(KEEP_WHEN_EMPTY_MS - 1), 0));
    }

    /// The heartbeat race: a heartbeat that reaches the session between a release's
    /// start (its lease marked on the books) and its unlock statement keeps the idle limit
    /// that lease needs; before, it counted the session's other leases only (here none) and
    /// lifted the limit (`0`), so a stall in that window kept the key held for nobody. The
    /// window is held open deterministically by calling the steps in order, on the real
    /// server (`LOCKATTR_TEST_POSTGRES_URL`, else the local one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_before_a_release_keeps_the_idle_limit() {
        use crate::backend::session::keeper::tend;
        use crate::backend::{Acquire, AttemptClock, Backend};
        use crate::token::OwnerToken;
        use crate::url::BackendUrl;
        use std::time::Instant;

        let url = std::env::var("LOCKATTR_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let url = BackendUrl::parse(&url).unwrap();
        let backend = open(&url).await.expect("PostgreSQL answers");
        let key = format!("lockattr:heartbeat-race-{}", std::process::id());
        let owner = OwnerToken::random().unwrap();
        let clock = AttemptClock::default();
        let take = Acquire {
            key: &key,
            owner: &owner,
            ttl: Duration::from_secs(30),
            attempt: &clock,
        };
        backend
            .try_acquire(take)
            .await
            .unwrap()
            .expect("a free key");
        let pool = &backend.pool;
        // The release's first step, then a heartbeat that is due.
        let (session, _) = pool.start_release(&key, &owner).expect("held");
        if let Some(pooled) = pool.books().sessions.get_mut(&session.id) {
            pooled.last_used = Instant::now() - 2 * HEARTBEAT;
        }
        tend(pool, &session).await;
        let limit: String = {
            let mut conn = session.conn.lock().await;
            let conn = &mut conn.as_mut().expect("the session is open").conn.conn;
            sqlx::query_scalar("SHOW idle_session_timeout")
                .fetch_one(conn)
                .await
                .unwrap()
        };
        assert_ne!(
            limit, "0",
            "the heartbeat lifted the idle limit of a held key"
        );
        // The release goes on as usual.
        assert!(backend.release(&key, &owner, Duration::ZERO).await.is_ok());
    }
}
