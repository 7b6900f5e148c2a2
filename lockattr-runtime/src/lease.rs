//! [`Lease`]: one granted lease and everything done with it (extend, release, watch for
//! its loss). A [`LockGuard`](crate::LockGuard) owns one; the body of an annotated
//! function sees it through [`CurrentLock`](crate::CurrentLock).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::wait::spawn_detached;
use crate::backend::{BackendResult, BoxFuture, Capability, Granted};
use crate::error::LockError;
use crate::handle::{Locks, MIN_TTL};
use crate::schedule::{Anchor, Schedule};
use crate::token::OwnerToken;

/// What was asked for: the key (as given and as stored), the owner token the lease is
/// taken with, and its terms.
#[derive(Debug)]
pub(crate) struct LeaseRequest {
    /// The key as given, without the prefix.
    pub key: String,
    /// The key as the backend stores it: prefixed, hashed if too long.
    pub stored_key: String,
    /// The random owner token the backend checks on release and extend.
    pub owner: OwnerToken,
    /// The lease length.
    pub ttl: Duration,
    /// How long the key stays taken even if released sooner.
    pub hold: Hold,
}

/// What a request asks to keep after an early release, before its grant.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HoldRequest {
    /// `min_hold` (zero: nothing).
    For(Duration),
    /// `every`: placed in its period when the grant arrives, by `anchor`.
    Period {
        /// The schedule.
        schedule: Schedule,
        /// What the time is told by.
        anchor: Anchor,
    },
}

impl HoldRequest {
    /// The hold of a lease granted now: a call that waited, or whose answer was slow,
    /// runs for the period it got the key in, and holds that one.
    pub(crate) fn granted_now(self) -> BackendResult<Hold> {
        Ok(match self {
            HoldRequest::For(min_hold) => Hold::For(min_hold),
            HoldRequest::Period { schedule, anchor } => {
                let (period, left) = schedule.place(anchor.now()?);
                Hold::Until {
                    end: Instant::now() + left,
                    period: u64::try_from(period).unwrap_or(u64::MAX),
                }
            }
        })
    }
}

/// How long a granted lease's key stays taken after an early release.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hold {
    /// `min_hold`: this long after acquisition (zero: not at all).
    For(Duration),
    /// `every`: until `end`, the end of the window of the period numbered `period`.
    Until {
        /// When the period's window ends.
        end: Instant,
        /// The period's number (see [`Schedule`](crate::Schedule)).
        period: u64,
    },
}

/// A lease the backend granted.
#[derive(Debug)]
pub(crate) struct Lease {
    /// The handle it was taken on.
    locks: Locks,
    request: LeaseRequest,
    /// The fencing token.
    fence: u64,
    /// When the granted try was sent: the lease and `min_hold` count from here.
    acquired_at: Instant,
    /// The local deadline; moves with each extension.
    deadline: Mutex<Instant>,
}

/// The local deadline of a lease taken at `started`: earlier than the server's expiry,
/// which counts from when the request arrived, by the request's travel time and by an
/// allowance of 0.1% of the ttl plus 1 ms for clocks that run at different rates.
pub(crate) fn local_deadline(started: Instant, ttl: Duration) -> Instant {
    let allowance = ttl / 1000 + Duration::from_millis(1);
    started + ttl.saturating_sub(allowance)
}

impl Lease {
    /// The lease `granted` for `request`, whose granted try was sent at `started`.
    pub(crate) fn new(
        locks: Locks,
        request: LeaseRequest,
        granted: Granted,
        started: Instant,
    ) -> Self {
        let deadline = local_deadline(started, request.ttl);
        Lease {
            locks,
            request,
            fence: granted.fence,
            acquired_at: started,
            deadline: Mutex::new(deadline),
        }
    }

    pub(crate) fn locks(&self) -> &Locks {
        &self.locks
    }

    pub(crate) fn key(&self) -> &str {
        &self.request.key
    }

    pub(crate) fn stored_key(&self) -> &str {
        &self.request.stored_key
    }

    pub(crate) fn fence(&self) -> u64 {
        self.fence
    }

    /// The number of the period a scheduled lease was taken for.
    pub(crate) fn period(&self) -> Option<u64> {
        match self.request.hold {
            Hold::Until { period, .. } => Some(period),
            Hold::For(_) => None,
        }
    }

    pub(crate) fn backend_name(&self) -> &str {
        self.locks.backend_name()
    }

    pub(crate) fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_held(&self) -> bool {
        Instant::now() < self.deadline()
    }

    fn lost(&self, reason: &str) -> LockError {
        LockError::Lost {
            key: self.key().to_owned(),
            backend: self.backend_name().to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Pushes the expiry to `ttl` from now; [`LockError::Lost`] if the lease had ended.
    pub(crate) async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        self.locks.check_ttl(self.key(), ttl)?;
        self.extend_for(ttl).await
    }

    /// [`extend`](Self::extend) without the check of `ttl` against the backend's rules:
    /// for a hold, whose length is not the user's ttl (the backend rounds it up).
    async fn extend_for(&self, ttl: Duration) -> Result<(), LockError> {
        let started = Instant::now();
        let extended = self
            .locks
            .backend()
            .extend(self.stored_key(), &self.request.owner, ttl)
            .await
            .map_err(|e| self.locks.backend_error(self.key(), e))?;
        if !extended {
            return Err(self.lost("the lease had ended before it could be extended"));
        }
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = local_deadline(started, ttl);
        tracing::debug!(
            key = self.key(),
            backend = self.backend_name(),
            ?ttl,
            "lock extended"
        );
        Ok(())
    }

    /// What remains of `min_hold`, or of the period: how long the key must stay taken
    /// after release.
    fn keep_for(&self) -> Duration {
        match self.request.hold {
            Hold::For(min_hold) => min_hold.saturating_sub(self.acquired_at.elapsed()),
            Hold::Until { end, .. } => end.saturating_duration_since(Instant::now()),
        }
    }

    /// Gives the key back (or lets it run out when `min_hold` or the period has passed);
    /// [`LockError::Lost`] if the lease had already ended.
    ///
    /// A hold is kept by the backend's `release` with `keep_for` where it can be. It is
    /// kept by an extension of the lease to the end of the hold instead where the hold
    /// reaches past the lease's own expiry (`every` with a ttl shorter than the rest of the
    /// period: a release never lengthens a lease), or the backend cannot keep a key after
    /// release (a session lock, which the backend then frees at that deadline, or when this
    /// process exits and its sessions end), or the backend frees expired keys late
    /// ([`Backend::expiry_slack`](crate::backend::Backend::expiry_slack): Memcached's
    /// whole seconds). In the last case this process gives the key back when the hold
    /// ends, and the expiry, up to the slack later, backs it up.
    pub(crate) async fn release(self: &Arc<Self>) -> Result<(), LockError> {
        let keep_for = self.keep_for();
        let backend = self.locks.backend();
        let slack = backend.expiry_slack();
        let outlasts_lease = keep_for > self.deadline().saturating_duration_since(Instant::now());
        let server_keeps = backend.supports(Capability::MinHold) && slack.is_zero();
        if keep_for.is_zero() || (server_keeps && !outlasts_lease) {
            return self.give_back(keep_for).await;
        }
        self.extend_for(keep_for.max(MIN_TTL))
            .await
            .map_err(|e| match e {
                LockError::Lost { .. } => self.lost("the lease had ended before it was released"),
                e => e,
            })?;
        if !slack.is_zero() {
            Lease::give_back_detached(self.clone(), keep_for, "the end of the hold");
        }
        Ok(())
    }

    /// The backend's release, keeping the key `keep_for` longer.
    async fn give_back(&self, keep_for: Duration) -> Result<(), LockError> {
        let held = self
            .locks
            .backend()
            .release(self.stored_key(), &self.request.owner, keep_for)
            .await
            .map_err(|e| self.locks.backend_error(self.key(), e))?;
        if !held {
            return Err(self.lost("the lease had ended before it was released"));
        }
        // TRACE: under the attribute, the call's own DEBUG event reports the release.
        tracing::trace!(
            key = self.key(),
            backend = self.backend_name(),
            token = self.fence,
            ?keep_for,
            "lock released"
        );
        Ok(())
    }

    /// Releases `lease` in the background on the current runtime, never blocking: what a
    /// dropped guard leaves behind. Should it fail, the lease runs out at its ttl.
    pub(crate) fn release_detached(lease: Arc<Lease>) {
        let what = format_args!(
            "the guard of lock `{}` (backend {})",
            lease.key(),
            lease.backend_name()
        );
        let background = lease.clone();
        spawn_detached(what, async move {
            let lease = background;
            match lease.release().await {
                Ok(()) => {}
                Err(LockError::Lost { .. }) => {
                    tracing::debug!(
                        key = lease.key(),
                        backend = lease.backend_name(),
                        "lock dropped after its lease had ended"
                    )
                }
                Err(e) => {
                    tracing::warn!(key = lease.key(), backend = lease.backend_name(), error = %e, "releasing a dropped lock failed; it frees itself at its ttl")
                }
            }
        });
    }

    /// Gives `lease` back in the background `after` from now, without any hold: at the end
    /// of a hold the backend would end late, or at once for a grant that came too late
    /// (nothing ran under it). Should it fail, the key frees itself at its expiry.
    pub(crate) fn give_back_detached(lease: Arc<Lease>, after: Duration, what: &str) {
        let task = format_args!(
            "{what} of lock `{}` (backend {})",
            lease.key(),
            lease.backend_name()
        );
        let background = lease.clone();
        let what = what.to_owned();
        spawn_detached(task, async move {
            let lease = background;
            tokio::time::sleep(after).await;
            if let Err(e) = lease.give_back(Duration::ZERO).await {
                tracing::debug!(key = lease.key(), backend = lease.backend_name(), task = %what, error = %e, "giving the key back failed; it frees itself at its expiry");
            }
        });
    }

    /// A future that completes if the backend learns the lease was lost early.
    pub(crate) fn backend_lost(&self) -> BoxFuture<'_, ()> {
        self.locks
            .backend()
            .lost(self.stored_key(), &self.request.owner)
    }
}
