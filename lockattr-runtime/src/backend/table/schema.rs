//! Setting up a lease table's schema when a handle opens it: the tables, and the storage
//! format recorded in `{table}_format` (`docs/design.md`, "Mixed versions").

use std::time::Duration;

use super::connection::Failure;
use super::LeaseTable;
use crate::backend::wait;
use crate::backend::{format_refused, BackendResult, FORMAT};
use crate::error::LockError;
use crate::url::BackendUrl;

impl LeaseTable {
    /// Creates the tables if they are missing and records this build's storage format in
    /// them; refuses tables set up by a newer format.
    pub(super) async fn set_up(&self, url: &BackendUrl) -> Result<(), LockError> {
        let failed = |e| LockError::backend(&url.redacted, None, e);
        self.create_tables().await.map_err(failed)?;
        let none = self.bindings("", "", 0, 0);
        let recorded = self
            .fetch_i64(&self.sql.recorded_format, &none)
            .await
            .map_err(failed)?
            .unwrap_or(0);
        if recorded > i64::from(FORMAT) {
            let found = u32::try_from(recorded).unwrap_or(u32::MAX);
            let place = format!(
                "the lease table `{}` (its format is in `{}_format`)",
                self.table, self.table
            );
            return Err(format_refused(url, &place, found));
        }
        if recorded < i64::from(FORMAT) {
            self.execute(&self.sql.record_format, &none)
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// `CREATE TABLE IF NOT EXISTS`, retried: concurrent creation of one table can fail on
    /// PostgreSQL with a unique violation in its catalog, and then the table exists.
    async fn create_tables(&self) -> BackendResult<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.create_once().await {
                Ok(()) => return Ok(()),
                // Only an answer from the database is worth another try: an unreachable
                // one has already been retried for the pool's acquire timeout.
                Err(Failure::Driver(e @ sqlx::Error::Database(_))) if tries < 3 => {
                    let error = self.secrets.scrub(&e.to_string());
                    tracing::debug!(backend = %self.backend, %error, "creating the lock tables failed, retrying");
                    tokio::time::sleep(wait::jitter(Duration::from_millis(20))).await;
                }
                Err(failure) => return Err(self.error(failure)),
            }
        }
    }

    async fn create_once(&self) -> Result<(), Failure> {
        for ddl in &self.sql.create {
            self.run_ddl(ddl).await?;
        }
        Ok(())
    }
}
