//! The command connection and what runs on it: the uncontended acquisition, a waiter's
//! attempts and its place in the queue, and the token-checked scripts.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::listener::WaiterRegistry;
use super::options::RedisOptions;
use super::scripts::Scripts;
use crate::backend::wait::{self, millis, Poll, Waiting};
use crate::backend::{Acquire, BackendResult, Granted};
use crate::token::OwnerToken;

/// How long a waiter's place in a queue lasts without a refresh.
const WAITER_LEASE: Duration = Duration::from_secs(3);
/// The shortest and longest pause between two polls of a waiter.
const POLL: Poll = Poll::new(5, 500);

/// Fencing counters below this were made by an `INCR` on a missing counter, not seeded
/// from the clock (seeds are nanoseconds since 1970, about 1.8 × 10¹⁸ today).
const SEEDED_MIN: u64 = 1_000_000_000_000_000;

/// The connection every operation runs on, with the scripts and the URL's options
/// (`timeout_ms` bounds each operation). Shared by the backend and the clean-ups it leaves
/// in the background.
pub(super) struct RedisClient {
    /// One reconnecting multiplexed connection; cloning it is cheap.
    pub(super) conn: ConnectionManager,
    /// What the URL asks for: time limits, prefix, and the redaction of the password.
    pub(super) options: RedisOptions,
    /// The token-checked and queue scripts.
    pub(super) scripts: Scripts,
}

/// The Redis name of one lock, `{K}`; the scripts reach the names beside it (all under
/// the same hash tag) by appending to it.
#[derive(Clone)]
pub(super) struct LockName(String);

impl LockName {
    /// The name of the lock stored as `stored` (prefixed, and hashed if too long).
    pub(super) fn of(stored: &str) -> Self {
        let mut name = String::with_capacity(stored.len() + 2);
        name.push('{');
        name.push_str(stored);
        name.push('}');
        LockName(name)
    }

    /// `{K}`: the lock's value and expiry.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// A name beside the lock: `{K}` followed by `suffix`.
    fn beside(&self, suffix: &str) -> String {
        let mut name = String::with_capacity(self.0.len() + suffix.len());
        name.push_str(&self.0);
        name.push_str(suffix);
        name
    }
}

/// A fencing token the server sent as text.
fn parse_fence(text: &str) -> BackendResult<u64> {
    text.parse()
        .map_err(|_| format!("the server sent `{text}` as a fencing token").into())
}

/// What one acquisition attempt got.
pub(super) enum Attempt {
    /// Taken, with its fencing token.
    Granted(Granted),
    /// Refused; the lease's remaining time (zero: free, but others wait first).
    Refused(Duration),
}

impl RedisClient {
    /// Connects the command connection: one reconnecting multiplexed connection. The
    /// client bounds each connection attempt (here and when it reconnects) by
    /// `connect_timeout_ms`; the caller bounds the whole of opening by it too.
    pub(super) async fn connect(options: RedisOptions) -> BackendResult<Self> {
        // No response timeout in the client: each operation is bounded by `timeout_ms`
        // here (`call`), which then names the parameter that ran out.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(options.connect_timeout.length))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(options.client.clone(), config)
            .await
            .map_err(|e| options.client_error(e))?;
        Ok(RedisClient {
            conn,
            options,
            scripts: Scripts::new(),
        })
    }

    /// Records this build's storage format ([`FORMAT`](crate::backend::FORMAT)) under
    /// [`RedisOptions::format_key`] unless one is recorded already, and answers the one
    /// recorded. Runs at open: the caller bounds it by `connect_timeout_ms`.
    pub(super) async fn record_format(&self) -> BackendResult<u32> {
        let key = self.options.format_key();
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(crate::backend::FORMAT)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key);
        let (recorded,): (String,) = self.run(pipe.query_async(&mut conn)).await?;
        recorded.parse().map_err(|_| {
            format!("the storage format marker `{key}` holds `{recorded}`, not a format number")
                .into()
        })
    }

    /// Runs one Redis call, bounded by `timeout_ms`.
    pub(super) async fn call<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> BackendResult<T> {
        self.options.timeout.bound(self.run(op)).await
    }

    /// Runs one Redis call without a bound of its own (the caller bounds it), its error
    /// through [`RedisOptions::client_error`].
    async fn run<T>(&self, op: impl Future<Output = redis::RedisResult<T>>) -> BackendResult<T> {
        op.await.map_err(|e| self.options.client_error(e))
    }

    /// The lock's value, if any: the owner token (with `+` when somebody waits), or
    /// `q:<ticket>` while it is handed to a waiter.
    pub(super) async fn value(&self, lock: &LockName) -> BackendResult<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        self.call(redis::cmd("GET").arg(lock.as_str()).query_async(&mut conn))
            .await
    }

    /// One acquisition attempt outside the queue, bounded as a whole by `timeout_ms`:
    /// `SET key token NX PX ttl`, `INCR` of the fencing counter and `EXISTS` of the queue,
    /// pipelined in one round trip, without Lua (a script costs the server more than these
    /// three commands). A refused attempt bumps the counter too, which only skips a
    /// number. A second round trip runs a script only if the `INCR` made the counter from
    /// nothing (seeding it, once per key and day), or if the key was free while waiters
    /// are queued (handing it to the oldest live one).
    ///
    /// The commands are not one transaction, and need not be: between them, only the
    /// expiry of this very lease could let another caller in, and then this answer
    /// arrives after the lease's local deadline, so [`Locks`](crate::Locks) gives the
    /// lease back instead of handing out its token.
    pub(super) async fn attempt(
        &self,
        lock: &LockName,
        req: &Acquire<'_>,
    ) -> BackendResult<Attempt> {
        // A lease granted by this try runs from now, not from the start of a long wait.
        req.attempt.start();
        self.options
            .timeout
            .bound(self.take_or_count(lock, req))
            .await
    }

    /// The round trips of [`attempt`](Self::attempt), which bounds them.
    async fn take_or_count(&self, lock: &LockName, req: &Acquire<'_>) -> BackendResult<Attempt> {
        let mut conn = self.conn.clone();
        let fence_key = lock.beside(":fence");
        let queue_key = lock.beside(":queue");
        let (set, fence, queued): (redis::Value, u64, bool) = self
            .run(
                redis::pipe()
                    .cmd("SET")
                    .arg(lock.as_str())
                    .arg(&req.owner.hex_digits()[..])
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(req.ttl))
                    .cmd("INCR")
                    .arg(&fence_key)
                    .cmd("EXISTS")
                    .arg(&queue_key)
                    .query_async(&mut conn),
            )
            .await?;
        let mut granted = matches!(set, redis::Value::Okay);
        if granted && queued {
            // The key was free but others wait (a lease that ran out, or `min_hold` that
            // ended, hands nothing on): the oldest live one gets it instead.
            granted = self
                .checked(&self.scripts.yield_to_waiters, lock, req.owner, None)
                .await?;
        }
        let fence = if fence < SEEDED_MIN {
            let mut inv = self.scripts.seed.prepare_invoke();
            inv.key(&fence_key);
            let seeded: String = self.run(inv.invoke_async(&mut conn)).await?;
            parse_fence(&seeded)?
        } else {
            fence
        };
        Ok(if granted {
            Attempt::Granted(Granted { fence })
        } else {
            Attempt::Refused(Duration::ZERO)
        })
    }

    /// One attempt of a waiter holding `ticket`: queued (or refreshed) when refused.
    async fn attempt_queued(
        &self,
        lock: &LockName,
        req: &Acquire<'_>,
        ticket: &str,
    ) -> BackendResult<Attempt> {
        req.attempt.start();
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.acquire_queued.prepare_invoke();
        inv.key(lock.as_str())
            .arg(&req.owner.hex_digits()[..])
            .arg(millis(req.ttl))
            .arg(millis(WAITER_LEASE))
            .arg(ticket);
        let answer: redis::Value = self.call(inv.invoke_async(&mut conn)).await?;
        match answer {
            redis::Value::Int(refused) => {
                let pttl = u64::try_from(-1 - refused).unwrap_or(0);
                Ok(Attempt::Refused(Duration::from_millis(pttl)))
            }
            redis::Value::BulkString(fence) => Ok(Attempt::Granted(Granted {
                fence: parse_fence(&String::from_utf8_lossy(&fence))?,
            })),
            other => Err(format!("unexpected answer to an acquisition: {other:?}").into()),
        }
    }

    /// Runs `script`, which checks `owner`'s token on `lock` (`KEYS[1]`, `ARGV[1]`), with
    /// `ms` as `ARGV[2]` if given: whether it answered 1.
    pub(super) async fn checked(
        &self,
        script: &Script,
        lock: &LockName,
        owner: &OwnerToken,
        ms: Option<u64>,
    ) -> BackendResult<bool> {
        let mut conn = self.conn.clone();
        let mut inv = script.prepare_invoke();
        inv.key(lock.as_str()).arg(&owner.hex_digits()[..]);
        if let Some(ms) = ms {
            inv.arg(ms);
        }
        let answer: i64 = self.call(inv.invoke_async(&mut conn)).await?;
        Ok(answer == 1)
    }

    /// Takes `ticket` out of the queue and hands the key on if this ticket or `owner`
    /// holds it, or nobody does.
    async fn leave(&self, lock: &LockName, ticket: &str, owner: &OwnerToken) -> BackendResult<()> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.leave.prepare_invoke();
        inv.key(lock.as_str())
            .arg(ticket)
            .arg(&owner.hex_digits()[..]);
        let _: i64 = self.call(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Takes the key, waiting in the queue until `deadline`: the first try is the
    /// uncontended one, and only a refused caller queues; `waiters` wakes it when a
    /// release names its ticket.
    pub(super) async fn acquire_queued(
        self: &Arc<Self>,
        waiters: &WaiterRegistry,
        req: Acquire<'_>,
        deadline: Instant,
    ) -> BackendResult<Option<Granted>> {
        let ticket = OwnerToken::random()
            .map_err(|e| format!("no random waiter ticket from the OS: {e}"))?
            .to_hex();
        // Registered before the first attempt, so a release right after it still wakes us.
        let wake = waiters.register(req.key, &ticket);
        let mut pending = PendingAttempt {
            client: self.clone(),
            lock: LockName::of(req.key),
            owner: *req.owner,
            ticket: ticket.clone(),
            in_flight: true,
        };
        let lock = &pending.lock;
        if let Attempt::Granted(granted) = self.attempt(lock, &req).await? {
            pending.in_flight = false;
            return Ok(Some(granted));
        }
        if Instant::now() >= deadline {
            pending.in_flight = false;
            return Ok(None);
        }
        let mut waiting = Waiting::new(deadline, POLL);
        loop {
            let woken = wake.notify.notified();
            let remaining = match self.attempt_queued(lock, &req, &ticket).await? {
                Attempt::Granted(granted) => {
                    // The script took the ticket out of the queue.
                    pending.in_flight = false;
                    return Ok(Some(granted));
                }
                Attempt::Refused(remaining) => remaining,
            };
            // The lease's expiry frees the key without a message.
            let expiry = (!remaining.is_zero()).then(|| remaining + Duration::from_millis(1));
            if !waiting.pause(woken, expiry).await {
                pending.in_flight = false;
                self.leave(lock, &ticket, req.owner).await?;
                return Ok(None);
            }
        }
    }
}

/// An acquisition in flight. If it ends early (an error, or its future dropped while an
/// attempt was on the wire), the waiter's ticket leaves the queue and a lease the attempt
/// may have taken is freed, in the background; should that fail, both run out by
/// themselves.
pub(super) struct PendingAttempt {
    pub(super) client: Arc<RedisClient>,
    pub(super) lock: LockName,
    pub(super) owner: OwnerToken,
    /// The waiter's ticket; empty for `try_acquire`, which never queues.
    pub(super) ticket: String,
    /// False once the acquisition ended normally: nothing to clean up.
    pub(super) in_flight: bool,
}

impl Drop for PendingAttempt {
    fn drop(&mut self) {
        if !self.in_flight {
            return;
        }
        let lock = self.lock.clone();
        let client = self.client.clone();
        let ticket = std::mem::take(&mut self.ticket);
        let owner = self.owner;
        let what = format!(
            "a lock attempt on `{}` (backend {})",
            lock.as_str(),
            client.options.backend
        );
        wait::spawn_detached(format_args!("{what}"), async move {
            if let Err(e) = client.leave(&lock, &ticket, &owner).await {
                tracing::debug!(error = %e, key = lock.as_str(), "cleaning up an abandoned Redis lock attempt failed; it expires by itself");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_one_hash_tag() {
        let lock = LockName::of("lockattr:flush:acme");
        assert_eq!(lock.as_str(), "{lockattr:flush:acme}");
        assert_eq!(lock.beside(":fence"), "{lockattr:flush:acme}:fence");
    }
}
