//! The books of a session backend: its sessions, the leases each one holds, and who holds
//! (or is asking the server for) each key. Every update is a few map operations under one
//! mutex, never held across a statement.

use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::time::Sleep;

use super::options::statement_timer;
use super::{HashMap, SessionPool, SessionSql, GRACE};
use crate::error::BoxError;
use crate::token::OwnerToken;

/// What the backend knows, under one mutex.
pub(super) struct Books<D: SessionSql> {
    /// Open sessions by id: the pooled ones and those reserved for a wait.
    pub(super) sessions: HashMap<u64, PooledSession<D>>,
    /// Stored key → who holds it in this backend (or is asking the server for it).
    pub(super) holders: HashMap<String, KeyHolder>,
    /// Sessions being opened for the pool.
    pub(super) opening: usize,
}

/// An open session as the books see it: the leases it holds and how it is used.
pub(super) struct PooledSession<D: SessionSql> {
    pub(super) session: Arc<Session<D>>,
    /// Stored key → the lease this session holds on it.
    pub(super) leases: HashMap<String, Lease<D::Key>>,
    /// Taken out of the pool for a wait in the server's queue.
    pub(super) reserved: bool,
    pub(super) last_used: Instant,
    /// When the keeper will next look at the session by itself (`None`: not until told).
    pub(super) keeper_wake: Option<Instant>,
    /// Whether the session's idle limit was given back to the server's default since it
    /// last held a lease (see [`SessionSql::relax`]).
    pub(super) relaxed: bool,
}

/// Who holds a key in this backend, or is talking to the server about it.
#[derive(Clone, Copy)]
pub(super) enum KeyHolder {
    /// A take or a release of `owner` is talking to the server about the key.
    Pending(OwnerToken),
    /// A statement about the key was abandoned half-way; a repair task is undoing it.
    Repairing,
    /// `owner` holds the key on session `session`.
    Held { owner: OwnerToken, session: u64 },
}

/// One held lock: its owner, the server's name for it and its local deadline.
pub(super) struct Lease<K> {
    pub(super) owner: OwnerToken,
    pub(super) lock_key: K,
    pub(super) expires: Instant,
    /// A release of it is on its way: it still counts for the session's idle limit (the
    /// server holds it until the unlock), no longer for the keeper's expiry and heartbeats.
    pub(super) releasing: bool,
}

/// One database session: its connection (`None` once closed) and its signals.
pub(super) struct Session<D: SessionSql> {
    pub(super) id: u64,
    pub(super) conn: tokio::sync::Mutex<Option<SessionConn<D::Conn>>>,
    /// Statements waiting for or running on the connection (see [`UsingSession`](super::pool::UsingSession)).
    pub(super) statements: AtomicUsize,
    /// Set once the session is closed: every lease on it is lost.
    pub(super) dead: watch::Sender<bool>,
    /// Wakes the session's keeper (a new deadline, a surplus session).
    pub(super) changed: Notify,
}

impl<D: SessionSql> Session<D> {
    /// The session's connection, held for one statement; `None` once the session is
    /// closed. Every statement reaches the connection through here: a session closed while
    /// its connection was in use (its kill could not take the connection then) loses the
    /// connection at the next use, so the server frees its locks at once and nothing runs
    /// on a closed session.
    pub(super) async fn connection(
        &self,
    ) -> tokio::sync::MutexGuard<'_, Option<SessionConn<D::Conn>>> {
        let mut slot = self.conn.lock().await;
        if *self.dead.borrow() {
            *slot = None;
        }
        slot
    }
}

/// An open session's connection and the timer that bounds its statements (see
/// [`SessionOptions::statement`](super::SessionOptions::statement)).
pub(super) struct SessionConn<C> {
    pub(super) conn: C,
    pub(super) timer: Pin<Box<Sleep>>,
}

impl<C> SessionConn<C> {
    pub(super) fn new(conn: C) -> Self {
        SessionConn {
            conn,
            timer: statement_timer(),
        }
    }
}

/// The error of a statement whose session was closed meanwhile.
pub(super) fn dead_session() -> BoxError {
    "the database session was closed".into()
}

/// A take must not reach the server on a session that already holds its key: both
/// servers would grant it again, re-entrantly, to a second owner.
pub(super) fn holds_key<D: SessionSql>(books: &Books<D>, session: &Session<D>, key: &str) -> bool {
    books
        .sessions
        .get(&session.id)
        .is_some_and(|h| h.leases.contains_key(key))
}

impl<D: SessionSql> SessionPool<D> {
    pub(super) fn books(&self) -> MutexGuard<'_, Books<D>> {
        // Every update below is a few map operations that cannot panic half-way.
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends a session: its leases are lost, its connection is dropped (the server frees
    /// its locks when it sees the socket close).
    pub(super) fn kill(&self, session: &Session<D>, why: &str) {
        let lost = {
            let mut books = self.books();
            let lost = match books.sessions.remove(&session.id) {
                Some(pooled) => pooled.leases.into_keys().collect::<Vec<_>>(),
                None => Vec::new(),
            };
            for key in &lost {
                if matches!(books.holders.get(key), Some(KeyHolder::Held { session: s, .. }) if *s == session.id)
                {
                    books.holders.remove(key);
                }
            }
            lost
        };
        if !*session.dead.borrow() && lost.is_empty() {
            tracing::debug!(
                backend = D::KIND,
                session = session.id,
                reason = why,
                "an empty database session ended"
            );
        } else if !*session.dead.borrow() {
            tracing::warn!(
                backend = D::KIND,
                session = session.id,
                leases = lost.len(),
                reason = why,
                "database session ended; its locks are lost"
            );
        }
        session.dead.send_replace(true);
        session.changed.notify_one();
        if let Ok(mut conn) = session.conn.try_lock() {
            conn.take();
        }
    }

    /// The idle limit of a session once its leases are `leases` plus one ending at `extra`.
    pub(super) fn idle_limit(
        leases: &HashMap<String, Lease<D::Key>>,
        extra: Option<Instant>,
        now: Instant,
    ) -> Option<Duration> {
        leases
            .values()
            .map(|l| l.expires)
            .chain(extra)
            .min()
            .map(|first| first.saturating_duration_since(now) + GRACE)
    }

    /// Records a granted lease; `false` if the session died meanwhile.
    pub(super) fn record(
        &self,
        session: &Session<D>,
        key: &str,
        owner: OwnerToken,
        lock_key: D::Key,
        ttl: Duration,
    ) -> bool {
        let mut books = self.books();
        let Some(pooled) = books.sessions.get_mut(&session.id) else {
            return false;
        };
        let now = Instant::now();
        let expires = now + ttl;
        pooled.leases.insert(
            key.to_owned(),
            Lease {
                owner,
                lock_key,
                expires,
                releasing: false,
            },
        );
        pooled.last_used = now;
        pooled.relaxed = false;
        // Wake the keeper only if it would otherwise look too late.
        let wake_keeper = pooled.keeper_wake.is_none_or(|wake| expires < wake);
        let held = KeyHolder::Held {
            owner,
            session: session.id,
        };
        // The take's own pending entry is there, or (a wait granted while a `try_acquire` of
        // this backend was on its way) that take's: this lease holds the key either way,
        // and that take finds it held on this session or is refused by the server.
        match books.holders.get_mut(key) {
            Some(entry) => *entry = held,
            None => {
                books.holders.insert(key.to_owned(), held);
            }
        }
        drop(books);
        if wake_keeper {
            session.changed.notify_one();
        }
        true
    }

    pub(super) fn touch(&self, session: &Session<D>) {
        if let Some(h) = self.books().sessions.get_mut(&session.id) {
            h.last_used = Instant::now();
        }
    }

    /// Marks a live lease of `owner` as being released: the session that holds it, and the
    /// server's name for the lock.
    ///
    /// The lease stays on the books, counted in its session's idle limit, until the
    /// release holds the connection and sends the unlock ([`end_lease`](Self::end_lease)).
    /// Taken off at once, a heartbeat sent in between (the keeper may have the connection
    /// first) would set the limit of the session's other leases only, or none at all if
    /// it was the last: a stall before the unlock would then keep the key held for
    /// nobody, past its ttl.
    pub(super) fn start_release(
        &self,
        key: &str,
        owner: &OwnerToken,
    ) -> Option<(Arc<Session<D>>, D::Key)> {
        let mut books = self.books();
        let books = &mut *books;
        let entry = books.holders.get_mut(key)?;
        let KeyHolder::Held { owner: o, session } = *entry else {
            return None;
        };
        if o != *owner {
            return None;
        }
        let pooled = books.sessions.get_mut(&session)?;
        let lease = pooled.leases.get_mut(key)?;
        if lease.expires <= Instant::now() {
            // Expired: the keeper unlocks it.
            return None;
        }
        lease.releasing = true;
        // Until the server has it back, no other take of this backend may reach it (the
        // same session would grant it again, re-entrantly).
        *entry = KeyHolder::Pending(*owner);
        Some((pooled.session.clone(), lease.lock_key.clone()))
    }

    /// Takes a lease being released off the books, right before its unlock statement;
    /// called while holding the session's connection. Returns the session's idle limit
    /// without it, for that statement.
    pub(super) fn end_lease(&self, session: &Session<D>, key: &str) -> Option<Duration> {
        let mut books = self.books();
        let pooled = books.sessions.get_mut(&session.id)?;
        if pooled.leases.get(key).is_some_and(|l| l.releasing) {
            pooled.leases.remove(key);
        }
        Self::idle_limit(&pooled.leases, None, Instant::now())
    }

    /// The idle limit of a session's leases as they are now; called while holding the
    /// session's connection, so that no statement changes the books in between.
    pub(super) fn current_idle_limit(&self, session: &Session<D>) -> Option<Duration> {
        let books = self.books();
        let pooled = books.sessions.get(&session.id)?;
        Self::idle_limit(&pooled.leases, None, Instant::now())
    }
}
