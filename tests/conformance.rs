//! DESIGN.md's semantics, checked on every backend by the same code.
//!
//! A backend joins with one line at the bottom: a module name, the name it is registered
//! under, its URL, and a short ttl it keeps faithfully (as the attribute's string and as a
//! `Duration`). A backend whose server cannot be reached fails here; it never skips.

mod suite;

/// The checks with holder processes, for backends that processes share (every one but
/// `memory://`): `conformance!(module, …); processes!(module_processes, module);`. The
/// first name is the module the process tests live in (it must differ from the
/// conformance module's, which already holds that name), the second the conformance
/// module whose profile they use.
#[allow(unused_macros)]
macro_rules! processes {
    ($tests:ident, $module:ident) => {
        mod $tests {
            #[test]
            fn killed_holder_frees_the_key() {
                super::suite::block_on(super::suite::process::killed_holder_frees_the_key(
                    &super::$module::profile(),
                ));
            }

            #[test]
            fn stopped_holder_is_taken_over() {
                super::suite::block_on(super::suite::process::stopped_holder_is_taken_over(
                    &super::$module::profile(),
                ));
            }
        }
    };
}

macro_rules! conformance {
    ($module:ident, $name:tt, $url:expr, $short:tt, $short_ttl:expr) => {
        mod $module {
            use std::sync::atomic::Ordering;
            use std::time::Duration;

            use lockattr::{distributed_lock, LockError};

            use super::suite::{self, block_on, eventually, instance, register, take, unique, Flags, Profile};

            pub(super) fn profile() -> Profile {
                Profile {
                    name: $name,
                    url: $url,
                    short_ttl: $short_ttl,
                }
            }

            macro_rules! check {
                ($check:ident) => {
                    #[test]
                    fn $check() {
                        block_on(suite::$check(&profile()));
                    }
                };
            }

            check!(try_acquire_excludes_while_held);
            check!(contention_never_overlaps_and_fences_grow);
            check!(stale_holder_cannot_touch_the_next_lease);
            check!(crashed_holder_expires);
            check!(extend_pushes_the_expiry);
            check!(fencing_tokens_grow_across_expiry);
            check!(waiters_are_served_in_order);
            check!(lease_after_a_long_wait_runs_from_the_grant);
            check!(acquire_times_out);
            check!(long_keys_and_prefix);
            check!(min_hold_outlives_release);
            check!(bad_input_is_an_error);
            check!(dropped_guard_releases);

            // ---- through the attribute --------------------------------------------------

            static SKIP: Flags = Flags::new();

            #[distributed_lock(key = "skip:<id>", ttl = "30s", on_conflict = "skip", backend = $name)]
            async fn skip_fn(id: &str) -> Option<u64> {
                SKIP.body_ran.store(true, Ordering::SeqCst);
                lockattr::current().map(|c| c.token())
            }

            /// Skip: the skipped value, the body not run; free: the body runs under the lock.
            #[test]
            fn attribute_skip() {
                block_on(async {
                    let p = profile();
                    register(&p).await;
                    let id = unique("s");
                    let other = instance(&p).await;
                    let held = take(&other, format!("skip:{id}"), Duration::from_secs(30)).await.unwrap();
                    assert_eq!(skip_fn(&id).await, None);
                    assert!(!SKIP.body_ran.load(Ordering::SeqCst), "the body ran without the lock");
                    let token = held.token();
                    held.release().await.unwrap();
                    let ran = skip_fn(&id).await.expect("the body ran once the key was free");
                    assert!(ran > token);
                });
            }

            #[distributed_lock(key = "error:<id>", ttl = "30s", on_conflict = "error", backend = $name)]
            async fn error_fn(id: &str) -> Result<String, LockError> {
                Ok(lockattr::current().unwrap().key().to_owned())
            }

            /// Error: `Conflict` naming the key and backend.
            #[test]
            fn attribute_error() {
                block_on(async {
                    let p = profile();
                    register(&p).await;
                    let id = unique("e");
                    assert_eq!(error_fn(&id).await.unwrap(), format!("error:{id}"));
                    let held = take(&instance(&p).await, format!("error:{id}"), Duration::from_secs(30)).await.unwrap();
                    let e = error_fn(&id).await.unwrap_err();
                    assert!(matches!(e, LockError::Conflict { .. }), "{e}");
                    assert!(e.to_string().contains(&id), "{e}");
                    held.release().await.unwrap();
                });
            }

            #[distributed_lock(key = "wait:<id>", ttl = "30s", on_conflict = "wait", wait = "300ms", backend = $name)]
            async fn wait_fn(id: &str) -> Result<(), LockError> {
                Ok(())
            }

            /// Wait: succeeds when the key comes free within `wait`, else `Timeout`.
            #[test]
            fn attribute_wait() {
                block_on(async {
                    let p = profile();
                    register(&p).await;
                    let id = unique("w");
                    let other = instance(&p).await;
                    let held = take(&other, format!("wait:{id}"), Duration::from_secs(30)).await.unwrap();
                    let e = wait_fn(&id).await.unwrap_err();
                    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
                    let releaser = tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        held.release().await.unwrap();
                    });
                    wait_fn(&id).await.unwrap();
                    releaser.await.unwrap();
                });
            }

            #[distributed_lock(key = "retry:<id>", ttl = "30s", on_conflict = "retry", retries = 20, backoff = "20ms", backend = $name)]
            async fn retry_fn(id: &str) -> Option<()> {
                Some(())
            }

            /// Retry: taken when freed during the retries; skipped when it stays taken.
            #[test]
            fn attribute_retry() {
                block_on(async {
                    let p = profile();
                    register(&p).await;
                    let id = unique("r");
                    let other = instance(&p).await;
                    let held = take(&other, format!("retry:{id}"), Duration::from_secs(30)).await.unwrap();
                    let releaser = tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(60)).await;
                        held.release().await.unwrap();
                    });
                    assert_eq!(retry_fn(&id).await, Some(()));
                    releaser.await.unwrap();
                    let _held = take(&other, format!("retry:{id}"), Duration::from_secs(30)).await.unwrap();
                    assert_eq!(retry_fn(&id).await, None);
                });
            }

            static LOST: Flags = Flags::new();

            #[distributed_lock(key = "lost:<id>", ttl = $short, on_conflict = "error", backend = $name)]
            async fn outlives_ttl(id: &str, sleep: Duration) -> Result<(), LockError> {
                LOST.body_ran.store(true, Ordering::SeqCst);
                tokio::time::sleep(sleep).await;
                LOST.body_finished.store(true, Ordering::SeqCst);
                Ok(())
            }

            /// Semantic 5: a body that outlives its lease is dropped and the call is `Lost`.
            #[test]
            fn attribute_lost_cancels_the_body() {
                block_on(async {
                    let p = profile();
                    register(&p).await;
                    let e = outlives_ttl(&unique("l"), p.short_ttl * 3).await.unwrap_err();
                    assert!(matches!(e, LockError::Lost { .. }), "{e}");
                    assert!(LOST.body_ran.load(Ordering::SeqCst));
                    assert!(!LOST.body_finished.load(Ordering::SeqCst), "the body ran past its lease");
                });
            }

            #[distributed_lock(key = "renew:<id>", ttl = $short, on_conflict = "error", renew = true, backend = $name)]
            async fn renewed(id: &str, sleep: Duration) -> Result<bool, LockError> {
                tokio::time::sleep(sleep).await;
                // Still ours: nobody else can take it.
                let p = profile();
                let other = instance(&p).await;
                let taken = other.lock(format!("renew:{id}")).ttl(Duration::from_secs(30)).try_acquire().await?;
                Ok(taken.is_none())
            }

            /// `renew = true` keeps the lease for a body longer than the ttl.
            #[test]
            fn attribute_renew_keeps_the_lease() {
                block_on(async {
                    let p = profile();
                    register(&p).await;
                    assert!(renewed(&unique("n"), p.short_ttl * 3).await.unwrap());
                });
            }

            #[distributed_lock(key = "cancel:<id>", ttl = "30s", on_conflict = "wait", wait = "5s", backend = $name)]
            async fn cancellable(id: &str, started: tokio::sync::oneshot::Sender<()>) -> Result<(), LockError> {
                let _ = started.send(());
                std::future::pending::<()>().await;
                Ok(())
            }

            /// Dropping the call's future releases the lock.
            #[test]
            fn attribute_cancellation_releases() {
                block_on(async {
                    let p = profile();
                    register(&p).await;
                    let id = unique("c");
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let call = tokio::spawn({
                        let id = id.clone();
                        async move { cancellable(&id, tx).await }
                    });
                    rx.await.unwrap();
                    call.abort();
                    let other = instance(&p).await;
                    let taken = eventually(Duration::from_secs(5), || async {
                        take(&other, format!("cancel:{id}"), Duration::from_secs(30)).await
                    })
                    .await;
                    assert!(taken.is_some(), "a cancelled call kept the lock");
                });
            }

            #[distributed_lock(key = "pair:<a>:<b>", ttl = "30s", on_conflict = "error", backend = $name)]
            async fn pair(a: &str, b: &str, hold: Duration) -> Result<String, LockError> {
                tokio::time::sleep(hold).await;
                Ok(lockattr::current().unwrap().key().to_owned())
            }

            /// Semantic 7: `("a:b", "c")` and `("a", "b:c")` are different locks, held at
            /// once; a safe value goes in as it is, so the attribute and a hand-written key
            /// take the same lock.
            #[test]
            fn attribute_keys_are_injective_and_readable() {
                block_on(async {
                    let p = profile();
                    register(&p).await;
                    let id = unique("k");
                    let x = format!("{id}:x");
                    let hold = Duration::from_millis(100);
                    let (k1, k2) = tokio::join!(pair(&x, "c", hold), pair(&id, "x:c", hold));
                    let (k1, k2) = (k1.unwrap(), k2.unwrap());
                    assert_ne!(k1, k2);
                    assert_eq!(k2, format!("pair:{id}:x%3Ac"));
                    let held = take(&instance(&p).await, format!("pair:{id}:c"), Duration::from_secs(30)).await.unwrap();
                    let e = pair(&id, "c", Duration::ZERO).await.unwrap_err();
                    assert!(matches!(e, LockError::Conflict { .. }), "{e}");
                    held.release().await.unwrap();
                });
            }
        }
    };
}

conformance!(
    memory,
    "memory",
    "memory://conformance".to_string(),
    "300ms",
    std::time::Duration::from_millis(300)
);

#[cfg(feature = "redis")]
conformance!(
    redis,
    "redis",
    "redis://127.0.0.1:6379".to_string(),
    "300ms",
    std::time::Duration::from_millis(300)
);
#[cfg(feature = "redis")]
processes!(redis_processes, redis);

/// A fresh SQLite file for this test binary's run.
#[cfg(feature = "sqlite")]
fn sqlite_url() -> String {
    let dir = suite::scratch_dir("conformance");
    format!("sqlite://{}", dir.join("locks.db").display())
}

#[cfg(feature = "sqlite")]
conformance!(
    sqlite,
    "sqlite",
    crate::sqlite_url(),
    "300ms",
    std::time::Duration::from_millis(300)
);
#[cfg(feature = "sqlite")]
processes!(sqlite_processes, sqlite);

#[cfg(feature = "postgres")]
conformance!(
    postgres_table,
    "postgres_table",
    "postgres://postgres@127.0.0.1:5432/test?mode=table".to_string(),
    "300ms",
    std::time::Duration::from_millis(300)
);
#[cfg(feature = "postgres")]
processes!(postgres_table_processes, postgres_table);

#[cfg(feature = "mysql")]
conformance!(
    mysql_table,
    "mysql_table",
    "mysql://root@127.0.0.1:3306/test?mode=table".to_string(),
    "300ms",
    std::time::Duration::from_millis(300)
);
#[cfg(feature = "mysql")]
processes!(mysql_table_processes, mysql_table);

#[cfg(feature = "postgres")]
conformance!(
    postgres,
    "postgres",
    "postgres://postgres@127.0.0.1:5432/test".to_string(),
    "1s",
    std::time::Duration::from_secs(1)
);
#[cfg(feature = "postgres")]
processes!(postgres_processes, postgres);

#[cfg(feature = "mysql")]
conformance!(
    mysql,
    "mysql",
    "mysql://root@127.0.0.1:3306/test".to_string(),
    "2s",
    std::time::Duration::from_secs(2)
);
#[cfg(feature = "mysql")]
processes!(mysql_processes, mysql);
