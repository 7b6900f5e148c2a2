//! Which server a transaction talks to, and what its errors mean for a lock.

use std::time::Duration;

/// What to do about a row another transaction has locked (the attribute's `on_conflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SKIP LOCKED`: leave it out of the result.
    Skip,
    /// `NOWAIT`: fail with `LockError::Conflict`.
    Error,
    /// Wait up to this long (the server's lock timeout), then `LockError::Timeout`.
    Wait(Duration),
}

/// The kinds of server `lockattr::rows` tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// PostgreSQL.
    Postgres,
    /// MariaDB.
    MariaDb,
    /// MySQL (Oracle's).
    MySql,
    /// SQLite (no row locks).
    Sqlite,
}

/// The server of one transaction, as detected when a lock is asked for.
#[derive(Debug, Clone)]
pub struct Server {
    /// The kind of server.
    pub flavor: Flavor,
    /// Its version, `(major, minor, patch)`.
    pub version: (u32, u32, u32),
    /// What messages call it: `postgres 16.4`, `mariadb 10.11.6`.
    pub name: String,
    /// MySQL / MariaDB: the session's `innodb_lock_wait_timeout`, read with the version.
    pub lock_wait_timeout: Option<i64>,
}

#[cfg(any(feature = "mysql", feature = "sqlite"))]
/// The first three numbers of a version string (`10.11.6-MariaDB-0+deb12u1` → `(10, 11, 6)`).
pub(crate) fn parse_version(text: &str) -> (u32, u32, u32) {
    let mut numbers = text
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|part| !part.is_empty())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (
        numbers.next().unwrap_or(0),
        numbers.next().unwrap_or(0),
        numbers.next().unwrap_or(0),
    )
}

impl Server {
    /// A MySQL or MariaDB server from its `VERSION()`.
    #[cfg(feature = "mysql")]
    pub(crate) fn mysql(version: &str, lock_wait_timeout: Option<i64>) -> Server {
        // A MariaDB handshake says `5.5.5-10.11.6-MariaDB`; `VERSION()` does not, but be safe.
        let text = version.strip_prefix("5.5.5-").unwrap_or(version);
        let flavor = if text.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        };
        let (major, minor, patch) = parse_version(text);
        let word = if flavor == Flavor::MariaDb {
            "mariadb"
        } else {
            "mysql"
        };
        Server {
            flavor,
            version: (major, minor, patch),
            name: format!("{word} {major}.{minor}.{patch}"),
            lock_wait_timeout,
        }
    }

    #[cfg(feature = "postgres")]
    /// A PostgreSQL server from its `server_version_num` (`160004` → 16.4).
    pub(crate) fn postgres(num: u32) -> Server {
        let (major, minor, patch) = if num >= 100_000 {
            (num / 10_000, num % 10_000, 0)
        } else {
            (num / 10_000, num / 100 % 100, num % 100)
        };
        let name = if major >= 10 {
            format!("postgres {major}.{minor}")
        } else {
            format!("postgres {major}.{minor}.{patch}")
        };
        Server {
            flavor: Flavor::Postgres,
            version: (major, minor, patch),
            name,
            lock_wait_timeout: None,
        }
    }
}

/// What a failed locking statement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Another transaction holds a row (`NOWAIT` refused): `LockError::Conflict`.
    Conflict,
    /// The wait ran out: `LockError::Timeout`.
    Timeout,
    /// Anything else: `LockError::Backend`.
    Other,
}

#[cfg(feature = "postgres")]
/// PostgreSQL: `NOWAIT` and `lock_timeout` both fail with SQLSTATE 55P03
/// (`lock_not_available`); the policy asked tells them apart.
pub(crate) fn postgres_failure(sqlstate: &str, policy: &Policy) -> Failure {
    match (sqlstate, policy) {
        ("55P03", Policy::Error) => Failure::Conflict,
        ("55P03", Policy::Wait(_)) => Failure::Timeout,
        _ => Failure::Other,
    }
}

#[cfg(feature = "mysql")]
/// MySQL / MariaDB: error 1205 (`ER_LOCK_WAIT_TIMEOUT`) is MariaDB's `NOWAIT` and both
/// servers' lock wait timeout; 3572 (`ER_LOCK_NOWAIT`) is MySQL 8's `NOWAIT`.
pub(crate) fn mysql_failure(number: u16, policy: &Policy) -> Failure {
    match (number, policy) {
        (1205 | 3572, Policy::Error) => Failure::Conflict,
        (1205, Policy::Wait(_)) => Failure::Timeout,
        _ => Failure::Other,
    }
}

#[cfg(all(test, any(feature = "postgres", feature = "mysql")))]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "mysql")]
    fn mysql_versions_and_names() {
        let maria = Server::mysql("10.11.6-MariaDB-0+deb12u1", Some(50));
        assert_eq!(
            (maria.flavor, maria.version),
            (Flavor::MariaDb, (10, 11, 6))
        );
        assert_eq!(maria.name, "mariadb 10.11.6");
        let handshake = Server::mysql("5.5.5-10.6.18-MariaDB", None);
        assert_eq!(
            (handshake.flavor, handshake.version),
            (Flavor::MariaDb, (10, 6, 18))
        );
        let mysql = Server::mysql("8.0.36", None);
        assert_eq!(
            (mysql.flavor, mysql.name.as_str()),
            (Flavor::MySql, "mysql 8.0.36")
        );
    }

    #[test]
    #[cfg(feature = "postgres")]
    fn postgres_versions_and_names() {
        assert_eq!(Server::postgres(160_004).name, "postgres 16.4");
        assert_eq!(Server::postgres(90_624).version, (9, 6, 24));
    }

    #[test]
    #[cfg(feature = "postgres")]
    fn postgres_tells_conflict_from_timeout_by_the_policy() {
        let wait = Policy::Wait(Duration::from_secs(1));
        assert_eq!(postgres_failure("55P03", &Policy::Error), Failure::Conflict);
        assert_eq!(postgres_failure("55P03", &wait), Failure::Timeout);
        assert_eq!(postgres_failure("55P03", &Policy::Skip), Failure::Other);
        assert_eq!(postgres_failure("40P01", &wait), Failure::Other);
    }

    #[test]
    #[cfg(feature = "mysql")]
    fn mysql_8_and_mariadb_error_numbers() {
        let wait = Policy::Wait(Duration::from_secs(1));
        // MySQL 8's NOWAIT (not run here: no MySQL 8 server on this machine).
        assert_eq!(mysql_failure(3572, &Policy::Error), Failure::Conflict);
        // MariaDB's NOWAIT, and both servers' lock wait timeout.
        assert_eq!(mysql_failure(1205, &Policy::Error), Failure::Conflict);
        assert_eq!(mysql_failure(1205, &wait), Failure::Timeout);
        assert_eq!(mysql_failure(3572, &wait), Failure::Other);
        assert_eq!(mysql_failure(1213, &wait), Failure::Other); // a deadlock
        assert_eq!(mysql_failure(1205, &Policy::Skip), Failure::Other);
    }
}
