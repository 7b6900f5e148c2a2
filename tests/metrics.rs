//! The metrics of `#[distributed_lock]` (feature `metrics`), on `memory://`: each outcome
//! moves exactly its counters and histograms, labelled `function` and `backend` only,
//! read from a real recorder (`metrics-util`'s `DebuggingRecorder`, one per check, local
//! to the check's thread).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use lockattr::{distributed_lock, LockError, LockGuard};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

mod suite;
use suite::{block_on, unique};

/// Registers the backend `"metrics"` once for the binary.
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        block_on(async {
            let locks = lockattr::connect("memory://").await.unwrap();
            lockattr::set_named("metrics", locks).unwrap();
        });
    });
}

/// Runs `f` with a fresh recorder and returns what it recorded: each metric's name with
/// its value (a counter's count, a histogram's number of samples), after checking that
/// every one is labelled with `function` and `backend` and nothing else.
fn recorded<F: Future>(function: &str, backend: &str, f: F) -> BTreeMap<String, u64> {
    setup();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || block_on(f));
    let mut seen = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(
            labels,
            [("function", function), ("backend", backend)],
            "{}",
            key.name()
        );
        let n = match value {
            DebugValue::Counter(n) => n,
            DebugValue::Histogram(samples) => samples.len() as u64,
            DebugValue::Gauge(_) => panic!("no gauges expected: {}", key.name()),
        };
        if n > 0 {
            seen.insert(key.name().to_owned(), n);
        }
    }
    seen
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn function(name: &str) -> String {
    format!("{}::{name}", module_path!())
}

async fn held_elsewhere(key: &str) -> LockGuard {
    let locks = lockattr::configured(Some("metrics")).unwrap();
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
    backend = "metrics"
)]
async fn skip_fn(id: &str) -> Option<()> {
    Some(())
}

#[test]
fn acquired_and_held() {
    let f = function("skip_fn");
    let seen = recorded(&f, "memory://", async {
        let id = unique("ok");
        assert_eq!(skip_fn(&id).await, Some(()));
        assert_eq!(skip_fn(&id).await, Some(()));
    });
    assert_eq!(
        seen,
        expect(&[
            ("lockattr_acquired_total", 2),
            ("lockattr_hold_seconds", 2),
            ("lockattr_wait_seconds", 2),
        ])
    );
}

#[test]
fn skipped() {
    let f = function("skip_fn");
    let seen = recorded(&f, "memory://", async {
        let id = unique("skip");
        let _holder = held_elsewhere(&format!("skip:{id}")).await;
        assert_eq!(skip_fn(&id).await, None);
    });
    assert_eq!(seen, expect(&[("lockattr_skipped_total", 1)]));
}

#[distributed_lock(
    key = "retry:<id>",
    ttl = "10s",
    on_conflict = "retry",
    retries = 1,
    backoff = "10ms",
    backend = "metrics"
)]
async fn retry_fn(id: &str) -> Option<()> {
    Some(())
}

#[test]
fn retries_ran_out() {
    let f = function("retry_fn");
    let seen = recorded(&f, "memory://", async {
        let id = unique("retry");
        let _holder = held_elsewhere(&format!("retry:{id}")).await;
        assert_eq!(retry_fn(&id).await, None);
    });
    assert_eq!(seen, expect(&[("lockattr_skipped_total", 1)]));
}

#[distributed_lock(
    key = "error:<id>",
    ttl = "10s",
    on_conflict = "error",
    backend = "metrics"
)]
async fn error_fn(id: &str) -> Result<(), LockError> {
    Ok(())
}

#[test]
fn conflict() {
    let f = function("error_fn");
    let seen = recorded(&f, "memory://", async {
        let id = unique("conflict");
        let _holder = held_elsewhere(&format!("error:{id}")).await;
        assert!(matches!(
            error_fn(&id).await,
            Err(LockError::Conflict { .. })
        ));
    });
    assert_eq!(seen, expect(&[("lockattr_conflicts_total", 1)]));
}

#[distributed_lock(
    key = "wait:<id>",
    ttl = "10s",
    on_conflict = "wait",
    wait = "30ms",
    backend = "metrics"
)]
async fn wait_fn(id: &str) -> Result<(), LockError> {
    Ok(())
}

#[test]
fn timeout() {
    let f = function("wait_fn");
    let seen = recorded(&f, "memory://", async {
        let id = unique("wait");
        let _holder = held_elsewhere(&format!("wait:{id}")).await;
        assert!(matches!(wait_fn(&id).await, Err(LockError::Timeout { .. })));
    });
    assert_eq!(seen, expect(&[("lockattr_timeouts_total", 1)]));
}

#[distributed_lock(
    key = "lost:<id>",
    ttl = "100ms",
    on_conflict = "error",
    backend = "metrics"
)]
async fn outlives_ttl(id: &str) -> Result<(), LockError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    unreachable!("the body of outlives_ttl({id}) ran past its lease");
}

#[test]
fn lost() {
    let f = function("outlives_ttl");
    let seen = recorded(&f, "memory://", async {
        let id = unique("lost");
        assert!(matches!(
            outlives_ttl(&id).await,
            Err(LockError::Lost { .. })
        ));
    });
    assert_eq!(
        seen,
        expect(&[
            ("lockattr_acquired_total", 1),
            ("lockattr_hold_seconds", 1),
            ("lockattr_lost_total", 1),
            ("lockattr_wait_seconds", 1),
        ])
    );
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

#[test]
fn fail_closed() {
    let f = function("unconfigured");
    let seen = recorded(&f, "never-configured", unconfigured(&unique("closed")));
    assert_eq!(seen, expect(&[("lockattr_errors_total", 1)]));
}
