//! The shared machinery of the session-lock backends (`postgres://` advisory locks,
//! `mysql://` `GET_LOCK`): a lock is a lock of a database session, so it lives exactly as
//! long as that session and is released on it.
//!
//! # Sessions
//!
//! The backend owns its connections (never the user's pool). Held locks share them: a
//! `try_acquire` goes to the least busy of at most [`MAX_HOSTING`] sessions (a new one is
//! opened only while every open one is busy with a statement), so 1,000 concurrently held
//! locks use at most 8 connections. A waiting acquire needs a session of its own for the
//! wait, because the server parks the whole session in its lock queue: it takes an empty
//! session of the pool, or opens one; once granted, that session joins the pool, which
//! shrinks back to [`MAX_HOSTING`] as sessions become empty.
//!
//! Both servers' locks are re-entrant within one session. The backend therefore keeps an
//! index of the keys it holds and refuses a second take of a held key before it reaches the
//! server; a waiter waits on a session of its own, where the server's queue excludes it.
//!
//! # Expiry
//!
//! Each lease has a deadline (`ttl` after the server granted it, moved by `extend`). While
//! the process runs, the session's keeper task unlocks a lease at its deadline. If the
//! process stalls (or is cut off), the server ends it: every statement on a session also
//! keeps the session's idle limit (`idle_session_timeout` on PostgreSQL, `wait_timeout` on
//! MySQL) at the time left until the earliest deadline of the leases on that session plus
//! [`GRACE`], so a session left idle past that dies and its locks with it. The server
//! counts idle time from the end of the last statement, so a statement sends the limit
//! only when it changes (the dialect remembers what it set): back-to-back takes of one ttl
//! need none. A session whose last lease is released keeps its limit until the keeper
//! relaxes it ([`Dialect::relax`]) a heartbeat later. Because the
//! limit always follows the *earliest* deadline of the session, a lease is never kept by
//! the server much past its own ttl because another lease on the same session is younger
//! (at worst, a stall makes a later lease on the same session end early, reported as
//! `Lost`, which is safe). The keeper also sends a heartbeat every [`HEARTBEAT`] while the
//! session holds leases: it re-arms the limit and notices a killed session, which
//! completes [`Backend::lost`] for every lease on it.
//!
//! # Cancellation
//!
//! A caller may give up mid-statement (a dropped future, a timeout around `extend`). The
//! driver skips the unread answer before the session's next statement, so the session,
//! and every other lock on it, stays; what the abandoned statement did is undone by a
//! repair task: a take or release that may have left the lock held is followed by an
//! unlock, while the key stays blocked for this backend. A wait in the server's queue
//! runs on a session of its own, which is simply closed when abandoned.

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::collections::HashMap as StdHashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::{Acquire, Backend, BackendResult, BoxFuture, Capability, Granted};
use crate::error::BoxError;
use crate::token::OwnerToken;

/// The maps of the books: keyed by stored keys and session ids, looked up several times per
/// take and release. foldhash is seeded at random per process, like std's SipHash, at a
/// fraction of its cost on short keys.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// The most sessions that host held locks in steady state.
pub(crate) const MAX_HOSTING: usize = 8;

/// How often a session that holds leases is checked (and its idle limit re-armed): a
/// killed session is noticed within this.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a session that holds nothing keeps its keeper awake after its last use.
const IDLE_NAP: Duration = Duration::from_secs(60);

/// How long past a lease's deadline the server keeps a stalled holder's session: room for
/// the keeper of a live process to unlock the lease first, so that an expired lease never
/// takes the other leases of its session down with it.
pub(crate) const GRACE: Duration = Duration::from_millis(500);

/// One database's statements for session locks.
pub(crate) trait Dialect: Send + Sync + Sized + 'static {
    /// A connection: one session.
    type Conn: Send + 'static;
    /// The server's name for a lock.
    type Key: Clone + Send + Sync + 'static;

    /// The URL scheme, for messages.
    const KIND: &'static str;

    /// The server's lock for a stored key.
    fn lock_key(&self, stored: &str) -> Self::Key;

    /// Opens a session.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, BoxError>> + Send + '_;

    /// Takes `key` if free; its fencing token if taken. `idle` is the session's idle limit
    /// once the statement has run (`None`: the session holds nothing).
    fn try_lock<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        key: &'a Self::Key,
        idle: Option<Duration>,
    ) -> impl Future<Output = Result<Option<u64>, BoxError>> + Send + 'a;

    /// Waits in the server's queue for `key`, at most `wait`; its fencing token if taken.
    fn lock_wait<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        key: &'a Self::Key,
        wait: Duration,
        idle: Option<Duration>,
    ) -> impl Future<Output = Result<Option<u64>, BoxError>> + Send + 'a;

    /// Releases `keys`; how many of them the session held.
    fn unlock<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        keys: &'a [Self::Key],
        idle: Option<Duration>,
    ) -> impl Future<Output = Result<usize, BoxError>> + Send + 'a;

    /// Gives an empty session's idle limit back to the server's default, so that the
    /// server does not close a pooled session for idling between two uses: the release of
    /// a session's last lease may leave the limit that lease set (saving a change on every
    /// release and the next take). The keeper calls it a heartbeat after the session's
    /// last use, holding the connection, when the session has no lease. The default does
    /// nothing.
    fn relax<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'a {
        let _ = conn;
        async { Ok(()) }
    }

    /// A heartbeat that also sets the idle limit.
    fn ping<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        idle: Option<Duration>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'a;
}

/// A backend of session locks over a [`Dialect`].
pub(crate) struct SessionBackend<D: Dialect> {
    shared: Arc<Shared<D>>,
    max_key_len: usize,
}

struct Shared<D: Dialect> {
    dialect: D,
    state: Mutex<State<D>>,
    next_id: AtomicU64,
}

struct State<D: Dialect> {
    sessions: HashMap<u64, Hosted<D>>,
    /// Stored key → who holds it in this backend (or is asking the server for it).
    index: HashMap<String, Entry>,
    /// Sessions being opened for the pool.
    connecting: usize,
}

struct Hosted<D: Dialect> {
    session: Arc<Session<D>>,
    leases: HashMap<String, Lease<D::Key>>,
    /// Taken out of the pool for a wait in the server's queue.
    reserved: bool,
    last_used: Instant,
    /// When the keeper will next look at the session by itself (`None`: not until told).
    keeper_wake: Option<Instant>,
    /// Whether the session's idle limit was given back to the server's default since it
    /// last held a lease (see [`Dialect::relax`]).
    relaxed: bool,
}

#[derive(Clone, Copy)]
enum Entry {
    /// A take or a release of `owner` is talking to the server about the key.
    Pending(OwnerToken),
    /// A statement about the key was abandoned half-way; a repair task is undoing it.
    Repairing,
    Held {
        owner: OwnerToken,
        session: u64,
    },
}

struct Lease<K> {
    owner: OwnerToken,
    lock_key: K,
    expires: Instant,
}

struct Session<D: Dialect> {
    id: u64,
    conn: tokio::sync::Mutex<Option<D::Conn>>,
    busy: AtomicUsize,
    dead: watch::Sender<bool>,
    changed: Notify,
}

fn dead_session() -> BoxError {
    "the database session was closed".into()
}

/// How a wait on a reserved session ended.
enum Waited {
    /// Granted: the fencing token, and whether the lease is on the books (`false`: the
    /// session died meanwhile).
    Granted(u64, bool),
    /// The wait ran out.
    TimedOut,
    /// The session already holds the key for another take: nothing was sent.
    SessionHoldsKey,
}

/// A take must not reach the server on a session that already holds its key: both
/// servers would grant it again, re-entrantly, to a second owner.
fn holds_key<D: Dialect>(state: &State<D>, session: &Session<D>, key: &str) -> bool {
    state
        .sessions
        .get(&session.id)
        .is_some_and(|h| h.leases.contains_key(key))
}

impl<D: Dialect> Shared<D> {
    fn state(&self) -> MutexGuard<'_, State<D>> {
        // Every update below is a few map operations that cannot panic half-way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends a session: its leases are lost, its connection is dropped (the server frees
    /// its locks when it sees the socket close).
    fn kill(&self, session: &Session<D>, why: &str) {
        let lost = {
            let mut state = self.state();
            let lost = match state.sessions.remove(&session.id) {
                Some(hosted) => hosted.leases.into_keys().collect::<Vec<_>>(),
                None => Vec::new(),
            };
            for key in &lost {
                if matches!(state.index.get(key), Some(Entry::Held { session: s, .. }) if *s == session.id)
                {
                    state.index.remove(key);
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
    fn idle_limit(
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

    fn new_session(self: &Arc<Self>, conn: D::Conn, reserved: bool) -> Arc<Session<D>> {
        self.add_session(conn, reserved, None)
    }

    /// Adds an open session to the books; `connecting` (the pool's count of sessions being
    /// opened) is settled in the same critical section, so that no `pick` in between
    /// sees one session too few and opens a ninth.
    fn add_session(
        self: &Arc<Self>,
        conn: D::Conn,
        reserved: bool,
        connecting: Option<Connecting<'_, D>>,
    ) -> Arc<Session<D>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session {
            id,
            conn: tokio::sync::Mutex::new(Some(conn)),
            busy: AtomicUsize::new(0),
            dead: watch::Sender::new(false),
            changed: Notify::new(),
        });
        {
            let mut state = self.state();
            state.sessions.insert(
                id,
                Hosted {
                    session: session.clone(),
                    leases: HashMap::default(),
                    reserved,
                    last_used: Instant::now(),
                    keeper_wake: None,
                    relaxed: true,
                },
            );
            if let Some(connecting) = connecting {
                connecting.settle(&mut state);
            }
        }
        tokio::spawn(keeper(Arc::downgrade(self), session.clone()));
        session
    }

    /// The session a new lock goes to: the least busy one, or a new one while every open
    /// one is busy and there are fewer than [`MAX_HOSTING`]. `true` with a session opened
    /// for this call.
    async fn pick(self: &Arc<Self>) -> Result<(Arc<Session<D>>, bool), BoxError> {
        let chosen = {
            let mut state = self.state();
            let best = state
                .sessions
                .values()
                .filter(|h| !h.reserved)
                .min_by_key(|h| h.session.busy.load(Ordering::Relaxed))
                .map(|h| h.session.clone());
            let open = state.sessions.values().filter(|h| !h.reserved).count() + state.connecting;
            match best {
                Some(s) if s.busy.load(Ordering::Relaxed) == 0 || open >= MAX_HOSTING => Ok(s),
                best => {
                    state.connecting += 1;
                    Err(best)
                }
            }
        };
        let fallback = match chosen {
            Ok(session) => return Ok((session, false)),
            Err(fallback) => fallback,
        };
        let connecting = Connecting(Some(self));
        match self.dialect.connect().await {
            Ok(conn) => Ok((self.add_session(conn, false, Some(connecting)), true)),
            Err(e) => match fallback {
                Some(session) => {
                    tracing::warn!(backend = D::KIND, error = %e, "could not open another session; sharing one");
                    Ok((session, false))
                }
                None => Err(e),
            },
        }
    }

    /// An empty session for a wait, taken out of the pool, or a new one (`true`).
    async fn reserve(self: &Arc<Self>) -> Result<(Arc<Session<D>>, bool), BoxError> {
        {
            let mut state = self.state();
            if let Some(h) = state.sessions.values_mut().find(|h| {
                !h.reserved && h.leases.is_empty() && h.session.busy.load(Ordering::Relaxed) == 0
            }) {
                h.reserved = true;
                return Ok((h.session.clone(), false));
            }
        }
        let conn = self.dialect.connect().await?;
        Ok((self.new_session(conn, true), true))
    }

    fn unreserve(&self, session: &Session<D>) {
        if let Some(h) = self.state().sessions.get_mut(&session.id) {
            h.reserved = false;
        }
        session.changed.notify_one();
    }

    /// Records a granted lease; `false` if the session died meanwhile.
    fn record(
        &self,
        session: &Session<D>,
        key: &str,
        owner: OwnerToken,
        lock_key: D::Key,
        ttl: Duration,
    ) -> bool {
        let mut state = self.state();
        let Some(hosted) = state.sessions.get_mut(&session.id) else {
            return false;
        };
        let now = Instant::now();
        let expires = now + ttl;
        hosted.leases.insert(
            key.to_owned(),
            Lease {
                owner,
                lock_key,
                expires,
            },
        );
        hosted.last_used = now;
        hosted.relaxed = false;
        // Wake the keeper only if it would otherwise look too late.
        let wake_keeper = hosted.keeper_wake.is_none_or(|wake| expires < wake);
        let held = Entry::Held {
            owner,
            session: session.id,
        };
        // The take's own pending entry is there, or (a wait granted while a `try_acquire` of
        // this backend was on its way) that take's: this lease holds the key either way,
        // and that take finds it held on this session or is refused by the server.
        match state.index.get_mut(key) {
            Some(entry) => *entry = held,
            None => {
                state.index.insert(key.to_owned(), held);
            }
        }
        drop(state);
        if wake_keeper {
            session.changed.notify_one();
        }
        true
    }

    fn touch(&self, session: &Session<D>) {
        if let Some(h) = self.state().sessions.get_mut(&session.id) {
            h.last_used = Instant::now();
        }
    }

    /// Tries to take the key on `session`: its fencing token and whether the lease is on
    /// the books (`false`: the session died meanwhile) if granted. A granted lease is
    /// recorded before the connection is let go, so that every idle limit computed while
    /// holding the connection counts it.
    async fn try_on(
        self: &Arc<Self>,
        session: &Arc<Session<D>>,
        req: &Acquire<'_>,
        lock_key: &D::Key,
    ) -> Result<Option<(u64, bool)>, BoxError> {
        let _busy = Busy::new(session);
        let mut conn = session.conn.lock().await;
        let conn = conn.as_mut().ok_or_else(dead_session)?;
        let idle = {
            let state = self.state();
            let hosted = state.sessions.get(&session.id).ok_or_else(dead_session)?;
            if holds_key(&state, session, req.key) {
                // Another take of this backend (a wait granted on this session) has it.
                return Ok(None);
            }
            let now = Instant::now();
            Self::idle_limit(&hosted.leases, Some(now + req.ttl), now)
        };
        let flight = InFlight::new(self, session, Repair::Unlock(req.key, lock_key));
        // The lease runs from this statement, not from picking (or opening) the session.
        req.attempt.start();
        let got = self.dialect.try_lock(conn, lock_key, idle).await;
        flight.land();
        Ok(got?.map(|fence| {
            let recorded = self.record(session, req.key, *req.owner, lock_key.clone(), req.ttl);
            (fence, recorded)
        }))
    }

    async fn try_acquire(self: &Arc<Self>, req: Acquire<'_>) -> BackendResult<Option<Granted>> {
        let owner = *req.owner;
        {
            let mut state = self.state();
            if state.index.contains_key(req.key) {
                return Ok(None);
            }
            state
                .index
                .insert(req.key.to_owned(), Entry::Pending(owner));
        }
        let pending = PendingEntry {
            shared: self,
            key: req.key,
            owner,
        };
        let lock_key = self.dialect.lock_key(req.key);
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
                    // session, so this ends.
                    if fresh {
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn acquire_until(
        self: &Arc<Self>,
        req: Acquire<'_>,
        deadline: Instant,
    ) -> BackendResult<Option<Granted>> {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait < Duration::from_millis(1) {
            return self.try_acquire(req).await;
        }
        let lock_key = self.dialect.lock_key(req.key);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (session, fresh) = self.reserve().await?;
            match self.wait_on(&session, &req, &lock_key, wait).await {
                Ok(Waited::SessionHoldsKey) => {
                    // A take that picked this session before it was reserved got the key
                    // on it: wait on another session.
                    self.unreserve(&session);
                    continue;
                }
                Ok(Waited::Granted(fence, recorded)) => {
                    self.unreserve(&session);
                    return match recorded {
                        true => Ok(Some(Granted { fence })),
                        false => Err(dead_session()),
                    };
                }
                Ok(Waited::TimedOut) => {
                    self.unreserve(&session);
                    return Ok(None);
                }
                Err(e) => {
                    self.kill(&session, &e.to_string());
                    // As for `try_acquire`: a pooled session may have been closed while idle.
                    if fresh || Instant::now() >= deadline {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Waits for the key in the server's queue on a reserved session. A granted lease is
    /// recorded before the connection is let go, as in [`try_on`](Self::try_on), so that
    /// no take on this session can slip in between and be granted again re-entrantly.
    async fn wait_on(
        self: &Arc<Self>,
        session: &Arc<Session<D>>,
        req: &Acquire<'_>,
        lock_key: &D::Key,
        wait: Duration,
    ) -> Result<Waited, BoxError> {
        let _busy = Busy::new(session);
        let mut conn = session.conn.lock().await;
        let conn = conn.as_mut().ok_or_else(dead_session)?;
        if holds_key(&self.state(), session, req.key) {
            return Ok(Waited::SessionHoldsKey);
        }
        // An abandoned wait may still be granted: close the (empty) session.
        let flight = InFlight::new(self, session, Repair::Close);
        let idle = Some(req.ttl + GRACE);
        // The server bounds the wait; this bounds a server that does not answer.
        let got = tokio::time::timeout(
            wait + Duration::from_secs(5),
            self.dialect
                .lock_wait(conn, lock_key, wait.max(Duration::from_millis(1)), idle),
        )
        .await
        .unwrap_or_else(|_| Err("the server did not end the wait in time".into()));
        flight.land();
        Ok(match got? {
            Some(fence) => {
                // The lease runs from about now, not from the start of the wait: the server
                // armed the idle limit when its answer left, and `record` starts the
                // keeper's deadline just after this, so a guard deadline counted from here
                // is never later than either.
                req.attempt.start();
                let recorded = self.record(session, req.key, *req.owner, lock_key.clone(), req.ttl);
                Waited::Granted(fence, recorded)
            }
            None => Waited::TimedOut,
        })
    }

    /// Takes a live lease of `owner` out of the books: the session that holds it.
    fn take_lease(&self, key: &str, owner: &OwnerToken) -> Option<(Arc<Session<D>>, D::Key)> {
        let mut state = self.state();
        let state = &mut *state;
        let entry = state.index.get_mut(key)?;
        let Entry::Held { owner: o, session } = *entry else {
            return None;
        };
        if o != *owner {
            return None;
        }
        let now = Instant::now();
        let hosted = state.sessions.get_mut(&session)?;
        let lease = hosted.leases.remove(key)?;
        if lease.expires <= now {
            // Expired: the keeper unlocks it.
            hosted.leases.insert(key.to_owned(), lease);
            return None;
        }
        // Until the server has it back, no other take of this backend may reach it (the
        // same session would grant it again, re-entrantly).
        *entry = Entry::Pending(*owner);
        Some((hosted.session.clone(), lease.lock_key))
    }

    /// The idle limit of a session's leases as they are now; called while holding the
    /// session's connection, so that no statement changes the books in between.
    fn current_idle_limit(&self, session: &Session<D>) -> Option<Duration> {
        let state = self.state();
        let hosted = state.sessions.get(&session.id)?;
        Self::idle_limit(&hosted.leases, None, Instant::now())
    }

    async fn release(self: &Arc<Self>, key: &str, owner: &OwnerToken) -> BackendResult<bool> {
        let Some((session, lock_key)) = self.take_lease(key, owner) else {
            return Ok(false);
        };
        let _pending = PendingEntry {
            shared: self,
            key,
            owner: *owner,
        };
        // Armed before waiting for the session: given up at any point from here, the lock
        // is still to be given back.
        let flight = InFlight::new(self, &session, Repair::Unlock(key, &lock_key));
        let _busy = Busy::new(&session);
        let mut conn = session.conn.lock().await;
        let Some(conn) = conn.as_mut() else {
            flight.land();
            return Ok(false);
        };
        let idle = self.current_idle_limit(&session);
        let released = self
            .dialect
            .unlock(conn, std::slice::from_ref(&lock_key), idle)
            .await;
        flight.land();
        match released {
            Ok(n) => {
                // The keeper looks at the session at its next wake anyway; it only needs
                // telling when the pool has more sessions than it keeps.
                let surplus = {
                    let mut state = self.state();
                    if let Some(h) = state.sessions.get_mut(&session.id) {
                        h.last_used = Instant::now();
                    }
                    state.sessions.len() > MAX_HOSTING
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

    async fn extend(
        self: &Arc<Self>,
        key: &str,
        owner: &OwnerToken,
        ttl: Duration,
    ) -> BackendResult<bool> {
        let session = {
            let mut state = self.state();
            let Some(Entry::Held { owner: o, session }) = state.index.get(key).copied() else {
                return Ok(false);
            };
            let now = Instant::now();
            let Some(hosted) = state.sessions.get_mut(&session) else {
                return Ok(false);
            };
            match hosted.leases.get_mut(key) {
                Some(lease) if o == *owner && lease.owner == *owner && lease.expires > now => {
                    lease.expires = now + ttl;
                }
                _ => return Ok(false),
            }
            hosted.session.clone()
        };
        let _busy = Busy::new(&session);
        let mut conn = session.conn.lock().await;
        let Some(conn) = conn.as_mut() else {
            return Ok(false);
        };
        let idle = self.current_idle_limit(&session);
        // An abandoned heartbeat changes nothing; the driver skips its answer later.
        let flight = InFlight::new(self, &session, Repair::Nothing);
        let pinged = self.dialect.ping(conn, idle).await;
        flight.land();
        match pinged {
            Ok(()) => {
                // Deadlines only moved later: the keeper's next wake is early enough.
                self.touch(&session);
                Ok(true)
            }
            Err(e) => {
                self.kill(&session, &e.to_string());
                Ok(false)
            }
        }
    }

    fn lost(&self, key: &str, owner: &OwnerToken) -> BoxFuture<'static, ()> {
        let dead = {
            let state = self.state();
            match state.index.get(key) {
                Some(Entry::Held { owner: o, session }) if o == owner => state
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

/// A session being opened for the pool, counted until it is open or given up.
struct Connecting<'a, D: Dialect>(Option<&'a Shared<D>>);

impl<D: Dialect> Connecting<'_, D> {
    /// Uncounts it under a lock the caller holds.
    fn settle(mut self, state: &mut State<D>) {
        state.connecting -= 1;
        self.0 = None;
    }
}

impl<D: Dialect> Drop for Connecting<'_, D> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            shared.state().connecting -= 1;
        }
    }
}

/// Counts a statement waiting for or running on a session (for [`Shared::pick`]).
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new<D: Dialect>(session: &'a Session<D>) -> Self {
        session.busy.fetch_add(1, Ordering::Relaxed);
        Busy(&session.busy)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What undoes a statement abandoned half-way (its future dropped before the answer).
/// The driver skips the unread answer before the session's next statement, so the
/// session stays usable; only the statement's effect is unknown.
enum Repair<'a, K> {
    /// Nothing to undo (a heartbeat).
    Nothing,
    /// A lock may have been taken (or not given back) for nobody: unlock it. The key's
    /// index entry blocks every other take of it by this backend until that is done.
    Unlock(&'a str, &'a K),
    /// Close the session (it holds no other lease: a wait on a reserved session).
    Close,
}

/// A statement in flight, repaired if abandoned (see [`Repair`]).
struct InFlight<'a, D: Dialect> {
    shared: &'a Arc<Shared<D>>,
    session: &'a Arc<Session<D>>,
    repair: Repair<'a, D::Key>,
    landed: bool,
}

impl<'a, D: Dialect> InFlight<'a, D> {
    fn new(
        shared: &'a Arc<Shared<D>>,
        session: &'a Arc<Session<D>>,
        repair: Repair<'a, D::Key>,
    ) -> Self {
        InFlight {
            shared,
            session,
            repair,
            landed: false,
        }
    }

    fn land(mut self) {
        self.landed = true;
    }
}

impl<D: Dialect> Drop for InFlight<'_, D> {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        let (key, lock_key) = match self.repair {
            Repair::Nothing => return,
            Repair::Close => {
                self.shared
                    .kill(self.session, "a wait was abandoned half-way");
                return;
            }
            Repair::Unlock(key, lock_key) => (key.to_owned(), lock_key.clone()),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.shared
                .kill(self.session, "a statement was abandoned outside a runtime");
            return;
        };
        self.shared
            .state()
            .index
            .insert(key.clone(), Entry::Repairing);
        let (shared, session) = (self.shared.clone(), self.session.clone());
        runtime.spawn(async move {
            let result = {
                let mut conn = session.conn.lock().await;
                match conn.as_mut() {
                    Some(conn) => {
                        let idle = {
                            let state = shared.state();
                            state.sessions.get(&session.id).and_then(|h| {
                                Shared::<D>::idle_limit(&h.leases, None, Instant::now())
                            })
                        };
                        shared
                            .dialect
                            .unlock(conn, std::slice::from_ref(&lock_key), idle)
                            .await
                            .map(drop)
                    }
                    None => Ok(()),
                }
            };
            if let Err(e) = result {
                shared.kill(&session, &e.to_string());
            }
            let mut state = shared.state();
            if matches!(state.index.get(&key), Some(Entry::Repairing)) {
                state.index.remove(&key);
            }
        });
    }
}

/// The index entry of a take or release on its way to the server, removed however it
/// ends (unless a repair has taken it over).
struct PendingEntry<'a, D: Dialect> {
    shared: &'a Shared<D>,
    key: &'a str,
    owner: OwnerToken,
}

impl<D: Dialect> Drop for PendingEntry<'_, D> {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        if matches!(state.index.get(self.key), Some(Entry::Pending(o)) if *o == self.owner) {
            state.index.remove(self.key);
        }
    }
}

/// A session's background task: unlocks leases at their deadline, sends heartbeats while
/// the session holds leases, and closes surplus empty sessions. Ends with the session or
/// the backend.
async fn keeper<D: Dialect>(shared: Weak<Shared<D>>, session: Arc<Session<D>>) {
    let mut dead = session.dead.subscribe();
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let changed = session.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if *dead.borrow() {
            session.conn.lock().await.take();
            return;
        }
        let (wake, holds, surplus) = {
            let mut state = strong.state();
            let hosting = state.sessions.values().filter(|h| !h.reserved).count();
            let Some(hosted) = state.sessions.get_mut(&session.id) else {
                drop(state);
                strong.kill(&session, "removed from the pool");
                continue;
            };
            let first = hosted.leases.values().map(|l| l.expires).min();
            let surplus = first.is_none()
                && !hosted.reserved
                && session.busy.load(Ordering::Relaxed) == 0
                && hosting > MAX_HOSTING;
            let now = Instant::now();
            let wake = match first {
                Some(first) => Some(first.min(hosted.last_used + HEARTBEAT)),
                // A session in use keeps its keeper looking every heartbeat even while it
                // holds nothing, so that the next lease need not wake it (one wake-up per
                // acquisition otherwise); an unused one sleeps until told.
                None if now.duration_since(hosted.last_used) < IDLE_NAP => Some(now + HEARTBEAT),
                None => None,
            };
            hosted.keeper_wake = wake;
            (wake, first.is_some(), surplus)
        };
        if surplus {
            tracing::debug!(
                backend = D::KIND,
                session = session.id,
                "closing a surplus empty session"
            );
            strong.state().sessions.remove(&session.id);
            session.dead.send_replace(true);
            session.conn.lock().await.take();
            return;
        }
        drop(strong);
        match wake {
            Some(wake) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake.into()) => {}
                    _ = &mut changed => continue,
                    _ = dead.changed() => continue,
                }
            }
            None => {
                tokio::select! {
                    _ = &mut changed => continue,
                    _ = dead.changed() => continue,
                }
            }
        }
        let Some(strong) = shared.upgrade() else {
            return;
        };
        if holds {
            tend(&strong, &session).await;
        } else {
            relax(&strong, &session).await;
        }
    }
}

/// Relaxes the idle limit of a session that has held nothing for a heartbeat, unless it
/// is in use.
async fn relax<D: Dialect>(shared: &Arc<Shared<D>>, session: &Arc<Session<D>>) {
    // Looked at while holding the connection: a lease is recorded before its take lets go
    // of the connection, so none can appear between this check and the statement.
    let Ok(mut conn) = session.conn.try_lock() else {
        return;
    };
    let Some(conn) = conn.as_mut() else {
        return;
    };
    let due = {
        let state = shared.state();
        state.sessions.get(&session.id).is_some_and(|h| {
            !h.relaxed && !h.reserved && h.leases.is_empty() && h.last_used.elapsed() >= HEARTBEAT
        })
    };
    if !due {
        return;
    }
    let result = shared.dialect.relax(conn).await;
    let mut state = shared.state();
    match result {
        Ok(()) => {
            if let Some(h) = state.sessions.get_mut(&session.id) {
                // A lease taken meanwhile would have had to wait for the connection.
                h.relaxed = true;
            }
        }
        Err(e) => {
            drop(state);
            shared.kill(session, &e.to_string());
        }
    }
}

/// Unlocks the session's expired leases, or sends a heartbeat if it has been idle.
async fn tend<D: Dialect>(shared: &Arc<Shared<D>>, session: &Arc<Session<D>>) {
    let _busy = Busy::new(session);
    let mut conn = session.conn.lock().await;
    let Some(conn) = conn.as_mut() else {
        return;
    };
    let now = Instant::now();
    let (expired, idle, beat) = {
        let mut state = shared.state();
        let Some(hosted) = state.sessions.get_mut(&session.id) else {
            return;
        };
        let expired_keys: Vec<String> = hosted
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut expired = Vec::with_capacity(expired_keys.len());
        for key in &expired_keys {
            if let Some(lease) = hosted.leases.remove(key) {
                expired.push(lease.lock_key);
            }
        }
        let idle = Shared::<D>::idle_limit(&hosted.leases, None, now);
        let beat = now >= hosted.last_used + HEARTBEAT;
        for key in &expired_keys {
            if matches!(state.index.get(key), Some(Entry::Held { session: s, .. }) if *s == session.id)
            {
                state.index.remove(key);
            }
        }
        (expired, idle, beat)
    };
    let result = if !expired.is_empty() {
        tracing::debug!(
            backend = D::KIND,
            session = session.id,
            count = expired.len(),
            "unlocking expired leases"
        );
        shared.dialect.unlock(conn, &expired, idle).await.map(drop)
    } else if beat {
        shared.dialect.ping(conn, idle).await
    } else {
        return;
    };
    match result {
        Ok(()) => shared.touch(session),
        Err(e) => shared.kill(session, &e.to_string()),
    }
}

impl<D: Dialect> SessionBackend<D> {
    /// A backend over `dialect`, with `first` as its first pooled session (opened by the
    /// caller to check that the server answers).
    pub(crate) fn new(dialect: D, first: D::Conn, max_key_len: usize) -> Self {
        let shared = Arc::new(Shared {
            dialect,
            state: Mutex::new(State {
                sessions: HashMap::default(),
                index: HashMap::default(),
                connecting: 0,
            }),
            next_id: AtomicU64::new(0),
        });
        shared.new_session(first, false);
        SessionBackend {
            shared,
            max_key_len,
        }
    }
}

impl<D: Dialect> Drop for SessionBackend<D> {
    fn drop(&mut self) {
        // The keepers close their sessions (and so free the server's locks) and end.
        let state = self.shared.state();
        for hosted in state.sessions.values() {
            hosted.session.dead.send_replace(true);
        }
    }
}

impl<D: Dialect> Backend for SessionBackend<D> {
    fn kind(&self) -> &'static str {
        D::KIND
    }

    fn max_key_len(&self) -> usize {
        self.max_key_len
    }

    fn supports(&self, capability: Capability) -> bool {
        // A session lock dies with the process that holds it: `min_hold` cannot outlive it.
        !matches!(capability, Capability::MinHold)
    }

    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(self.shared.try_acquire(req))
    }

    fn acquire_until<'a>(
        &'a self,
        req: Acquire<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(self.shared.acquire_until(req, deadline))
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        // `supports(MinHold)` is false, so `keep_for` is always zero here.
        let _ = keep_for;
        Box::pin(self.shared.release(key, owner))
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(self.shared.extend(key, owner, ttl))
    }

    fn lost<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> BoxFuture<'a, ()> {
        self.shared.lost(key, owner)
    }
}

/// The parameters lockattr itself reads from a session backend's URL.
pub(crate) const OWN_PARAMS: &[&str] = &["prefix", "mode"];

/// Checks a session backend URL's parameters (`client`: those its sqlx driver reads) and
/// `?mode=`, and rebuilds the URL for sqlx without lockattr's own parameters.
pub(crate) fn client_url(
    url: &crate::url::BackendUrl,
    scheme: &str,
    client: &[&str],
) -> Result<String, crate::LockError> {
    match url.params.get("mode").map(String::as_str) {
        None | Some("session") => {}
        Some(other) => {
            return Err(url.invalid(format!(
                "unknown `mode={other}`: this build of the `{}` backend takes `mode=session` \
                 (session locks, the default)",
                url.scheme
            )))
        }
    }
    url.client_url(scheme, OWN_PARAMS, client)
}
