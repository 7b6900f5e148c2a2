//! Opening `postgres://`: the URL, the first session, and the checks of the server's
//! set-up (version, fencing sequence and its privileges, storage format,
//! `synchronous_commit`).

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;
use tokio::time::Sleep;

use super::fences::BLOCK_BITS;
use super::Postgres;
use crate::backend::session::options::statement_timer;
use crate::backend::session::{
    client_url, format_comment, parse_format_comment, SessionBackend, SessionOptions, SessionSql,
};
use crate::backend::{format_refused, FORMAT};
use crate::error::{BoxError, LockError};
use crate::url::{BackendUrl, Secrets};

/// The set-up statements of `open`, on its first session: each bounded by `timeout_ms`,
/// each driver error scrubbed.
struct SetupSession<'a> {
    conn: &'a mut PgConnection,
    timer: Pin<Box<Sleep>>,
    options: SessionOptions,
    secrets: Secrets,
}

impl SetupSession<'_> {
    /// Runs `statement` (given the connection) within `timeout_ms`.
    async fn run<'c, T, F>(
        &'c mut self,
        statement: impl FnOnce(&'c mut PgConnection) -> F,
    ) -> Result<T, BoxError>
    where
        F: Future<Output = Result<T, sqlx::Error>> + 'c,
    {
        let secrets = &self.secrets;
        let work = statement(&mut *self.conn);
        self.options
            .statement(self.timer.as_mut(), async {
                work.await.map_err(|e| secrets.error(e))
            })
            .await
    }

    async fn scalar<T>(&mut self, sql: &'static str) -> Result<T, BoxError>
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        self.run(|conn| sqlx::query_scalar(sql).fetch_one(conn))
            .await
    }

    /// Creates the fencing sequence if it is missing (several processes may race to),
    /// with the storage format recorded on it.
    async fn ensure_sequence(&mut self) -> Result<(), BoxError> {
        const EXISTS: &str = "SELECT to_regclass('lockattr_fence') IS NOT NULL";
        if self.scalar::<bool>(EXISTS).await? {
            return Ok(());
        }
        let created = self
            .run(|conn| sqlx::query("CREATE SEQUENCE IF NOT EXISTS lockattr_fence").execute(conn))
            .await;
        match created {
            Ok(_) => Ok(()),
            // Created by another process at the same moment.
            Err(e) => match self.scalar::<bool>(EXISTS).await? {
                true => Ok(()),
                false => Err(e),
            },
        }
    }

    /// Fails unless the role can both read the sequence (`pg_sequence_last_value`: SELECT
    /// or USAGE) and advance it (`nextval`: USAGE or UPDATE): without that, every take
    /// would fail.
    async fn check_privileges(&mut self) -> Result<(), BoxError> {
        let (usable, role): (bool, String) = self
            .run(|conn| {
                sqlx::query_as(
                    "SELECT has_sequence_privilege('lockattr_fence', 'USAGE') \
                         OR (has_sequence_privilege('lockattr_fence', 'SELECT') \
                             AND has_sequence_privilege('lockattr_fence', 'UPDATE')), \
                     quote_ident(current_user)",
                )
                .fetch_one(conn)
            })
            .await?;
        if usable {
            return Ok(());
        }
        Err(format!(
            "the role {role} cannot use the fencing sequence `lockattr_fence`: a take reads it \
             (`pg_sequence_last_value`, which needs SELECT or USAGE) and advances it \
             (`nextval`, which needs USAGE or UPDATE); as its owner or a superuser, run \
             `GRANT USAGE ON SEQUENCE lockattr_fence TO {role};`"
        )
        .into())
    }

    /// The storage format recorded on the sequence (`COMMENT ON SEQUENCE`), recorded now if
    /// missing and the role owns the sequence; `None` if there is none.
    async fn format(&mut self) -> Result<Option<u32>, BoxError> {
        let comment: Option<String> = self
            .scalar("SELECT obj_description('lockattr_fence'::regclass, 'pg_class')")
            .await?;
        if let Some(comment) = comment {
            // A comment of the operator's own is left alone.
            return Ok(parse_format_comment(&comment));
        }
        let sql = format!(
            "COMMENT ON SEQUENCE lockattr_fence IS '{}'",
            format_comment()
        );
        let marked = self
            .run(|conn| sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(conn))
            .await;
        match marked {
            Ok(_) => Ok(Some(FORMAT)),
            Err(e) => {
                // Only the owner (or a superuser) may comment. The sequence is the same
                // whether marked or not (format 1 only added the mark), so it is used; the
                // warning says how to mark it.
                tracing::warn!(
                    backend = Postgres::KIND,
                    error = %e,
                    "could not record lockattr's storage format on the sequence `lockattr_fence`; \
                     as its owner, run `COMMENT ON SEQUENCE lockattr_fence IS '{}'`",
                    format_comment()
                );
                Ok(None)
            }
        }
    }

    /// Warns if commits are asynchronous: a server crash can then lose the latest `nextval`
    /// of the sequence.
    async fn warn_if_commits_are_asynchronous(&mut self, url: &BackendUrl) -> Result<(), BoxError> {
        let setting: String = self.scalar("SHOW synchronous_commit").await?;
        if setting == "off" {
            tracing::warn!(
                backend = Postgres::KIND,
                url = %url.redacted,
                "`synchronous_commit` is off: a server crash can lose the latest `nextval` of \
                 `lockattr_fence` and hand the same fencing block (2^{BLOCK_BITS} tokens) out \
                 again, so fencing tokens given before the crash can be given again after it; \
                 set it to `on` (or `local`) for the role lockattr connects as"
            );
        }
        Ok(())
    }
}

/// Opens `postgres://…`: checks the URL, connects once (an unreachable server is an
/// error here), creates the fencing sequence if missing, and checks that the role can use
/// it and that no newer lockattr set it up.
pub(crate) async fn open(url: &BackendUrl) -> Result<SessionBackend<Postgres>, LockError> {
    let client = client_url(url, "postgres", crate::backend::POSTGRES_CLIENT_PARAMS)?;
    let options = SessionOptions::from_url(url)?;
    let secrets = url.secrets();
    let failed = |e: BoxError| LockError::backend(&url.redacted, None, e);
    let mut connect_options = PgConnectOptions::from_str(&client)
        .map_err(|e| {
            url.invalid(format!(
                "not a PostgreSQL URL: {}",
                secrets.scrub(&e.to_string())
            ))
        })?
        .disable_statement_logging();
    if !url.params.contains_key("application_name") {
        connect_options = connect_options.application_name(&super::admin::application_name());
    }
    let dialect = Postgres {
        options: connect_options,
        secrets: secrets.clone(),
        fences: Default::default(),
    };
    let mut first = options.connect(dialect.connect()).await.map_err(failed)?;
    let mut setup = SetupSession {
        conn: &mut first.conn,
        timer: statement_timer(),
        options,
        secrets,
    };
    let version: i32 = setup
        .scalar("SELECT current_setting('server_version_num')::int")
        .await
        .map_err(failed)?;
    if version < 140_000 {
        return Err(failed(
            format!(
                "PostgreSQL {version} is too old: session locks need `idle_session_timeout` \
                 (PostgreSQL 14 or later) for the server to end a stalled holder's locks"
            )
            .into(),
        ));
    }
    setup.ensure_sequence().await.map_err(failed)?;
    setup.check_privileges().await.map_err(failed)?;
    match setup.format().await.map_err(failed)? {
        Some(found) if found > FORMAT => {
            return Err(format_refused(
                url,
                "the PostgreSQL sequence `lockattr_fence`",
                found,
            ))
        }
        _ => {}
    }
    setup
        .warn_if_commits_are_asynchronous(url)
        .await
        .map_err(failed)?;
    Ok(SessionBackend::new(dialect, first, usize::MAX, options))
}
