//! Scheduled locks (`every`) tell the time by the backend's clock, not this machine's: a
//! backend whose clock is far off from this machine's places calls in its own periods,
//! and a step of this machine's clock does not move them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockattr::backend::memory::MemoryBackend;
use lockattr::backend::{Acquire, Backend, BackendResult, BoxFuture, ClockReading, Granted};
use lockattr::token::OwnerToken;
use lockattr::{Locks, Schedule};

/// `memory://` with a clock `ahead` of this machine's, counting its readings.
struct SkewedClock {
    store: MemoryBackend,
    ahead: Duration,
    readings: Arc<AtomicUsize>,
}

impl Backend for SkewedClock {
    fn kind(&self) -> &'static str {
        "skewed"
    }
    fn try_acquire<'a>(
        &'a self,
        req: Acquire<'a>,
    ) -> BoxFuture<'a, BackendResult<Option<Granted>>> {
        self.store.try_acquire(req)
    }
    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        keep_for: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        self.store.release(key, owner, keep_for)
    }
    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: &'a OwnerToken,
        ttl: Duration,
    ) -> BoxFuture<'a, BackendResult<bool>> {
        self.store.extend(key, owner, ttl)
    }
    fn clock(&self) -> BoxFuture<'_, BackendResult<Option<ClockReading>>> {
        self.readings.fetch_add(1, Ordering::Relaxed);
        let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + self.ahead;
        Box::pin(std::future::ready(Ok(Some(ClockReading {
            time,
            at: Instant::now(),
        }))))
    }
}

fn skewed(name: &str, ahead: Duration) -> (Locks, Arc<AtomicUsize>) {
    let readings = Arc::new(AtomicUsize::new(0));
    let backend = SkewedClock {
        store: MemoryBackend::named(name),
        ahead,
        readings: readings.clone(),
    };
    (
        Locks::from_backend(Box::new(backend), "lockattr:", "skewed://"),
        readings,
    )
}

#[tokio::test]
async fn calls_are_placed_by_the_backends_clock() {
    // The backend's clock is 90 minutes ahead of this machine's; periods of one hour.
    let ahead = Duration::from_secs(90 * 60);
    let (locks, readings) = skewed("scheduled-clock", ahead);
    let hourly = Schedule::every(Duration::from_secs(3600));
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let guard = locks
        .lock("report")
        .ttl(Duration::from_secs(30))
        .every(hourly)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    // The nearest hour by the backend's clock, not by this machine's.
    let hour = |t: Duration| (t.as_secs() + 1800) / 3600;
    let by_backend = [hour(before + ahead), hour(after + ahead)];
    assert!(
        by_backend.contains(&guard.period().unwrap()),
        "{:?} not in {by_backend:?}",
        guard.period()
    );
    assert_ne!(
        guard.period(),
        Some(hour(before)),
        "placed by this machine's clock"
    );
    guard.release().await.unwrap();

    // Taken again within the minute: the reading is reused, not read again.
    let again = locks
        .lock("other")
        .ttl(Duration::from_secs(30))
        .every(hourly)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(readings.load(Ordering::Relaxed), 1);
    again.release().await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_read_the_clock_once() {
    let (locks, readings) = skewed("scheduled-clock-once", Duration::ZERO);
    let daily = Schedule::every(Duration::from_secs(24 * 3600));
    let calls = (0..50).map(|n| {
        let locks = locks.clone();
        tokio::spawn(async move {
            locks
                .lock(format!("job:{n}"))
                .ttl(Duration::from_secs(30))
                .every(daily)
                .try_acquire()
                .await
                .unwrap()
                .unwrap()
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap().release().await.unwrap();
    }
    assert_eq!(readings.load(Ordering::Relaxed), 1);
}
