//! [`Locks`], a handle on one backend: it checks a request's options, stores keys under
//! the prefix, and turns a backend's grant into a [`Lease`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Acquire, AttemptClock, Backend, Capability};
use crate::builder::{LockBuilder, NoTtl};
use crate::error::LockError;
use crate::lease::{HoldRequest, Lease, LeaseRequest};
use crate::schedule::{Schedule, ServerClock};
use crate::token::OwnerToken;
use crate::url::BackendUrl;

/// The shortest ttl a lock can be taken with. A grant whose answer arrives after the
/// lease's local deadline is refused, and with a ttl of a few milliseconds a round trip
/// alone can use it all up.
pub const MIN_TTL: Duration = Duration::from_millis(10);

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
    handle: Arc<Handle>,
}

/// What every clone of one [`Locks`] shares.
struct Handle {
    backend: Box<dyn Backend>,
    prefix: String,
    /// The redacted URL, used in every message.
    name: String,
    /// The offset of the backend's clock, for scheduled locks.
    clock: ServerClock,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field("backend", &self.handle.name)
            .field("prefix", &self.handle.prefix)
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
            handle: Arc::new(Handle {
                backend,
                prefix: prefix.to_owned(),
                name: name.to_owned(),
                clock: ServerClock::default(),
            }),
        }
    }

    /// The backend as its URL, with any password replaced by `***`.
    pub fn backend_name(&self) -> &str {
        &self.handle.name
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
        self.handle.backend.supports(Capability::MinHold)
    }

    /// The text every stored key starts with.
    pub fn prefix(&self) -> &str {
        &self.handle.prefix
    }

    /// Starts a lock request for `key` (used as it is: see [`key::escape`](crate::key::escape)
    /// to build keys from values as the attribute does). Set the ttl, then take it.
    pub fn lock(&self, key: impl Into<String>) -> LockBuilder<NoTtl> {
        LockBuilder::on(Ok(self.clone()), key.into())
    }

    /// The backend behind this handle.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.handle.backend
    }

    /// The key as stored: prefixed, and hashed if too long for the backend.
    pub(crate) fn stored_key<'k>(&self, key: &'k str) -> Result<Cow<'k, str>, LockError> {
        if key.is_empty() {
            return Err(LockError::InvalidKey {
                key: String::new(),
                backend: self.handle.name.clone(),
                reason: "the key is empty".into(),
            });
        }
        Ok(crate::key::storage_key(
            &self.handle.prefix,
            key,
            self.handle.backend.max_key_len(),
        ))
    }

    fn invalid_options(&self, key: &str, reason: String) -> LockError {
        LockError::InvalidOptions {
            key: key.to_owned(),
            backend: self.handle.name.clone(),
            reason,
        }
    }

    /// Refuses a ttl below [`MIN_TTL`].
    pub(crate) fn check_ttl(&self, key: &str, ttl: Duration) -> Result<(), LockError> {
        if ttl < MIN_TTL {
            return Err(self.invalid_options(
                key,
                format!(
                    "the ttl of {ttl:?} is below the {MIN_TTL:?} floor: a grant would arrive \
                     after its lease had run out"
                ),
            ));
        }
        if let Some(reason) = self.handle.backend.refuses_ttl(ttl) {
            return Err(self.invalid_options(key, reason));
        }
        Ok(())
    }

    /// Checks the options of one request against each other and against the backend.
    pub(crate) fn check(
        &self,
        key: &str,
        ttl: Duration,
        min_hold: Duration,
        renew: bool,
    ) -> Result<(), LockError> {
        self.check_ttl(key, ttl)?;
        if min_hold >= ttl {
            return Err(self.invalid_options(
                key,
                format!("min_hold ({min_hold:?}) must be shorter than the ttl ({ttl:?})"),
            ));
        }
        self.refuse_unsupported(key, self.unsupported(min_hold, renew, false).next())
    }

    /// [`LockError::Unsupported`] for the option `what`, if any.
    fn refuse_unsupported(&self, key: &str, what: Option<&'static str>) -> Result<(), LockError> {
        match what {
            Some(what) => Err(LockError::Unsupported {
                key: key.to_owned(),
                backend: self.handle.name.clone(),
                what: what.into(),
            }),
            None => Ok(()),
        }
    }

    /// The options asked for that this backend cannot keep: `"min_hold"`, `"renew"`,
    /// `"every"` (whose hold may have to extend the lease to the end of the period).
    pub(crate) fn unsupported(
        &self,
        min_hold: Duration,
        renew: bool,
        scheduled: bool,
    ) -> impl Iterator<Item = &'static str> + '_ {
        let supports = |capability| self.handle.backend.supports(capability);
        // A hold past the lease's own expiry is an extension (`Lease::release`).
        let keeps_periods = supports(Capability::Extend);
        [
            (
                !min_hold.is_zero() && !supports(Capability::MinHold),
                "min_hold",
            ),
            (renew && !supports(Capability::Extend), "renew"),
            (scheduled && !keeps_periods, "every"),
        ]
        .into_iter()
        .filter(|&(refused, _)| refused)
        .map(|(_, what)| what)
    }

    /// Checks a schedule against the other options of its request and the backend.
    fn check_schedule(
        &self,
        key: &str,
        schedule: Schedule,
        min_hold: Duration,
        skips: bool,
    ) -> Result<(), LockError> {
        let (every, at) = (schedule.period(), schedule.offset());
        let reason = if !skips {
            "`every` skips the ticks of a period that has had its run: it needs \
             on_conflict = \"skip\""
                .to_owned()
        } else if every < MIN_TTL {
            format!("the period `every` of {every:?} is below the {MIN_TTL:?} floor")
        } else if at >= every {
            format!("the offset `at` ({at:?}) must be shorter than the period `every` ({every:?})")
        } else if !min_hold.is_zero() {
            "`every` already keeps the key taken until the end of the period: drop `min_hold`"
                .to_owned()
        } else {
            return self
                .refuse_unsupported(key, self.unsupported(Duration::ZERO, false, true).next());
        };
        Err(self.invalid_options(key, reason))
    }

    /// What a request asks to keep after an early release: `min_hold`, or with a
    /// `schedule` (checked here against the other options, `skips` saying whether the
    /// policy is `"skip"`) the end of the period the call is placed in when its lock is
    /// granted, by the backend's clock (read here at most once a minute).
    pub(crate) async fn hold(
        &self,
        key: &str,
        min_hold: Duration,
        schedule: Option<Schedule>,
        skips: bool,
    ) -> Result<HoldRequest, LockError> {
        let Some(schedule) = schedule else {
            return Ok(HoldRequest::For(min_hold));
        };
        self.check_schedule(key, schedule, min_hold, skips)?;
        let anchor = self
            .handle
            .clock
            .anchor(self.backend())
            .await
            .map_err(|e| self.backend_error(key, format!("reading the backend's clock: {e}")))?;
        Ok(HoldRequest::Period { schedule, anchor })
    }

    /// Takes `key` once, or waits for it until `wait` has passed. `Ok(None)`: still taken.
    pub(crate) async fn acquire(
        &self,
        key: &str,
        ttl: Duration,
        hold: HoldRequest,
        wait: Option<Duration>,
    ) -> Result<Option<Lease>, LockError> {
        let owner = OwnerToken::random().map_err(|e| {
            self.backend_error(key, format!("no random owner token from the OS: {e}"))
        })?;
        let stored_key = self.stored_key(key)?.into_owned();
        let attempt = AttemptClock::default();
        let req = Acquire {
            key: &stored_key,
            owner: &owner,
            ttl,
            attempt: &attempt,
        };
        let started = Instant::now();
        let backend = &self.handle.backend;
        let granted = match wait {
            None => backend.try_acquire(req).await,
            Some(wait) => backend.acquire_until(req, started + wait).await,
        }
        .map_err(|e| self.backend_error(key, e))?;
        // The lease runs from the try that was granted, not from the start of the wait.
        let started = attempt.last().map_or(started, |sent| sent.max(started));
        let Some(granted) = granted else {
            return Ok(None);
        };
        let request = LeaseRequest {
            key: key.to_owned(),
            stored_key,
            owner,
            ttl,
            hold: hold.granted_now().map_err(|e| self.backend_error(key, e))?,
        };
        let lease = Lease::new(self.clone(), request, granted, started);
        if !lease.is_held() {
            // The answer came after the lease's local deadline: the server may already have
            // let another caller in. Its token is never handed out; the lease is given back
            // at once, without a hold (nothing ran).
            Lease::give_back_detached(Arc::new(lease), Duration::ZERO, "the late grant");
            return Err(self.backend_error(
                key,
                format!(
                    "the grant arrived after its ttl of {ttl:?} had run out (a slow server or \
                     network); the lease was given back"
                ),
            ));
        }
        Ok(Some(lease))
    }

    pub(crate) fn backend_error(
        &self,
        key: &str,
        e: impl Into<crate::error::BoxError>,
    ) -> LockError {
        LockError::backend(&self.handle.name, Some(key), e)
    }
}
