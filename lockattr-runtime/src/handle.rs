//! [`Locks`], a handle on one backend, and the [`LockBuilder`] it hands out.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Acquire, AttemptClock, Backend, Capability, Granted};
use crate::error::LockError;
use crate::guard::LockGuard;
use crate::token::OwnerToken;
use crate::url::BackendUrl;

/// A handle on one lock backend, cheap to clone (an `Arc` inside).
///
/// Get one with [`connect`] (no globals), or configure it globally with
/// [`init`](crate::init) / [`init_named`](crate::init_named) for the attribute.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockattr::LockError> {
/// use std::time::Duration;
///
/// let locks = lockattr::connect("memory://").await?;
/// let guard = locks.lock("import:2024-05").ttl(Duration::from_secs(60)).try_acquire().await?;
/// assert!(guard.is_some());
/// // A second take while the first is held finds it taken.
/// let again = locks.lock("import:2024-05").ttl(Duration::from_secs(60)).try_acquire().await?;
/// assert!(again.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Locks {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Box<dyn Backend>,
    prefix: String,
    /// The redacted URL, used in every message.
    pub(crate) name: String,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field("backend", &self.inner.name)
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

/// Connects to the backend a URL names and returns a handle, without touching the globals.
///
/// | URL | backend |
/// | --- | --- |
/// | `memory://` or `memory://NAME` | in this process (one store per `NAME`) |
/// | `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS) | Redis 5+, cargo feature `redis`; options `timeout_ms`, `connect_timeout_ms`, `tls_ca_file`, `tls_insecure` (see the `lockattr::backend::redis` module) |
/// | `sqlite://PATH` (feature `sqlite`) | a lease table in a local SQLite file, shared by the processes of one host (`lockattr::backend::table`) |
/// | `postgres://…?mode=table` (feature `postgres`) | the lease table on PostgreSQL (`lockattr::backend::table`) |
/// | `mysql://…?mode=table` (feature `mysql`) | the lease table on MySQL / MariaDB (`lockattr::backend::table`) |
/// | `postgres://…` (feature `postgres`) | PostgreSQL 14+ session-level advisory locks (`lockattr::backend::postgres`) |
/// | `mysql://…`, `mariadb://…` (feature `mysql`) | MySQL / MariaDB `GET_LOCK` session locks |
///
/// Every URL takes `?prefix=…` (default `lockattr:`), the text every stored key starts with.
/// An unknown scheme, an unknown parameter or a backend that this build does not include is
/// [`LockError::InvalidUrl`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let locks = lockattr::connect("memory://jobs?prefix=app:").await.unwrap();
/// assert_eq!(locks.backend_name(), "memory://jobs?prefix=app:");
/// assert!(lockattr::connect("gopher://x").await.is_err());
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Locks, LockError> {
    let parsed = BackendUrl::parse(url)?;
    let backend = crate::backend::open(&parsed).await?;
    if parsed.prefix().len() + crate::key::MIN_HASHED_KEY_LEN > backend.max_key_len() {
        return Err(parsed.invalid(format!(
            "the prefix is too long: `{}` keys are at most {} bytes, and a hashed key needs {} after the prefix",
            parsed.scheme,
            backend.max_key_len(),
            crate::key::MIN_HASHED_KEY_LEN
        )));
    }
    Ok(Locks::from_backend(
        backend,
        parsed.prefix(),
        &parsed.redacted,
    ))
}

impl Locks {
    /// Wraps a backend (a custom one, or one built by hand) into a handle. `name` appears
    /// in messages: give a URL without its password.
    pub fn from_backend(backend: Box<dyn Backend>, prefix: &str, name: &str) -> Self {
        Locks {
            inner: Arc::new(Inner {
                backend,
                prefix: prefix.to_owned(),
                name: name.to_owned(),
            }),
        }
    }

    /// The backend as its URL, with any password replaced by `***`.
    pub fn backend_name(&self) -> &str {
        &self.inner.name
    }

    /// Whether this backend keeps `min_hold` across the holder's exit. When it does not,
    /// a lock asked with a `min_hold` is [`LockError::Unsupported`] (never silently shorter).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let locks = lockattr::connect("memory://").await.unwrap();
    /// assert!(locks.supports_min_hold());
    /// # }
    /// ```
    pub fn supports_min_hold(&self) -> bool {
        self.inner.backend.supports(Capability::MinHold)
    }

    /// The text every stored key starts with.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Starts a lock request for `key` (used as it is: see [`key::escape`](crate::key::escape)
    /// to build keys from values as the attribute does). Set the ttl, then take it.
    pub fn lock(&self, key: impl Into<String>) -> LockBuilder {
        LockBuilder {
            locks: Ok(self.clone()),
            key: key.into(),
            ttl: NoTtl,
            min_hold: Duration::ZERO,
        }
    }

    /// The key as stored: prefixed, and hashed if too long for the backend.
    pub(crate) fn stored_key<'k>(&self, key: &'k str) -> Result<Cow<'k, str>, LockError> {
        if key.is_empty() {
            return Err(LockError::InvalidKey {
                key: String::new(),
                backend: self.inner.name.clone(),
                reason: "the key is empty".into(),
            });
        }
        Ok(crate::key::storage_key(
            &self.inner.prefix,
            key,
            self.inner.backend.max_key_len(),
        ))
    }

    fn invalid_options(&self, key: &str, reason: String) -> LockError {
        LockError::InvalidOptions {
            key: key.to_owned(),
            backend: self.inner.name.clone(),
            reason,
        }
    }

    /// Checks the options of one request against each other and against the backend.
    pub(crate) fn check(
        &self,
        key: &str,
        ttl: Duration,
        min_hold: Duration,
        renew: bool,
    ) -> Result<(), LockError> {
        if ttl.is_zero() {
            return Err(self.invalid_options(key, "the ttl is zero".into()));
        }
        if min_hold >= ttl {
            return Err(self.invalid_options(
                key,
                format!("min_hold ({min_hold:?}) must be shorter than the ttl ({ttl:?})"),
            ));
        }
        let needs = [
            (!min_hold.is_zero(), Capability::MinHold, "min_hold"),
            (renew, Capability::Extend, "renew"),
        ];
        for (wanted, capability, what) in needs {
            if wanted && !self.inner.backend.supports(capability) {
                return Err(LockError::Unsupported {
                    key: key.to_owned(),
                    backend: self.inner.name.clone(),
                    what: what.into(),
                });
            }
        }
        Ok(())
    }

    /// Takes `key` once, or waits for it until `wait` has passed. `Ok(None)`: still taken.
    pub(crate) async fn acquire_guard(
        &self,
        key: &str,
        ttl: Duration,
        min_hold: Duration,
        wait: Option<Duration>,
    ) -> Result<Option<LockGuard>, LockError> {
        let stored = self.stored_key(key)?;
        let owner = OwnerToken::random().map_err(|e| {
            self.backend_error(key, format!("no random owner token from the OS: {e}"))
        })?;
        let attempt = AttemptClock::default();
        let req = Acquire {
            key: &stored,
            owner: &owner,
            ttl,
            attempt: &attempt,
        };
        let started = Instant::now();
        let backend = &self.inner.backend;
        let granted = match wait {
            None => backend.try_acquire(req).await,
            Some(wait) => backend.acquire_until(req, started + wait).await,
        }
        .map_err(|e| self.backend_error(key, e))?;
        // The lease runs from the try that was granted, not from the start of the wait.
        let started = attempt.last().map_or(started, |sent| sent.max(started));
        let Some(Granted { fence }) = granted else {
            return Ok(None);
        };
        let guard = LockGuard::new(
            self.clone(),
            key.to_owned(),
            stored.into_owned(),
            owner,
            fence,
            started,
            ttl,
            min_hold,
        );
        if !guard.is_held() {
            // The answer came after the lease's local deadline: the server may already have
            // let another caller in. Its token is never handed out; dropping the guard
            // gives the lease back in the background.
            drop(guard);
            return Err(self.backend_error(
                key,
                format!(
                    "the grant arrived after its ttl of {ttl:?} had run out (a slow server or \
                     network); the lease was given back"
                ),
            ));
        }
        Ok(Some(guard))
    }

    pub(crate) fn backend_error(
        &self,
        key: &str,
        e: impl Into<crate::error::BoxError>,
    ) -> LockError {
        LockError::backend(&self.inner.name, Some(key), e)
    }
}

/// The type state of a [`LockBuilder`] whose ttl is not set yet: it cannot take the lock.
#[derive(Debug, Clone, Copy)]
pub struct NoTtl;

/// A lock request: [`Locks::lock`] or [`lock`](crate::lock) starts it, [`ttl`](Self::ttl)
/// is required (a request without one does not compile), then
/// [`try_acquire`](LockBuilder::try_acquire) or [`acquire`](LockBuilder::acquire) takes it.
///
/// ```compile_fail,E0599
/// # async fn f(locks: lockattr::Locks) {
/// // No ttl: `try_acquire` does not exist on the builder yet.
/// let guard = locks.lock("import").try_acquire().await;
/// # }
/// ```
#[must_use = "a lock request does nothing until `try_acquire` or `acquire` is awaited"]
#[derive(Debug)]
pub struct LockBuilder<T = NoTtl> {
    pub(crate) locks: Result<Locks, LockError>,
    key: String,
    ttl: T,
    min_hold: Duration,
}

impl<T> LockBuilder<T> {
    /// Keeps the key taken at least this long after acquisition, even if the guard is
    /// released sooner or the process exits. Must be shorter than the ttl.
    pub fn min_hold(mut self, min_hold: Duration) -> Self {
        self.min_hold = min_hold;
        self
    }

    /// The key of this request.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl LockBuilder<NoTtl> {
    pub(crate) fn on(locks: Result<Locks, LockError>, key: String) -> Self {
        LockBuilder {
            locks,
            key,
            ttl: NoTtl,
            min_hold: Duration::ZERO,
        }
    }

    /// The longest the lock is held: a holder that crashes or stalls loses it after this.
    pub fn ttl(self, ttl: Duration) -> LockBuilder<Duration> {
        LockBuilder {
            locks: self.locks,
            key: self.key,
            ttl,
            min_hold: self.min_hold,
        }
    }
}

impl LockBuilder<Duration> {
    fn checked(&self) -> Result<&Locks, LockError> {
        let locks = self.locks.as_ref().map_err(Clone::clone)?;
        locks.check(&self.key, self.ttl, self.min_hold, false)?;
        Ok(locks)
    }

    /// Takes the lock if it is free: `Ok(None)` if another holder has it.
    ///
    /// A grant whose answer arrives after the lease's local deadline (a server or network
    /// slower than the ttl) is given back and reported as [`LockError::Backend`]: a guard
    /// is never handed out already expired. The same holds for [`acquire`](Self::acquire).
    pub async fn try_acquire(self) -> Result<Option<LockGuard>, LockError> {
        let locks = self.checked()?;
        locks
            .acquire_guard(&self.key, self.ttl, self.min_hold, None)
            .await
    }

    /// Takes the lock, waiting up to `wait` for it (notified where the backend can
    /// notify, first come first served); [`LockError::Timeout`] if it stays taken.
    pub async fn acquire(self, wait: Duration) -> Result<LockGuard, LockError> {
        let locks = self.checked()?;
        match locks
            .acquire_guard(&self.key, self.ttl, self.min_hold, Some(wait))
            .await?
        {
            Some(guard) => Ok(guard),
            None => Err(LockError::Timeout {
                key: self.key.clone(),
                backend: locks.inner.name.clone(),
                waited: wait,
            }),
        }
    }
}
