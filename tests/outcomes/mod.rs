//! Each outcome of a locked call, on `memory://` (the backend `"outcomes"`), for the
//! targets that observe them: `events` (tracing) and `metrics`. A scenario makes its call
//! on a key of its own and returns which call that was.

use std::time::Duration;

use lockattr::{distributed_lock, LockError, LockGuard};

use crate::suite::{block_on, unique};

/// Which call a scenario made.
pub struct Call {
    /// The annotated function's path, as `LockSite::function` gives it.
    pub function: String,
    // Read by the `events` target; the `metrics` target has no key in its labels.
    #[allow(dead_code)]
    pub template: &'static str,
    #[allow(dead_code)]
    pub key: String,
    /// The backend's name in events and labels.
    pub backend: &'static str,
}

const MEMORY: &str = "memory://";

/// Registers the backend `"outcomes"` once for the binary.
pub fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        block_on(async {
            let locks = lockattr::connect(MEMORY).await.unwrap();
            lockattr::set_named("outcomes", locks).unwrap();
        });
    });
}

fn call(function: &str, template: &'static str, key: String, backend: &'static str) -> Call {
    Call {
        function: format!("{}::{function}", module_path!()),
        template,
        key,
        backend,
    }
}

/// Takes `key` on the `"outcomes"` backend, as another instance would.
async fn held_elsewhere(key: &str) -> LockGuard {
    let locks = lockattr::configured(Some("outcomes")).unwrap();
    locks
        .lock(key)
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap()
        .expect("a free key")
}

#[distributed_lock(
    key = "skip:<id>",
    ttl = "10s",
    on_conflict = "skip",
    backend = "outcomes"
)]
async fn skip_fn(id: &str) -> Option<()> {
    Some(())
}

/// `"skip"` on a free key: runs.
pub async fn ran() -> Call {
    let id = unique("ran");
    assert_eq!(skip_fn(&id).await, Some(()));
    call("skip_fn", "skip:<id>", format!("skip:{id}"), MEMORY)
}

/// `"skip"` on a key held elsewhere: skips.
pub async fn skipped() -> Call {
    let id = unique("skip");
    let key = format!("skip:{id}");
    let _holder = held_elsewhere(&key).await;
    assert_eq!(skip_fn(&id).await, None);
    call("skip_fn", "skip:<id>", key, MEMORY)
}

#[distributed_lock(
    key = "retry:<id>",
    ttl = "10s",
    on_conflict = "retry",
    retries = 2,
    backoff = "10ms",
    backend = "outcomes"
)]
async fn retry_fn(id: &str) -> Option<()> {
    Some(())
}

/// `"retry"`, 2 retries, on a key held elsewhere: the retries run out, it skips.
pub async fn retries_ran_out() -> Call {
    let id = unique("retry");
    let key = format!("retry:{id}");
    let _holder = held_elsewhere(&key).await;
    assert_eq!(retry_fn(&id).await, None);
    call("retry_fn", "retry:<id>", key, MEMORY)
}

#[distributed_lock(
    key = "error:<id>",
    ttl = "10s",
    on_conflict = "error",
    backend = "outcomes"
)]
async fn error_fn(id: &str) -> Result<(), LockError> {
    Ok(())
}

/// `"error"` on a key held elsewhere: `Conflict`.
pub async fn conflict() -> Call {
    let id = unique("conflict");
    let key = format!("error:{id}");
    let _holder = held_elsewhere(&key).await;
    let e = error_fn(&id).await.unwrap_err();
    assert!(matches!(e, LockError::Conflict { .. }), "{e}");
    call("error_fn", "error:<id>", key, MEMORY)
}

#[distributed_lock(
    key = "wait:<id>",
    ttl = "10s",
    on_conflict = "wait",
    wait = "50ms",
    backend = "outcomes"
)]
async fn wait_fn(id: &str) -> Result<(), LockError> {
    Ok(())
}

/// `"wait"`, 50 ms, on a key held elsewhere: `Timeout`.
pub async fn timeout() -> Call {
    let id = unique("wait");
    let key = format!("wait:{id}");
    let _holder = held_elsewhere(&key).await;
    let e = wait_fn(&id).await.unwrap_err();
    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    call("wait_fn", "wait:<id>", key, MEMORY)
}

#[distributed_lock(
    key = "lost:<id>",
    ttl = "100ms",
    on_conflict = "error",
    backend = "outcomes"
)]
async fn outlives_ttl(id: &str) -> Result<(), LockError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    unreachable!("the body of outlives_ttl({id}) ran past its lease");
}

/// A body that outlives its 100 ms ttl: `Lost`.
pub async fn lost() -> Call {
    let id = unique("lost");
    let e = outlives_ttl(&id).await.unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    // Let the dropped guard's background release run before the events are read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    call("outlives_ttl", "lost:<id>", format!("lost:{id}"), MEMORY)
}

#[distributed_lock(
    key = "closed:<id>",
    ttl = "10s",
    on_conflict = "skip",
    backend = "never-configured"
)]
async fn unconfigured(id: &str) {
    unreachable!("the body of unconfigured({id}) ran without its lock");
}

/// A site whose backend is not configured: fails closed.
pub async fn fail_closed() -> Call {
    let id = unique("closed");
    unconfigured(&id).await;
    call(
        "unconfigured",
        "closed:<id>",
        format!("closed:{id}"),
        "never-configured",
    )
}
