//! Opening `postgres://`: the URL, the first session, and the server's set-up.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;

use super::Postgres;
use crate::backend::session::{client_url, SessionBackend, SessionOptions, SessionSql};
use crate::error::{BoxError, LockError};
use crate::url::BackendUrl;

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
        connect_options = connect_options.application_name("lockattr");
    }
    let dialect = Postgres {
        options: connect_options,
        secrets: secrets.clone(),
        fences: Default::default(),
    };
    let mut first = options.connect(dialect.connect()).await.map_err(failed)?;
    let version: i32 = options
        .statement(async {
            sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
                .fetch_one(&mut first.conn)
                .await
                .map_err(|e| secrets.error(e))
        })
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
    options
        .statement(async {
            ensure_sequence(&mut first.conn)
                .await
                .map_err(|e| secrets.error(e))
        })
        .await
        .map_err(failed)?;
    Ok(SessionBackend::new(dialect, first, usize::MAX, options))
}
