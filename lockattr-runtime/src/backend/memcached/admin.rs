//! Listing, inspecting and force-releasing Memcached locks, for operators ([`Admin`]).
//!
//! - **inspect**: `mg K|l c t v`, one round trip. The fencing token is built from the
//!   item's CAS as an acquisition builds it (`started × 10⁹ + CAS`, see the
//!   [module docs](super)). It is the holder's token until the holder's first extension
//!   or renewal (or a release with `min_hold`), which stores the item again under a new,
//!   greater CAS: so it is shown as an upper bound, [`Fence::AtMost`], equal to the
//!   holder's token for a lease never extended. The time left is whole seconds: the
//!   item's `t` (the server's count of seconds until it frees the item) less the second
//!   the backend adds to every expiry (`T<n + 1>`), so about the holder's own time left,
//!   rounded to a whole second; the server frees the key up to about two seconds after
//!   it. The owner is unknown: the item holds the owner token alone.
//! - **held**: `lru_crawler metadump hash` (`all` on a server that does not know `hash`,
//!   which walks the LRUs and may miss an item accessed while it runs) lists the keys of
//!   every item of the server; the lock items (`K|l`) under the prefix are then read as
//!   `inspect` reads one, 100 per round trip (an item that expired meanwhile is left
//!   out). **Cost**: the crawler walks the whole cache, every item of every application
//!   sharing the server, and the answer carries a line per item: on a large cache that
//!   is seconds of the server's background thread and megabytes on the wire. Each line must come within `timeout_ms`; the walk
//!   as a whole is not bounded. A server started with `-o no_lru_crawler` (or `-X`, which
//!   forbids dumps) cannot list: [`Locks::held`](crate::Locks::held) answers
//!   [`LockError::Unsupported`](crate::LockError::Unsupported), the CLI's exit code 4;
//!   `inspect` and a forced release still work there. While another crawl runs, the
//!   listing asks again for up to `timeout_ms`.
//! - **force release**: `md K|l`, unconditionally (break-glass), and the waiters of this
//!   process are woken as a release wakes them; the line of waiters (`K|t`, `K|w`) is
//!   left as it is, so the oldest waiter takes the key next. Fencing holds: the next
//!   holder's item gets a new CAS from the server's counter, which only grows, so its
//!   token is greater. The forced holder's extend and release present the CAS of an item
//!   that is gone or replaced (`NF`, `EX`): [`LockError::Lost`](crate::LockError::Lost).

use std::time::Duration;

use super::names::Names;
use super::protocol::{Command, Dump, Reply};
use super::waiting::LocalWaiters;
use super::MemcachedBackend;
use crate::backend::admin::{Admin, CannotList, Fence, HeldLock};
use crate::backend::{BackendResult, BoxFuture};
use crate::error::BoxError;

/// The suffix of a lock item's name (see [`Names`]).
const LOCK_SUFFIX: &str = "|l";
/// Lock items read per round trip by a listing.
const BATCH: usize = 100;

/// The command that reads a lock item: its CAS, seconds left and value.
fn read_command(lock: &str) -> Command {
    Command::line(&format!("mg {lock} c t v"))
}

/// The held lock `stored` as the answer to [`read_command`] shows it, if the item exists.
fn held_lock(stored: &str, reply: &Reply, server_started: u64) -> Option<HeldLock> {
    let Reply::Value { cas, ttl, .. } = reply else {
        return None;
    };
    let token = cas
        .and_then(|cas| server_started.checked_mul(1_000_000_000)?.checked_add(cas))
        .map_or(Fence::Unknown, Fence::AtMost);
    // `t-1`: no expiry, which no lease is stored with.
    let left = ttl
        .and_then(|t| u64::try_from(t).ok())
        .map(|t| Duration::from_secs(t.saturating_sub(1)));
    Some(HeldLock::new(stored.to_owned(), token, left))
}

impl MemcachedBackend {
    /// The locks among `stored` (stored keys) held now, read in batches of [`BATCH`].
    async fn read_locks(&self, stored: &[String]) -> BackendResult<Vec<HeldLock>> {
        let mut held = Vec::new();
        for batch in stored.chunks(BATCH) {
            let commands: Vec<Command> = batch
                .iter()
                .map(|key| Ok(read_command(&Names::of(key)?.lock)))
                .collect::<BackendResult<_>>()?;
            let answers = self.client.run(&commands).await?;
            held.extend(
                batch
                    .iter()
                    .zip(&answers.replies)
                    .filter_map(|(key, reply)| held_lock(key, reply, answers.server_started)),
            );
        }
        Ok(held)
    }
}

impl Admin for MemcachedBackend {
    fn held<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<HeldLock>>> {
        Box::pin(async move {
            let dump = self
                .client
                .pool
                .metadump(|key| key.starts_with(prefix) && key.ends_with(LOCK_SUFFIX))
                .await?;
            let items = match dump {
                Dump::Keys(items) => items,
                Dump::Refused(answer) => {
                    let why = format!(
                        "this Memcached cannot list its keys (`lru_crawler metadump` \
                         answered `{answer}`: started with `-o no_lru_crawler` or `-X`?)"
                    );
                    return Err(Box::new(CannotList(why)) as BoxError);
                }
            };
            let mut stored: Vec<String> = items
                .into_iter()
                .filter_map(|item| item.strip_suffix(LOCK_SUFFIX).map(str::to_owned))
                .collect();
            stored.sort();
            stored.dedup();
            self.read_locks(&stored).await
        })
    }

    fn inspect<'a>(
        &'a self,
        stored_key: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<HeldLock>>> {
        Box::pin(async move { Ok(self.read_locks(&[stored_key.to_owned()]).await?.pop()) })
    }

    fn force_release<'a>(&'a self, stored_key: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let names = Names::of(stored_key)?;
            let reply = self
                .client
                .run_one(Command::line(&format!("md {}", names.lock)))
                .await?;
            let released = match reply {
                Reply::Stored { .. } => true,
                Reply::NotFound => false,
                other => return Err(format!("unexpected answer to a delete: {other:?}").into()),
            };
            LocalWaiters::global().wake(&self.client.local_name(&names));
            Ok(released)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_item_shows_its_fence_bound_and_whole_seconds_left() {
        let reply = Reply::Value {
            data: b"0123456789abcdef0123456789abcdef".to_vec(),
            cas: Some(42),
            ttl: Some(31),
        };
        let held = held_lock("lockattr:k", &reply, 1_700_000_000).unwrap();
        assert_eq!(held.stored_key, "lockattr:k");
        assert_eq!(held.token, Fence::AtMost(1_700_000_000_000_000_042));
        assert_eq!(held.time_left, Some(Duration::from_secs(30)));
        assert_eq!(held.owner, None);
        assert!(held_lock("lockattr:k", &Reply::NotFound, 1).is_none());
    }
}
