//! `min_hold`, `every`, `at`, `renew`, `backend` and `crate`, alone and together.
#![deny(warnings)]

use lockattr as my_locks;
use lockattr::distributed_lock;

#[distributed_lock(key = "min-hold:<n>", ttl = "30s", on_conflict = "skip", min_hold = "10ms")]
async fn min_hold(n: u32) -> Option<u32> {
    Some(n)
}

#[distributed_lock(key = "every:<n>", ttl = "30s", on_conflict = "skip", every = "1d")]
async fn every(n: u32) -> Option<u32> {
    Some(n)
}

#[distributed_lock(key = "every-at:<n>", ttl = "30s", on_conflict = "skip", every = "1d", at = "6h", renew = true)]
async fn every_at(n: u32) -> Result<Option<u32>, lockattr::LockError> {
    Ok(Some(n))
}

#[distributed_lock(key = "renew:<n>", ttl = "30s", on_conflict = "skip", renew = true)]
async fn renew(n: u32) -> Option<u32> {
    Some(n)
}

#[distributed_lock(key = "no-renew:<n>", ttl = "30s", on_conflict = "skip", renew = false)]
async fn no_renew(n: u32) -> Option<u32> {
    Some(n)
}

#[distributed_lock(key = "backend:<n>", ttl = "30s", on_conflict = "skip", backend = "jobs")]
async fn named_backend(n: u32) -> Option<u32> {
    Some(n)
}

#[distributed_lock(key = "crate:<n>", ttl = "30s", on_conflict = "skip", crate = "my_locks")]
async fn renamed_crate(n: u32) -> Option<u32> {
    Some(n)
}

#[distributed_lock(key = "crate-path:<n>", ttl = "30s", on_conflict = "skip", crate = "::lockattr")]
async fn crate_path(n: u32) -> Option<u32> {
    Some(n)
}

#[distributed_lock(
    key = "all:<n>",
    ttl = "1m",
    on_conflict = "retry",
    retries = 2,
    backoff = "10ms",
    min_hold = "20ms",
    renew = true,
    backend = "jobs",
    crate = "my_locks",
)]
async fn all(n: u32) -> Option<u32> {
    Some(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lockattr::init("memory://pass-options").await.unwrap();
    lockattr::init_named("jobs", "memory://pass-options-jobs").await.unwrap();
    assert_eq!(min_hold(1).await, Some(1));
    assert_eq!(renew(2).await, Some(2));
    // Once per day: the second call of the day finds the period had its run.
    assert_eq!(every(8).await, Some(8));
    assert_eq!(every(8).await, None);
    assert_eq!(every_at(9).await.unwrap(), Some(9));
    assert_eq!(every_at(9).await.unwrap(), None);
    assert_eq!(no_renew(3).await, Some(3));
    assert_eq!(named_backend(4).await, Some(4));
    assert_eq!(renamed_crate(5).await, Some(5));
    assert_eq!(crate_path(6).await, Some(6));
    assert_eq!(all(7).await, Some(7));
}
