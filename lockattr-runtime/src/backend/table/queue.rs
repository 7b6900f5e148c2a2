//! Fair waiting: the waiter table (a ticket per waiter, in arrival order), the wait loop
//! that tries with its ticket, and the in-process wake-ups on release.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{millis, LeaseTable, NO_TICKET};
use crate::backend::wait::{self, Poll, Waiting};
use crate::backend::{Acquire, BackendResult, Granted};

/// How long a waiter's place lasts without a refresh.
const WAITER_LEASE: Duration = Duration::from_secs(3);
/// How often a waiter refreshes its place.
const WAITER_REFRESH: Duration = Duration::from_secs(1);
/// The first and the longest pause between two polls of a waiter.
const POLL: Poll = Poll::new(5, 50);

impl LeaseTable {
    /// Takes the key, waiting in the queue until `deadline`; `None` if it stayed taken.
    pub(super) async fn acquire_queued(
        self: &Arc<Self>,
        req: Acquire<'_>,
        deadline: Instant,
    ) -> BackendResult<Option<Granted>> {
        if let Some(granted) = self.attempt(&req, NO_TICKET).await? {
            return Ok(Some(granted));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        let mut ticket = QueueTicket {
            table: self.clone(),
            key: req.key.to_owned(),
            number: self.enqueue(req.key).await?,
            queued: true,
        };
        let mut refreshed = Instant::now();
        let mut waiting = Waiting::new(deadline, POLL);
        loop {
            // Registered at once, so that a release between the try and the pause still
            // wakes this waiter.
            let woken = self.wakers.slot(req.key).notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(granted) = self.attempt(&req, ticket.number).await? {
                ticket.leave().await;
                return Ok(Some(granted));
            }
            if refreshed.elapsed() >= WAITER_REFRESH {
                if !self.refresh(ticket.number).await? {
                    // The place lapsed (this process stalled): queue again, at the end.
                    tracing::debug!(key = req.key, backend = %self.backend, "waiter place lapsed, queueing again");
                    ticket.number = self.enqueue(req.key).await?;
                }
                refreshed = Instant::now();
            }
            if !waiting.pause(woken, None).await {
                ticket.leave().await;
                return Ok(None);
            }
        }
    }

    /// Queues a waiter for `key`; returns its ticket.
    async fn enqueue(&self, key: &str) -> BackendResult<i64> {
        let bindings = self.bindings(key, "", millis(WAITER_LEASE), 0);
        if self.server.is_mysql() {
            let (_, id) = self.execute(&self.sql.enqueue, &bindings).await?;
            return i64::try_from(id).map_err(|_| "the waiter ticket overflowed".into());
        }
        self.fetch_i64(&self.sql.enqueue, &bindings)
            .await?
            .ok_or_else(|| "the waiter table returned no ticket".into())
    }

    /// Refreshes a waiter's place; false if it had lapsed.
    async fn refresh(&self, ticket: i64) -> BackendResult<bool> {
        let bindings = self.bindings("", "", millis(WAITER_LEASE), ticket);
        Ok(self.execute(&self.sql.refresh, &bindings).await?.0 > 0)
    }

    /// Gives up a waiter's place (and sweeps lapsed places of the same key), then wakes
    /// this process's other waiters for the key: one of them may be the head now.
    async fn leave(&self, key: &str, ticket: i64) -> BackendResult<()> {
        let bindings = self.bindings(key, "", 0, ticket);
        self.execute(&self.sql.leave, &bindings).await?;
        self.wakers.wake(key);
        Ok(())
    }
}

/// A waiter's ticket in the queue, given up on drop (in the background).
struct QueueTicket {
    table: Arc<LeaseTable>,
    key: String,
    /// The ticket the database gave, smaller for earlier waiters.
    number: i64,
    /// Whether the ticket is still in the waiter table.
    queued: bool,
}

impl QueueTicket {
    async fn leave(&mut self) {
        self.queued = false;
        if let Err(e) = self.table.leave(&self.key, self.number).await {
            tracing::warn!(key = %self.key, backend = %self.table.backend, error = %e, "leaving the waiter queue failed; the place lapses by itself");
        }
    }
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        let (table, key, number) = (
            self.table.clone(),
            std::mem::take(&mut self.key),
            self.number,
        );
        let what = format!("a waiter for `{key}` (backend {})", table.backend);
        wait::spawn_detached(format_args!("{what}"), async move {
            if let Err(e) = table.leave(&key, number).await {
                tracing::debug!(key = %key, backend = %table.backend, error = %e, "leaving the waiter queue failed; the place lapses by itself");
            }
        });
    }
}

/// In-process wake-ups: a release wakes this process's waiters for the key at once (other
/// processes poll). Keys are spread over a few slots; a wake-up for a neighbour is spurious
/// but harmless.
pub(super) struct ReleaseWakers {
    slots: [Notify; 64],
}

impl ReleaseWakers {
    /// The wakers of one database table, shared by every handle on it in this process.
    pub(super) fn of(store: &str) -> Arc<ReleaseWakers> {
        static ALL: OnceLock<Mutex<HashMap<String, Arc<ReleaseWakers>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.entry(store.to_owned())
            .or_insert_with(|| {
                Arc::new(ReleaseWakers {
                    slots: std::array::from_fn(|_| Notify::new()),
                })
            })
            .clone()
    }

    /// The slot waiters for `key` listen on.
    pub(super) fn slot(&self, key: &str) -> &Notify {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.slots[(h.finish() % 64) as usize]
    }

    /// Wakes this process's waiters for `key`.
    pub(super) fn wake(&self, key: &str) {
        self.slot(key).notify_waiters();
    }
}
