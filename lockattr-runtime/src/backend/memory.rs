//! `memory://`: locks inside this process, for tests and single-instance programs.
//!
//! Every [`Locks`](crate::Locks) connected to the same `memory://NAME` shares one store
//! (`memory://` is the store named `default`), so several handles in one process exclude
//! each other exactly as several processes do on a server backend. The store keeps every
//! semantic of `docs/design.md`: expiry on its own clock, token-checked release and extend,
//! fencing tokens, and waiting that is notified and first come, first served: a key that
//! has waiters is handed to the oldest one, and a `try_acquire` does not jump the queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::admin::{Fence, HeldLock};
use super::{Acquire, Backend, BackendResult, BoxFuture, Granted};
use crate::error::LockError;
use crate::token::OwnerToken;
use crate::url::BackendUrl;

/// Acquisitions between two sweeps of expired, unwaited slots.
const SWEEP_EVERY: u64 = 1024;

/// The in-process backend. Get one with [`connect("memory://")`](crate::connect).
pub struct MemoryBackend {
    store: Arc<Store>,
}

#[derive(Default)]
struct Store {
    slots: Mutex<HashMap<String, Slot>>,
    next_fence: AtomicU64,
    next_waiter: AtomicU64,
}

#[derive(Default)]
struct Slot {
    holder: Option<Holder>,
    /// Waiter ids, oldest first.
    waiters: VecDeque<u64>,
    notify: Arc<Notify>,
}

struct Holder {
    owner: OwnerToken,
    expires: Instant,
    /// The holder's fencing token, for [`Admin`](super::admin::Admin).
    fence: u64,
}

impl Slot {
    fn live_holder(&self, now: Instant) -> Option<&Holder> {
        self.holder.as_ref().filter(|h| h.expires > now)
    }

    fn live_holder_mut(&mut self, owner: &OwnerToken, now: Instant) -> Option<&mut Holder> {
        self.holder
            .as_mut()
            .filter(|h| h.expires > now && h.owner == *owner)
    }
}

impl Store {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while the lock was held cannot leave a slot half-written (every update is
        // a single assignment), so a poisoned mutex is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn grant(&self, slot: &mut Slot, req: &Acquire<'_>, now: Instant) -> Granted {
        let fence = self.next_fence.fetch_add(1, Ordering::Relaxed) + 1;
        slot.holder = Some(Holder {
            owner: *req.owner,
            expires: now + req.ttl,
            fence,
        });
        Granted { fence }
    }

    fn maybe_sweep(&self, slots: &mut HashMap<String, Slot>, fence: u64, now: Instant) {
        if fence % SWEEP_EVERY == 0 {
            slots.retain(|_, s| s.live_holder(now).is_some() || !s.waiters.is_empty());
        }
    }
}

impl MemoryBackend {
    /// Opens `memory://NAME` (`memory://` is `memory://default`); takes only `?prefix=`.
    pub(crate) fn open(url: &BackendUrl) -> Result<Self, LockError> {
        url.check_params(&["prefix"])?;
        let name = if url.rest.is_empty() {
            "default"
        } else {
            &url.rest
        };
        Ok(Self::named(name))
    }

    /// The store named `name`, shared by every handle in this process that names it.
    pub fn named(name: &str) -> Self {
        static STORES: OnceLock<Mutex<HashMap<String, Arc<Store>>>> = OnceLock::new();
        let stores = STORES.get_or_init(Default::default);
        let mut stores = stores.lock().unwrap_or_else(|e| e.into_inner());
        let store = stores.entry(name.to_owned()).or_default().clone();
        MemoryBackend { store }
    }

    fn try_acquire_now(&self, req: &Acquire<'_>) -> Option<Granted> {
        let now = Instant::now();
        let mut slots = self.store.slots();
        let slot = slots.entry(req.key.to_owned()).or_default();
        if slot.live_holder(now).is_some() || !slot.waiters.is_empty() {
            return None;
        }
        let granted = self.store.grant(slot, req, now);
        self.store.maybe_sweep(&mut slots, granted.fence, now);
        Some(granted)
    }

    async fn acquire_queued(&self, req: Acquire<'_>, deadline: Instant) -> Option<Granted> {
        let id = self.store.next_waiter.fetch_add(1, Ordering::Relaxed);
        let notify = {
            let now = Instant::now();
            let mut slots = self.store.slots();
            let slot = slots.entry(req.key.to_owned()).or_default();
            if slot.live_holder(now).is_none() && slot.waiters.is_empty() {
                return Some(self.store.grant(slot, &req, now));
            }
            slot.waiters.push_back(id);
            slot.notify.clone()
        };
        // Leaves the queue however this future ends: granted, timed out or dropped.
        let mut place = QueuePlace {
            store: &self.store,
            key: req.key,
            id,
            queued: true,
        };
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            req.attempt.start();
            let now = Instant::now();
            let wake = {
                let mut slots = self.store.slots();
                let slot = slots.get_mut(req.key)?;
                match slot.live_holder(now) {
                    None if slot.waiters.front() == Some(&id) => {
                        slot.waiters.pop_front();
                        place.queued = false;
                        let granted = self.store.grant(slot, &req, now);
                        // The next waiter becomes the head: let it re-check.
                        slot.notify.notify_waiters();
                        return Some(granted);
                    }
                    Some(holder) => holder.expires.min(deadline),
                    None => deadline,
                }
            };
            if now >= deadline {
                return None;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

/// A waiter's place in a slot's queue, given up on drop.
struct QueuePlace<'a> {
    store: &'a Store,
    key: &'a str,
    id: u64,
    queued: bool,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        let mut slots = self.store.slots();
        if let Some(slot) = slots.get_mut(self.key) {
            slot.waiters.retain(|w| *w != self.id);
            // If it was the head, the next waiter may now take a free key.
            slot.notify.notify_waiters();
        }
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn admin(&self) -> Option<&dyn super::admin::Admin> {
        Some(self)
    }

    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        let granted = self.try_acquire_now(&req);
        Box::pin(async move { Ok(granted) })
    }

    fn acquire_until<'a>(
        &'a self,
        req: Acquire<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        Box::pin(async move { Ok(self.acquire_queued(req, deadline).await) })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        let now = Instant::now();
        let mut slots = self.store.slots();
        let held = match slots.get_mut(key) {
            Some(slot) => match slot.live_holder_mut(owner, now) {
                Some(holder) if !keep_for.is_zero() => {
                    holder.expires = holder.expires.min(now + keep_for);
                    true
                }
                Some(_) => {
                    slot.holder = None;
                    slot.notify.notify_waiters();
                    if slot.waiters.is_empty() {
                        slots.remove(key);
                    }
                    true
                }
                None => false,
            },
            None => false,
        };
        Box::pin(async move { Ok(held) })
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        let now = Instant::now();
        let mut slots = self.store.slots();
        let held = match slots
            .get_mut(key)
            .and_then(|s| s.live_holder_mut(owner, now))
        {
            Some(holder) => {
                holder.expires = now + ttl;
                true
            }
            None => false,
        };
        Box::pin(async move { Ok(held) })
    }
}

impl MemoryBackend {
    /// The lock on `key` if held now, as an operator sees it.
    fn held_now(key: &str, slot: &Slot, now: Instant) -> Option<HeldLock> {
        let holder = slot.live_holder(now)?;
        Some(HeldLock::new(
            key.to_owned(),
            Fence::Exact(holder.fence),
            Some(holder.expires - now),
        ))
    }
}

/// The store is this process's own: every lock is listed with its exact token and
/// deadline; the owner is always this process, so none is shown.
impl super::admin::Admin for MemoryBackend {
    fn held<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, BackendResult<Vec<HeldLock>>> {
        let now = Instant::now();
        let held = self
            .store
            .slots()
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .filter_map(|(key, slot)| Self::held_now(key, slot, now))
            .collect();
        Box::pin(async move { Ok(held) })
    }

    fn inspect<'a>(
        &'a self,
        stored_key: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<HeldLock>>> {
        let now = Instant::now();
        let held = (self.store.slots().get(stored_key))
            .and_then(|slot| Self::held_now(stored_key, slot, now));
        Box::pin(async move { Ok(held) })
    }

    /// Frees the slot and wakes its waiters; the next grant takes the next number of the
    /// store's counter, so its token is greater.
    fn force_release<'a>(&'a self, stored_key: &'a str) -> BoxFuture<'a, BackendResult<bool>> {
        let now = Instant::now();
        let mut slots = self.store.slots();
        let held = match slots.get_mut(stored_key) {
            Some(slot) if slot.live_holder(now).is_some() => {
                slot.holder = None;
                slot.notify.notify_waiters();
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(held) })
    }
}
