//! `redis://` and `rediss://`: leases in Redis (5 or later) or a Redis-compatible server.
//!
//! # URL
//!
//! `redis://[user:password@]host[:port][/db][?options]`, or `rediss://…` for TLS. Options:
//!
//! - `prefix` (default `lockattr:`): the text every stored key starts with;
//! - `timeout_ms` (default 1000): the longest any one operation waits for an answer; a
//!   server that stops answering gives [`LockError::Backend`]
//!   after this, never a hang;
//! - `connect_timeout_ms` (default 1000): the longest one connection attempt takes;
//! - `tls_ca_file=PATH` (`rediss://` only): trust the PEM certificate(s) in `PATH` instead of
//!   the system's roots (a private CA, or a self-signed server certificate);
//! - `tls_insecure=true` (`rediss://` only): skip verification of the server's certificate
//!   and host name. The connection is encrypted but not authenticated: for tests only.
//!
//! # What is stored
//!
//! A lock key `K` (prefixed, and hashed when longer than 512 bytes) is stored as
//! `{K}` holding the owner token (32 hex digits) with the lease as its expiry; a `+` after
//! the token says that somebody waits. Next to it, sharing the hash tag so that every
//! script touches one Redis Cluster slot:
//!
//! - `{K}:fence`, the fencing counter, `INCR`ed on each attempt. When it is missing (the
//!   `INCR` gives a small number) it is seeded from the server's clock in nanoseconds, by
//!   a second call once per key and day; so it may expire (it keeps a day from its
//!   seeding) or be lost in a restart without persistence, and the next token is still
//!   greater than every earlier one (no server runs a command per nanosecond), as long as
//!   the server's clock does not step back;
//! - `{K}:queue` and `{K}:queue:leases`, the waiters: a sorted set of tickets in arrival
//!   order and one of their lease expiries. A waiter refreshes its lease at each poll; a
//!   waiter that vanishes is dropped from the queue 3 s later.
//!
//! Releases to a waiter publish on the channel `{K}:released`; each backend listens on
//! one pub/sub connection with a pattern subscription to its prefix.
//!
//! # Operations
//!
//! Every operation is one round trip. All but the uncontended acquisition are one
//! `EVALSHA` of a Lua script, so atomic; each script is given `{K}` and reaches the other
//! names by appending to it.
//!
//! - **acquire** (uncontended): `SET {K} token NX PX ttl`, `INCR {K}:fence` and
//!   `EXISTS {K}:queue`, pipelined, with no Lua (a script costs the server more than the two commands it
//!   would run). They need not be atomic: only the expiry of this very lease could let
//!   another caller in between them, and then the answer arrives after the lease's local
//!   deadline and the lease is given back, its token never handed out;
//! - **release**: token-checked `DEL`; with `min_hold`, `PEXPIRE` to what remains of it
//!   instead. When the value is marked with `+`, the key is handed to the oldest live
//!   waiter: set to `q:<its ticket>` for what remains of that waiter's lease, and its
//!   ticket published. Without a mark the script is a plain compare-and-delete;
//! - **extend**: token-checked `PEXPIRE`;
//! - **a waiter's attempt**: takes a key handed to its ticket, or a free key when no
//!   other live waiter is ahead; otherwise queues its ticket and marks the holder's value
//!   with `+`;
//! - **leaving the queue**: removes the ticket, and hands on a key handed to it.
//!
//! Each is bounded by `timeout_ms`.
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
//! reconnects, so the attribute cancels the body with `Lost` instead of letting it run on
//! while another process may take the key.
//!
//! # ACL
//!
//! With the default prefix, a Redis 6+ ACL user needs the keys `~{lockattr:*`, the
//! channel pattern `&{lockattr:*}:released` (literally: `PSUBSCRIBE` checks patterns
//! as written; Redis 7 gives new users no channels), and the commands `+evalsha +eval
//! +script|load +get +psubscribe +publish +ping` plus those the scripts run: `+exists +set
//! +incr +time +zrange +zscore +zadd +zrem +pexpire +pttl +del +append`.
//! Without the channel permission `connect` fails with the server's `NOPERM` message.
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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::wait::{self, millis, Poll, Waiting};
use super::{Acquire, Backend, BackendResult, BoxFuture, Granted};
use crate::error::{BoxError, LockError};
use crate::token::OwnerToken;
use crate::url::BackendUrl;

/// The longest stored key before it is hashed, in bytes.
const MAX_KEY_LEN: usize = 512;
/// `timeout_ms` unless the URL says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// `connect_timeout_ms` unless the URL says otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a waiter's place in a queue lasts without a refresh.
const WAITER_LEASE: Duration = Duration::from_secs(3);
/// The shortest and longest pause between two polls of a waiter.
const POLL: Poll = Poll::new(5, 500);
/// The longest pause before the pub/sub listener connects again.
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// The query parameters this backend takes.
const PARAMS: &[&str] = &[
    "prefix",
    "timeout_ms",
    "connect_timeout_ms",
    "tls_ca_file",
    "tls_insecure",
];

/// Fencing counters below this were made by an `INCR` on a missing counter, not seeded
/// from the clock (seeds are nanoseconds since 1970, about 1.8 × 10¹⁸ today).
const SEEDED_MIN: u64 = 1_000_000_000_000_000;

/// Lua: the next fencing token of the counter `f`, as a string (tokens pass 2⁵³, where
/// Lua's numbers stop being exact, so Lua never does arithmetic on them). A counter that
/// an `INCR` made from nothing is seeded from the server's clock in nanoseconds and kept
/// a day: a seed is greater than every token of an earlier counter, since no server runs
/// one command per nanosecond.
const NEXT_FENCE: &str = r"
local function next_fence(f)
  redis.call('INCR', f)
  local v = redis.call('GET', f)
  if string.len(v) < 16 then
    local t = redis.call('TIME')
    v = t[1] .. string.format('%06d', tonumber(t[2])) .. '000'
    redis.call('SET', f, v, 'PX', 86400000)
  end
  return v
end
";

/// Lua for the queue: the server's clock in milliseconds (read only when needed: `TIME`
/// costs), the oldest waiter of lock `l` whose lease has not run out (dropping stale ones
/// on the way), and handing `l` to it: set to `q:<ticket>` for what remains of that
/// waiter's lease, and the ticket published; or deleted if nobody waits.
const QUEUE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live_head(l)
  local q, qx = l .. ':queue', l .. ':queue:leases'
  local now = nil
  while true do
    local head = redis.call('ZRANGE', q, 0, 0)[1]
    if not head then return nil end
    now = now or now_ms()
    local exp = redis.call('ZSCORE', qx, head)
    if exp and tonumber(exp) > now then return head, tonumber(exp) - now end
    redis.call('ZREM', q, head)
    redis.call('ZREM', qx, head)
  end
end
local function hand_off(l)
  local head, left = live_head(l)
  if head then
    redis.call('SET', l, 'q:' .. head, 'PX', left)
    redis.call('PUBLISH', l .. ':released', head)
  else
    redis.call('DEL', l)
  end
end
";

/// KEYS: the fencing counter. Seeds it if an `INCR` made it from nothing; returns the
/// next token.
const SEED: &str = "return next_fence(KEYS[1])";

/// KEYS: lock. ARGV: owner token, ttl ms, waiter lease ms, ticket. A waiter's attempt:
/// takes the key if it was handed to this ticket, or is free with no other live waiter
/// ahead; otherwise queues (or refreshes) the ticket and marks the holder's value with
/// `+`, so that its release hands the key on. Returns the fence (a string), or
/// `-1 - pttl`.
const ACQUIRE_QUEUED: &str = r"
local l, ticket = KEYS[1], ARGV[4]
local q, qx = l .. ':queue', l .. ':queue:leases'
local v = redis.call('GET', l)
local mine = v == 'q:' .. ticket
if not v then
  local head = live_head(l)
  mine = head == nil or head == ticket
  if not mine then hand_off(l) end
end
if mine then
  redis.call('ZREM', q, ticket)
  redis.call('ZREM', qx, ticket)
  local value = ARGV[1]
  if redis.call('EXISTS', q) == 1 then value = value .. '+' end
  redis.call('SET', l, value, 'PX', ARGV[2])
  return next_fence(l .. ':fence')
end
if not redis.call('ZSCORE', q, ticket) then
  local last = redis.call('ZRANGE', q, -1, -1, 'WITHSCORES')
  local seq = 1
  if last[2] then seq = tonumber(last[2]) + 1 end
  redis.call('ZADD', q, string.format('%d', seq), ticket)
end
local lease = tonumber(ARGV[3])
redis.call('ZADD', qx, string.format('%d', now_ms() + lease), ticket)
redis.call('PEXPIRE', q, 2 * lease)
redis.call('PEXPIRE', qx, 2 * lease)
v = redis.call('GET', l)
if v and string.len(v) == 32 then redis.call('APPEND', l, '+') end
local pttl = redis.call('PTTL', l)
if pttl < 0 then pttl = 0 end
return -1 - pttl
";

/// KEYS: lock. ARGV: owner token, and `min_hold`'s remaining ms if any. Returns 1 if the
/// token held the key. Without waiters (no `+` mark) and `min_hold` it is a
/// compare-and-delete that ends before [`QUEUE`]'s functions are even defined; with
/// waiters, the key goes to the oldest live one.
const RELEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] and not ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
";
const RELEASE_SLOW: &str = r"
if v ~= ARGV[1] and v ~= ARGV[1] .. '+' then return 0 end
if ARGV[2] then
  local keep = tonumber(ARGV[2])
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 or keep < pttl then redis.call('PEXPIRE', KEYS[1], keep) end
  return 1
end
hand_off(KEYS[1])
return 1
";

/// KEYS: lock. ARGV: owner token. After an uncontended take that found waiters queued:
/// hands the key to the oldest live waiter (returns 0), or keeps it if none is live (1).
const YIELD: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local head, left = live_head(KEYS[1])
if not head then return 1 end
redis.call('SET', KEYS[1], 'q:' .. head, 'PX', left)
redis.call('PUBLISH', KEYS[1] .. ':released', head)
return 0
";

/// KEYS: lock. ARGV: owner token, ttl ms. Returns 1 if the token held the key.
const EXTEND: &str = r"
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] and v ~= ARGV[1] .. '+' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// KEYS: lock. ARGV: ticket, owner token. Leaves the queue; if the key was handed to
/// this ticket, or the owner token took it (an attempt whose answer never arrived), or
/// it is free, hands it to the next live waiter.
const LEAVE: &str = r"
local l = KEYS[1]
redis.call('ZREM', l .. ':queue', ARGV[1])
redis.call('ZREM', l .. ':queue:leases', ARGV[1])
local v = redis.call('GET', l)
if not v or v == 'q:' .. ARGV[1] or v == ARGV[2] or v == ARGV[2] .. '+' then hand_off(l) end
return 1
";

/// The Redis backend. Get one with [`connect("redis://…")`](crate::connect).
///
/// One reconnecting multiplexed connection carries every operation; one more connection
/// listens for releases. Both are closed when the last [`Locks`](crate::Locks) clone
/// holding this backend is dropped.
pub struct RedisBackend {
    shared: Arc<Shared>,
    listener: JoinHandle<()>,
}

/// What the background tasks (the listener, the queue leavers) share with the backend.
struct Shared {
    conn: ConnectionManager,
    timeout: Duration,
    scripts: Scripts,
    waiters: Waiters,
    /// Counts the release listener's reconnections: after each, the holders that watch
    /// for the loss of their lease (the attribute's bodies) check that it is still there.
    reconnected: watch::Sender<u64>,
    /// The URL without its password, for logs.
    backend: String,
}

struct Scripts {
    seed: Script,
    yield_to_waiters: Script,
    acquire_queued: Script,
    release: Script,
    extend: Script,
    leave: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            seed: Script::new(&format!("{NEXT_FENCE}{SEED}")),
            yield_to_waiters: Script::new(&format!("{QUEUE}{YIELD}")),
            acquire_queued: Script::new(&format!("{NEXT_FENCE}{QUEUE}{ACQUIRE_QUEUED}")),
            release: Script::new(&format!("{RELEASE}{QUEUE}{RELEASE_SLOW}")),
            extend: Script::new(EXTEND),
            leave: Script::new(&format!("{QUEUE}{LEAVE}")),
        }
    }
}

/// The Redis name of one lock, `{K}`; the scripts reach the names beside it (all under
/// the same hash tag) by appending to it.
#[derive(Clone)]
struct Names {
    lock: String,
}

impl Names {
    fn of(stored: &str) -> Self {
        let mut lock = String::with_capacity(stored.len() + 2);
        lock.push('{');
        lock.push_str(stored);
        lock.push('}');
        Names { lock }
    }
}

/// The stored key a release channel belongs to.
fn key_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix('{')?.strip_suffix("}:released")
}

/// `text` with the glob characters of Redis patterns escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An operation that got no answer in time.
#[derive(Debug)]
struct NoAnswer(Duration);

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redis did not answer within {:?} (the URL's `timeout_ms`)",
            self.0
        )
    }
}

impl std::error::Error for NoAnswer {}

/// A fencing token the server sent as text.
fn parse_fence(text: &str) -> BackendResult<u64> {
    text.parse()
        .map_err(|_| format!("the server sent `{text}` as a fencing token").into())
}

/// The client for `url`, without lockattr's own parameters.
fn client(url: &BackendUrl) -> Result<Client, LockError> {
    let tls = url.scheme == "rediss";
    let ca_file = url.params.get("tls_ca_file");
    let insecure = url.flag("tls_insecure")?;
    if !tls && (ca_file.is_some() || insecure) {
        return Err(url.invalid("`tls_ca_file` and `tls_insecure` need a `rediss://` URL"));
    }
    let mut target = format!("{}://{}", url.scheme, url.rest);
    if insecure && !target.contains('#') {
        target.push_str("#insecure");
    }
    let refused = |e: redis::RedisError| {
        // The client's messages describe the URL's shape, never its password.
        url.invalid(format!("the Redis client refused it: {e}"))
    };
    if tls {
        // rustls needs a process-wide crypto provider; keep the application's if it set one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| url.invalid(format!("cannot read `tls_ca_file` {path}: {e}")))?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Client::build_with_tls(target, certs).map_err(refused)
        }
        None => Client::open(target).map_err(refused),
    }
}

impl RedisBackend {
    /// Connects to the server `url` names and starts listening for releases.
    pub(crate) async fn open(url: &BackendUrl) -> Result<Self, LockError> {
        url.check_params(PARAMS)?;
        let timeout = url.millis("timeout_ms", DEFAULT_TIMEOUT)?;
        let connect_timeout = url.millis("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?;
        let client = client(url)?;
        let failed = |e: BoxError| LockError::backend(&url.redacted, None, e);

        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(connect_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let limit = connect_timeout * 2 + timeout;
        let conn = tokio::time::timeout(
            limit,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| failed(Box::new(NoAnswer(limit))))?
        .map_err(|e| failed(Box::new(e)))?;

        let shared = Arc::new(Shared {
            conn,
            timeout,
            scripts: Scripts::new(),
            waiters: Waiters::default(),
            reconnected: watch::Sender::new(0),
            backend: url.redacted.clone(),
        });
        let pattern = format!("{{{}*}}:released", glob_escape(url.prefix()));
        let (ready_tx, ready_rx) = oneshot::channel();
        let listener = tokio::spawn(listen(
            Arc::downgrade(&shared),
            client,
            pattern,
            connect_timeout,
            timeout,
            url.redacted.clone(),
            ready_tx,
        ));
        let backend = RedisBackend { shared, listener };
        match tokio::time::timeout(limit, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(backend),
            Ok(Ok(Err(e))) => Err(failed(e)),
            Ok(Err(_)) => Err(failed("the pub/sub listener stopped".into())),
            Err(_) => Err(failed(Box::new(NoAnswer(limit)))),
        }
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Shared {
    /// Runs one Redis call, bounded by the operation timeout.
    async fn call<T>(&self, op: impl Future<Output = redis::RedisResult<T>>) -> BackendResult<T> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Box::new(e)),
            Err(_) => Err(Box::new(NoAnswer(self.timeout))),
        }
    }

    /// One acquisition attempt outside the queue: `SET key token NX PX ttl` and `INCR`
    /// of the fencing counter, pipelined in one round trip, without Lua (a script costs
    /// the server more than these two commands). A refused attempt bumps the counter too,
    /// which only skips a number; a counter the `INCR` made from nothing is seeded by a
    /// second call (once per key and day).
    ///
    /// The two commands are not one transaction, and need not be: between them, only the
    /// expiry of this very lease could let another caller in, and then this answer
    /// arrives after the lease's local deadline, so [`Locks`](crate::Locks) gives the
    /// lease back instead of handing out its token.
    async fn attempt(&self, names: &Names, req: &Acquire<'_>) -> BackendResult<Attempt> {
        // A lease granted by this try runs from now, not from the start of a long wait.
        req.attempt.start();
        let mut conn = self.conn.clone();
        let mut fence_key = String::with_capacity(names.lock.len() + 6);
        fence_key.push_str(&names.lock);
        fence_key.push_str(":fence");
        let mut queue_key = String::with_capacity(names.lock.len() + 6);
        queue_key.push_str(&names.lock);
        queue_key.push_str(":queue");
        let (set, fence, queued): (redis::Value, u64, bool) = self
            .call(
                redis::pipe()
                    .cmd("SET")
                    .arg(&names.lock)
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
                .checked(&self.scripts.yield_to_waiters, &names.lock, req.owner, None)
                .await?;
        }
        let fence = if fence < SEEDED_MIN {
            let mut inv = self.scripts.seed.prepare_invoke();
            inv.key(&fence_key);
            let seeded: String = self.call(inv.invoke_async(&mut conn)).await?;
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
        names: &Names,
        req: &Acquire<'_>,
        ticket: &str,
    ) -> BackendResult<Attempt> {
        req.attempt.start();
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.acquire_queued.prepare_invoke();
        inv.key(&names.lock)
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
    async fn checked(
        &self,
        script: &Script,
        lock: &str,
        owner: &OwnerToken,
        ms: Option<u64>,
    ) -> BackendResult<bool> {
        let mut conn = self.conn.clone();
        let mut inv = script.prepare_invoke();
        inv.key(lock).arg(&owner.hex_digits()[..]);
        if let Some(ms) = ms {
            inv.arg(ms);
        }
        let answer: i64 = self.call(inv.invoke_async(&mut conn)).await?;
        Ok(answer == 1)
    }

    /// Takes `ticket` out of the queue and hands the key on if this ticket or `owner`
    /// holds it, or nobody does.
    async fn leave(&self, names: &Names, ticket: &str, owner: &OwnerToken) -> BackendResult<()> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.leave.prepare_invoke();
        inv.key(&names.lock)
            .arg(ticket)
            .arg(&owner.hex_digits()[..]);
        let _: i64 = self.call(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn acquire_queued(
        self: &Arc<Self>,
        req: Acquire<'_>,
        deadline: Instant,
    ) -> BackendResult<Option<Granted>> {
        let names = Names::of(req.key);
        let ticket = OwnerToken::random()
            .map_err(|e| format!("no random waiter ticket from the OS: {e}"))?
            .to_hex();
        // Registered before the first attempt, so a release right after it still wakes us.
        let wake = self.waiters.register(req.key, &ticket);
        let mut place = Abandon {
            shared: self.clone(),
            names,
            owner: *req.owner,
            ticket: ticket.clone(),
            armed: true,
        };
        let names = &place.names;
        // The first try is the uncontended one; only a refused caller queues.
        if let Attempt::Granted(granted) = self.attempt(names, &req).await? {
            place.armed = false;
            return Ok(Some(granted));
        }
        if Instant::now() >= deadline {
            place.armed = false;
            return Ok(None);
        }
        let mut waiting = Waiting::new(deadline, POLL);
        loop {
            let woken = wake.notify.notified();
            let remaining = match self.attempt_queued(names, &req, &ticket).await? {
                Attempt::Granted(granted) => {
                    // The script took the ticket out of the queue.
                    place.armed = false;
                    return Ok(Some(granted));
                }
                Attempt::Refused(remaining) => remaining,
            };
            // The lease's expiry frees the key without a message.
            let expiry = (!remaining.is_zero()).then(|| remaining + Duration::from_millis(1));
            if !waiting.pause(woken, expiry).await {
                place.armed = false;
                self.leave(names, &ticket, req.owner).await?;
                return Ok(None);
            }
        }
    }
}

enum Attempt {
    Granted(Granted),
    /// Refused; the lease's remaining time (zero: free, but others wait first).
    Refused(Duration),
}

/// An acquisition in flight. If it ends early (an error, or its future dropped while an
/// attempt was on the wire), the waiter's ticket leaves the queue and a lease the attempt
/// may have taken is freed, in the background; should that fail, both run out by
/// themselves.
struct Abandon {
    shared: Arc<Shared>,
    names: Names,
    owner: OwnerToken,
    /// Empty for `try_acquire`, which never queues.
    ticket: String,
    /// False once the acquisition ended normally.
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let names = self.names.clone();
        let shared = self.shared.clone();
        let ticket = std::mem::take(&mut self.ticket);
        let owner = self.owner;
        let what = format!(
            "a lock attempt on `{}` (backend {})",
            names.lock, shared.backend
        );
        wait::spawn_detached(format_args!("{what}"), async move {
            if let Err(e) = shared.leave(&names, &ticket, &owner).await {
                tracing::debug!(error = %e, key = names.lock, "cleaning up an abandoned Redis lock attempt failed; it expires by itself");
            }
        });
    }
}

/// The waiters of one key in this backend: registration id, ticket, and how to wake it.
type KeyWaiters = Vec<(u64, String, Arc<Notify>)>;

/// The waiters woken by release messages: registrations by stored key, each with its
/// ticket and a waker.
#[derive(Default)]
struct Waiters {
    by_key: Mutex<HashMap<String, KeyWaiters>>,
    next: AtomicU64,
}

/// A waiter's registration, removed on drop.
struct Registration<'a> {
    waiters: &'a Waiters,
    key: String,
    id: u64,
    notify: Arc<Notify>,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, KeyWaiters>> {
        // Each update is a single push or retain: a poisoned map is still consistent.
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, key: &str, ticket: &str) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.lock().entry(key.to_owned()).or_default().push((
            id,
            ticket.to_owned(),
            notify.clone(),
        ));
        Registration {
            waiters: self,
            key: key.to_owned(),
            id,
            notify,
        }
    }

    /// Wakes the waiter holding `ticket` on `key`, or all of them if `ticket` is empty.
    fn wake(&self, key: &str, ticket: &str) {
        if let Some(list) = self.lock().get(key) {
            for (_, t, notify) in list {
                if ticket.is_empty() || t == ticket {
                    notify.notify_one();
                }
            }
        }
    }

    /// Wakes every waiter: messages may have been lost.
    fn wake_all(&self) {
        for list in self.lock().values() {
            for (_, _, notify) in list {
                notify.notify_one();
            }
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        if let Some(list) = map.get_mut(&self.key) {
            list.retain(|(id, _, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

/// The pub/sub listener: one connection, one pattern subscription, reconnected with
/// backoff; every message wakes the waiter whose ticket it names.
async fn listen(
    shared: std::sync::Weak<Shared>,
    client: Client,
    pattern: String,
    connect_timeout: Duration,
    timeout: Duration,
    backend: String,
    ready: oneshot::Sender<Result<(), BoxError>>,
) {
    let mut ready = Some(ready);
    let mut pause = Duration::from_millis(50);
    loop {
        let subscribed = async {
            let mut pubsub =
                tokio::time::timeout(connect_timeout + timeout, client.get_async_pubsub())
                    .await
                    .map_err(|_| -> BoxError { Box::new(NoAnswer(connect_timeout + timeout)) })??;
            tokio::time::timeout(timeout, pubsub.psubscribe(&pattern))
                .await
                .map_err(|_| -> BoxError { Box::new(NoAnswer(timeout)) })??;
            Ok::<_, BoxError>(pubsub)
        }
        .await;
        let pubsub = match subscribed {
            Ok(pubsub) => pubsub,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                    return;
                }
                tracing::warn!(backend, error = %e, "Redis release listener cannot reconnect; waiters poll");
                tokio::time::sleep(crate::backend::wait::jitter(pause)).await;
                pause = (pause * 2).min(RESUBSCRIBE_MAX);
                continue;
            }
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        } else {
            tracing::info!(backend, "Redis release listener reconnected");
            // Releases may have passed while it was away, and a restart without
            // persistence may have wiped the leases held here.
            if let Some(shared) = shared.upgrade() {
                shared.waiters.wake_all();
                shared.reconnected.send_modify(|n| *n += 1);
            }
        }
        pause = Duration::from_millis(50);
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = futures_next(&mut messages).await {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if let Some(key) = key_of_channel(msg.get_channel_name()) {
                let ticket = std::str::from_utf8(msg.get_payload_bytes()).unwrap_or("");
                shared.waiters.wake(key, ticket);
            }
        }
        tracing::warn!(
            backend,
            "Redis release listener lost its connection; reconnecting"
        );
        match shared.upgrade() {
            Some(shared) => shared.waiters.wake_all(),
            None => return,
        }
    }
}

/// The next item of a stream, without a dependency on `futures`.
async fn futures_next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn max_key_len(&self) -> usize {
        MAX_KEY_LEN
    }

    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(async move {
            let mut pending = Abandon {
                shared: self.shared.clone(),
                names: Names::of(req.key),
                owner: *req.owner,
                ticket: String::new(),
                armed: true,
            };
            let attempt = self.shared.attempt(&pending.names, &req).await;
            pending.armed = attempt.is_err();
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
        Box::pin(self.shared.acquire_queued(req, deadline))
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let keep = (!keep_for.is_zero()).then(|| millis(keep_for));
            let shared = &self.shared;
            let lock = Names::of(key).lock;
            shared
                .checked(&shared.scripts.release, &lock, owner, keep)
                .await
        })
    }

    /// Completes when the pub/sub connection, after losing the server, finds on
    /// reconnecting that this lease is gone (a restart without persistence, a `FLUSHALL`).
    /// Expiry and unreachable servers are left to the deadline and the renewals.
    fn lost<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut reconnected = self.shared.reconnected.subscribe();
            while reconnected.changed().await.is_ok() {
                let lock = Names::of(key).lock;
                let mut conn = self.shared.conn.clone();
                let value: BackendResult<Option<Vec<u8>>> = self
                    .shared
                    .call(redis::cmd("GET").arg(&lock).query_async(&mut conn))
                    .await;
                match value {
                    Ok(Some(value))
                        if value.strip_suffix(b"+").unwrap_or(&value) == owner.hex_digits() => {}
                    Ok(_) => {
                        tracing::warn!(
                            backend = self.shared.backend,
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

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let shared = &self.shared;
            let lock = Names::of(key).lock;
            shared
                .checked(&shared.scripts.extend, &lock, owner, Some(millis(ttl)))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_one_hash_tag() {
        let n = Names::of("lockattr:flush:acme");
        assert_eq!(n.lock, "{lockattr:flush:acme}");
        assert!(ACQUIRE_QUEUED.contains("l .. ':queue'"));
        let channel = format!("{}:released", n.lock);
        assert!(QUEUE.contains("l .. ':released'"));
        assert_eq!(key_of_channel(&channel), Some("lockattr:flush:acme"));
        assert_eq!(key_of_channel("other"), None);
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn bad_options_are_invalid_urls() {
        let url = BackendUrl::parse("redis://127.0.0.1?timeout_ms=0").unwrap();
        assert!(url.millis("timeout_ms", DEFAULT_TIMEOUT).is_err());
        let url = BackendUrl::parse("redis://127.0.0.1?tls_insecure=true").unwrap();
        assert!(client(&url).is_err(), "TLS options need rediss://");
        let url = BackendUrl::parse("rediss://127.0.0.1?tls_insecure=maybe").unwrap();
        assert!(client(&url).is_err());
        for bad in [
            "redis://u:hunter2@[bad",
            "redis://u:hunter2@h:notaport",
            "redis://u:hunter2@h/db",
        ] {
            let url = BackendUrl::parse(bad).unwrap();
            let e = client(&url)
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(matches!(e, LockError::InvalidUrl { .. }), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }
}
