//! Undoing a statement abandoned half-way (its future dropped before the answer), and the
//! holder entry of a take or release on its way to the server.

use std::pin::pin;
use std::sync::Arc;

use super::books::{KeyHolder, Session, SessionConn};
use super::{SessionPool, SessionSql};
use crate::backend::wait::spawn_detached;
use crate::token::OwnerToken;

/// What undoes a statement abandoned half-way (its future dropped before the answer).
/// The driver skips the unread answer before the session's next statement, so the
/// session stays usable; only the statement's effect is unknown.
pub(super) enum Undo<'a, K> {
    /// Nothing to undo (a heartbeat).
    Nothing,
    /// A lock may have been taken (or not given back) for nobody: unlock it. The key's
    /// holder entry blocks every other take of it by this backend until that is done.
    Unlock(&'a str, &'a K),
    /// Close the session (it holds no other lease: a wait on a reserved session).
    CloseSession,
}

/// A statement sent and not yet answered, undone if abandoned (see [`Undo`]).
pub(super) struct UnansweredStatement<'a, D: SessionSql> {
    pub(super) pool: &'a Arc<SessionPool<D>>,
    pub(super) session: &'a Arc<Session<D>>,
    pub(super) repair: Undo<'a, D::Key>,
    pub(super) answered: bool,
}

impl<'a, D: SessionSql> UnansweredStatement<'a, D> {
    pub(super) fn new(
        pool: &'a Arc<SessionPool<D>>,
        session: &'a Arc<Session<D>>,
        repair: Undo<'a, D::Key>,
    ) -> Self {
        UnansweredStatement {
            pool,
            session,
            repair,
            answered: false,
        }
    }

    pub(super) fn answered(mut self) {
        self.answered = true;
    }
}

impl<D: SessionSql> Drop for UnansweredStatement<'_, D> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let (key, lock_key) = match self.repair {
            Undo::Nothing => return,
            Undo::CloseSession => {
                self.pool
                    .kill(self.session, "a wait was abandoned half-way");
                return;
            }
            Undo::Unlock(key, lock_key) => (key.to_owned(), lock_key.clone()),
        };
        // Blocked before the repair is spawned: it may run to its end at once.
        self.pool
            .books()
            .holders
            .insert(key.clone(), KeyHolder::Repairing);
        let (pool, session) = (self.pool.clone(), self.session.clone());
        let repair_key = key.clone();
        let spawned = spawn_detached(
            format_args!("an abandoned statement about key `{key}` ({})", D::KIND),
            async move {
                let result = {
                    let mut conn = session.connection().await;
                    match conn.as_mut() {
                        Some(SessionConn { conn, timer }) => {
                            // A release given up before its unlock left its lease on
                            // the books; a take, none.
                            let idle = pool.end_lease(&session, &repair_key);
                            let unlock =
                                pool.sql.unlock(conn, std::slice::from_ref(&lock_key), idle);
                            pool.options
                                .statement(timer.as_mut(), pin!(unlock))
                                .await
                                .map(drop)
                        }
                        None => Ok(()),
                    }
                };
                if let Err(e) = result {
                    pool.kill(&session, &e.to_string());
                }
                pool.end_repair(&repair_key);
            },
        );
        if !spawned {
            // Closing the session frees whatever the statement left held.
            self.pool
                .kill(self.session, "a statement was abandoned outside a runtime");
            self.pool.end_repair(&key);
        }
    }
}

impl<D: SessionSql> SessionPool<D> {
    /// Unblocks a key whose repair is done.
    fn end_repair(&self, key: &str) {
        let mut books = self.books();
        if matches!(books.holders.get(key), Some(KeyHolder::Repairing)) {
            books.holders.remove(key);
        }
    }
}

/// The holder entry of a take or release on its way to the server, removed however it
/// ends (unless a repair has taken it over).
pub(super) struct PendingClaim<'a, D: SessionSql> {
    pub(super) pool: &'a SessionPool<D>,
    pub(super) key: &'a str,
    pub(super) owner: OwnerToken,
}

impl<D: SessionSql> Drop for PendingClaim<'_, D> {
    fn drop(&mut self) {
        let mut books = self.pool.books();
        if matches!(books.holders.get(self.key), Some(KeyHolder::Pending(o)) if *o == self.owner) {
            books.holders.remove(self.key);
        }
    }
}
