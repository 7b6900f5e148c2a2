//! [`LockGuard`]: a held lock, and [`CurrentLock`], its view from inside an annotated body.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::handle::Locks;
use crate::token::OwnerToken;

/// What a holder and the body see of a held lease; shared with [`CurrentLock`].
#[derive(Debug)]
pub(crate) struct Held {
    key: String,
    /// The handle the lock was taken on.
    locks: Locks,
    fence: u64,
    deadline: Mutex<Instant>,
}

/// The local deadline of a lease taken at `started`: earlier than the server's expiry,
/// which counts from when the request arrived, by the request's travel time and by an
/// allowance of 0.1% of the ttl plus 1 ms for clocks that run at different rates.
pub(crate) fn local_deadline(started: Instant, ttl: Duration) -> Instant {
    let allowance = ttl / 1000 + Duration::from_millis(1);
    started + ttl.saturating_sub(allowance)
}

impl Held {
    fn backend(&self) -> &str {
        self.locks.backend_name()
    }

    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_deadline(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }
}

/// A held lock. Release it with [`release`](Self::release); dropping it releases it too,
/// in the background (on the current tokio runtime), without blocking.
///
/// The lease ends by itself after its ttl unless [`extend`](Self::extend)ed: check
/// [`is_held`](Self::is_held) or [`deadline`](Self::deadline) in long work, or use the
/// attribute, which cancels the body when the lease ends.
#[must_use = "a lock is released as soon as its guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    stored_key: String,
    owner: OwnerToken,
    held: Arc<Held>,
    acquired_at: Instant,
    min_hold: Duration,
    released: bool,
}

impl LockGuard {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        locks: Locks,
        key: String,
        stored_key: String,
        owner: OwnerToken,
        fence: u64,
        started: Instant,
        ttl: Duration,
        min_hold: Duration,
    ) -> Self {
        let held = Arc::new(Held {
            key,
            locks,
            fence,
            deadline: Mutex::new(local_deadline(started, ttl)),
        });
        LockGuard {
            stored_key,
            owner,
            held,
            acquired_at: started,
            min_hold,
            released: false,
        }
    }

    /// The fencing token: greater than that of every earlier acquisition of this key on
    /// this backend. Pass it to the resource you protect so it can refuse stale writers.
    pub fn token(&self) -> u64 {
        self.held.fence
    }

    /// The key, as given (without the backend's prefix).
    pub fn key(&self) -> &str {
        &self.held.key
    }

    /// The key as the backend stores it: prefixed, and hashed if it was too long.
    pub fn stored_key(&self) -> &str {
        &self.stored_key
    }

    /// The instant by which the lease has surely ended unless extended. It is computed on
    /// this machine from when the request was sent, so it is never later than the
    /// server's own expiry.
    pub fn deadline(&self) -> Instant {
        self.held.deadline()
    }

    /// Whether the lease is still valid by [`deadline`](Self::deadline).
    pub fn is_held(&self) -> bool {
        Instant::now() < self.deadline()
    }

    /// The handle this lock was taken on.
    pub fn locks(&self) -> &Locks {
        &self.held.locks
    }

    pub(crate) fn current(&self) -> CurrentLock {
        CurrentLock {
            held: self.held.clone(),
        }
    }

    fn lost(&self, reason: &str) -> LockError {
        LockError::Lost {
            key: self.held.key.clone(),
            backend: self.held.backend().to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Pushes the expiry to `ttl` from now. [`LockError::Lost`] if the lease had already
    /// ended (expired, or taken by someone else after expiring).
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        if ttl.is_zero() {
            return Err(LockError::InvalidOptions {
                key: self.held.key.clone(),
                backend: self.held.backend().to_owned(),
                reason: "extend by a zero ttl".into(),
            });
        }
        let started = Instant::now();
        let extended = self
            .held
            .locks
            .inner
            .backend
            .extend(&self.stored_key, &self.owner, ttl)
            .await
            .map_err(|e| self.held.locks.backend_error(&self.held.key, e))?;
        if !extended {
            return Err(self.lost("the lease had ended before it could be extended"));
        }
        self.held.set_deadline(local_deadline(started, ttl));
        tracing::debug!(key = %self.held.key, backend = %self.held.backend(), ?ttl, "lock extended");
        Ok(())
    }

    /// What remains of `min_hold`: how long the key must stay taken after release.
    fn keep_for(&self) -> Duration {
        self.min_hold.saturating_sub(self.acquired_at.elapsed())
    }

    /// Gives the lock back (or, with `min_hold`, lets it run out when `min_hold` has
    /// passed). [`LockError::Lost`] if the lease had already ended: whatever was done under
    /// it may have overlapped with another holder.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        let keep_for = self.keep_for();
        let held = self
            .held
            .locks
            .inner
            .backend
            .release(&self.stored_key, &self.owner, keep_for)
            .await
            .map_err(|e| self.held.locks.backend_error(&self.held.key, e))?;
        if !held {
            return Err(self.lost("the lease had ended before it was released"));
        }
        tracing::debug!(key = %self.held.key, backend = %self.held.backend(), token = self.held.fence, ?keep_for, "lock released");
        Ok(())
    }

    /// The future that completes if the backend learns the lease was lost early.
    pub(crate) fn backend_lost(&self) -> crate::backend::BoxFuture<'_, ()> {
        self.held
            .locks
            .inner
            .backend
            .lost(&self.stored_key, &self.owner)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let keep_for = self.keep_for();
        let locks = self.held.locks.clone();
        let stored_key = std::mem::take(&mut self.stored_key);
        let owner = self.owner;
        let held = self.held.clone();
        let release = async move {
            let result = locks
                .inner
                .backend
                .release(&stored_key, &owner, keep_for)
                .await;
            match result {
                Ok(true) => {
                    tracing::debug!(key = %held.key, backend = %held.backend(), token = held.fence, "lock released on drop")
                }
                Ok(false) => {
                    tracing::warn!(key = %held.key, backend = %held.backend(), "lock dropped after its lease had ended")
                }
                Err(e) => {
                    tracing::warn!(key = %held.key, backend = %held.backend(), error = %e, "releasing a dropped lock failed; it frees itself at its ttl")
                }
            }
        };
        crate::backend::wait::spawn_detached(
            format_args!(
                "the guard of lock `{}` (backend {})",
                self.held.key,
                self.held.backend()
            ),
            release,
        );
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
    held: Arc<Held>,
}

impl CurrentLock {
    /// The key, as built from the template (without the backend's prefix).
    pub fn key(&self) -> &str {
        &self.held.key
    }

    /// The fencing token of this acquisition (see [`LockGuard::token`]).
    pub fn token(&self) -> u64 {
        self.held.fence
    }

    /// When the lease ends unless renewed; moves on with each renewal (`renew = true`).
    pub fn deadline(&self) -> Instant {
        self.held.deadline()
    }

    /// The backend, as its redacted URL.
    pub fn backend(&self) -> &str {
        self.held.backend()
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
