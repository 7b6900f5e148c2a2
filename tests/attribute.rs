//! The attribute on every shape of function it accepts, with the signature unchanged, on
//! the in-process backend (the conformance suite covers the semantics per backend).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lockattr::{distributed_lock, LockError};

mod suite;
use suite::{block_on, unique};

/// The default backend of this test binary.
fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        block_on(async {
            lockattr::init("memory://attribute").await.unwrap();
        })
    });
}

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Parse(std::num::ParseIntError),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(e: std::num::ParseIntError) -> Self {
        AppError::Parse(e)
    }
}

struct Shard {
    shard: u32,
    runs: AtomicU32,
}

impl Shard {
    #[distributed_lock(key = "shard:<self.shard>", ttl = "10s", on_conflict = "skip")]
    async fn by_ref(&self) -> Option<String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        lockattr::current().map(|c| c.key().to_owned())
    }

    #[distributed_lock(key = "shard-mut:<self.shard>", ttl = "10s", on_conflict = "skip")]
    async fn by_mut(&mut self) {
        self.shard += 1;
    }

    #[distributed_lock(key = "shard-own:<self.shard>", ttl = "10s", on_conflict = "error")]
    async fn by_value(self) -> Result<u32, LockError> {
        Ok(self.shard)
    }
}

#[test]
fn methods_take_self_in_every_way() {
    init();
    block_on(async {
        let mut shard = Shard {
            shard: 7,
            runs: AtomicU32::new(0),
        };
        assert_eq!(shard.by_ref().await.as_deref(), Some("shard:7"));
        assert_eq!(shard.runs.load(Ordering::SeqCst), 1);
        shard.by_mut().await;
        assert_eq!(shard.shard, 8);
        assert_eq!(shard.by_value().await.unwrap(), 8);
    });
}

struct Job {
    id: u64,
    tenant: Tenant,
}

struct Tenant(&'static str);

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[distributed_lock(
    key = "job:<job.tenant>/<job.id>:<pair.1>",
    ttl = "10s",
    on_conflict = "skip"
)]
async fn fields(job: &Job, pair: (u8, &str)) -> Option<String> {
    lockattr::current().map(|c| c.key().to_owned())
}

#[test]
fn placeholders_reach_fields_and_tuple_indices() {
    init();
    block_on(async {
        let job = Job {
            id: 42,
            tenant: Tenant("acme corp"),
        };
        let key = fields(&job, (1, "x")).await.unwrap();
        assert_eq!(key, "job:acme%20corp/42:x");
    });
}

#[distributed_lock(key = "generic:<item>", ttl = "10s", on_conflict = "error")]
async fn generic<T: fmt::Display + Send + Sync>(
    item: T,
    extra: impl Into<u64>,
) -> Result<u64, AppError> {
    Ok(extra.into())
}

#[distributed_lock(key = "parse:<text>", ttl = "10s", on_conflict = "error")]
async fn parse(text: &str) -> Result<u32, AppError> {
    // `?` converts through the declared error type.
    let n: u32 = text.parse()?;
    if n == 0 {
        return Ok(100);
    }
    Ok(n)
}

#[test]
fn generics_impl_trait_arguments_and_question_mark() {
    init();
    block_on(async {
        assert_eq!(generic("a", 5u8).await.unwrap(), 5);
        assert_eq!(generic(3.5, 6u32).await.unwrap(), 6);
        assert_eq!(parse("12").await.unwrap(), 12);
        assert_eq!(parse("0").await.unwrap(), 100);
        assert!(matches!(parse("x").await, Err(AppError::Parse(e)) if !e.to_string().is_empty()));
    });
}

#[distributed_lock(key = "nested:<id>", ttl = "10s", on_conflict = "skip")]
async fn skip_nested(id: &str) -> Result<Option<u32>, AppError> {
    Ok(Some(1))
}

#[test]
fn skipped_result_of_option_is_ok_none() {
    init();
    block_on(async {
        let id = unique("nested");
        let held = lockattr::lock(format!("nested:{id}"))
            .ttl(Duration::from_secs(10))
            .try_acquire()
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(skip_nested(&id).await, Ok(None)));
        held.release().await.unwrap();
        assert!(matches!(skip_nested(&id).await, Ok(Some(1))));
    });
}

static UNCONFIGURED_RUNS: AtomicU32 = AtomicU32::new(0);

#[distributed_lock(
    key = "nightly",
    ttl = "10s",
    on_conflict = "skip",
    backend = "never-configured"
)]
async fn unconfigured_result() -> Result<(), AppError> {
    UNCONFIGURED_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[distributed_lock(
    key = "nightly",
    ttl = "10s",
    on_conflict = "skip",
    backend = "never-configured"
)]
async fn unconfigured_unit() {
    UNCONFIGURED_RUNS.fetch_add(1, Ordering::SeqCst);
}

/// Semantic 8 and "fail closed": no backend means an error (or, without an error channel,
/// a logged skip), never a body run without the lock.
#[test]
fn an_unconfigured_backend_never_runs_the_body() {
    block_on(async {
        let e = unconfigured_result().await.unwrap_err();
        assert!(
            matches!(&e, AppError::Lock(LockError::NotConfigured { name: Some(n) }) if n == "never-configured"),
            "{e:?}"
        );
        unconfigured_unit().await;
        assert_eq!(UNCONFIGURED_RUNS.load(Ordering::SeqCst), 0);
    });
}

mod renamed {
    // A dependency renamed in Cargo.toml is reached with `crate = "…"`.
    pub use lockattr as my_locks;
}

#[distributed_lock(
    key = "renamed",
    ttl = "10s",
    on_conflict = "skip",
    crate = "renamed::my_locks"
)]
async fn with_renamed_crate() -> Option<()> {
    Some(())
}

#[test]
fn crate_override_reaches_a_renamed_dependency() {
    init();
    block_on(async {
        assert_eq!(with_renamed_crate().await, Some(()));
    });
}

#[distributed_lock(
    key = "min-hold:<id>",
    ttl = "10s",
    on_conflict = "skip",
    min_hold = "300ms"
)]
async fn with_min_hold(id: &str) -> Option<()> {
    Some(())
}

#[test]
fn min_hold_keeps_the_key_after_the_body() {
    init();
    block_on(async {
        let id = unique("mh");
        assert_eq!(with_min_hold(&id).await, Some(()));
        // The body has ended, but the key stays taken for the rest of min_hold.
        assert_eq!(with_min_hold(&id).await, None);
        let later = suite::eventually(Duration::from_secs(5), || async {
            with_min_hold(&id).await
        })
        .await;
        assert_eq!(later, Some(()));
    });
}

#[distributed_lock(key = "outer:<id>", ttl = "10s", on_conflict = "error")]
async fn outer(id: &str) -> Result<(String, String), LockError> {
    let inner_key = inner(id).await?;
    Ok((lockattr::current().unwrap().key().to_owned(), inner_key))
}

#[distributed_lock(key = "inner:<id>", ttl = "10s", on_conflict = "error")]
async fn inner(id: &str) -> Result<String, LockError> {
    Ok(lockattr::current().unwrap().key().to_owned())
}

#[test]
fn current_is_the_innermost_lock() {
    init();
    block_on(async {
        let (outer_key, inner_key) = outer("x").await.unwrap();
        assert_eq!(outer_key, "outer:x");
        assert_eq!(inner_key, "inner:x");
        assert!(lockattr::current().is_none());
    });
}

/// The generated future is `Send` when the body's is: it runs on multi-threaded executors.
#[test]
fn annotated_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let job = Job {
        id: 1,
        tenant: Tenant("t"),
    };
    assert_send(fields(&job, (0, "")));
    assert_send(parse("1"));
}

/// Dropping a guard outside any tokio runtime neither blocks nor panics: the release is
/// logged as skipped and the lease frees itself at its ttl.
#[test]
fn a_guard_dropped_outside_a_runtime_does_not_panic() {
    let (locks, guard) = block_on(async {
        let locks = lockattr::connect("memory://drop-outside").await.unwrap();
        let guard = locks
            .lock("k")
            .ttl(Duration::from_millis(300))
            .try_acquire()
            .await
            .unwrap();
        (locks, guard.unwrap())
    });
    drop(guard);
    let taken = block_on(suite::eventually(Duration::from_secs(5), || async {
        locks
            .lock("k")
            .ttl(Duration::from_secs(1))
            .try_acquire()
            .await
            .unwrap()
    }));
    assert!(taken.is_some(), "the lease never expired");
}
