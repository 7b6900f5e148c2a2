//! What a lease-table URL asks for: the one place that reads this backend's URL
//! parameters, and the connection pool built from them.

use std::time::Duration;

use super::connection::{ServerPool, StashedPool};
use super::sql::Server;
use super::DEFAULT_TABLE;
use crate::error::LockError;
use crate::url::BackendUrl;

/// The longest `table=` name: the index name adds 13 bytes, and PostgreSQL stops at 63.
const MAX_TABLE_LEN: usize = 48;

/// lockattr's own query parameters on a server URL, never passed to sqlx.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const OWN_PARAMS: &[&str] = &[
    "prefix",
    "mode",
    "table",
    "connect_timeout_ms",
    "timeout_ms",
];

/// `connect_timeout_ms` unless the URL says otherwise.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `timeout_ms` unless the URL says otherwise.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The query parameters of a `sqlite://` URL.
#[cfg(feature = "sqlite")]
const SQLITE_PARAMS: &[&str] = &["prefix", "table", "mode", "busy_timeout"];

/// A lease table's options, read from its URL.
pub(super) struct TableOptions {
    /// The table's name (checked: an identifier).
    pub table: String,
    /// The server and how to connect to it.
    pub connect: ConnectOptions,
    /// The database, named so that handles on one database in this process share release
    /// wake-ups.
    pub store: String,
    /// How long connecting and each statement may take.
    pub timeouts: Timeouts,
}

/// How long a lease table on a server waits for it (`None` on SQLite, whose statements
/// wait at most `busy_timeout` for other writers).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Timeouts {
    /// `connect_timeout_ms`: the longest wait for a connection from the pool, a new one
    /// included.
    pub connect: Option<Duration>,
    /// `timeout_ms`: the longest wait for the answer to one statement.
    pub statement: Option<Duration>,
}

/// How to connect to the server a lease table lives on.
pub(super) enum ConnectOptions {
    #[cfg(feature = "sqlite")]
    Sqlite {
        options: sqlx::sqlite::SqliteConnectOptions,
        /// `busy_timeout`: how long a statement waits for another process's write.
        busy: Duration,
    },
    #[cfg(feature = "postgres")]
    Postgres(sqlx::postgres::PgConnectOptions),
    #[cfg(feature = "mysql")]
    MySql(sqlx::mysql::MySqlConnectOptions),
}

impl TableOptions {
    /// Reads the options of a lease-table URL (see [`is_table_url`](super::is_table_url)).
    pub(super) fn from_url(url: &BackendUrl) -> Result<Self, LockError> {
        let table = match url.params.get("table") {
            Some(t) => {
                check_table_name(t).map_err(|reason| url.invalid(reason))?;
                t.clone()
            }
            None => DEFAULT_TABLE.to_owned(),
        };
        #[allow(unused_variables)]
        let (connect, store, timeouts) = match url.scheme.as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => sqlite(url)?,
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => server(
                url,
                "postgres",
                crate::backend::POSTGRES_CLIENT_PARAMS,
                ConnectOptions::Postgres,
            )?,
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => server(
                url,
                "mysql",
                crate::backend::MYSQL_CLIENT_PARAMS,
                ConnectOptions::MySql,
            )?,
            other => {
                return Err(url.invalid(format!(
                "this build of lockattr has no lease table on `{other}` (enable its cargo feature)"
            )))
            }
        };
        #[allow(unreachable_code)]
        Ok(TableOptions {
            table,
            connect,
            store,
            timeouts,
        })
    }

    /// The server the table lives on.
    pub(super) fn server(&self) -> Server {
        match &self.connect {
            #[cfg(feature = "sqlite")]
            ConnectOptions::Sqlite { .. } => Server::Sqlite,
            #[cfg(feature = "postgres")]
            ConnectOptions::Postgres(_) => Server::Postgres,
            #[cfg(feature = "mysql")]
            ConnectOptions::MySql(_) => Server::MySql,
        }
    }

    /// A pool that connects on first use.
    pub(super) fn pool(&self) -> ServerPool {
        match &self.connect {
            #[cfg(feature = "sqlite")]
            ConnectOptions::Sqlite { options, busy } => ServerPool::Sqlite(StashedPool::new(
                sqlx::pool::PoolOptions::new()
                    .max_connections(4)
                    .min_connections(0)
                    .acquire_timeout(*busy + Duration::from_secs(1))
                    .idle_timeout(Duration::from_secs(60))
                    .test_before_acquire(false)
                    .connect_lazy_with(options.clone()),
            )),
            #[cfg(feature = "postgres")]
            ConnectOptions::Postgres(options) => ServerPool::Postgres(StashedPool::new(
                server_pool_options(self.timeouts).connect_lazy_with(options.clone()),
            )),
            #[cfg(feature = "mysql")]
            ConnectOptions::MySql(options) => ServerPool::MySql(StashedPool::new(
                server_pool_options(self.timeouts).connect_lazy_with(options.clone()),
            )),
        }
    }
}

/// Checks a `table=` value: an identifier that every server takes unquoted.
pub(super) fn check_table_name(t: &str) -> Result<(), String> {
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

/// The pool of a lease table on a server: a connection, new or pooled, within
/// `connect_timeout_ms`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn server_pool_options<DB: sqlx::Database>(timeouts: Timeouts) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(super::connection::MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
        .idle_timeout(Duration::from_secs(60))
        // A dead connection is noticed by its first statement, which is retried on a
        // fresh one: no ping before every use.
        .test_before_acquire(false)
}

/// A server's options: its driver's URL (`scheme://…` with the parameters that driver
/// reads, `client_params`), parsed by the driver into `O` and kept as `variant`, and the
/// timeouts.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn server<O>(
    url: &BackendUrl,
    scheme: &str,
    client_params: &[&str],
    variant: fn(O) -> ConnectOptions,
) -> Result<(ConnectOptions, String, Timeouts), LockError>
where
    O: std::str::FromStr<Err = sqlx::Error>,
{
    let driver = url.client_url(scheme, OWN_PARAMS, client_params)?;
    // The driver's parser may echo the URL: its message goes through the URL's secrets.
    let options = driver
        .parse::<O>()
        .map_err(|e| url.invalid(url.secrets().scrub(&e.to_string())))?;
    let timeouts = Timeouts {
        connect: Some(url.millis("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?),
        statement: Some(url.millis("timeout_ms", DEFAULT_STATEMENT_TIMEOUT)?),
    };
    Ok((variant(options), driver, timeouts))
}

#[cfg(feature = "sqlite")]
fn sqlite(url: &BackendUrl) -> Result<(ConnectOptions, String, Timeouts), LockError> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    url.check_params(SQLITE_PARAMS)?;
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
        ConnectOptions::Sqlite { options, busy },
        format!("sqlite:{store}"),
        Timeouts::default(),
    ))
}

/// `host:pid` of this process, for the `holder` column.
pub(super) fn holder() -> String {
    let holder = format!(
        "{}:{}",
        crate::backend::admin::host_name(),
        std::process::id()
    );
    match holder.char_indices().nth(200) {
        Some((end, _)) => holder[..end].to_owned(),
        None => holder,
    }
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
}
