//! `redis://` and `rediss://`: leases in Redis (5 or later) or a Redis-compatible server.
//!
//! # URL
//!
//! `redis://[user:password@]host[:port][/db][?options]`, or `rediss://…` for TLS. Options:
//!
//! - `prefix` (default `lockattr:`): the text every stored key starts with;
//! - `timeout_ms` (default 1000): the longest one operation (an acquisition attempt, a
//!   release, an extension, leaving a wait) waits for the server; a server that stops
//!   answering gives [`LockError::Backend`] after this, never a hang;
//! - `connect_timeout_ms` (default 1000): the longest [`connect`](crate::connect) takes,
//!   all of it (both connections, the subscription, the storage format check), and the
//!   longest each reconnection attempt takes later;
//! - `tls_ca_file=PATH` (`rediss://` only): trust the PEM certificate(s) in `PATH` instead of
//!   the system's roots (a private CA, or a self-signed server certificate);
//! - `tls_insecure=true` (`rediss://` only): skip verification of the server's certificate
//!   and host name. The connection is encrypted but not authenticated: for tests only.
//!
//! A limit that runs out is a [`LockError::Backend`] whose message names the parameter and
//! its value ("Redis did not answer within 1000 ms (the URL's `connect_timeout_ms`)").
//! Messages and logs show the URL with its password as `***`, and the client's errors
//! are scrubbed of it.
//!
//! # What is stored
//!
//! A lock key `K` (prefixed, and hashed when longer than 512 bytes) is stored as
//! `{K}` holding the owner token (32 hex digits) with the lease as its expiry; a `+` after
//! the token says that somebody waits, and `q:<ticket>` says that the key is being handed
//! to the waiter holding that ticket. Next to it, sharing the hash tag so that every
//! script touches one Redis Cluster slot:
//!
//! - `{K}:fence`, the fencing counter, `INCR`ed on each attempt. When it is missing (the
//!   `INCR` gives a small number) it is seeded from the server's clock in nanoseconds, by
//!   a second call once per key and day; so it may expire (it keeps a day from its
//!   seeding) or be lost in a restart without persistence, and the next token is still
//!   greater than every earlier one (no server runs a command per nanosecond), as long as
//!   the server's clock does not step back;
//! - `{K}:queue` and `{K}:queue:leases`, the waiters: a sorted set of tickets in arrival
//!   order and one of their lease expiries. A waiter refreshes its lease (3 s) at each
//!   poll; a waiter that vanishes is skipped once its lease has run out, and both sets
//!   expire 6 s after the last refresh.
//!
//! Releases to a waiter publish on the channel `{K}:released`; each backend listens on
//! one pub/sub connection with a pattern subscription to its prefix.
//!
//! One more key per prefix, `{<prefix>}format` (`{lockattr:}format` by default), records
//! the storage format (`1`), written when a backend first opens on the server (no expiry;
//! written again after a restart without persistence). A backend refuses to open on a
//! server whose marker names a newer format than it speaks, and says to upgrade
//! lockattr: processes of two versions never share keys they read differently
//! (`docs/design.md`, "Mixed versions"). The marker never equals a lock's name, which
//! ends with `}` or a `:` suffix.
//!
//! # Operations
//!
//! Each operation is bounded as a whole by `timeout_ms`, and opening by
//! `connect_timeout_ms`. Every script is one `EVALSHA`, so atomic; each is given `{K}` and
//! reaches the other names by appending to it. The first call of a script on a server
//! that does not know it yet takes two more round trips (`SCRIPT LOAD`, then the
//! `EVALSHA` again).
//!
//! - **open**: connects the command connection and the pub/sub connection (and
//!   subscribes it) side by side, then records the format with `SET {<prefix>}format 1
//!   NX` and `GET`, pipelined;
//! - **acquire** (uncontended): one round trip, `SET {K} token NX PX ttl`,
//!   `INCR {K}:fence` and `EXISTS {K}:queue` pipelined, with no Lua (a script costs the
//!   server more than the three commands it would run). They need not be atomic: only the
//!   expiry of this very lease could let another caller in between them, and then the
//!   answer arrives after the lease's local deadline and the lease is given back, its
//!   token never handed out. A second round trip, a script, only when the counter was
//!   missing (seeding it, once per key and day) or when the key was free while waiters
//!   are queued (handing it to the oldest live one, see below);
//! - **release**: one script: token-checked `DEL`; with `min_hold`, `PEXPIRE` to what
//!   remains of it instead. When the value is marked with `+`, the key is handed to the
//!   oldest live waiter: set to `q:<its ticket>` for what remains of that waiter's lease,
//!   and its ticket published. Without a mark the script is a plain compare-and-delete;
//! - **extend**: one script: token-checked `PEXPIRE`;
//! - **a waiter's attempt**: one script: takes a key handed to its ticket, or a free key
//!   when no other live waiter is ahead; otherwise queues its ticket and marks the
//!   holder's value with `+`;
//! - **leaving the queue** (a wait that timed out or was dropped): one script: removes
//!   the ticket, and hands on a key handed to it.
//!
//! Waiting is first come, first served across processes: a caller that is refused queues,
//! and a release hands the key to the queue's head, so a holder that releases and at once
//! asks again waits behind it. The head is woken by the release's message; a jittered
//! poll (5 ms up to 500 ms, and at the lease's expiry) covers lost messages and holders
//! that crashed. When a lease runs out instead of being released (a crashed holder, or
//! `min_hold`), the key is free until a waiter's poll takes it; an uncontended acquire
//! that finds waiters queued (its pipeline also asks `EXISTS {K}:queue`) hands the key it
//! just took to the oldest live one (one more script) and reports it taken, so a newcomer
//! never jumps the queue.
//!
//! A lease the server lost while this backend's connection was down (a restart without
//! persistence) is reported through [`Backend::lost`] as soon as the release listener
//! reconnects (each watched lease is then read with one `GET`), so the attribute cancels
//! the body with `Lost` instead of letting it run on while another process may take the
//! key.
//!
//! # ACL
//!
//! With the default prefix, a Redis 6+ ACL user needs the keys `~{lockattr:*` (the
//! format marker `{lockattr:}format` among them), the
//! channel pattern `&{lockattr:*}:released` (literally: `PSUBSCRIBE` checks patterns
//! as written; Redis 7 gives new users no channels), and the commands `+evalsha
//! +script|load +get +psubscribe +publish` plus those the pipelines and scripts run:
//! `+exists +set +incr +time +zrange +zscore +zadd +zrem +pexpire +pttl +del +append`.
//! Without the channel permission `connect` fails with the server's `NOPERM` message.
//! The operator's `lockattr held` needs `+scan` as well (see `admin.rs`).
//!
//! # Limits
//!
//! Redis Cluster: every script touches one hash slot (it declares `{K}` and reaches only
//! names under the same hash tag), and releases `PUBLISH` (which a cluster forwards to
//! every node), so the scripts work on a cluster node that owns the slot; but this backend
//! connects to one node and does not follow `MOVED` redirections, so point it at a
//! primary of a single-shard deployment (or a proxy). Sentinel is not supported either.
//!
//! As with every single-primary Redis lock, a failover to a replica that had not yet
//! received a lease, or a restart without persistence, frees that lease early: the
//! holder learns it through [`Backend::lost`] or its next renewal, and fencing tokens
//! (which keep growing) let the protected resource refuse the old holder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::wait::millis;
use super::{Acquire, Backend, BackendResult, BoxFuture, ClockReading, Granted, FORMAT};
use crate::error::LockError;
use crate::token::OwnerToken;
use crate::url::BackendUrl;

mod admin;
mod client;
mod listener;
mod options;
mod scripts;

use client::{Attempt, LockName, PendingAttempt, RedisClient};
use listener::ReleaseSignals;
use options::RedisOptions;

/// The longest stored key before it is hashed, in bytes.
const MAX_KEY_LEN: usize = 512;

/// The Redis backend. Get one with [`connect("redis://…")`](crate::connect).
///
/// One reconnecting multiplexed connection carries every operation; one more connection
/// listens for releases. Both are closed when the last [`Locks`](crate::Locks) clone
/// holding this backend is dropped.
pub struct RedisBackend {
    /// The command connection, shared with the clean-ups of abandoned waits.
    client: Arc<RedisClient>,
    /// The waiters the listener wakes and its reconnection count; the listener holds them
    /// weakly and ends when they are gone.
    signals: Arc<ReleaseSignals>,
    /// The release listener's task, stopped on drop.
    listener: JoinHandle<()>,
}

impl RedisBackend {
    /// Connects to the server `url` names, checks the storage format recorded there, and
    /// starts listening for releases. All of it is bounded by `connect_timeout_ms`.
    pub(crate) async fn open(url: &BackendUrl) -> Result<Self, LockError> {
        let options = RedisOptions::from_url(url)?;
        tracing::debug!(backend = options.backend, "connecting to Redis");
        let connect_timeout = options.connect_timeout;
        let opened = connect_timeout
            .bound(async {
                let (client, subscription) = tokio::try_join!(
                    RedisClient::connect(options.clone()),
                    listener::subscribe(&options, connect_timeout),
                )?;
                let format = client.record_format().await?;
                Ok((client, subscription, format))
            })
            .await;
        let (client, subscription, format) = opened.map_err(|e| {
            tracing::debug!(backend = options.backend, error = %e, "connecting to Redis failed");
            LockError::backend(&url.redacted, None, e)
        })?;
        if format > FORMAT {
            let place = format!("this Redis (key `{}`)", options.format_key());
            return Err(super::format_refused(url, &place, format));
        }
        let signals = Arc::new(ReleaseSignals::default());
        let listener = tokio::spawn(listener::listen(
            Arc::downgrade(&signals),
            options,
            subscription,
        ));
        Ok(RedisBackend {
            client: Arc::new(client),
            signals,
            listener,
        })
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn max_key_len(&self) -> usize {
        MAX_KEY_LEN
    }

    fn admin(&self) -> Option<&dyn super::admin::Admin> {
        Some(self)
    }

    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(async move {
            let mut pending = PendingAttempt {
                client: self.client.clone(),
                lock: LockName::of(req.key),
                owner: *req.owner,
                ticket: String::new(),
                in_flight: true,
            };
            let attempt = self.client.attempt(&pending.lock, &req).await;
            pending.in_flight = attempt.is_err();
            Ok(match attempt? {
                Attempt::Granted(granted) => Some(granted),
                Attempt::Refused(_) => None,
            })
        })
    }

    fn acquire_until<'a>(
        &'a self,
        req: Acquire<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(
            self.client
                .acquire_queued(&self.signals.waiters, req, deadline),
        )
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let keep = (!keep_for.is_zero()).then(|| millis(keep_for));
            let client = &self.client;
            client
                .checked(&client.scripts.release, &LockName::of(key), owner, keep)
                .await
        })
    }

    /// Completes when the pub/sub connection, after losing the server, finds on
    /// reconnecting that this lease is gone (a restart without persistence, a `FLUSHALL`).
    /// Expiry and unreachable servers are left to the deadline and the renewals.
    fn lost<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut reconnected = self.signals.reconnected.subscribe();
            while reconnected.changed().await.is_ok() {
                match self.client.value(&LockName::of(key)).await {
                    Ok(Some(value))
                        if value.strip_suffix(b"+").unwrap_or(&value) == owner.hex_digits() => {}
                    Ok(_) => {
                        tracing::warn!(
                            backend = self.client.options.backend,
                            key,
                            "a held lease is gone from Redis (was the server restarted?)"
                        );
                        return;
                    }
                    // Unreachable again: the renewal or the deadline covers it.
                    Err(_) => {}
                }
            }
            // The backend is closing; its leases go with it.
            std::future::pending::<()>().await
        })
    }

    /// `TIME`: the server's seconds and microseconds.
    fn clock(&self) -> BoxFuture<'_, BackendResult<Option<ClockReading>>> {
        Box::pin(async move {
            let mut conn = self.client.conn.clone();
            let sent = Instant::now();
            let (secs, micros): (u64, u32) = self
                .client
                .call(redis::cmd("TIME").query_async(&mut conn))
                .await?;
            let time = Duration::new(secs, micros.saturating_mul(1000));
            Ok(Some(ClockReading::read_since(sent, time)))
        })
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let client = &self.client;
            client
                .checked(
                    &client.scripts.extend,
                    &LockName::of(key),
                    owner,
                    Some(millis(ttl)),
                )
                .await
        })
    }
}
