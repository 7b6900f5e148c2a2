//! The PostgreSQL statements of the session backends' [`Admin`](crate::backend::admin::Admin)
//! (see `session/admin.rs`).
//!
//! Held locks are read from `pg_locks` (`locktype = 'advisory'`, `objsubid = 1`, granted,
//! in this database) joined with `pg_stat_activity` for the session. A stored key is
//! known there only by its [`advisory_key`], a hash: `held` shows each lock as
//! `pg_advisory(N)` and cannot filter by prefix (every single-`bigint` advisory lock of
//! the database is listed, lockattr's or not), while `inspect KEY` and a forced release
//! hash the key and find its lock exactly. The holder's host and pid come from the
//! session's `application_name`, `lockattr <pid>@<host>`, which the backend sets once when
//! it opens a session (unless the URL sets `application_name`): nothing is added to
//! taking a lock. A forced release is `pg_terminate_backend` of the holding session.

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{advisory_key, PgConn, Postgres};
use crate::backend::admin::{Fence, HeldLock, Owner};
use crate::backend::session::admin::AdminSql;
use crate::error::BoxError;

/// The `application_name` of the backend's sessions when the URL sets none, at most 63
/// bytes (PostgreSQL keeps no more): the pid comes first, so a long host name is what
/// gets cut.
pub(super) fn application_name() -> String {
    let mut name = format!(
        "lockattr {}@{}",
        std::process::id(),
        crate::backend::admin::host_name()
    );
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// The owner an `application_name` and a client address tell.
fn owner(application_name: Option<String>, client: Option<String>, session: i32) -> Owner {
    let mut owner = Owner {
        host: client,
        session: u64::try_from(session).ok(),
        ..Owner::default()
    };
    let ours = application_name
        .as_deref()
        .and_then(|n| n.strip_prefix("lockattr "))
        .and_then(|n| n.split_once('@'));
    if let Some((pid, host)) = ours {
        owner.pid = pid.parse().ok();
        owner.host = Some(host.to_owned());
    }
    owner
}

/// How long a forced release waits for the holding session to end (within the URL's
/// `timeout_ms`, 5000 by default).
const END_WAIT_MS: i64 = 2000;

/// The granted single-`bigint` advisory locks of this database: the 64-bit key, the
/// session's `application_name`, client address and backend pid.
const HELD: &str =
    "SELECT (l.classid::bigint << 32) | l.objid::bigint AS advisory_key, a.application_name, \
            host(a.client_addr), l.pid \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted \
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

impl Postgres {
    fn lock_of(&self, row: &PgRow, stored: Option<&str>) -> Result<HeldLock, BoxError> {
        let get = |e: sqlx::Error| self.secrets.error(e);
        let key: i64 = row.try_get(0).map_err(get)?;
        let stored = stored.map_or_else(|| format!("pg_advisory({key})"), str::to_owned);
        let owner = owner(
            row.try_get(1).map_err(get)?,
            row.try_get(2).map_err(get)?,
            row.try_get(3).map_err(get)?,
        );
        Ok(HeldLock::new(stored, Fence::Unknown, None).with_owner(Some(owner)))
    }
}

impl AdminSql for Postgres {
    async fn held(&self, conn: &mut PgConn, _prefix: &str) -> Result<Vec<HeldLock>, BoxError> {
        let rows = sqlx::query(HELD)
            .fetch_all(&mut conn.conn)
            .await
            .map_err(|e| self.secrets.error(e))?;
        rows.iter().map(|row| self.lock_of(row, None)).collect()
    }

    async fn inspect(&self, conn: &mut PgConn, stored: &str) -> Result<Option<HeldLock>, BoxError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM ({HELD}) h WHERE h.advisory_key = $1 LIMIT 1"
        )))
        .bind(advisory_key(stored))
        .fetch_optional(&mut conn.conn)
        .await
        .map_err(|e| self.secrets.error(e))?;
        row.map(|row| self.lock_of(&row, Some(stored))).transpose()
    }

    /// Two statements: the sessions holding the key, then `pg_terminate_backend` of each
    /// (one statement could not be trusted to evaluate the key's condition first), waiting
    /// up to [`END_WAIT_MS`] for the session to end, so that the key is free on return.
    async fn force_release(&self, conn: &mut PgConn, stored: &str) -> Result<bool, BoxError> {
        let scrub = |e| self.secrets.error(e);
        let pids: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT h.pid FROM ({HELD}) h WHERE h.advisory_key = $1"
        )))
        .bind(advisory_key(stored))
        .fetch_all(&mut conn.conn)
        .await
        .map_err(scrub)?;
        let mut ended = false;
        for pid in pids {
            ended |= sqlx::query_scalar::<_, bool>("SELECT pg_terminate_backend($1, $2)")
                .bind(pid)
                .bind(END_WAIT_MS)
                .fetch_one(&mut conn.conn)
                .await
                .map_err(scrub)?;
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_application_name_carries_pid_and_host_and_fits() {
        let name = application_name();
        assert!(name.len() <= 63, "{name}");
        let owner = owner(Some(name), Some("10.0.0.1".into()), 77);
        assert_eq!(owner.pid, Some(std::process::id()));
        assert_eq!(owner.session, Some(77));
        assert_ne!(owner.host.as_deref(), Some("10.0.0.1"));
        // Another program's session: its client address.
        let other = super::owner(Some("psql".into()), Some("10.0.0.1".into()), 5);
        assert_eq!((other.host.as_deref(), other.pid), (Some("10.0.0.1"), None));
    }
}
