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
//! `{K}` holding the owner token (32 hex digits) with the lease as its expiry. Next to it,
//! sharing the hash tag so that every script touches one Redis Cluster slot:
//!
//! - `{K}:fence`, the fencing counter. When it is missing it is seeded from the server's
//!   clock in microseconds, then `INCR`ed on each acquisition; so it may expire (it keeps
//!   a day from its seeding) or be lost in a restart without persistence, and the next
//!   token is still greater than every earlier one (no server grants a lock per
//!   microsecond), as long as the server's clock does not step back;
//! - `{K}:queue` and `{K}:queue:leases`, the waiters: a sorted set of tickets in arrival
//!   order and one of their lease expiries. A waiter refreshes its lease at each poll; a
//!   waiter that vanishes is dropped from the queue 3 s later.
//!
//! Releases publish on the channel `{K}:released`; each backend listens on one pub/sub
//! connection with a pattern subscription to its prefix.
//!
//! # Operations
//!
//! Every operation is one `EVALSHA` of a Lua script, so it is atomic and one round trip:
//! acquire (`SET key token NX PX ttl` and `INCR` the counter, unless the key is held or
//! somebody else waits at the head of its queue), release (token-checked `DEL`, or
//! `PEXPIRE` to what remains of `min_hold`, then `PUBLISH` the ticket of the oldest live
//! waiter, if one waits), extend (token-checked `PEXPIRE`), and leave the queue. Each one
//! is bounded by `timeout_ms`.
//!
//! Waiting is first come, first served across processes: a waiter queues on its first
//! refused attempt and only the queue's head may take the key, so a holder that releases
//! and at once asks again waits behind it. The head is woken by the release's message;
//! a jittered poll (5 ms up to 500 ms, and at the lease's expiry) covers lost messages and
//! holders that crashed.
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
//! +incr +time +zrange +zscore +zadd +zrem +pexpire +pttl +del`. Without the channel
//! permission `connect` fails with the server's `NOPERM` message.
//!
//! # Limits
//!
//! Redis Cluster: every script touches one hash slot, and releases `PUBLISH` (which a
//! cluster forwards to every node), so the scripts are cluster-safe; but this backend
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
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

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
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(500);
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

/// Lua: the server's clock in milliseconds (read only when needed: `TIME` costs), and the
/// oldest waiter whose lease has not run out, dropping stale ones on the way.
const LIVE_HEAD: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live_head(q, qx)
  local now = nil
  while true do
    local head = redis.call('ZRANGE', q, 0, 0)[1]
    if not head then return nil end
    now = now or now_ms()
    local exp = redis.call('ZSCORE', qx, head)
    if exp and tonumber(exp) > now then return head end
    redis.call('ZREM', q, head)
    redis.call('ZREM', qx, head)
  end
end
";

/// KEYS: lock, fence, queue, queue leases. ARGV: owner token, ttl ms, `1` to queue when
/// refused, waiter lease ms, ticket. Returns the fence (> 0), or `-1 - pttl` if refused.
///
/// Uncontended, it runs `EXISTS queue`, `SET NX PX` and `INCR`. A missing counter is
/// seeded from the server's clock in microseconds and kept a day: a later seed is still
/// greater than every token the old counter gave, since no server grants a lock per
/// microsecond.
const ACQUIRE: &str = r"
local function refuse()
  if ARGV[3] == '1' then
    if not redis.call('ZSCORE', KEYS[3], ARGV[5]) then
      local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
      local seq = 1
      if last[2] then seq = tonumber(last[2]) + 1 end
      redis.call('ZADD', KEYS[3], string.format('%d', seq), ARGV[5])
    end
    local lease = tonumber(ARGV[4])
    redis.call('ZADD', KEYS[4], string.format('%d', now_ms() + lease), ARGV[5])
    redis.call('PEXPIRE', KEYS[3], 2 * lease)
    redis.call('PEXPIRE', KEYS[4], 2 * lease)
  end
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 then pttl = 0 end
  return -1 - pttl
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  if redis.call('EXISTS', KEYS[1]) == 1 then return refuse() end
  local head = live_head(KEYS[3], KEYS[4])
  if head and head ~= ARGV[5] then return refuse() end
  if head then
    redis.call('ZREM', KEYS[3], head)
    redis.call('ZREM', KEYS[4], head)
  end
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return refuse() end
local fence = redis.call('INCR', KEYS[2])
if fence == 1 then
  local t = redis.call('TIME')
  fence = tonumber(t[1]) * 1000000 + tonumber(t[2]) + 1
  redis.call('SET', KEYS[2], string.format('%d', fence), 'PX', 86400000)
end
return fence
";

/// KEYS: lock, queue, queue leases. ARGV: owner token, keep ms, channel. Returns 1 if the
/// token held the key.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local keep = tonumber(ARGV[2])
if keep > 0 then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 or keep < pttl then redis.call('PEXPIRE', KEYS[1], keep) end
  return 1
end
redis.call('DEL', KEYS[1])
local head = live_head(KEYS[2], KEYS[3])
if head then redis.call('PUBLISH', ARGV[3], head) end
return 1
";

/// KEYS: lock. ARGV: owner token, ttl ms. Returns 1 if the token held the key.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// KEYS: lock, queue, queue leases. ARGV: ticket, channel, owner token. Leaves the queue,
/// frees the key if the owner token took it (an attempt whose answer never arrived), and,
/// if the key is free, wakes the new head.
const LEAVE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[3] then redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local head = live_head(KEYS[2], KEYS[3])
  if head then redis.call('PUBLISH', ARGV[2], head) end
end
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
    /// The leases held through this backend whose holders watch for their loss (the
    /// attribute's bodies), by stored key, with their owner tokens.
    held: Waiters,
}

struct Scripts {
    acquire: Script,
    release: Script,
    extend: Script,
    leave: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            acquire: Script::new(&format!("{LIVE_HEAD}{ACQUIRE}")),
            release: Script::new(&format!("{LIVE_HEAD}{RELEASE}")),
            extend: Script::new(EXTEND),
            leave: Script::new(&format!("{LIVE_HEAD}{LEAVE}")),
        }
    }
}

/// The Redis names of one lock.
#[derive(Clone)]
struct Names {
    lock: String,
    fence: String,
    queue: String,
    leases: String,
    channel: String,
}

impl Names {
    fn of(stored: &str) -> Self {
        let lock = format!("{{{stored}}}");
        Names {
            fence: format!("{lock}:fence"),
            queue: format!("{lock}:queue"),
            leases: format!("{lock}:queue:leases"),
            channel: format!("{lock}:released"),
            lock,
        }
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

/// Milliseconds for Redis: at least 1, rounded up.
fn millis(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

fn param_ms(url: &BackendUrl, name: &str, default: Duration) -> Result<Duration, LockError> {
    match url.params.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(url.invalid(format!(
                "`{name}` must be a positive number of milliseconds, not `{v}`"
            ))),
        },
    }
}

fn param_bool(url: &BackendUrl, name: &str) -> Result<bool, LockError> {
    match url.params.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(v) => Err(url.invalid(format!("`{name}` must be `true` or `false`, not `{v}`"))),
    }
}

/// The client for `url`, without lockattr's own parameters.
fn client(url: &BackendUrl) -> Result<Client, LockError> {
    let tls = url.scheme == "rediss";
    let ca_file = url.params.get("tls_ca_file");
    let insecure = param_bool(url, "tls_insecure")?;
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
        let timeout = param_ms(url, "timeout_ms", DEFAULT_TIMEOUT)?;
        let connect_timeout = param_ms(url, "connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?;
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
            held: Waiters::default(),
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

    /// One acquisition attempt; `ticket` queues the caller when refused.
    async fn attempt(
        &self,
        names: &Names,
        req: &Acquire<'_>,
        ticket: Option<&str>,
    ) -> BackendResult<Attempt> {
        // A lease granted by this try runs from now, not from the start of a long wait.
        req.attempt.start();
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.acquire.prepare_invoke();
        inv.key(&names.lock)
            .key(&names.fence)
            .key(&names.queue)
            .key(&names.leases)
            .arg(req.owner.to_hex())
            .arg(millis(req.ttl))
            .arg(if ticket.is_some() { "1" } else { "0" })
            .arg(millis(WAITER_LEASE))
            .arg(ticket.unwrap_or(""));
        let answer: i64 = self.call(inv.invoke_async(&mut conn)).await?;
        Ok(if answer > 0 {
            Attempt::Granted(Granted {
                fence: answer as u64,
            })
        } else {
            let pttl = u64::try_from(-1 - answer).unwrap_or(0);
            Attempt::Refused(Duration::from_millis(pttl))
        })
    }

    /// Takes `ticket` out of the queue and frees the key if `owner` holds it.
    async fn leave(&self, names: &Names, ticket: &str, owner: &OwnerToken) -> BackendResult<()> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.leave.prepare_invoke();
        inv.key(&names.lock)
            .key(&names.queue)
            .key(&names.leases)
            .arg(ticket)
            .arg(&names.channel)
            .arg(owner.to_hex());
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
        let mut pause = POLL_MIN;
        loop {
            let remaining = match self.attempt(names, &req, Some(&ticket)).await? {
                Attempt::Granted(granted) => {
                    // The script took the ticket out of the queue.
                    place.armed = false;
                    return Ok(Some(granted));
                }
                Attempt::Refused(remaining) => remaining,
            };
            let now = Instant::now();
            if now >= deadline {
                place.armed = false;
                self.leave(names, &ticket, req.owner).await?;
                return Ok(None);
            }
            let mut sleep = crate::jitter(pause).min(deadline - now);
            if !remaining.is_zero() {
                // The lease's expiry frees the key without a message.
                sleep = sleep.min(remaining + Duration::from_millis(1));
            }
            tokio::select! {
                _ = wake.notify.notified() => pause = POLL_MIN,
                _ = tokio::time::sleep(sleep) => pause = (pause * 2).min(POLL_MAX),
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
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        let ticket = std::mem::take(&mut self.ticket);
        let owner = self.owner;
        runtime.spawn(async move {
            if let Err(e) = shared.leave(&names, &ticket, &owner).await {
                tracing::debug!(error = %e, key = names.lock, "cleaning up an abandoned Redis lock attempt failed; it expires by itself");
            }
        });
    }
}

/// The waiters of one key in this backend: registration id, ticket, and how to wake it.
type KeyWaiters = Vec<(u64, String, Arc<Notify>)>;

/// Registrations by stored key, each with a ticket or owner token and a waker: the
/// waiters woken by release messages, and the holders told of a lease that vanished.
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

    /// Every registration: its key, ticket and waker.
    fn entries(&self) -> Vec<(String, String, Arc<Notify>)> {
        self.lock()
            .iter()
            .flat_map(|(key, list)| {
                list.iter()
                    .map(move |(_, t, n)| (key.clone(), t.clone(), n.clone()))
            })
            .collect()
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
                tokio::time::sleep(crate::jitter(pause)).await;
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
                tokio::spawn(verify_held(shared, backend.clone()));
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

/// Checks, after the connection to the server was lost, that every watched lease is still
/// there with its owner token, and reports those that are not as lost.
async fn verify_held(shared: Arc<Shared>, backend: String) {
    for (key, owner, notify) in shared.held.entries() {
        let mut conn = shared.conn.clone();
        let lock = Names::of(&key).lock;
        let value: BackendResult<Option<String>> = shared
            .call(redis::cmd("GET").arg(&lock).query_async(&mut conn))
            .await;
        match value {
            Ok(Some(value)) if value == owner => {}
            Ok(_) => {
                tracing::warn!(
                    backend,
                    key,
                    "a held lease is gone from Redis (was the server restarted?)"
                );
                notify.notify_one();
            }
            // Unreachable again: the renewal or the deadline covers it.
            Err(_) => {}
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
            let attempt = self.shared.attempt(&pending.names, &req, None).await;
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
            let names = Names::of(key);
            let keep = if keep_for.is_zero() {
                0
            } else {
                millis(keep_for)
            };
            let mut conn = self.shared.conn.clone();
            let mut inv = self.shared.scripts.release.prepare_invoke();
            inv.key(&names.lock)
                .key(&names.queue)
                .key(&names.leases)
                .arg(owner.to_hex())
                .arg(keep)
                .arg(&names.channel);
            let held: i64 = self.shared.call(inv.invoke_async(&mut conn)).await?;
            Ok(held == 1)
        })
    }

    /// Completes when the pub/sub connection, after losing the server, finds on
    /// reconnecting that this lease is gone (a restart without persistence, a `FLUSHALL`).
    /// Expiry and unreachable servers are left to the deadline and the renewals.
    fn lost<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let watch = self.shared.held.register(key, &owner.to_hex());
            watch.notify.notified().await;
        })
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(async move {
            let names = Names::of(key);
            let mut conn = self.shared.conn.clone();
            let mut inv = self.shared.scripts.extend.prepare_invoke();
            inv.key(&names.lock).arg(owner.to_hex()).arg(millis(ttl));
            let held: i64 = self.shared.call(inv.invoke_async(&mut conn)).await?;
            Ok(held == 1)
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
        assert_eq!(n.fence, "{lockattr:flush:acme}:fence");
        assert_eq!(n.queue, "{lockattr:flush:acme}:queue");
        assert_eq!(n.leases, "{lockattr:flush:acme}:queue:leases");
        assert_eq!(key_of_channel(&n.channel), Some("lockattr:flush:acme"));
        assert_eq!(key_of_channel("other"), None);
    }

    #[test]
    fn globs_are_escaped_and_millis_round_up() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(3)), 3000);
    }

    #[test]
    fn bad_options_are_invalid_urls() {
        let url = BackendUrl::parse("redis://127.0.0.1?timeout_ms=0").unwrap();
        assert!(param_ms(&url, "timeout_ms", DEFAULT_TIMEOUT).is_err());
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
