//! Which session a take or a wait goes to: the least busy pooled session, an empty one
//! reserved for a wait, or a new one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{watch, Notify};

use super::books::{Books, PooledSession, Session, SessionConn};
use super::keeper::keeper;
use super::{HashMap, SessionPool, SessionSql, MAX_HOSTING};
use crate::error::BoxError;

impl<D: SessionSql> SessionPool<D> {
    pub(super) fn new_session(self: &Arc<Self>, conn: D::Conn, reserved: bool) -> Arc<Session<D>> {
        self.add_session(conn, reserved, None)
    }

    /// Adds an open session to the books; `opening` (the pool's count of sessions being
    /// opened) is settled in the same critical section, so that no `pick` in between
    /// sees one session too few and opens a ninth.
    fn add_session(
        self: &Arc<Self>,
        conn: D::Conn,
        reserved: bool,
        opening: Option<OpeningSession<'_, D>>,
    ) -> Arc<Session<D>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session {
            id,
            conn: tokio::sync::Mutex::new(Some(SessionConn::new(conn))),
            statements: AtomicUsize::new(0),
            dead: watch::Sender::new(false),
            changed: Notify::new(),
        });
        {
            let mut books = self.books();
            books.sessions.insert(
                id,
                PooledSession {
                    session: session.clone(),
                    leases: HashMap::default(),
                    reserved,
                    last_used: Instant::now(),
                    keeper_wake: None,
                    relaxed: true,
                },
            );
            if let Some(opening) = opening {
                opening.settle(&mut books);
            }
        }
        tokio::spawn(keeper(Arc::downgrade(self), session.clone()));
        session
    }

    /// The session a new lock goes to: the least busy one, or a new one while every open
    /// one is busy and there are fewer than [`MAX_HOSTING`]. `true` with a session opened
    /// for this call.
    pub(super) async fn pick(self: &Arc<Self>) -> Result<(Arc<Session<D>>, bool), BoxError> {
        let chosen = {
            let mut books = self.books();
            let best = books
                .sessions
                .values()
                .filter(|h| !h.reserved)
                .min_by_key(|h| h.session.statements.load(Ordering::Relaxed))
                .map(|h| h.session.clone());
            let open = books.sessions.values().filter(|h| !h.reserved).count() + books.opening;
            match best {
                Some(s) if s.statements.load(Ordering::Relaxed) == 0 || open >= MAX_HOSTING => {
                    Ok(s)
                }
                best => {
                    books.opening += 1;
                    Err(best)
                }
            }
        };
        let fallback = match chosen {
            Ok(session) => return Ok((session, false)),
            Err(fallback) => fallback,
        };
        let opening = OpeningSession(Some(self));
        // Boxed: a driver's connect future is large, and a take that needs no new session
        // (nearly all) should not carry its room.
        match self.options.connect(Box::pin(self.sql.connect())).await {
            Ok(conn) => Ok((self.add_session(conn, false, Some(opening)), true)),
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
    pub(super) async fn reserve(self: &Arc<Self>) -> Result<(Arc<Session<D>>, bool), BoxError> {
        {
            let mut books = self.books();
            if let Some(h) = books.sessions.values_mut().find(|h| {
                !h.reserved
                    && h.leases.is_empty()
                    && h.session.statements.load(Ordering::Relaxed) == 0
            }) {
                h.reserved = true;
                return Ok((h.session.clone(), false));
            }
        }
        let conn = self.options.connect(Box::pin(self.sql.connect())).await?;
        Ok((self.new_session(conn, true), true))
    }

    pub(super) fn unreserve(&self, session: &Session<D>) {
        if let Some(h) = self.books().sessions.get_mut(&session.id) {
            h.reserved = false;
        }
        session.changed.notify_one();
    }
}

/// A session being opened for the pool, counted until it is open or given up.
pub(super) struct OpeningSession<'a, D: SessionSql>(Option<&'a SessionPool<D>>);

impl<D: SessionSql> OpeningSession<'_, D> {
    /// Uncounts it under a lock the caller holds.
    pub(super) fn settle(mut self, books: &mut Books<D>) {
        books.opening -= 1;
        self.0 = None;
    }
}

impl<D: SessionSql> Drop for OpeningSession<'_, D> {
    fn drop(&mut self) {
        if let Some(pool) = self.0 {
            pool.books().opening -= 1;
        }
    }
}

/// Counts a statement waiting for or running on a session (for [`SessionPool::pick`]).
pub(super) struct UsingSession<'a>(&'a AtomicUsize);

impl<'a> UsingSession<'a> {
    pub(super) fn new<D: SessionSql>(session: &'a Session<D>) -> Self {
        session.statements.fetch_add(1, Ordering::Relaxed);
        UsingSession(&session.statements)
    }
}

impl Drop for UsingSession<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
