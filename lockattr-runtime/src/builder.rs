//! [`LockBuilder`]: a lock request, from its key to a held [`LockGuard`].

use std::time::Duration;

use crate::error::LockError;
use crate::guard::LockGuard;
use crate::handle::Locks;
use crate::lease::HoldRequest;
use crate::schedule::Schedule;

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
    locks: Result<Locks, LockError>,
    key: String,
    ttl: T,
    min_hold: Duration,
    schedule: Option<Schedule>,
}

impl<T> LockBuilder<T> {
    /// Keeps the key taken at least this long after acquisition, even if the guard is
    /// released sooner or the process exits. Must be shorter than the ttl.
    pub fn min_hold(mut self, min_hold: Duration) -> Self {
        self.min_hold = min_hold;
        self
    }

    /// Takes the key for one run per period of `schedule`: once taken, the key stays taken
    /// until the end of the window of the period it was granted in (half a period after
    /// the period's start, by the backend's clock), even if the guard is released sooner,
    /// so that the other instances' ticks of the same period find it taken.
    /// [`LockGuard::period`] names the period. See [`Schedule`] for how calls are placed in
    /// periods; the attribute's `every` option does the same.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lockattr::LockError> {
    /// use std::time::Duration;
    /// use lockattr::Schedule;
    ///
    /// let locks = lockattr::connect("memory://every-doc").await?;
    /// let daily = Schedule::every(Duration::from_secs(24 * 3600));
    /// let run = locks.lock("report").ttl(Duration::from_secs(30)).every(daily).try_acquire().await?;
    /// run.expect("the first tick of the period runs").release().await?;
    /// // Another instance's tick of the same day: the period has had its run.
    /// let again = locks.lock("report").ttl(Duration::from_secs(30)).every(daily).try_acquire().await?;
    /// assert!(again.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn every(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
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
            schedule: None,
        }
    }

    /// The longest the lock is held: a holder that crashes or stalls loses it after this.
    pub fn ttl(self, ttl: Duration) -> LockBuilder<Duration> {
        LockBuilder {
            locks: self.locks,
            key: self.key,
            ttl,
            min_hold: self.min_hold,
            schedule: self.schedule,
        }
    }
}

impl LockBuilder<Duration> {
    /// The handle once the options are checked, and how long the key stays taken.
    async fn checked(&self) -> Result<(&Locks, HoldRequest), LockError> {
        let locks = self.locks.as_ref().map_err(Clone::clone)?;
        locks.check(&self.key, self.ttl, self.min_hold, false)?;
        let hold = locks
            .hold(&self.key, self.min_hold, self.schedule, true)
            .await?;
        Ok((locks, hold))
    }

    /// Takes the lock if it is free: `Ok(None)` if another holder has it.
    ///
    /// A grant whose answer arrives after the lease's local deadline (a server or network
    /// slower than the ttl) is given back and reported as [`LockError::Backend`]: a guard
    /// is never handed out already expired. The same holds for [`acquire`](Self::acquire).
    pub async fn try_acquire(self) -> Result<Option<LockGuard>, LockError> {
        let (locks, hold) = self.checked().await?;
        let lease = locks.acquire(&self.key, self.ttl, hold, None).await?;
        Ok(lease.map(LockGuard::new))
    }

    /// Takes the lock, waiting up to `wait` for it (notified where the backend can
    /// notify, first come first served); [`LockError::Timeout`] if it stays taken.
    pub async fn acquire(self, wait: Duration) -> Result<LockGuard, LockError> {
        let (locks, hold) = self.checked().await?;
        match locks.acquire(&self.key, self.ttl, hold, Some(wait)).await? {
            Some(lease) => Ok(LockGuard::new(lease)),
            None => Err(LockError::Timeout {
                key: self.key.clone(),
                backend: locks.backend_name().to_owned(),
                waited: wait,
            }),
        }
    }
}
