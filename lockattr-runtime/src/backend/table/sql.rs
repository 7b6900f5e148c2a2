//! The lease table's SQL: every statement, written once as a template and turned into each
//! server's syntax, with the order its parameters are bound in.

use std::sync::Arc;

use crate::backend::FORMAT;

/// The database server a lease table lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Server {
    #[cfg(feature = "sqlite")]
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "mysql")]
    MySql,
}

/// One parameter of a statement, written `:name` in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    /// `:name`, the stored key.
    Name,
    /// `:token`, the owner token in hex.
    Token,
    /// `:ms`, a duration in milliseconds (ttl, what remains of `min_hold`, a waiter's lease).
    Ms,
    /// `:ticket`, a waiter's place in the queue.
    Ticket,
    /// `:holder`, `host:pid` of this process.
    Holder,
}

/// A statement in one server's syntax, with the order its parameters are bound in.
pub(super) struct Statement {
    pub sql: Arc<str>,
    pub params: Vec<Param>,
}

/// The values a statement's parameters are bound to.
pub(super) struct Bindings<'a> {
    pub name: &'a str,
    pub token: &'a str,
    pub ms: i64,
    pub ticket: i64,
    pub holder: &'a str,
}

/// Every statement of one lease table on one server.
pub(super) struct TableStatements {
    /// `CREATE TABLE IF NOT EXISTS` and `CREATE INDEX IF NOT EXISTS`, in order.
    pub create: Vec<String>,
    /// The greatest storage format recorded in `{table}_format` (0 when none is).
    pub recorded_format: Statement,
    /// Records this build's [`FORMAT`] in `{table}_format` (nothing if it is there).
    pub record_format: Statement,
    pub acquire: Statement,
    /// MySQL: the fence of the row the caller holds.
    pub owned_fence: Statement,
    pub release: Statement,
    pub extend: Statement,
    pub enqueue: Statement,
    pub refresh: Statement,
    pub leave: Statement,
    /// The database's clock (milliseconds since the Unix epoch).
    pub clock: Statement,
}

impl Server {
    /// The database's clock in milliseconds since the Unix epoch.
    fn now(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Server::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            #[cfg(feature = "postgres")]
            Server::Postgres => "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)",
            #[cfg(feature = "mysql")]
            Server::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
        }
    }

    /// The smaller of two values.
    fn least(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Server::Sqlite => "MIN",
            #[allow(unreachable_patterns)]
            _ => "LEAST",
        }
    }

    /// The backend's kind, as in its URL scheme.
    pub(super) fn kind(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Server::Sqlite => "sqlite",
            #[cfg(feature = "postgres")]
            Server::Postgres => "postgres",
            #[cfg(feature = "mysql")]
            Server::MySql => "mysql",
        }
    }

    /// A SQLite file: its clock is this machine's.
    pub(super) fn is_sqlite(self) -> bool {
        #[cfg(feature = "sqlite")]
        if self == Server::Sqlite {
            return true;
        }
        false
    }

    /// MySQL has neither `RETURNING` nor numbered parameters.
    pub(super) fn is_mysql(self) -> bool {
        #[cfg(feature = "mysql")]
        if self == Server::MySql {
            return true;
        }
        false
    }

    /// Turns a template into this server's SQL: `{t}`, `{w}`, `{now}`, `{least}` are
    /// replaced, and `:name`-style parameters become `?N` (SQLite), `$N` (PostgreSQL) or
    /// `?` (MySQL, bound once per occurrence).
    pub(super) fn statement(self, table: &str, template: &str) -> Statement {
        let text = template
            .replace("{w}", &format!("{table}_waiters"))
            .replace("{t}", table)
            .replace("{now}", self.now())
            .replace("{least}", self.least());
        let mut sql = String::with_capacity(text.len());
        let mut params: Vec<Param> = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(':') {
            sql.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let len = after.bytes().take_while(|b| b.is_ascii_lowercase()).count();
            let param = match &after[..len] {
                "name" => Param::Name,
                "token" => Param::Token,
                "ms" => Param::Ms,
                "ticket" => Param::Ticket,
                "holder" => Param::Holder,
                other => panic!("unknown statement parameter `:{other}`"),
            };
            rest = &after[len..];
            if self.is_mysql() {
                params.push(param);
                sql.push('?');
                continue;
            }
            let n = match params.iter().position(|p| *p == param) {
                Some(i) => i + 1,
                None => {
                    params.push(param);
                    params.len()
                }
            };
            #[cfg(feature = "postgres")]
            if self == Server::Postgres {
                sql.push_str(&format!("${n}"));
                continue;
            }
            sql.push_str(&format!("?{n}"));
        }
        sql.push_str(rest);
        Statement {
            sql: Arc::from(sql),
            params,
        }
    }

    /// Every statement of the lease table `table` (a checked identifier).
    pub(super) fn statements(self, table: &str) -> TableStatements {
        let create = match self {
            #[cfg(feature = "sqlite")]
            Server::Sqlite => vec![
                format!("CREATE TABLE IF NOT EXISTS {table} (name TEXT NOT NULL PRIMARY KEY, token TEXT, fence INTEGER NOT NULL, lock_until INTEGER NOT NULL, holder TEXT NOT NULL)"),
                format!("CREATE TABLE IF NOT EXISTS {table}_waiters (ticket INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, alive_until INTEGER NOT NULL)"),
                format!("CREATE INDEX IF NOT EXISTS {table}_waiters_name ON {table}_waiters (name, ticket)"),
                format!("CREATE TABLE IF NOT EXISTS {table}_format (format INTEGER NOT NULL PRIMARY KEY)"),
            ],
            #[cfg(feature = "postgres")]
            Server::Postgres => vec![
                format!("CREATE TABLE IF NOT EXISTS {table} (name TEXT NOT NULL PRIMARY KEY, token TEXT, fence BIGINT NOT NULL, lock_until BIGINT NOT NULL, holder TEXT NOT NULL)"),
                format!("CREATE TABLE IF NOT EXISTS {table}_waiters (ticket BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL, alive_until BIGINT NOT NULL)"),
                format!("CREATE INDEX IF NOT EXISTS {table}_waiters_name ON {table}_waiters (name, ticket)"),
                format!("CREATE TABLE IF NOT EXISTS {table}_format (format BIGINT NOT NULL PRIMARY KEY)"),
            ],
            #[cfg(feature = "mysql")]
            Server::MySql => vec![
                format!("CREATE TABLE IF NOT EXISTS {table} (name VARBINARY(255) NOT NULL PRIMARY KEY, token CHAR(32) NULL, fence BIGINT NOT NULL, lock_until BIGINT NOT NULL, holder VARCHAR(255) NOT NULL) ENGINE = InnoDB"),
                format!("CREATE TABLE IF NOT EXISTS {table}_waiters (ticket BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARBINARY(255) NOT NULL, alive_until BIGINT NOT NULL, KEY {table}_waiters_name (name, ticket)) ENGINE = InnoDB"),
                format!("CREATE TABLE IF NOT EXISTS {table}_format (format BIGINT NOT NULL PRIMARY KEY) ENGINE = InnoDB"),
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
        let record_format = if self.is_mysql() {
            format!("INSERT INTO {{t}}_format (format) VALUES ({FORMAT}) ON DUPLICATE KEY UPDATE format = format")
        } else {
            format!("INSERT INTO {{t}}_format (format) VALUES ({FORMAT}) ON CONFLICT (format) DO NOTHING")
        };
        let s = |template: &str| self.statement(table, template);
        TableStatements {
            create,
            recorded_format: s("SELECT COALESCE(MAX(format), 0) FROM {t}_format"),
            record_format: s(&record_format),
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
            clock: s("SELECT {now}"),
        }
    }
}

/// `statement` as an sqlx query with `bindings` bound in the order the statement wants them.
macro_rules! bound {
    ($statement:expr, $bindings:expr) => {{
        let statement: &$crate::backend::table::sql::Statement = $statement;
        let bindings: &$crate::backend::table::sql::Bindings<'_> = $bindings;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.sql.clone()));
        for param in &statement.params {
            query = match param {
                $crate::backend::table::sql::Param::Name => query.bind(bindings.name),
                $crate::backend::table::sql::Param::Token => query.bind(bindings.token),
                $crate::backend::table::sql::Param::Ms => query.bind(bindings.ms),
                $crate::backend::table::sql::Param::Ticket => query.bind(bindings.ticket),
                $crate::backend::table::sql::Param::Holder => query.bind(bindings.holder),
            };
        }
        query
    }};
}
pub(super) use bound;

/// What a statement that returns no rows reports: the rows it changed and, on MySQL, the
/// last insert id (0 elsewhere).
pub(super) trait QueryOutcome {
    /// `(rows affected, last insert id)`.
    fn rows_and_insert_id(&self) -> (u64, u64);
}

#[cfg(feature = "sqlite")]
impl QueryOutcome for sqlx::sqlite::SqliteQueryResult {
    fn rows_and_insert_id(&self) -> (u64, u64) {
        (self.rows_affected(), 0)
    }
}

#[cfg(feature = "postgres")]
impl QueryOutcome for sqlx::postgres::PgQueryResult {
    fn rows_and_insert_id(&self) -> (u64, u64) {
        (self.rows_affected(), 0)
    }
}

#[cfg(feature = "mysql")]
impl QueryOutcome for sqlx::mysql::MySqlQueryResult {
    fn rows_and_insert_id(&self) -> (u64, u64) {
        (self.rows_affected(), self.last_insert_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_parameters_are_numbered_once() {
        let s = Server::Postgres.statement("t", "SELECT :name, :token, :name FROM {t}");
        assert_eq!(&*s.sql, "SELECT $1, $2, $1 FROM t");
        assert_eq!(s.params.len(), 2);
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn mysql_parameters_are_bound_per_occurrence() {
        let s = Server::MySql.statement("t", "SELECT :name, :token, :name FROM {w}");
        assert_eq!(&*s.sql, "SELECT ?, ?, ? FROM t_waiters");
        assert_eq!(s.params.len(), 3);
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_parameters_are_numbered_once() {
        let s = Server::Sqlite.statement("t", "SELECT :ms, :ticket, :ms");
        assert_eq!(&*s.sql, "SELECT ?1, ?2, ?1");
    }
}
