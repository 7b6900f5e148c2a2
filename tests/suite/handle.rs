//! The checks through the [`Locks`](lockattr::Locks) handle: `lock(key).try_acquire()`,
//! `acquire(wait)`, `extend`, `release` and drop, against `docs/design.md`'s semantics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockattr::{LockError, Schedule};

use super::{instance, take, take_eventually, unique, Profile};

/// Semantic 1: while one guard holds the key, no other instance gets it; once released,
/// the next one does.
pub async fn try_acquire_excludes_while_held(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("exclusive");
    let ttl = Duration::from_secs(30);
    let held = take(&a, &key, ttl).await.expect("free key is taken");
    assert!(take(&b, &key, ttl).await.is_none());
    assert!(take(&a, &key, ttl).await.is_none(), "not re-entrant");
    held.release().await.unwrap();
    let again = take(&b, &key, ttl).await;
    assert!(again.is_some(), "released key is free");
    again.unwrap().release().await.unwrap();
}

/// Semantics 1 and 4 under contention: 6 instances, 5 rounds each, all waiting on one
/// key. Never two inside at once; fencing tokens grow in the order of acquisition.
pub async fn contention_never_overlaps_and_fences_grow(p: &Profile) {
    let key = unique("contended");
    let inside = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let locks = instance(p).await;
        let (key, inside, tokens) = (key.clone(), inside.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let guard = locks
                    .lock(&key)
                    .ttl(Duration::from_secs(30))
                    .acquire(Duration::from_secs(60))
                    .await
                    .unwrap();
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokens.lock().unwrap().push(guard.token());
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 30);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens: {tokens:?}"
    );
}

/// Semantic 2: a holder whose lease expired can neither extend nor release the next
/// holder's lease.
pub async fn stale_holder_cannot_touch_the_next_lease(p: &Profile) {
    let (a, b, c) = (instance(p).await, instance(p).await, instance(p).await);
    let key = unique("stale");
    let stale = take(&a, &key, p.short_ttl).await.unwrap();
    let next = take_eventually(&b, &key, p.short_ttl * 10)
        .await
        .expect("the expired lease is taken over");
    assert!(!stale.is_held());
    assert!(matches!(
        stale.extend(p.short_ttl).await,
        Err(LockError::Lost { .. })
    ));
    assert!(matches!(stale.release().await, Err(LockError::Lost { .. })));
    assert!(
        take(&c, &key, p.short_ttl).await.is_none(),
        "the stale holder's release freed the next holder's lease"
    );
    assert!(next.token() > 0);
    next.release().await.unwrap();
}

/// Semantic 3: a holder that never releases (crashed) loses the key after its ttl, and
/// not before its lease's deadline.
pub async fn crashed_holder_expires(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("crashed");
    let guard = take(&a, &key, p.short_ttl).await.unwrap();
    let deadline = guard.deadline();
    std::mem::forget(guard); // the holder vanishes without a word
    while Instant::now() + Duration::from_millis(20) < deadline {
        assert!(
            take(&b, &key, p.short_ttl).await.is_none(),
            "taken before the holder's lease ended"
        );
        tokio::time::sleep(p.short_ttl / 10).await;
    }
    let taken = take_eventually(&b, &key, p.short_ttl * 10).await;
    assert!(taken.is_some(), "a crashed holder's key never came free");
    taken.unwrap().release().await.unwrap();
}

/// Semantic 3 with `extend`: an extended lease outlives its first ttl.
pub async fn extend_pushes_the_expiry(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("extend");
    let guard = take(&a, &key, p.short_ttl).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(p.short_ttl / 2).await;
        guard.extend(p.short_ttl).await.unwrap();
    }
    assert!(take(&b, &key, p.short_ttl).await.is_none());
    guard.release().await.unwrap();
}

/// Semantic 4 across expiry: a takeover of an expired lease gets a greater token.
pub async fn fencing_tokens_grow_across_expiry(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("fence");
    let first = take(&a, &key, Duration::from_secs(30)).await.unwrap();
    let t1 = first.token();
    first.release().await.unwrap();
    let second = take(&b, &key, p.short_ttl).await.unwrap();
    let t2 = second.token();
    std::mem::forget(second);
    let third = take_eventually(&a, &key, p.short_ttl * 10).await.unwrap();
    let t3 = third.token();
    third.release().await.unwrap();
    assert!(t1 < t2 && t2 < t3, "tokens {t1} {t2} {t3}");
}

/// Semantic 6: waiters are served in arrival order, and a holder that releases and at
/// once asks again does not jump ahead of them.
pub async fn waiters_are_served_in_order(p: &Profile) {
    let key = unique("fifo");
    let holder = instance(p).await;
    let guard = take(&holder, &key, Duration::from_secs(30)).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let locks = instance(p).await;
        let (key, order) = (key.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let g = locks
                .lock(&key)
                .ttl(Duration::from_secs(30))
                .acquire(Duration::from_secs(30))
                .await
                .unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(5)).await;
            g.release().await.unwrap();
        }));
        // Let waiter i queue before waiter i + 1 arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    guard.release().await.unwrap();
    let jumped = take(&holder, &key, Duration::from_secs(30)).await;
    assert!(jumped.is_none(), "the releasing holder jumped the queue");
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
}

/// A lease granted after a wait longer than its ttl runs for its ttl from the grant, not
/// from the start of the wait (and `min_hold` likewise).
pub async fn lease_after_a_long_wait_runs_from_the_grant(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("long-wait");
    let held = take(&a, &key, Duration::from_secs(30)).await.unwrap();
    // The holder keeps the key well past the waiter's ttl.
    let hold = p.short_ttl * 3;
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        held.release().await.unwrap();
    });
    let ttl = p.short_ttl;
    let guard = b
        .lock(&key)
        .ttl(ttl)
        .acquire(Duration::from_secs(30))
        .await
        .unwrap();
    let granted = Instant::now();
    releaser.await.unwrap();
    assert!(guard.is_held(), "the lease ran from the start of the wait");
    assert!(
        guard.deadline() >= granted + ttl / 2,
        "the lease's deadline counts from the start of the wait"
    );
    guard.release().await.unwrap();
}

/// `acquire(wait)` gives `Timeout` naming the key when the key stays taken.
pub async fn acquire_times_out(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("timeout");
    let guard = take(&a, &key, Duration::from_secs(30)).await.unwrap();
    let err = b
        .lock(&key)
        .ttl(Duration::from_secs(30))
        .acquire(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains(&key), "{err}");
    guard.release().await.unwrap();
}

/// Semantic 7: long keys are hashed and still exclude; keys differing only at the end of
/// a long key stay distinct; every key lives under the prefix.
pub async fn long_keys_and_prefix(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let base = unique("long").repeat(20);
    let ttl = Duration::from_secs(30);
    let one = take(&a, format!("{base}:1"), ttl).await.unwrap();
    assert!(one.stored_key().starts_with(a.prefix()));
    assert!(take(&b, format!("{base}:1"), ttl).await.is_none());
    let two = take(&b, format!("{base}:2"), ttl).await;
    assert!(two.is_some(), "long keys that differ at the end collided");
    one.release().await.unwrap();
    two.unwrap().release().await.unwrap();
}

/// `min_hold`: the key stays taken after an early release, then comes free. A backend
/// that cannot keep it (it says so through `supports_min_hold`) must refuse it with
/// `Unsupported` instead of shortening it.
pub async fn min_hold_outlives_release(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("min-hold");
    let min_hold = p.short_ttl;
    if !a.supports_min_hold() {
        let e = a
            .lock(&key)
            .ttl(p.short_ttl * 4)
            .min_hold(min_hold)
            .try_acquire()
            .await
            .unwrap_err();
        assert!(matches!(e, LockError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("min_hold"), "{e}");
        return;
    }
    let guard = a
        .lock(&key)
        .ttl(p.short_ttl * 4)
        .min_hold(min_hold)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    let acquired = Instant::now();
    guard.release().await.unwrap();
    let taken = take_eventually(&b, &key, p.short_ttl * 10)
        .await
        .expect("the key came free after min_hold");
    assert!(
        acquired.elapsed() >= min_hold.mul_f64(0.5),
        "min_hold was cut short"
    );
    taken.release().await.unwrap();
}

/// Scheduled locks (`every`): a period's run keeps the key taken until the end of the
/// period, also when that is later than its ttl; a second take in the same period finds
/// it taken, whichever handle asks.
pub async fn every_keeps_the_period_past_the_ttl(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("every");
    // Periods of 20 s that start now: the window (half a period either side of the
    // start) has about 10 s left.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let at = Duration::from_millis((now.as_millis() % 20_000) as u64);
    let schedule = Schedule::every(Duration::from_secs(20)).at(at);
    let ttl = p.short_ttl;
    let guard = a
        .lock(&key)
        .ttl(ttl)
        .every(schedule)
        .try_acquire()
        .await
        .unwrap();
    let guard = guard.expect("the first take of the period");
    guard.release().await.unwrap();
    // Well past the ttl, and still in the period: taken, for either handle.
    tokio::time::sleep(ttl * 3).await;
    for locks in [&a, &b] {
        let again = locks
            .lock(&key)
            .ttl(ttl)
            .every(schedule)
            .try_acquire()
            .await
            .unwrap();
        assert!(again.is_none(), "a second run in one period");
        let plain = take(locks, &key, ttl).await;
        assert!(
            plain.is_none(),
            "the key came free before the end of its period"
        );
    }
}

/// Semantic 8: bad input is a `LockError`, never a panic.
pub async fn bad_input_is_an_error(p: &Profile) {
    let a = instance(p).await;
    let ttl = Duration::from_secs(30);
    let e = a.lock("").ttl(ttl).try_acquire().await.unwrap_err();
    assert!(matches!(e, LockError::InvalidKey { .. }), "{e}");
    let e = a
        .lock("k")
        .ttl(Duration::ZERO)
        .try_acquire()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::InvalidOptions { .. }), "{e}");
    let e = a
        .lock("k")
        .ttl(ttl)
        .min_hold(ttl)
        .try_acquire()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::InvalidOptions { .. }), "{e}");
    assert!(e.to_string().contains(a.backend_name()), "{e}");
    let scheme = p.url.split("://").next().unwrap();
    let e = lockattr::connect(&format!("{scheme}://u:hunter2@[bad?nope=1"))
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

/// A dropped guard releases in the background.
pub async fn dropped_guard_releases(p: &Profile) {
    let (a, b) = (instance(p).await, instance(p).await);
    let key = unique("drop");
    drop(take(&a, &key, Duration::from_secs(30)).await.unwrap());
    let taken = take_eventually(&b, &key, Duration::from_secs(5)).await;
    assert!(taken.is_some(), "a dropped guard kept the key");
}
