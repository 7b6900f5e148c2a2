//! [`LockGuard`]: a held lock, and [`CurrentLock`], its view from inside an annotated body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::handle::Locks;
use crate::lease::Lease;

/// A held lock. Release it with [`release`](Self::release); dropping it releases it too,
/// in the background (on the current tokio runtime), without blocking.
///
/// The lease ends by itself after its ttl unless [`extend`](Self::extend)ed: check
/// [`is_held`](Self::is_held) or [`deadline`](Self::deadline) in long work, or use the
/// attribute, which cancels the body when the lease ends.
#[must_use = "a lock is released as soon as its guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    lease: Arc<Lease>,
    released: bool,
}

impl LockGuard {
    pub(crate) fn new(lease: Lease) -> Self {
        LockGuard {
            lease: Arc::new(lease),
            released: false,
        }
    }

    /// The fencing token: greater than that of every earlier acquisition of this key on
    /// this backend. Pass it to the resource you protect so it can refuse stale writers.
    pub fn token(&self) -> u64 {
        self.lease.fence()
    }

    /// The key, as given (without the backend's prefix).
    pub fn key(&self) -> &str {
        self.lease.key()
    }

    /// The key as the backend stores it: prefixed, and hashed if it was too long.
    pub fn stored_key(&self) -> &str {
        self.lease.stored_key()
    }

    /// The instant by which the lease has surely ended unless extended. It is computed on
    /// this machine from when the request was sent, so it is never later than the
    /// server's own expiry.
    pub fn deadline(&self) -> Instant {
        self.lease.deadline()
    }

    /// Whether the lease is still valid by [`deadline`](Self::deadline).
    pub fn is_held(&self) -> bool {
        self.lease.is_held()
    }

    /// For a lock taken with [`every`](crate::LockBuilder::every), the number of the
    /// period it was taken for (see [`CurrentLock::period`]); `None` otherwise.
    pub fn period(&self) -> Option<u64> {
        self.lease.period()
    }

    /// The handle this lock was taken on.
    pub fn locks(&self) -> &Locks {
        self.lease.locks()
    }

    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    pub(crate) fn current(&self) -> CurrentLock {
        CurrentLock {
            lease: self.lease.clone(),
        }
    }

    /// Pushes the expiry to `ttl` from now. [`LockError::Lost`] if the lease had already
    /// ended (expired, or taken by someone else after expiring).
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        self.lease.extend(ttl).await
    }

    /// Gives the lock back (or, with `min_hold` or `every`, lets it run out when
    /// `min_hold` has passed or the period's window has ended). [`LockError::Lost`] if the lease had already ended: whatever was done under
    /// it may have overlapped with another holder.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        self.lease.release().await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        Lease::release_detached(self.lease.clone());
    }
}

/// The lock held by the annotated function that is running: [`current()`] inside its body.
///
/// ```
/// use lockattr::distributed_lock;
///
/// #[distributed_lock(key = "report:<day>", ttl = "1m", on_conflict = "skip")]
/// async fn report(day: u32) -> Option<u64> {
///     let lock = lockattr::current().expect("the body runs under the lock");
///     assert_eq!(lock.key(), format!("report:{day}"));
///     Some(lock.token())
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lockattr::init("memory://current-doc").await.unwrap();
/// assert!(report(7).await.is_some());
/// assert!(lockattr::current().is_none()); // outside any annotated body
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CurrentLock {
    lease: Arc<Lease>,
}

impl CurrentLock {
    /// The key, as built from the template (without the backend's prefix).
    pub fn key(&self) -> &str {
        self.lease.key()
    }

    /// The fencing token of this acquisition (see [`LockGuard::token`]).
    pub fn token(&self) -> u64 {
        self.lease.fence()
    }

    /// When the lease ends unless renewed; moves on with each renewal (`renew = true`).
    pub fn deadline(&self) -> Instant {
        self.lease.deadline()
    }

    /// For a scheduled site (`every`), the number of the period this run is for: the
    /// period whose start is nearest to the call by the backend's clock, counted from the
    /// Unix epoch, so that it starts `period × every + at` after 1970-01-01 00:00 UTC.
    /// `None` without `every`.
    ///
    /// ```
    /// use lockattr::distributed_lock;
    ///
    /// #[distributed_lock(key = "hourly-report", ttl = "1m", on_conflict = "skip", every = "1h")]
    /// async fn hourly_report() -> Option<u64> {
    ///     // Name the report after its hour, the same on every instance.
    ///     lockattr::current()?.period()
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # lockattr::init("memory://period-doc").await.unwrap();
    /// let hour = hourly_report().await.expect("the hour's first call runs");
    /// assert!(hour > 480_000); // hours since 1970: after 2024-10-04
    /// # }
    /// ```
    pub fn period(&self) -> Option<u64> {
        self.lease.period()
    }

    /// The backend, as its redacted URL.
    pub fn backend(&self) -> &str {
        self.lease.backend_name()
    }
}

tokio::task_local! {
    pub(crate) static CURRENT: CurrentLock;
}

/// The lock held by the innermost annotated function whose body is running on this task,
/// or `None` outside one.
pub fn current() -> Option<CurrentLock> {
    CURRENT.try_with(CurrentLock::clone).ok()
}
