//! The conformance suite: `docs/design.md`'s numbered semantics, asserted the same way for
//! every backend, with no backend special-cased in a check.
//!
//! Each check is a plain `async fn` taking the backend's [`Profile`]: [`handle`] through
//! the `Locks` handle, [`attribute`] through `#[distributed_lock]`, [`process`] with holder
//! processes that crash or stall. Every backend has its own test target,
//! `tests/conformance/<backend>.rs`, built with that backend's feature alone: it includes
//! this module, defines `fn profile()`, and expands [`conformance!`] (and [`processes!`]
//! for a backend that processes share) into one `#[test]` per check. Keys are made unique
//! per run, so checks never see each other's locks.
//!
//! The other test targets include this module for its helpers.

// Each test binary uses the part of the suite it needs.
#![allow(dead_code, unused_macros)]

pub mod attribute;
pub mod handle;
pub mod process;
pub mod scheduled;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lockattr::{LockGuard, Locks};

/// The backend under test in a conformance target.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its URL.
    pub url: String,
    /// A ttl the backend enforces faithfully and tests can wait out.
    pub short_ttl: Duration,
}

/// In a conformance target: one `#[test]` per check of [`handle`] and [`attribute`], each
/// running it on `$profile()`. A new check is a function in one of those modules and its
/// name here.
macro_rules! conformance {
    ($profile:ident) => {
        $crate::suite::tests!(
            $profile,
            handle {
                try_acquire_excludes_while_held,
                contention_never_overlaps_and_fences_grow,
                stale_holder_cannot_touch_the_next_lease,
                crashed_holder_expires,
                extend_pushes_the_expiry,
                fencing_tokens_grow_across_expiry,
                waiters_are_served_in_order,
                lease_after_a_long_wait_runs_from_the_grant,
                acquire_times_out,
                long_keys_and_prefix,
                min_hold_outlives_release,
                every_keeps_the_period_past_the_ttl,
                bad_input_is_an_error,
                dropped_guard_releases,
            }
        );
        $crate::suite::tests!(
            $profile,
            attribute {
                skip,
                error,
                wait,
                retry,
                lost_cancels_the_body,
                renew_keeps_the_lease,
                cancellation_releases,
                keys_are_injective_and_readable,
            }
        );
    };
}

/// In the conformance target of a backend that processes share (every one but
/// `memory://`): one `#[test]` per check of [`process`], each running it on `$profile()`.
macro_rules! processes {
    ($profile:ident) => {
        $crate::suite::tests!(
            $profile,
            process {
                killed_holder_frees_the_key,
                stopped_holder_is_taken_over,
            }
        );
        $crate::suite::tests!(
            $profile,
            scheduled {
                once_per_period_across_processes
            }
        );
    };
}

/// `mod $module { #[test] fn $check() … }`: each test runs `suite::$module::$check` on the
/// profile of the target (`$profile`, a function in the module that invokes this).
macro_rules! tests {
    ($profile:ident, $module:ident { $($check:ident),+ $(,)? }) => {
        mod $module {
            $(
                #[test]
                fn $check() {
                    $crate::suite::block_on($crate::suite::$module::$check(&super::$profile()));
                }
            )+
        }
    };
}

#[allow(unused_imports)] // the targets other than the conformance ones list no checks
pub(crate) use {conformance, processes, tests};

/// The runtime every check of a test binary runs on: backends keep connections and
/// background tasks on the runtime they were created on, and the globally registered
/// backends outlive any one test.
pub fn block_on<F: Future>(f: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .expect("a tokio runtime")
        })
        .block_on(f)
}

/// A key no other check or earlier run uses.
pub fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{pid}-{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A scratch folder `lockattr-<name>-<pid>` under the system's temp folder for this test
/// process. Test processes cannot clean up after themselves (the harness exits without
/// running destructors of statics), so each new one first removes the folders of the
/// same name left by processes that are gone, and the folders never pile up.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let tmp = std::env::temp_dir();
    let prefix = format!("lockattr-{name}-");
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tmp.join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder under the temp folder");
    dir
}

/// A fresh handle: one simulated instance of a service.
pub async fn instance(p: &Profile) -> Locks {
    lockattr::connect(&p.url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", p.url))
}

/// Takes `key` on `locks` if it is free: `Some(guard)`, or `None` if it is held.
pub async fn take(locks: &Locks, key: impl Into<String>, ttl: Duration) -> Option<LockGuard> {
    locks.lock(key).ttl(ttl).try_acquire().await.unwrap()
}

/// Takes `key` as soon as it comes free (after an expiry or a background release),
/// within the generous `limit`.
pub async fn take_eventually(locks: &Locks, key: &str, limit: Duration) -> Option<LockGuard> {
    eventually(limit, || take(locks, key, Duration::from_secs(30))).await
}

/// Polls `f` until it returns `Some`, for at most `limit`: for effects that complete in
/// the background (a release on drop, an expiry). Not a speed check: `limit` is generous.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
