//! Listing, inspecting and force-releasing the leases of a lease table, for operators
//! ([`Admin`]).
//!
//! A lock is held while its row's `lock_until` is ahead of the database's clock (a row
//! released with `min_hold` left counts: the key stays taken). Its token is the row's
//! `fence`, its owner the `holder` column (`host:pid`, written by the statement that took
//! it), its time left `lock_until` minus the database's clock.
//!
//! A forced release clears `token` and ends the lease (`lock_until` = now), as an
//! ordinary release does, whoever holds it: the row's `fence` stays, so the next take sets
//! `fence + 1`, greater than the forced holder's; the forced holder's extend and release
//! present a token the row no longer has, and get `Lost`.

use std::time::Duration;

use super::sql::Statement;
use super::{LeaseTable, TableBackend};
use crate::backend::admin::{Admin, Fence, HeldLock, Owner};
use crate::backend::{BackendResult, BoxFuture};

/// The columns every listing selects: the name as text, the fence, the milliseconds
/// left, the holder.
fn columns(table: &LeaseTable) -> &'static str {
    if table.server.is_mysql() {
        "CONVERT(name USING utf8mb4), fence, lock_until - {now}, holder"
    } else {
        "name, fence, lock_until - {now}, holder"
    }
}

impl LeaseTable {
    fn admin_statement(&self, template: &str) -> Statement {
        self.server
            .statement(&self.table, &template.replace("{columns}", columns(self)))
    }

    async fn leases(&self, statement: &Statement, name: &str) -> BackendResult<Vec<HeldLock>> {
        let bindings = self.bindings(name, "", 0, 0);
        let rows = self.fetch_leases(statement, &bindings).await?;
        Ok(rows
            .into_iter()
            .map(|(name, fence, left_ms, holder)| {
                let fence = u64::try_from(fence).unwrap_or_default();
                let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or_default());
                HeldLock::new(name, Fence::Exact(fence), Some(left))
                    .with_owner(Some(Owner::from_holder(&holder)))
            })
            .collect())
    }
}

impl Admin for TableBackend {
    /// Every live row, filtered by prefix here (a `LIKE` would need the prefix's `%` and
    /// `_` escaped, differently on each server): the table holds one row per key ever
    /// used, and those not held are left out by the database.
    fn held<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<HeldLock>>> {
        Box::pin(async move {
            let statement = self
                .table
                .admin_statement("SELECT {columns} FROM {t} WHERE lock_until > {now}");
            let mut held = self.table.leases(&statement, "").await?;
            held.retain(|lock| lock.stored_key.starts_with(prefix));
            Ok(held)
        })
    }

    fn inspect<'a>(
        &'a self,
        stored_key: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<HeldLock>>> {
        Box::pin(async move {
            let statement = self.table.admin_statement(
                "SELECT {columns} FROM {t} WHERE name = :name AND lock_until > {now}",
            );
            Ok(self.table.leases(&statement, stored_key).await?.pop())
        })
    }

    fn force_release<'a>(&'a self, stored_key: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let statement = self.table.admin_statement(
                "UPDATE {t} SET token = NULL, lock_until = {now} \
                 WHERE name = :name AND lock_until > {now}",
            );
            let bindings = self.table.bindings(stored_key, "", 0, 0);
            let released = self.table.execute(&statement, &bindings).await?.0 > 0;
            if released {
                self.table.wakers.wake(stored_key);
            }
            Ok(released)
        })
    }
}
