//! The pool machinery of the session-lock backends (`postgres://` advisory locks,
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
//! shrinks back to [`MAX_HOSTING`] as sessions become empty. At most `max_waiting` (a URL
//! parameter, default 32) acquires wait on sessions of their own at once; the others wait
//! in the process, first come first served, for one of those waits to end, so a backend
//! never uses more than 8 + `max_waiting` connections however many tasks wait.
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
//! only when it changes (the statements remember what it set): back-to-back takes of one ttl
//! need none. A session whose last lease is released keeps its limit until the keeper
//! relaxes it ([`SessionSql::relax`]) a heartbeat later. Because the
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
//!
//! # Files
//!
//! - `books.rs`: what the backend knows: its sessions, their leases, who holds each key;
//! - `options.rs`: the URL parameters lockattr reads (timeouts);
//! - `pool.rs`: which session a take or a wait goes to, and opening new ones;
//! - `locking.rs`: take, wait, release, extend, each on its session;
//! - `repair.rs`: undoing a statement abandoned half-way;
//! - `keeper.rs`: each session's background task (expiry, heartbeats, closing surplus
//!   sessions);
//! - `postgres/` (statements, fencing blocks, set-up) and `mysql.rs`: each server's
//!   statements ([`SessionSql`]).

mod admin;
mod books;
mod keeper;
mod locking;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
mod options;
mod pool;
#[cfg(feature = "postgres")]
pub mod postgres;
mod repair;

use std::collections::HashMap as StdHashMap;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Acquire, Backend, BackendResult, BoxFuture, Capability, ClockReading, Granted};
use crate::error::BoxError;
use crate::token::OwnerToken;
use books::Books;
pub(crate) use options::SessionOptions;
use options::OWN_PARAMS;

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
pub(crate) trait SessionSql: Send + Sync + Sized + 'static {
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

    /// The server's clock, as time since the Unix epoch (for scheduled locks).
    fn clock<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
    ) -> impl Future<Output = Result<Duration, BoxError>> + Send + 'a;

    /// A heartbeat that also sets the idle limit.
    fn ping<'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        idle: Option<Duration>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'a;
}

/// A backend of session locks over a [`SessionSql`].
pub(crate) struct SessionBackend<D: SessionSql> {
    pool: Arc<SessionPool<D>>,
    max_key_len: usize,
}

/// A session backend's state, shared with the keepers of its sessions: the server's
/// statements, the options and the books.
struct SessionPool<D: SessionSql> {
    sql: D,
    options: SessionOptions,
    /// One permit per session that may wait in the server's queue (`max_waiting`);
    /// tokio's semaphore hands them out first come, first served.
    waiting_sessions: tokio::sync::Semaphore,
    books: Mutex<Books<D>>,
    next_id: AtomicU64,
}

impl<D: SessionSql> SessionBackend<D> {
    /// A backend over `sql`, with `first` as its first pooled session (opened by the
    /// caller to check that the server answers).
    pub(crate) fn new(sql: D, first: D::Conn, max_key_len: usize, options: SessionOptions) -> Self {
        let pool = Arc::new(SessionPool {
            sql,
            waiting_sessions: tokio::sync::Semaphore::new(options.max_waiting),
            options,
            books: Mutex::new(Books {
                sessions: HashMap::default(),
                holders: HashMap::default(),
                opening: 0,
            }),
            next_id: AtomicU64::new(0),
        });
        pool.new_session(first, false);
        SessionBackend { pool, max_key_len }
    }
}

impl<D: SessionSql> Drop for SessionBackend<D> {
    fn drop(&mut self) {
        // The keepers close their sessions (and so free the server's locks) and end.
        let books = self.pool.books();
        for pooled in books.sessions.values() {
            pooled.session.dead.send_replace(true);
        }
    }
}

impl<D: admin::AdminSql> Backend for SessionBackend<D> {
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
        Box::pin(self.pool.try_acquire(req))
    }

    fn acquire_until<'a>(
        &'a self,
        req: Acquire<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(self.pool.acquire_until(req, deadline))
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        // `supports(MinHold)` is false, so `keep_for` is always zero here.
        let _ = keep_for;
        Box::pin(self.pool.release(key, owner))
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        Box::pin(self.pool.extend(key, owner, ttl))
    }

    fn lost<'a>(&'a self, key: &'a str, owner: &'a OwnerToken) -> BoxFuture<'a, ()> {
        self.pool.lost(key, owner)
    }

    /// Read on a session of its own, opened for it and closed after: a scheduled lock asks
    /// at most once a minute, which is not worth a pooled session's bookkeeping.
    fn clock(&self) -> BoxFuture<'_, BackendResult<Option<ClockReading>>> {
        Box::pin(async move {
            let pool = &self.pool;
            let mut conn = pool.options.connect(pool.sql.connect()).await?;
            let mut timer = options::statement_timer();
            let sent = Instant::now();
            let clock = std::pin::pin!(pool.sql.clock(&mut conn));
            let time = pool.options.statement(timer.as_mut(), clock).await?;
            Ok(Some(ClockReading::read_since(sent, time)))
        })
    }

    fn admin(&self) -> Option<&dyn super::admin::Admin> {
        Some(self)
    }
}

/// The comment that records the storage format ([`FORMAT`](super::FORMAT)) on a session
/// backend's fencing sequence or counter table (`docs/design.md`, "Mixed versions").
pub(crate) fn format_comment() -> String {
    format!("lockattr format {}", super::FORMAT)
}

/// The storage format a comment records, if it is one of [`format_comment`]'s.
pub(crate) fn parse_format_comment(comment: &str) -> Option<u32> {
    comment
        .strip_prefix("lockattr format ")?
        .trim()
        .parse()
        .ok()
}

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
