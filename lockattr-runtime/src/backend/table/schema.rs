//! Setting up a lease table's schema when a handle opens it.

use std::time::Duration;

use super::connection::Failure;
use super::LeaseTable;
use crate::backend::wait;
use crate::backend::BackendResult;

impl LeaseTable {
    /// `CREATE TABLE IF NOT EXISTS`, retried: concurrent creation of one table can fail on
    /// PostgreSQL with a unique violation in its catalog, and then the table exists.
    pub(super) async fn create_tables(&self) -> BackendResult<()> {
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
