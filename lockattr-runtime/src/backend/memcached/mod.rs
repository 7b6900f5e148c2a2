//! `memcached://`: leases in Memcached 1.6 or later, through its meta protocol.
//!
//! # URL
//!
//! `memcached://host[:port]` (port 11211 unless given), with options:
//!
//! - `prefix` (default `lockattr:`): the text every stored key starts with, for example
//!   `memcached://127.0.0.1:11211?prefix=billing:`;
//! - `timeout_ms` (default 1000): the longest one operation (an acquisition attempt, a
//!   release, an extension, one poll of a waiter) waits for the server, including waiting
//!   for a free connection and opening one; a server that stops answering gives
//!   [`LockError::Backend`] after this, never a hang. Example:
//!   `memcached://127.0.0.1?timeout_ms=250`;
//! - `connect_timeout_ms` (default 1000): the longest opening a connection takes (the
//!   first one, opened by [`connect`](crate::connect) with the storage format check, and
//!   each new one later). Example: `memcached://10.0.0.7:11211?connect_timeout_ms=500`.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lockattr::LockError> {
//! use std::time::Duration;
//!
//! let url = "memcached://127.0.0.1:11211?prefix=billing:&timeout_ms=250&connect_timeout_ms=500";
//! let locks = lockattr::connect(url).await?;
//! // Memcached counts whole seconds: the ttl is too.
//! if let Some(guard) = locks.lock("invoice:42").ttl(Duration::from_secs(10)).try_acquire().await? {
//!     println!("fencing token {}", guard.token());
//!     guard.release().await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A limit that runs out is a [`LockError::Backend`] whose message names the parameter and
//! its value ("Memcached did not answer within 1000 ms (the URL's `timeout_ms`)").
//! Memcached's text protocol has no login, so a URL with `user:password@` is refused
//! rather than sent in the clear; messages show the URL redacted all the same.
//!
//! # What is stored
//!
//! A lock key `K` (prefixed, and hashed when longer than 248 bytes, so that every name
//! below fits Memcached's 250) is stored under three names, each `K` and a two-byte
//! suffix (so no lock's names meet another's):
//!
//! - `K|l`, the lease: the owner token (32 hex digits), with the lease as its expiry;
//! - `K|t`, the ticket counter of the waiters (kept 60 s after the last ticket);
//! - `K|w`, the head of the waiters' line: `<ticket>` while that waiter claims the next
//!   turn, `s<ticket>` once it was served (kept about 2 s without a refresh).
//!
//! One more name per prefix, `<prefix>|format`, records the storage format (`1`) without
//! expiry, written when a backend opens; a backend refuses a server whose marker names a
//! newer format (`docs/design.md`, "Mixed versions").
//!
//! Memcached keys cannot hold spaces or control bytes. The attribute's escaping never
//! produces them (a placeholder's value is written as `%XX` outside `[A-Za-z0-9._-]`); a
//! key built by hand that has one is refused with an error, never sent.
//!
//! # Operations
//!
//! - **acquire** (uncontended): one round trip, two pipelined commands: `ms K|l 32
//!   T<ttl> ME c` (add: stored only if the key is free; answers the item's CAS), and
//!   `mg K|w v`. When the line has a head (somebody waits, or was just served while
//!   others wait), the key just taken is given back (`md K|l C<cas>`, a second round
//!   trip) and the caller is refused or queues: a newcomer never jumps the line;
//! - **release**: one round trip, `md K|l C<cas>`: deletes only the item this lease
//!   stored (any other write to it, such as a takeover after expiry, changed its CAS).
//!   With `min_hold`, `ms K|l … T<rest> C<cas>` instead keeps it for what remains;
//! - **extend**: one round trip, `ms K|l … T<ttl> C<cas> c`, which also gives the new CAS;
//!   a lease that was taken over or is gone answers `EX` or `NF`, and the caller sees
//!   [`LockError::Lost`];
//! - **waiting**: a refused caller takes a ticket (`ma K|t`), and the waiter holding the
//!   lowest live ticket claims the next turn in `K|w` (by add, or by CAS over a younger
//!   claim). Only the claimant takes the key when it comes free, then marks its turn
//!   served; the next ticket claims at once, and each later one after letting every
//!   older ticket try for 30 ms (a waiter that vanished holds nobody up for longer). A
//!   claim not refreshed for about 2 s lapses. A served mark is deleted at once when no
//!   later ticket was handed out, so an uncontended acquisition after the line emptied
//!   finds it empty. Memcached cannot notify, so waiters poll
//!   (jittered, 2 ms up to 50 ms); a release in the same process wakes its waiters at once.
//!
//! The CAS of each lease is remembered by the backend that took it; a release or
//! extension without it (more than 4096 leases held at once) reads it first with `mg`.
//!
//! # Fencing tokens
//!
//! A Memcached process gives every stored item a CAS number from one counter that only
//! grows, over all keys, from its start. The token is `started × 10⁹ + CAS`, where
//! `started` is the start of the server process in seconds (`stats`: `time - uptime`,
//! read by each connection when it opens). So tokens need no counter item that could be
//! evicted; within one server process they grow with the CAS; and a restarted server
//! (which starts its CAS over) gives greater ones, as long as the earlier process made
//! fewer than 10⁹ writes per second of its life (Memcached makes a few million at most),
//! its clock does not step back, and it had run for at least a second.
//!
//! # Time
//!
//! Memcached counts expiries in whole seconds on a clock that ticks once a second: an
//! item stored with `T<n>` lives more than `n - 1` and at most `n` seconds (measured here:
//! `T2` items went after 1.1 to 1.8 s). A ttl must therefore be whole seconds (others are
//! [`LockError::InvalidOptions`]), and a lease of `n`
//! seconds is stored with `T<n + 1>`: the server never frees the key before the holder's
//! local deadline, and frees a crashed holder's key at most about a second after it.
//! What remains of a `min_hold` is rounded up the same way. Expiries over 30 days (which
//! Memcached would read as a date) are refused.
//!
//! # Operators
//!
//! The operator's `lockattr held`, `inspect` and `release --force` (and
//! [`Locks::held`](crate::Locks::held), [`inspect`](crate::Locks::inspect),
//! [`force_release`](crate::Locks::force_release)) work here, with these limits:
//!
//! - `held` lists keys with `lru_crawler metadump hash` (or `all`), which walks the
//!   **whole cache** (every item of every application on the server) and sends a line
//!   per item: seconds of work on a large cache. A server started with `-o no_lru_crawler` (or `-X`) cannot
//!   list: [`LockError::Unsupported`], the CLI's exit code 4; `inspect` and a forced
//!   release work on every server.
//! - The token shown is `<=N`, `N = started × 10⁹ +` the lock item's CAS: the holder's own
//!   token until its first extension, which stores the item under a new CAS.
//! - The time left is whole seconds (Memcached's `t`, less the second added to every
//!   expiry); the owner is unknown (the item holds the owner token alone).
//! - A forced release deletes `K|l` whoever holds it (`md` without a CAS) and wakes this
//!   process's waiters; the next holder's CAS, so its token, is greater, and the forced
//!   holder's extend or release (CAS no longer matching) is [`LockError::Lost`].
//!
//! # Limits
//!
//! Memcached is a cache. It evicts items under memory pressure (unless started with
//! `-M`) and forgets everything when it restarts: either frees a held lock early. A
//! holder learns it at its next renewal or release (`NF`), which is
//! [`LockError::Lost`], so use `renew = true` with a ttl of a few
//! seconds, and fencing tokens where a second holder would do harm. One server only: a
//! client-side hash over several servers, or a proxy that may route one key to two of
//! them, is not supported.
//!
//! # Client
//!
//! The meta protocol is written here directly over tokio's `TcpStream`, with a pool of at
//! most 16 connections. The crates that speak it (`async-memcached`, `memcache`) do not
//! give back the CAS of an add (`ms … ME c`), nor pipeline three commands in one round
//! trip, nor let each operation be bounded as one; the protocol needed is a few line
//! formats, and owning it keeps every byte on the wire in view.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Acquire, Backend, BackendResult, BoxFuture, Granted, FORMAT};
use crate::error::LockError;
use crate::token::OwnerToken;
use crate::url::BackendUrl;

mod admin;
mod names;
mod options;
mod protocol;
mod waiting;

use names::Names;
use options::{expiry_secs, MemcachedOptions};
use protocol::{Answers, Command, Pool, Reply};
use waiting::LocalWaiters;

/// The longest stored key before it is hashed: Memcached's 250 bytes, less the suffix.
const MAX_KEY_LEN: usize = 250 - names::SUFFIX_LEN;
/// The most lease CASes remembered; past it, the map starts over.
const MAX_REMEMBERED: usize = 4096;

/// The Memcached backend. Get one with [`connect("memcached://…")`](crate::connect).
///
/// A pool of connections carries every operation; they are closed when the last
/// [`Locks`](crate::Locks) clone holding this backend is dropped.
pub struct MemcachedBackend {
    client: Arc<Client>,
}

/// The pool and what the backend remembers of the leases it holds.
pub(super) struct Client {
    pool: Pool,
    /// The CAS of each lease held, by stored key and owner token.
    leases: Mutex<HashMap<(String, [u8; 32]), u64>>,
}

/// What one attempt outside the line got.
pub(super) enum Taken {
    Granted(Granted),
    Refused,
}

impl MemcachedBackend {
    /// Opens the first connection, checks the storage format recorded on the server and
    /// that it hands out CAS numbers. Bounded by `connect_timeout_ms`.
    pub(crate) async fn open(url: &BackendUrl) -> Result<Self, LockError> {
        let options = MemcachedOptions::from_url(url)?;
        tracing::debug!(backend = options.backend, "connecting to Memcached");
        let connect_timeout = options.connect_timeout;
        let format_key = options.format_key();
        let opened = connect_timeout
            .bound(async {
                let pool = Pool::open(options.clone()).await?;
                let client = Client {
                    pool,
                    leases: Mutex::default(),
                };
                let format = client.record_format(&format_key).await?;
                Ok((client, format))
            })
            .await;
        let (client, format) = opened.map_err(|e| {
            tracing::debug!(backend = options.backend, error = %e, "connecting to Memcached failed");
            LockError::backend(&url.redacted, None, e)
        })?;
        if format > FORMAT {
            let place = format!("this Memcached (key `{format_key}`)");
            return Err(super::format_refused(url, &place, format));
        }
        Ok(MemcachedBackend {
            client: Arc::new(client),
        })
    }
}

impl Client {
    async fn run(&self, commands: &[Command]) -> BackendResult<Answers> {
        self.pool.run(commands).await
    }

    async fn run_one(&self, command: Command) -> BackendResult<Reply> {
        let mut answers = self.run(std::slice::from_ref(&command)).await?;
        Ok(answers.replies.swap_remove(0))
    }

    /// Adds the format marker unless there is one and answers the one recorded; also
    /// checks that the server hands out CAS numbers (not started with `-C`).
    async fn record_format(&self, key: &str) -> BackendResult<u32> {
        let add = Command::set(key, "T0 ME c", FORMAT.to_string().as_bytes());
        let answers = self
            .run(&[add, Command::line(&format!("mg {key} v c"))])
            .await?;
        match &answers.replies[..] {
            [_, Reply::Value { data, cas, .. }] => {
                if cas.unwrap_or(0) == 0 {
                    return Err(
                        "this Memcached hands out no CAS numbers (started with `-C`?): \
                                leases cannot be checked without them"
                            .into(),
                    );
                }
                let text = String::from_utf8_lossy(data);
                text.parse().map_err(|_| {
                    format!("the storage format marker `{key}` holds `{text}`, not a number").into()
                })
            }
            other => Err(format!("unexpected answer to the format marker: {other:?}").into()),
        }
    }

    /// The name the local waiters of a lock are registered under: server and lock.
    fn local_name(&self, names: &Names) -> String {
        format!("{} {}", self.pool.options.address, names.lock)
    }

    /// `ms K|l 32 T<ttl> ME c` with the owner token: add the lease if the key is free.
    fn take_command(&self, names: &Names, req: &Acquire<'_>) -> Command {
        let flags = format!("T{} ME c", expiry_secs(req.ttl));
        Command::set(&names.lock, &flags, &req.owner.hex_digits())
    }

    /// The grant an add's answer gives, remembering the lease's CAS; `None` if refused.
    fn granted(
        &self,
        names: &Names,
        req: &Acquire<'_>,
        reply: &Reply,
        server_started: u64,
    ) -> BackendResult<Option<Granted>> {
        match reply {
            Reply::Stored { cas: Some(cas) } if *cas > 0 => {
                let fence = server_started
                    .checked_mul(1_000_000_000)
                    .and_then(|f| f.checked_add(*cas))
                    .ok_or("the fencing token would overflow 64 bits")?;
                self.remember(&names.lock, req.owner.hex_digits(), *cas);
                Ok(Some(Granted { fence }))
            }
            Reply::NotStored => Ok(None),
            other => Err(format!("unexpected answer to an acquisition: {other:?}").into()),
        }
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<(String, [u8; 32]), u64>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, lock: &str, owner: [u8; 32], cas: u64) {
        let mut leases = self.leases();
        if leases.len() >= MAX_REMEMBERED {
            leases.clear();
        }
        leases.insert((lock.to_owned(), owner), cas);
    }

    /// The CAS of `owner`'s lease on `lock`: remembered, or read (`None`: not its lease).
    async fn lease_cas(&self, lock: &str, owner: &[u8; 32]) -> BackendResult<Option<u64>> {
        if let Some(cas) = self.leases().get(&(lock.to_owned(), *owner)) {
            return Ok(Some(*cas));
        }
        match self
            .run_one(Command::line(&format!("mg {lock} v c")))
            .await?
        {
            Reply::Value { data, cas, .. } if data == owner => Ok(cas),
            _ => Ok(None),
        }
    }

    /// One attempt outside the line (see "acquire" in the [module docs](self)).
    async fn attempt(&self, names: &Names, req: &Acquire<'_>) -> BackendResult<Taken> {
        let answers = self
            .run(&[
                self.take_command(names, req),
                Command::line(&format!("mg {} v", names.wanted)),
            ])
            .await?;
        let [taken, head] = &answers.replies[..] else {
            return Err("the server sent too few answers".into());
        };
        let Some(granted) = self.granted(names, req, taken, answers.server_started)? else {
            return Ok(Taken::Refused);
        };
        if waiting::line_waits(head) {
            self.delete_if(&names.lock, &req.owner.hex_digits()).await?;
            return Ok(Taken::Refused);
        }
        Ok(Taken::Granted(granted))
    }

    /// Deletes `lock` if `owner` holds it; whether it did.
    async fn delete_if(&self, lock: &str, owner: &[u8; 32]) -> BackendResult<bool> {
        let Some(cas) = self.lease_cas(lock, owner).await? else {
            return Ok(false);
        };
        self.leases().remove(&(lock.to_owned(), *owner));
        let reply = self
            .run_one(Command::line(&format!("md {lock} C{cas}")))
            .await?;
        Ok(matches!(reply, Reply::Stored { .. }))
    }

    /// Stores `owner`'s lease on `lock` again with expiry `keep` if it still holds it,
    /// remembering the new CAS; whether it did.
    async fn restore(&self, lock: &str, owner: &[u8; 32], keep: Duration) -> BackendResult<bool> {
        let Some(cas) = self.lease_cas(lock, owner).await? else {
            return Ok(false);
        };
        let flags = format!("T{} C{cas} c", expiry_secs(keep));
        match self.run_one(Command::set(lock, &flags, owner)).await? {
            Reply::Stored { cas: Some(new) } => {
                self.remember(lock, *owner, new);
                Ok(true)
            }
            _ => {
                self.leases().remove(&(lock.to_owned(), *owner));
                Ok(false)
            }
        }
    }
}

impl Backend for MemcachedBackend {
    fn kind(&self) -> &'static str {
        "memcached"
    }

    fn max_key_len(&self) -> usize {
        MAX_KEY_LEN
    }

    fn refuses_ttl(&self, ttl: Duration) -> Option<String> {
        options::ttl_refused(ttl)
    }

    /// An item stored with `T<n>` lives up to `n` seconds and expiries are rounded up to
    /// whole seconds plus one (`options::expiry_secs`): a key can outlive the time asked
    /// by up to two seconds.
    fn expiry_slack(&self) -> Duration {
        Duration::from_secs(2)
    }

    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(async move {
            let names = Names::of(req.key)?;
            let mut pending = waiting::Pending {
                client: self.client.clone(),
                names: names.clone(),
                owner: req.owner.hex_digits(),
                ticket: None,
                in_flight: true,
            };
            let taken = self.client.attempt(&names, &req).await;
            pending.in_flight = taken.is_err();
            Ok(match taken? {
                Taken::Granted(granted) => Some(granted),
                Taken::Refused => None,
            })
        })
    }

    fn acquire_until<'a>(
        &'a self,
        req: Acquire<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(self.client.acquire_queued(req, deadline))
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let names = Names::of(key)?;
            let owner = owner.hex_digits();
            let held = if keep_for.is_zero() {
                self.client.delete_if(&names.lock, &owner).await?
            } else {
                let held = self.client.restore(&names.lock, &owner, keep_for).await?;
                self.client.leases().remove(&(names.lock.clone(), owner));
                held
            };
            LocalWaiters::global().wake(&self.client.local_name(&names));
            Ok(held)
        })
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let names = Names::of(key)?;
            let extended = self
                .client
                .restore(&names.lock, &owner.hex_digits(), ttl)
                .await?;
            if !extended {
                // The caller reports the loss (`Lost`); this says what Memcached can mean by it.
                tracing::debug!(
                    backend = self.client.pool.options.backend,
                    key,
                    "a held lease is gone from Memcached (expired, evicted, or the server restarted)"
                );
            }
            Ok(extended)
        })
    }

    /// Listing (`lru_crawler metadump`), inspecting and force-releasing, for operators
    /// (see `admin.rs`).
    fn admin(&self) -> Option<&dyn super::admin::Admin> {
        Some(self)
    }
}
