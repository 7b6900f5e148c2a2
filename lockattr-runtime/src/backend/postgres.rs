//! `postgres://`: PostgreSQL session-level advisory locks (PostgreSQL 14 or later).
//!
//! ```text
//! postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?prefix=…&sslmode=…&application_name=…]
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
//!   of its own while it waits. Session locks need a real session: do not point this URL
//!   at PgBouncer in transaction pooling mode.
//! - **Expiry**: enforced by the server through `idle_session_timeout`, set by every
//!   statement to the earliest deadline of the session's leases plus 0.5 s; a holder
//!   whose process stalls loses its locks then, one that dies loses them at once.
//! - **Waiting**: `pg_advisory_lock` bounded by `lock_timeout`: the server hands the key to
//!   the oldest waiter when it is released (first come, first served, and a
//!   `pg_try_advisory_lock` never jumps ahead of a waiter).
//! - **Fencing tokens**: `nextval('lockattr_fence')`, one sequence for all keys, taken in
//!   the statement that takes the lock. A sequence never goes back, even across a server
//!   crash, so tokens grow per key. It is created on first use; to manage the schema
//!   yourself: `CREATE SEQUENCE IF NOT EXISTS lockattr_fence;` (plain, `CACHE 1`).
//! - **`min_hold`** is [`Unsupported`](crate::LockError::Unsupported): a session lock ends
//!   with the process that holds it.

use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use super::session::{client_url, Dialect, SessionBackend};
use crate::error::{BoxError, LockError};
use crate::url::BackendUrl;

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
}

/// `idle_session_timeout` as the text `set_config` takes: milliseconds, `0` for none.
fn idle_ms(idle: Option<Duration>) -> String {
    match idle {
        None => "0".to_owned(),
        Some(d) => {
            let ms = d.as_micros().div_ceil(1000).max(1);
            ms.min(i32::MAX as u128).to_string()
        }
    }
}

fn boxed(e: sqlx::Error) -> BoxError {
    Box::new(e)
}

impl Dialect for Postgres {
    type Conn = PgConnection;
    type Key = i64;

    const KIND: &'static str = "postgres";

    fn lock_key(&self, stored: &str) -> i64 {
        advisory_key(stored)
    }

    async fn connect(&self) -> Result<PgConnection, BoxError> {
        PgConnection::connect_with(&self.options)
            .await
            .map_err(boxed)
    }

    async fn try_lock(
        &self,
        conn: &mut PgConnection,
        key: &i64,
        idle: Option<Duration>,
    ) -> Result<Option<u64>, BoxError> {
        let row = sqlx::query(
            "SELECT CASE WHEN pg_try_advisory_lock($1) THEN nextval('lockattr_fence') END, \
             set_config('idle_session_timeout', $2, false)",
        )
        .bind(*key)
        .bind(idle_ms(idle))
        .fetch_one(&mut *conn)
        .await
        .map_err(boxed)?;
        let fence: Option<i64> = row.try_get(0).map_err(boxed)?;
        Ok(fence.map(|f| f as u64))
    }

    async fn lock_wait(
        &self,
        conn: &mut PgConnection,
        key: &i64,
        wait: Duration,
        idle: Option<Duration>,
    ) -> Result<Option<u64>, BoxError> {
        let wait_ms = wait.as_millis().clamp(1, i32::MAX as u128).to_string();
        // `lock_timeout` is set before the wait (the CTEs run in order), the fence is
        // taken after the grant; an error (the timeout) rolls the settings back.
        let got = sqlx::query(
            "WITH t AS MATERIALIZED (SELECT set_config('lock_timeout', $2, false)), \
                  l AS MATERIALIZED (SELECT pg_advisory_lock($1) FROM t) \
             SELECT nextval('lockattr_fence'), set_config('idle_session_timeout', $3, false), \
                    set_config('lock_timeout', '0', false) FROM l",
        )
        .bind(*key)
        .bind(wait_ms)
        .bind(idle_ms(idle))
        .fetch_one(&mut *conn)
        .await;
        match got {
            Ok(row) => {
                let fence: i64 = row.try_get(0).map_err(boxed)?;
                Ok(Some(fence as u64))
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => Ok(None),
            Err(e) => Err(boxed(e)),
        }
    }

    async fn unlock(
        &self,
        conn: &mut PgConnection,
        keys: &[i64],
        idle: Option<Duration>,
    ) -> Result<usize, BoxError> {
        if let [key] = keys {
            let row = sqlx::query(
                "SELECT pg_advisory_unlock($1), set_config('idle_session_timeout', $2, false)",
            )
            .bind(*key)
            .bind(idle_ms(idle))
            .fetch_one(&mut *conn)
            .await
            .map_err(boxed)?;
            let released: bool = row.try_get(0).map_err(boxed)?;
            return Ok(usize::from(released));
        }
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM unnest($1::int8[]) AS u(k) WHERE pg_advisory_unlock(u.k)), \
                    set_config('idle_session_timeout', $2, false)",
        )
        .bind(keys)
        .bind(idle_ms(idle))
        .fetch_one(&mut *conn)
        .await
        .map_err(boxed)?;
        let released: i64 = row.try_get(0).map_err(boxed)?;
        Ok(released as usize)
    }

    async fn ping(&self, conn: &mut PgConnection, idle: Option<Duration>) -> Result<(), BoxError> {
        sqlx::query("SELECT set_config('idle_session_timeout', $1, false)")
            .bind(idle_ms(idle))
            .execute(&mut *conn)
            .await
            .map_err(boxed)?;
        Ok(())
    }
}

/// Creates the fencing sequence if it is missing (several processes may race to).
async fn ensure_sequence(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let exists = "SELECT to_regclass('lockattr_fence') IS NOT NULL";
    if sqlx::query_scalar::<_, bool>(exists)
        .fetch_one(&mut *conn)
        .await?
    {
        return Ok(());
    }
    match sqlx::query("CREATE SEQUENCE IF NOT EXISTS lockattr_fence")
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(()),
        // Created by another process at the same moment.
        Err(e) => match sqlx::query_scalar::<_, bool>(exists)
            .fetch_one(&mut *conn)
            .await?
        {
            true => Ok(()),
            false => Err(e),
        },
    }
}

/// Opens `postgres://…`: checks the URL, connects once (an unreachable server is an
/// error here) and creates the fencing sequence if missing.
pub(crate) async fn open(url: &BackendUrl) -> Result<SessionBackend<Postgres>, LockError> {
    let client = client_url(url, "postgres", crate::backend::POSTGRES_CLIENT_PARAMS)?;
    let failed = |e: BoxError| LockError::backend(&url.redacted, None, e);
    let mut options = PgConnectOptions::from_str(&client)
        .map_err(|e| url.invalid(format!("not a PostgreSQL URL: {e}")))?
        .disable_statement_logging();
    if !url.params.contains_key("application_name") {
        options = options.application_name("lockattr");
    }
    let dialect = Postgres { options };
    let mut first = dialect.connect().await.map_err(failed)?;
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut first)
        .await
        .map_err(|e| failed(boxed(e)))?;
    if version < 140_000 {
        return Err(failed(
            format!(
                "PostgreSQL {version} is too old: session locks need `idle_session_timeout` \
                 (PostgreSQL 14 or later) for the server to end a stalled holder's locks"
            )
            .into(),
        ));
    }
    ensure_sequence(&mut first)
        .await
        .map_err(|e| failed(boxed(e)))?;
    Ok(SessionBackend::new(dialect, first, usize::MAX))
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
        assert_eq!(idle_ms(None), "0");
        assert_eq!(idle_ms(Some(Duration::from_micros(10))), "1");
        assert_eq!(idle_ms(Some(Duration::from_millis(2500))), "2500");
        assert_eq!(
            idle_ms(Some(Duration::from_secs(86_400 * 40))),
            i32::MAX.to_string()
        );
    }
}
