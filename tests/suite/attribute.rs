//! The checks through `#[distributed_lock]`: each conflict policy, a lease lost while the
//! body runs, renewal, cancellation and the keys the attribute builds.
//!
//! An attribute names its backend with a literal, so every conformance target registers
//! its one backend under the same name, [`BACKEND`], and the annotated functions below
//! are written once with `backend = "suite"`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lockattr::{distributed_lock, LockError, LockGuard, Locks};

use super::{eventually, instance, take, unique, Profile};

/// The name a conformance target registers its backend under: the `backend = "suite"` of
/// every annotated function here.
pub const BACKEND: &str = "suite";

/// The ttl of the functions that outlive or renew their lease (`ttl = "2s"` below). A ttl
/// in the attribute is a literal too, the same on every backend: no shorter than any
/// profile's `short_ttl` (MySQL's session locks keep nothing under 2 s faithfully).
const SHORT_TTL: Duration = Duration::from_secs(2);

/// Registers the profile's backend under [`BACKEND`], once per test binary (each
/// conformance target tests one backend).
async fn register(p: &Profile) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        assert!(
            p.short_ttl <= SHORT_TTL,
            "the attribute checks' ttl ({SHORT_TTL:?}) is below this backend's short ttl"
        );
        lockattr::set_named(BACKEND, instance(p).await).expect("registered once");
    })
    .await;
}

/// `key` taken by another instance for 30 s: the holder an annotated call runs into.
async fn held_elsewhere(p: &Profile, key: String) -> LockGuard {
    take(&instance(p).await, key, Duration::from_secs(30))
        .await
        .expect("the key is free")
}

/// Releases `guard` in the background after `delay`.
fn release_after(guard: LockGuard, delay: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        guard.release().await.unwrap();
    })
}

static SKIP_RAN: AtomicBool = AtomicBool::new(false);

#[distributed_lock(
    key = "skip:<id>",
    ttl = "30s",
    on_conflict = "skip",
    backend = "suite"
)]
async fn skip_fn(id: &str) -> Option<u64> {
    SKIP_RAN.store(true, Ordering::SeqCst);
    lockattr::current().map(|c| c.token())
}

/// Skip: the skipped value, the body not run; free: the body runs under the lock.
pub async fn skip(p: &Profile) {
    register(p).await;
    let id = unique("s");
    let held = held_elsewhere(p, format!("skip:{id}")).await;
    assert_eq!(skip_fn(&id).await, None);
    assert!(
        !SKIP_RAN.load(Ordering::SeqCst),
        "the body ran without the lock"
    );
    let token = held.token();
    held.release().await.unwrap();
    let ran = skip_fn(&id)
        .await
        .expect("the body ran once the key was free");
    assert!(ran > token);
}

#[distributed_lock(
    key = "error:<id>",
    ttl = "30s",
    on_conflict = "error",
    backend = "suite"
)]
async fn error_fn(id: &str) -> Result<String, LockError> {
    Ok(lockattr::current().unwrap().key().to_owned())
}

/// Error: `Conflict` naming the key and backend.
pub async fn error(p: &Profile) {
    register(p).await;
    let id = unique("e");
    assert_eq!(error_fn(&id).await.unwrap(), format!("error:{id}"));
    let held = held_elsewhere(p, format!("error:{id}")).await;
    let e = error_fn(&id).await.unwrap_err();
    assert!(matches!(e, LockError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains(&id), "{e}");
    held.release().await.unwrap();
}

#[distributed_lock(
    key = "wait:<id>",
    ttl = "30s",
    on_conflict = "wait",
    wait = "300ms",
    backend = "suite"
)]
async fn wait_fn(id: &str) -> Result<(), LockError> {
    Ok(())
}

/// Wait: succeeds when the key comes free within `wait`, else `Timeout`.
pub async fn wait(p: &Profile) {
    register(p).await;
    let id = unique("w");
    let held = held_elsewhere(p, format!("wait:{id}")).await;
    let e = wait_fn(&id).await.unwrap_err();
    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    let releaser = release_after(held, Duration::from_millis(50));
    wait_fn(&id).await.unwrap();
    releaser.await.unwrap();
}

#[distributed_lock(
    key = "retry:<id>",
    ttl = "30s",
    on_conflict = "retry",
    retries = 20,
    backoff = "20ms",
    backend = "suite"
)]
async fn retry_fn(id: &str) -> Option<()> {
    Some(())
}

/// Retry: taken when freed during the retries; skipped when it stays taken.
pub async fn retry(p: &Profile) {
    register(p).await;
    let id = unique("r");
    let held = held_elsewhere(p, format!("retry:{id}")).await;
    let releaser = release_after(held, Duration::from_millis(60));
    assert_eq!(retry_fn(&id).await, Some(()));
    releaser.await.unwrap();
    let _held = held_elsewhere(p, format!("retry:{id}")).await;
    assert_eq!(retry_fn(&id).await, None);
}

static LOST_RAN: AtomicBool = AtomicBool::new(false);
static LOST_FINISHED: AtomicBool = AtomicBool::new(false);

#[distributed_lock(
    key = "lost:<id>",
    ttl = "2s",
    on_conflict = "error",
    backend = "suite"
)]
async fn outlives_ttl(id: &str, sleep: Duration) -> Result<(), LockError> {
    LOST_RAN.store(true, Ordering::SeqCst);
    tokio::time::sleep(sleep).await;
    LOST_FINISHED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Semantic 5: a body that outlives its lease is dropped and the call is `Lost`.
pub async fn lost_cancels_the_body(p: &Profile) {
    register(p).await;
    let e = outlives_ttl(&unique("l"), SHORT_TTL * 3).await.unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    assert!(LOST_RAN.load(Ordering::SeqCst));
    assert!(
        !LOST_FINISHED.load(Ordering::SeqCst),
        "the body ran past its lease"
    );
}

#[distributed_lock(
    key = "renew:<id>",
    ttl = "2s",
    on_conflict = "error",
    renew = true,
    backend = "suite"
)]
async fn renewed(id: &str, other: &Locks, sleep: Duration) -> Result<bool, LockError> {
    tokio::time::sleep(sleep).await;
    // Still ours: nobody else can take it.
    let taken = other
        .lock(format!("renew:{id}"))
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await?;
    Ok(taken.is_none())
}

/// `renew = true` keeps the lease for a body longer than the ttl.
pub async fn renew_keeps_the_lease(p: &Profile) {
    register(p).await;
    let other = instance(p).await;
    assert!(renewed(&unique("n"), &other, SHORT_TTL * 3).await.unwrap());
}

#[distributed_lock(
    key = "cancel:<id>",
    ttl = "30s",
    on_conflict = "wait",
    wait = "5s",
    backend = "suite"
)]
async fn cancellable(id: &str, started: tokio::sync::oneshot::Sender<()>) -> Result<(), LockError> {
    let _ = started.send(());
    std::future::pending::<()>().await;
    Ok(())
}

/// Dropping the call's future releases the lock.
pub async fn cancellation_releases(p: &Profile) {
    register(p).await;
    let id = unique("c");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let call = tokio::spawn({
        let id = id.clone();
        async move { cancellable(&id, tx).await }
    });
    rx.await.unwrap();
    call.abort();
    let other = instance(p).await;
    let taken = eventually(Duration::from_secs(5), || async {
        take(&other, format!("cancel:{id}"), Duration::from_secs(30)).await
    })
    .await;
    assert!(taken.is_some(), "a cancelled call kept the lock");
}

#[distributed_lock(
    key = "pair:<a>:<b>",
    ttl = "30s",
    on_conflict = "error",
    backend = "suite"
)]
async fn pair(a: &str, b: &str, hold: Duration) -> Result<String, LockError> {
    tokio::time::sleep(hold).await;
    Ok(lockattr::current().unwrap().key().to_owned())
}

/// Semantic 7: `("a:b", "c")` and `("a", "b:c")` are different locks, held at once; a safe
/// value goes in as it is, so the attribute and a hand-written key take the same lock.
pub async fn keys_are_injective_and_readable(p: &Profile) {
    register(p).await;
    let id = unique("k");
    let x = format!("{id}:x");
    let hold = Duration::from_millis(100);
    let (k1, k2) = tokio::join!(pair(&x, "c", hold), pair(&id, "x:c", hold));
    let (k1, k2) = (k1.unwrap(), k2.unwrap());
    assert_ne!(k1, k2);
    assert_eq!(k2, format!("pair:{id}:x%3Ac"));
    let held = held_elsewhere(p, format!("pair:{id}:c")).await;
    let e = pair(&id, "c", Duration::ZERO).await.unwrap_err();
    assert!(matches!(e, LockError::Conflict { .. }), "{e}");
    held.release().await.unwrap();
}
