//! The backend trait and the backends.
//!
//! A backend only stores leases: take a key for a ttl if it is free, give it back or
//! extend it if the caller still owns it. Everything else (policies, waiting deadlines,
//! renewal, lost detection, tracing, key prefixes and hashing) lives once above it, in
//! [`Locks`](crate::Locks) and the attribute's runtime.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::error::{BoxError, LockError};
use crate::token::OwnerToken;
use crate::url::BackendUrl;

pub mod admin;
#[cfg(any(feature = "redis", feature = "memcached"))]
mod limit;
#[cfg(feature = "memcached")]
pub mod memcached;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod session;
#[cfg(feature = "postgres")]
pub use session::postgres;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod table;
pub(crate) mod wait;

#[cfg(any(
    feature = "redis",
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "memcached"
))]
mod format;
#[cfg(any(
    feature = "redis",
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "memcached"
))]
pub(crate) use format::{format_refused, FORMAT};

/// The query parameters sqlx's PostgreSQL driver reads: passed on to it by the session and
/// lease-table backends.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES_CLIENT_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
    "statement-cache-capacity",
];

/// The query parameters sqlx's MySQL driver reads: passed on to it by the session and
/// lease-table backends.
#[cfg(feature = "mysql")]
pub(crate) const MYSQL_CLIENT_PARAMS: &[&str] = &[
    "ssl-mode",
    "sslmode",
    "ssl-ca",
    "sslca",
    "ssl-cert",
    "sslcert",
    "ssl-key",
    "sslkey",
    "charset",
    "collation",
    "socket",
    "timezone",
    "statement-cache-capacity",
    "password",
];

/// The URL schemes of the backends compiled into this build.
pub const COMPILED_IN: &[&str] = &[
    "memory",
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "redis")]
    "rediss",
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "postgres")]
    "postgresql",
    #[cfg(feature = "mysql")]
    "mysql",
    #[cfg(feature = "mysql")]
    "mariadb",
    #[cfg(feature = "memcached")]
    "memcached",
];

/// The cargo feature of `lockattr` that builds the backend of each server scheme.
const FEATURES: &[(&str, &str)] = &[
    ("redis", "redis"),
    ("rediss", "redis"),
    ("sqlite", "sqlite"),
    ("postgres", "postgres"),
    ("postgresql", "postgres"),
    ("mysql", "mysql"),
    ("mariadb", "mysql"),
    ("memcached", "memcached"),
];

/// Opens the backend `url` names: the one place a scheme is mapped to a backend. Each
/// backend reads and checks its own query parameters.
pub(crate) async fn open(url: &BackendUrl) -> Result<Box<dyn Backend>, LockError> {
    match url.scheme.as_str() {
        "memory" => Ok(Box::new(memory::MemoryBackend::open(url)?)),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Box::new(redis::RedisBackend::open(url).await?)),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Box::new(table::open(url).await?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" if table::is_table_url(url) => {
            Ok(Box::new(table::open(url).await?))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => open_session_postgres(url).await,
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" if table::is_table_url(url) => Ok(Box::new(table::open(url).await?)),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => open_session_mysql(url).await,
        #[cfg(feature = "memcached")]
        "memcached" => Ok(Box::new(memcached::MemcachedBackend::open(url).await?)),
        other => Err(not_compiled_in(url, other)),
    }
}

/// The error for a scheme this build cannot open: one whose cargo feature is off, or one
/// lockattr does not have.
fn not_compiled_in(url: &BackendUrl, scheme: &str) -> LockError {
    match FEATURES.iter().find(|(s, _)| *s == scheme) {
        Some((_, feature)) => url.invalid(format!(
            "this build of lockattr has no `{scheme}` backend: enable the cargo feature \
             `{feature}` of `lockattr`; this build has: {}",
            COMPILED_IN.join(", ")
        )),
        None => url.invalid(format!(
            "unknown backend `{scheme}`; expected one of: {}",
            COMPILED_IN
                .iter()
                .copied()
                .chain(
                    FEATURES
                        .iter()
                        .map(|(s, _)| *s)
                        .filter(|s| !COMPILED_IN.contains(s))
                )
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `postgres://` without `mode=table`: PostgreSQL advisory locks.
#[cfg(feature = "postgres")]
async fn open_session_postgres(url: &BackendUrl) -> Result<Box<dyn Backend>, LockError> {
    Ok(Box::new(postgres::open(url).await?))
}

/// `mysql://` without `mode=table`: MySQL / MariaDB `GET_LOCK`.
#[cfg(feature = "mysql")]
async fn open_session_mysql(url: &BackendUrl) -> Result<Box<dyn Backend>, LockError> {
    Ok(Box::new(session::mysql::open(url).await?))
}

/// A boxed, `Send` future: the return type of the [`Backend`] methods, so that the trait
/// stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a backend's operations return: a client error is wrapped into
/// [`LockError::Backend`] with the key and backend by the caller.
pub type BackendResult<T> = Result<T, BoxError>;

/// One acquisition attempt.
#[derive(Debug, Clone, Copy)]
pub struct Acquire<'a> {
    /// The stored key: prefixed, and hashed if it was too long for [`Backend::max_key_len`].
    pub key: &'a str,
    /// The random owner token the lease is taken with; release and extend must present it.
    pub owner: &'a OwnerToken,
    /// How long the lease lasts unless extended.
    pub ttl: Duration,
    /// When the try that was granted was sent. A backend that tries more than once while
    /// waiting calls [`AttemptClock::start`] before each try, so that the lease's local
    /// deadline (and what remains of `min_hold`) counts from that try rather than from the
    /// start of the wait; one that does not leaves the start of the wait, which is only
    /// right for a lease granted at once.
    pub attempt: &'a AttemptClock,
}

/// Where a backend records when its latest acquisition try was sent (see
/// [`Acquire::attempt`]).
#[derive(Debug, Default)]
pub struct AttemptClock(std::sync::Mutex<Option<Instant>>);

impl AttemptClock {
    /// Records that a try is being sent now.
    pub fn start(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// When the latest try was sent, if a backend recorded one.
    pub fn last(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A reading of a backend's clock ([`Backend::clock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReading {
    /// The backend's time, since the Unix epoch.
    pub time: Duration,
    /// The instant of this machine's monotonic clock that `time` stands for: the middle of
    /// the round trip of the statement that read it (not counting a connection opened for
    /// it), where the error is smallest.
    pub at: Instant,
}

impl ClockReading {
    /// The reading `time` of a statement sent at `sent` whose answer is in now.
    pub fn read_since(sent: Instant, time: Duration) -> Self {
        ClockReading {
            time,
            at: sent + sent.elapsed() / 2,
        }
    }
}

/// A lease the backend granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The fencing token: greater than every earlier one for this key on this backend.
    pub fence: u64,
}

/// What a lock option needs from a backend, asked before first use so that a backend that
/// cannot keep it answers [`LockError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// `min_hold`: keep the key taken after release, even if the process exits.
    MinHold,
    /// `renew` / `extend`: push the expiry of a held lease further.
    Extend,
}

/// A lock store. Implementations keep the semantics of `docs/design.md`: the server (not the caller's
/// clock alone) enforces the ttl, release and extend check the owner token, and fencing
/// tokens only grow per key.
pub trait Backend: Send + Sync + 'static {
    /// The backend's kind, as in its URL scheme: `"memory"`, `"redis"`, …
    fn kind(&self) -> &'static str;

    /// The longest stored key, in bytes; longer ones are hashed by
    /// [`storage_key`](crate::key::storage_key). Must be at least
    /// [`MIN_HASHED_KEY_LEN`](crate::key::MIN_HASHED_KEY_LEN) plus the prefix length.
    fn max_key_len(&self) -> usize {
        usize::MAX
    }

    /// Whether the backend can keep `capability`; the default says yes to all.
    fn supports(&self, capability: Capability) -> bool {
        let _ = capability;
        true
    }

    /// Why the backend cannot keep a lease of `ttl` (for instance a server that counts
    /// whole seconds), if it cannot: the request is then
    /// [`LockError::InvalidOptions`] with this reason. The default keeps every ttl.
    fn refuses_ttl(&self, ttl: Duration) -> Option<String> {
        let _ = ttl;
        None
    }

    /// Takes the key if nobody holds it (and, on backends that queue, nobody waits for it).
    fn try_acquire<'a>(&'a self, req: Acquire<'a>)
        -> BoxFuture<'a, BackendResult<Option<Granted>>>;

    /// Takes the key, waiting until `deadline` for it; `None` if it stayed taken.
    ///
    /// The default polls [`try_acquire`](Self::try_acquire) with jittered exponential
    /// backoff, woken early by [`released`](Self::released). Backends with a server-side
    /// queue or their own waiter queue override it to hand the key to waiters in order.
    fn acquire_until<'a>(
        &'a self,
        req: Acquire<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(poll_until(self, req, deadline))
    }

    /// A future that completes when `key` may have been released (a hint: spurious wake-ups
    /// are fine). The default never completes, which leaves waiting to the poll.
    fn released<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        let _ = key;
        Box::pin(std::future::pending())
    }

    /// Gives the key back if `owner` still holds it. With a non-zero `keep_for` the key stays
    /// taken that much longer (what remains of `min_hold`) instead of being freed at once.
    /// Returns whether `owner` held it.
    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>>;

    /// Sets the expiry of a held lease to `ttl` from now if `owner` still holds it; returns
    /// whether it did.
    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>>;

    /// How much later than asked the backend may free an expired key: zero (the default)
    /// for a backend that expires keys on time, two seconds for Memcached's whole-second
    /// clock. With a slack, a hold after release (`min_hold`, `every`) is ended by the
    /// holder when it ends, and the backend's expiry only backs it up.
    fn expiry_slack(&self) -> Duration {
        Duration::ZERO
    }

    /// A reading of the backend's clock, for scheduled locks (`every`): instances whose
    /// own clocks disagree still agree on the period a call belongs to. `None` (the
    /// default) means this machine's clock is the backend's, as for a backend in this
    /// process or in a local file.
    fn clock(&self) -> BoxFuture<'_, BackendResult<Option<ClockReading>>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// A future that completes if the backend learns that the lease was lost before its ttl
    /// (for instance the session holding it was killed). The default never completes: the
    /// caller's deadline and renewals cover expiry.
    fn lost<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> BoxFuture<'a, ()> {
        let _ = (key, owner);
        Box::pin(std::future::pending())
    }

    /// Listing, inspecting and force-releasing this backend's locks, for operators
    /// ([`admin`]). The default, `None`, says that this backend cannot list its locks.
    fn admin(&self) -> Option<&dyn admin::Admin> {
        None
    }
}

async fn poll_until<B: Backend + ?Sized>(
    backend: &B,
    req: Acquire<'_>,
    deadline: Instant,
) -> BackendResult<Option<Granted>> {
    let mut waiting = wait::Waiting::new(deadline, wait::Poll::NOTIFIED);
    loop {
        let released = backend.released(req.key);
        req.attempt.start();
        if let Some(granted) = backend.try_acquire(req).await? {
            return Ok(Some(granted));
        }
        if !waiting.pause(released, None).await {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refused(url: &str) -> String {
        match open(&BackendUrl::parse(url).unwrap()).await {
            Ok(_) => panic!("{url} opened"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn schemes_lockattr_does_not_have_are_unknown() {
        for url in ["etcd://127.0.0.1:2379", "gopher://x"] {
            let msg = refused(url).await;
            assert!(msg.contains("unknown backend"), "{msg}");
            assert!(msg.contains("memory"), "lists what there is: {msg}");
        }
    }

    #[cfg(not(feature = "redis"))]
    #[tokio::test]
    async fn a_backend_whose_feature_is_off_names_the_feature() {
        let msg = refused("rediss://u:hunter2@h:6380").await;
        assert!(msg.contains("enable the cargo feature `redis`"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[cfg(not(feature = "memcached"))]
    #[tokio::test]
    async fn memcached_without_its_feature_names_the_feature() {
        let msg = refused("memcached://127.0.0.1:11211").await;
        assert!(
            msg.contains("enable the cargo feature `memcached`"),
            "{msg}"
        );
    }
}
