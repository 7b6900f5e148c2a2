//! A backend written outside lockattr, wrapped with `Locks::from_backend`, that implements
//! only what the trait requires: the trait's own waiting (`acquire_until` polling
//! `try_acquire`, woken early by `released`) is what serves its waiters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockattr::backend::{Acquire, Backend, BackendResult, BoxFuture, Granted};
use lockattr::token::OwnerToken;
use lockattr::{LockError, Locks};
use tokio::sync::Notify;

/// Leases in a map, with expiry on this process's clock. `notify`: whether it overrides
/// `released` (else the trait's default, which never fires, leaves waiters to polling).
#[derive(Default)]
struct MapBackend {
    leases: Mutex<HashMap<String, (OwnerToken, Instant)>>,
    fence: AtomicUsize,
    tries: Arc<AtomicUsize>,
    released: Notify,
    notify: bool,
}

impl Backend for MapBackend {
    fn kind(&self) -> &'static str {
        "map"
    }

    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        self.tries.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap();
        let free = leases.get(req.key).is_none_or(|(_, until)| *until <= now);
        let granted = free.then(|| {
            leases.insert(req.key.to_owned(), (*req.owner, now + req.ttl));
            Granted {
                fence: self.fence.fetch_add(1, Ordering::Relaxed) as u64 + 1,
            }
        });
        Box::pin(async move { Ok(granted) })
    }

    fn released<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        let _ = key;
        if self.notify {
            // `notify_one` keeps a permit, so a release between the try and this wait
            // still wakes the waiter.
            Box::pin(self.released.notified())
        } else {
            Box::pin(std::future::pending())
        }
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        _keep: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        let mut leases = self.leases.lock().unwrap();
        let held =
            matches!(leases.get(key), Some((o, until)) if o == owner && *until > Instant::now());
        if held {
            leases.remove(key);
            self.released.notify_one();
        }
        Box::pin(async move { Ok(held) })
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        let mut leases = self.leases.lock().unwrap();
        let extended = match leases.get_mut(key) {
            Some((o, until)) if o == owner && *until > Instant::now() => {
                *until = Instant::now() + ttl;
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(extended) })
    }
}

/// A handle on a new `MapBackend`, and its count of tries.
fn locks(notify: bool) -> (Locks, Arc<AtomicUsize>) {
    let tries = Arc::new(AtomicUsize::new(0));
    let backend = MapBackend {
        notify,
        tries: tries.clone(),
        ..MapBackend::default()
    };
    (
        Locks::from_backend(Box::new(backend), "app:", "map://test"),
        tries,
    )
}

const TTL: Duration = Duration::from_secs(30);

/// A waiter on the trait's default `acquire_until` gets the key once its holder releases
/// it, woken by `released` (when the backend notifies) or by polling (when it does not),
/// and gives up with `Timeout` when the key stays taken.
async fn waiter_gets_the_key_after_release(notify: bool) {
    let (locks, tries) = locks(notify);
    let held = locks
        .lock("job")
        .ttl(TTL)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.stored_key(), "app:job");

    let timeout = locks
        .lock("job")
        .ttl(TTL)
        .acquire(Duration::from_millis(100))
        .await;
    assert!(
        matches!(timeout, Err(LockError::Timeout { .. })),
        "{timeout:?}"
    );

    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            locks
                .lock("job")
                .ttl(TTL)
                .acquire(Duration::from_secs(60))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let first = held.token();
    held.release().await.unwrap();
    let next = waiter.await.unwrap().unwrap();
    assert!(next.token() > first, "fencing tokens grow");
    // Polling backs off: a 50 ms wait plus the wake-up took a handful of tries, not a
    // busy loop (tries from the 100 ms timeout above included).
    let tries = tries.load(Ordering::Relaxed);
    assert!(tries < 60, "{tries} tries");
}

#[tokio::test]
async fn a_notifying_backend_wakes_its_waiters() {
    waiter_gets_the_key_after_release(true).await;
}

#[tokio::test]
async fn a_backend_that_cannot_notify_is_polled() {
    waiter_gets_the_key_after_release(false).await;
}

#[tokio::test]
async fn ttls_below_the_floor_are_refused() {
    let (locks, _) = locks(true);
    let e = locks
        .lock("job")
        .ttl(lockattr::MIN_TTL - Duration::from_millis(1))
        .try_acquire()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::InvalidOptions { .. }), "{e}");
    assert!(e.to_string().contains("10ms"), "{e}");
    let guard = locks
        .lock("job")
        .ttl(lockattr::MIN_TTL)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    let e = guard.extend(Duration::from_millis(1)).await.unwrap_err();
    assert!(matches!(e, LockError::InvalidOptions { .. }), "{e}");
}
