//! Setting up a lease table's schema when a handle opens it.

use std::time::Duration;

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
                Err(e)
                    if tries < 3 && matches!(e.downcast_ref(), Some(sqlx::Error::Database(_))) =>
                {
                    tracing::debug!(backend = %self.backend, error = %e, "creating the lock tables failed, retrying");
                    tokio::time::sleep(wait::jitter(Duration::from_millis(20))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn create_once(&self) -> BackendResult<()> {
        for ddl in &self.sql.create {
            self.run_ddl(ddl).await?;
        }
        Ok(())
    }
}
