//! Take, wait, release and extend, each on the session that holds (or will hold) the key.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::books::{dead_session, holds_key, KeyHolder, Session, SessionConn};
use super::options::NoAnswer;
use super::pool::UsingSession;
use super::repair::{PendingClaim, UnansweredStatement, Undo};
use super::{
    Acquire, BackendResult, BoxFuture, Granted, SessionPool, SessionSql, GRACE, MAX_HOSTING,
};
use crate::error::BoxError;
use crate::token::OwnerToken;

/// How a wait on a reserved session ended.
pub(super) enum WaitOutcome {
    /// Granted: the fencing token, and whether the lease is on the books (`false`: the
    /// session died meanwhile).
    Granted(u64, bool),
    /// The wait ran out.
    TimedOut,
    /// The session already holds the key for another take: nothing was sent.
    SessionHoldsKey,
}

impl<D: SessionSql> SessionPool<D> {
    /// Tries to take the key on `session`: its fencing token and whether the lease is on
    /// the books (`false`: the session died meanwhile) if granted. A granted lease is
    /// recorded before the connection is let go, so that every idle limit computed while
    /// holding the connection counts it.
    pub(super) async fn try_on(
        self: &Arc<Self>,
        session: &Arc<Session<D>>,
        req: &Acquire<'_>,
        lock_key: &D::Key,
    ) -> Result<Option<(u64, bool)>, BoxError> {
        let _using = UsingSession::new(session);
        let mut conn = session.connection().await;
        let SessionConn { conn, timer } = conn.as_mut().ok_or_else(dead_session)?;
        let idle = {
            let books = self.books();
            let pooled = books.sessions.get(&session.id).ok_or_else(dead_session)?;
            if holds_key(&books, session, req.key) {
                // Another take of this backend (a wait granted on this session) has it.
                return Ok(None);
            }
            let now = Instant::now();
            Self::idle_limit(&pooled.leases, Some(now + req.ttl), now)
        };
        let unanswered = UnansweredStatement::new(self, session, Undo::Unlock(req.key, lock_key));
        // The lease runs from this statement, not from picking (or opening) the session.
        req.attempt.start();
        let got = self
            .options
            .statement(
                timer.as_mut(),
                pin!(self.sql.try_lock(conn, lock_key, idle)),
            )
            .await;
        unanswered.answered();
        Ok(got?.map(|fence| {
            let recorded = self.record(session, req.key, *req.owner, lock_key.clone(), req.ttl);
            (fence, recorded)
        }))
    }

    pub(super) async fn try_acquire(
        self: &Arc<Self>,
        req: Acquire<'_>,
    ) -> BackendResult<Option<Granted>> {
        let owner = *req.owner;
        {
            let mut books = self.books();
            if books.holders.contains_key(req.key) {
                return Ok(None);
            }
            books
                .holders
                .insert(req.key.to_owned(), KeyHolder::Pending(owner));
        }
        let pending = PendingClaim {
            pool: self,
            key: req.key,
            owner,
        };
        let lock_key = self.sql.lock_key(req.key);
        loop {
            let (session, fresh) = self.pick().await?;
            match self.try_on(&session, &req, &lock_key).await {
                Ok(None) => {
                    self.touch(&session);
                    return Ok(None);
                }
                Ok(Some((fence, recorded))) => {
                    // Recorded before the pending entry goes, so that the key never looks
                    // free here while the server has it.
                    drop(pending);
                    return match recorded {
                        true => Ok(Some(Granted { fence })),
                        false => Err(dead_session()),
                    };
                }
                Err(e) => {
                    self.kill(&session, &e.to_string());
                    // A pooled session may have been closed by the server while idle (a
                    // restart, an operator, `wait_timeout`): try the next one, and in the
                    // end a new one, whose failure is the answer. Each failure removes a
                    // session, so this ends. A server that did not answer in time is the
                    // answer at once.
                    if fresh || e.is::<NoAnswer>() {
                        return Err(e);
                    }
                }
            }
        }
    }

    pub(super) async fn acquire_until(
        self: &Arc<Self>,
        req: Acquire<'_>,
        deadline: Instant,
    ) -> BackendResult<Option<Granted>> {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait < Duration::from_millis(1) {
            return self.try_acquire(req).await;
        }
        // At most `max_waiting` acquires wait on sessions of their own; the others wait
        // here, in order, for one of them to end, after one try (the key may be free: a
        // wait on another key must not hold this one up). One whose deadline comes first
        // gets a last try.
        let _waiting_session = match self.waiting_sessions.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(granted) = self.try_acquire(req).await? {
                    return Ok(Some(granted));
                }
                let queued =
                    tokio::time::timeout_at(deadline.into(), self.waiting_sessions.acquire());
                match queued.await {
                    Ok(Ok(permit)) => permit,
                    // Timed out (the semaphore is never closed).
                    _ => return self.try_acquire(req).await,
                }
            }
        };
        let lock_key = self.sql.lock_key(req.key);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (session, fresh) = self.reserve().await?;
            match self.wait_on(&session, &req, &lock_key, wait).await {
                Ok(WaitOutcome::SessionHoldsKey) => {
                    // A take that picked this session before it was reserved got the key
                    // on it: wait on another session.
                    self.unreserve(&session);
                    continue;
                }
                Ok(WaitOutcome::Granted(fence, recorded)) => {
                    self.unreserve(&session);
                    return match recorded {
                        true => Ok(Some(Granted { fence })),
                        false => Err(dead_session()),
                    };
                }
                Ok(WaitOutcome::TimedOut) => {
                    self.unreserve(&session);
                    return Ok(None);
                }
                Err(e) => {
                    self.kill(&session, &e.to_string());
                    // As for `try_acquire`: a pooled session may have been closed while idle.
                    if fresh || e.is::<NoAnswer>() || Instant::now() >= deadline {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Waits for the key in the server's queue on a reserved session. A granted lease is
    /// recorded before the connection is let go, as in [`try_on`](Self::try_on), so that
    /// no take on this session can slip in between and be granted again re-entrantly.
    pub(super) async fn wait_on(
        self: &Arc<Self>,
        session: &Arc<Session<D>>,
        req: &Acquire<'_>,
        lock_key: &D::Key,
        wait: Duration,
    ) -> Result<WaitOutcome, BoxError> {
        let _using = UsingSession::new(session);
        let mut conn = session.connection().await;
        let SessionConn { conn, timer } = conn.as_mut().ok_or_else(dead_session)?;
        if holds_key(&self.books(), session, req.key) {
            return Ok(WaitOutcome::SessionHoldsKey);
        }
        // An abandoned wait may still be granted: close the (empty) session.
        let unanswered = UnansweredStatement::new(self, session, Undo::CloseSession);
        let idle = Some(req.ttl + GRACE);
        // The server bounds the wait; `timeout_ms` past it bounds a server that does not
        // answer.
        let wait = wait.max(Duration::from_millis(1));
        let got = self
            .options
            .wait(
                timer.as_mut(),
                wait,
                pin!(self.sql.lock_wait(conn, lock_key, wait, idle)),
            )
            .await;
        unanswered.answered();
        Ok(match got? {
            Some(fence) => {
                // The lease runs from about now, not from the start of the wait: the server
                // armed the idle limit when its answer left, and `record` starts the
                // keeper's deadline just after this, so a guard deadline counted from here
                // is never later than either.
                req.attempt.start();
                let recorded = self.record(session, req.key, *req.owner, lock_key.clone(), req.ttl);
                WaitOutcome::Granted(fence, recorded)
            }
            None => WaitOutcome::TimedOut,
        })
    }

    pub(super) async fn release(
        self: &Arc<Self>,
        key: &str,
        owner: &OwnerToken,
    ) -> BackendResult<bool> {
        let Some((session, lock_key)) = self.start_release(key, owner) else {
            return Ok(false);
        };
        let _pending = PendingClaim {
            pool: self,
            key,
            owner: *owner,
        };
        // Armed before waiting for the session: given up at any point from here, the lock
        // is still to be given back.
        let unanswered = UnansweredStatement::new(self, &session, Undo::Unlock(key, &lock_key));
        let _using = UsingSession::new(&session);
        let mut conn = session.connection().await;
        let Some(SessionConn { conn, timer }) = conn.as_mut() else {
            unanswered.answered();
            return Ok(false);
        };
        let idle = self.end_lease(&session, key);
        let unlock = self.sql.unlock(conn, std::slice::from_ref(&lock_key), idle);
        let released = self.options.statement(timer.as_mut(), pin!(unlock)).await;
        unanswered.answered();
        match released {
            Ok(n) => {
                // The keeper looks at the session at its next wake anyway; it only needs
                // telling when the pool has more sessions than it keeps.
                let surplus = {
                    let mut books = self.books();
                    if let Some(h) = books.sessions.get_mut(&session.id) {
                        h.last_used = Instant::now();
                    }
                    books.sessions.len() > MAX_HOSTING
                };
                if surplus {
                    session.changed.notify_one();
                }
                Ok(n == 1)
            }
            Err(e) => {
                // The session is gone or unusable: closing it frees the lock; the lease
                // may have ended before the release, so it is not reported as held.
                self.kill(&session, &e.to_string());
                Ok(false)
            }
        }
    }

    pub(super) async fn extend(
        self: &Arc<Self>,
        key: &str,
        owner: &OwnerToken,
        ttl: Duration,
    ) -> BackendResult<bool> {
        let (session, sooner) = {
            let mut books = self.books();
            let Some(KeyHolder::Held { owner: o, session }) = books.holders.get(key).copied()
            else {
                return Ok(false);
            };
            let now = Instant::now();
            let Some(pooled) = books.sessions.get_mut(&session) else {
                return Ok(false);
            };
            let expires = now + ttl;
            match pooled.leases.get_mut(key) {
                Some(lease) if o == *owner && lease.owner == *owner && lease.expires > now => {
                    lease.expires = expires;
                }
                _ => return Ok(false),
            }
            // An extension can also shorten a lease (the hold of a scheduled lock after its
            // run): then the keeper must wake sooner than it planned, to unlock it on time.
            let sooner = pooled.keeper_wake.is_none_or(|wake| expires < wake);
            (pooled.session.clone(), sooner)
        };
        let _using = UsingSession::new(&session);
        // A session closed while this waited for its connection (a statement on it did not
        // answer in time) has none: its locks go with it, so nothing on it is extended.
        let mut slot = session.connection().await;
        let Some(SessionConn { conn, timer }) = slot.as_mut() else {
            return Ok(false);
        };
        let idle = self.current_idle_limit(&session);
        // An abandoned heartbeat changes nothing; the driver skips its answer later.
        let unanswered = UnansweredStatement::new(self, &session, Undo::Nothing);
        let pinged = self
            .options
            .statement(timer.as_mut(), pin!(self.sql.ping(conn, idle)))
            .await;
        unanswered.answered();
        match pinged {
            // Closed while the ping was on the wire: its locks go with the connection.
            Ok(()) if *session.dead.borrow() => {
                *slot = None;
                Ok(false)
            }
            Ok(()) => {
                self.touch(&session);
                if sooner {
                    session.changed.notify_one();
                }
                Ok(true)
            }
            Err(e) => {
                self.kill(&session, &e.to_string());
                Ok(false)
            }
        }
    }

    pub(super) fn lost(&self, key: &str, owner: &OwnerToken) -> BoxFuture<'static, ()> {
        let dead = {
            let books = self.books();
            match books.holders.get(key) {
                Some(KeyHolder::Held { owner: o, session }) if o == owner => books
                    .sessions
                    .get(session)
                    .map(|h| h.session.dead.subscribe()),
                _ => None,
            }
        };
        Box::pin(async move {
            if let Some(mut dead) = dead {
                // An error means the session is dropped: gone as well.
                let _ = dead.wait_for(|d| *d).await;
            }
        })
    }
}
