//! Each session's background task: unlocks leases at their deadline, sends heartbeats,
//! gives an empty session's idle limit back, and closes surplus empty sessions.

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::books::{KeyHolder, Session, SessionConn};
use super::pool::UsingSession;
use super::{SessionPool, SessionSql, HEARTBEAT, IDLE_NAP, MAX_HOSTING};

/// A session's background task: unlocks leases at their deadline, sends heartbeats while
/// the session holds leases, and closes surplus empty sessions. Ends with the session or
/// the backend.
pub(super) async fn keeper<D: SessionSql>(pool: Weak<SessionPool<D>>, session: Arc<Session<D>>) {
    let mut dead = session.dead.subscribe();
    loop {
        let Some(strong) = pool.upgrade() else {
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
            let mut books = strong.books();
            let hosting = books.sessions.values().filter(|h| !h.reserved).count();
            let Some(pooled) = books.sessions.get_mut(&session.id) else {
                drop(books);
                strong.kill(&session, "removed from the pool");
                continue;
            };
            // A lease being released is its release's to unlock.
            let first = pooled
                .leases
                .values()
                .filter(|l| !l.releasing)
                .map(|l| l.expires)
                .min();
            let surplus = pooled.leases.is_empty()
                && !pooled.reserved
                && session.statements.load(Ordering::Relaxed) == 0
                && hosting > MAX_HOSTING;
            let now = Instant::now();
            let wake = match first {
                Some(first) => Some(first.min(pooled.last_used + HEARTBEAT)),
                // A session in use keeps its keeper looking every heartbeat even while it
                // holds nothing, so that the next lease need not wake it (one wake-up per
                // acquisition otherwise); an unused one sleeps until told.
                None if now.duration_since(pooled.last_used) < IDLE_NAP => Some(now + HEARTBEAT),
                None => None,
            };
            pooled.keeper_wake = wake;
            (wake, first.is_some(), surplus)
        };
        if surplus {
            tracing::debug!(
                backend = D::KIND,
                session = session.id,
                "closing a surplus empty session"
            );
            strong.books().sessions.remove(&session.id);
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
        let Some(strong) = pool.upgrade() else {
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
async fn relax<D: SessionSql>(pool: &Arc<SessionPool<D>>, session: &Arc<Session<D>>) {
    // Looked at while holding the connection: a lease is recorded before its take lets go
    // of the connection, so none can appear between this check and the statement.
    let Ok(mut conn) = session.conn.try_lock() else {
        return;
    };
    let Some(SessionConn { conn, timer }) = conn.as_mut() else {
        return;
    };
    let due = {
        let books = pool.books();
        books.sessions.get(&session.id).is_some_and(|h| {
            !h.relaxed && !h.reserved && h.leases.is_empty() && h.last_used.elapsed() >= HEARTBEAT
        })
    };
    if !due {
        return;
    }
    let result = pool
        .options
        .statement(timer.as_mut(), pin!(pool.sql.relax(conn)))
        .await;
    let mut books = pool.books();
    match result {
        Ok(()) => {
            if let Some(h) = books.sessions.get_mut(&session.id) {
                // A lease taken meanwhile would have had to wait for the connection.
                h.relaxed = true;
            }
        }
        Err(e) => {
            drop(books);
            pool.kill(session, &e.to_string());
        }
    }
}

/// Unlocks the session's expired leases, or sends a heartbeat if it has been idle.
pub(super) async fn tend<D: SessionSql>(pool: &Arc<SessionPool<D>>, session: &Arc<Session<D>>) {
    let _using = UsingSession::new(session);
    let mut conn = session.connection().await;
    let Some(SessionConn { conn, timer }) = conn.as_mut() else {
        return;
    };
    let now = Instant::now();
    let (expired, idle, beat) = {
        let mut books = pool.books();
        let Some(pooled) = books.sessions.get_mut(&session.id) else {
            return;
        };
        let expired_keys: Vec<String> = pooled
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now && !l.releasing)
            .map(|(k, _)| k.clone())
            .collect();
        let mut expired = Vec::with_capacity(expired_keys.len());
        for key in &expired_keys {
            if let Some(lease) = pooled.leases.remove(key) {
                expired.push(lease.lock_key);
            }
        }
        // Counts the leases being released: their unlock is not sent yet.
        let idle = SessionPool::<D>::idle_limit(&pooled.leases, None, now);
        let beat = now >= pooled.last_used + HEARTBEAT;
        for key in &expired_keys {
            if matches!(books.holders.get(key), Some(KeyHolder::Held { session: s, .. }) if *s == session.id)
            {
                books.holders.remove(key);
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
        pool.options
            .statement(timer.as_mut(), pin!(pool.sql.unlock(conn, &expired, idle)))
            .await
            .map(drop)
    } else if beat {
        pool.options
            .statement(timer.as_mut(), pin!(pool.sql.ping(conn, idle)))
            .await
    } else {
        return;
    };
    match result {
        Ok(()) => pool.touch(session),
        Err(e) => pool.kill(session, &e.to_string()),
    }
}
