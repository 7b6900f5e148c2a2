//! Listing, inspecting and force-releasing Redis locks, for operators ([`Admin`]).
//!
//! - **held**: `SCAN` with `MATCH {<prefix>*}` (the prefix's glob characters escaped),
//!   then, per batch, `GET`, `PTTL` and `GET {K}:fence` of each lock, pipelined. A lock's
//!   value is its holder's owner token, so the holder's fencing token is not stored: the
//!   listing shows the key's counter, which is at least the holder's token (refused
//!   attempts count too), as [`Fence::AtMost`]; the owner is unknown.
//! - **inspect**: the same three commands for one lock.
//! - **force release**: one script (`scripts/force_release.lua`): ends the lease whoever
//!   holds it and hands the key to the oldest live waiter, as a release does. The fencing
//!   counter is left alone, so the next holder's token is greater; the forced holder's
//!   extend and release find another value and get `Lost`.
//!
//! An ACL user of the CLI needs `+scan` on top of the backend's commands.

use std::time::Duration;

use super::client::LockName;
use super::RedisBackend;
use crate::backend::admin::{Admin, Fence, HeldLock};
use crate::backend::{BackendResult, BoxFuture};

/// Names asked per `SCAN` call.
const SCAN_COUNT: usize = 1000;

/// `s` with the characters a `MATCH` pattern gives a meaning escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The stored key of a lock name `{K}`.
fn stored_key(name: &str) -> Option<&str> {
    name.strip_prefix('{')?.strip_suffix('}')
}

impl RedisBackend {
    /// The locks among `names` (lock names `{K}`) that exist, each read with `GET`,
    /// `PTTL` and `GET {K}:fence`, in one pipeline.
    async fn read_locks(&self, names: &[String]) -> BackendResult<Vec<HeldLock>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("GET").arg(name);
            pipe.cmd("PTTL").arg(name);
            pipe.cmd("GET").arg(format!("{name}:fence"));
        }
        let mut conn = self.client.conn.clone();
        let answers: Vec<(Option<Vec<u8>>, i64, Option<String>)> = {
            let flat: Vec<redis::Value> = self.client.call(pipe.query_async(&mut conn)).await?;
            let mut out = Vec::with_capacity(names.len());
            for triple in flat.chunks(3) {
                let value: Option<Vec<u8>> = redis::from_redis_value_ref(&triple[0])?;
                let pttl: i64 = redis::from_redis_value_ref(&triple[1])?;
                let fence: Option<String> = redis::from_redis_value_ref(&triple[2])?;
                out.push((value, pttl, fence));
            }
            out
        };
        Ok(names
            .iter()
            .zip(answers)
            .filter_map(|(name, (value, pttl, fence))| {
                value?;
                let stored = stored_key(name)?.to_owned();
                let token = fence
                    .and_then(|f| f.parse().ok())
                    .map_or(Fence::Unknown, Fence::AtMost);
                let left = u64::try_from(pttl).ok().map(Duration::from_millis);
                Some(HeldLock::new(stored, token, left))
            })
            .collect())
    }
}

impl Admin for RedisBackend {
    fn held<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<HeldLock>>> {
        Box::pin(async move {
            let pattern = format!("{{{}*}}", glob_escape(prefix));
            let mut held = Vec::new();
            let mut cursor = 0u64;
            loop {
                let mut conn = self.client.conn.clone();
                let (next, names): (u64, Vec<String>) = self
                    .client
                    .call(
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(SCAN_COUNT)
                            .query_async(&mut conn),
                    )
                    .await?;
                held.extend(self.read_locks(&names).await?);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            // SCAN may return a name twice.
            held.sort_by(|a, b| a.stored_key.cmp(&b.stored_key));
            held.dedup_by(|a, b| a.stored_key == b.stored_key);
            Ok(held)
        })
    }

    fn inspect<'a>(
        &'a self,
        stored_key: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<HeldLock>>> {
        Box::pin(async move {
            let name = LockName::of(stored_key).as_str().to_owned();
            Ok(self.read_locks(&[name]).await?.pop())
        })
    }

    fn force_release<'a>(&'a self, stored_key: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let lock = LockName::of(stored_key);
            let mut conn = self.client.conn.clone();
            let mut invocation = self.client.scripts.force_release.prepare_invoke();
            invocation.key(lock.as_str());
            let answer: i64 = self.client.call(invocation.invoke_async(&mut conn)).await?;
            Ok(answer == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_prefix_literally() {
        assert_eq!(glob_escape("lockattr:"), "lockattr:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(stored_key("{lockattr:x}"), Some("lockattr:x"));
        assert_eq!(stored_key("{lockattr:}format"), None);
    }
}
