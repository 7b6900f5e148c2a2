//! Faults of the session-lock backends (`postgres://`, `mysql://`) on real servers: a
//! session killed under a running body, every session of a backend killed between two
//! acquisitions, a holder whose process stalls, the server-side key mapping, and how many
//! connections 1,000 held locks use. An unreachable server fails these tests; it never skips them.
//!
//! The servers are driven from outside through their command-line clients (`psql`,
//! `mariadb`), as an operator would, and each backend under test is told apart from the
//! others by its PostgreSQL `application_name` or its MariaDB database.

mod suite;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lockattr::{distributed_lock, LockError, Locks};
use suite::{block_on, take, unique};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY: &str = "mysql://root@127.0.0.1:3306";

/// Runs one statement with `psql` and returns its unaligned output.
fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-XAtc",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs statements with the `mariadb` client (database `test`) and returns its output.
fn mariadb(sql: &str) -> String {
    let out = Command::new("mariadb")
        .args([
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-N",
            "-B",
            "test",
            "-e",
            sql,
        ])
        .output()
        .expect("mariadb runs");
    assert!(
        out.status.success(),
        "mariadb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A PostgreSQL URL whose sessions carry `app` as their `application_name`.
fn pg_url(app: &str) -> String {
    format!("{PG}?application_name={app}")
}

/// A MariaDB URL on a database of its own (created here), so its sessions can be found.
fn my_url(db: &str) -> String {
    mariadb(&format!("CREATE DATABASE IF NOT EXISTS {db}"));
    format!("{MY}/{db}")
}

fn pg_sessions(app: &str) -> usize {
    psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"
    ))
    .parse()
    .unwrap()
}

fn my_sessions(db: &str) -> usize {
    mariadb(&format!(
        "SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{db}'"
    ))
    .parse()
    .unwrap()
}

/// Terminates every session of the backend named by `app`; how many there were.
fn pg_kill_all(app: &str) -> usize {
    psql(&format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = '{app}') t"
    ))
    .parse()
    .unwrap()
}

/// Kills every session on database `db`; how many there were.
fn my_kill_all(db: &str) -> usize {
    let ids = mariadb(&format!(
        "SELECT id FROM information_schema.processlist WHERE db = '{db}'"
    ));
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    for id in &ids {
        // A session may end by itself meanwhile: ignore the error for that one.
        let _ = Command::new("mariadb")
            .args([
                "--protocol=tcp",
                "-h",
                "127.0.0.1",
                "-u",
                "root",
                "-e",
                &format!("KILL {id}"),
            ])
            .output();
    }
    ids.len()
}

async fn connect(url: &str) -> Locks {
    lockattr::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

// ---- a killed session gives Lost to the body --------------------------------------------

static PG_BODY_FINISHED: AtomicBool = AtomicBool::new(false);
static MY_BODY_FINISHED: AtomicBool = AtomicBool::new(false);

#[distributed_lock(
    key = "killed:<id>",
    ttl = "30s",
    on_conflict = "error",
    backend = "pg-kill"
)]
async fn pg_long_body(
    id: &str,
    started: tokio::sync::oneshot::Sender<()>,
) -> Result<(), LockError> {
    let _ = started.send(());
    tokio::time::sleep(Duration::from_secs(20)).await;
    PG_BODY_FINISHED.store(true, Ordering::SeqCst);
    Ok(())
}

#[distributed_lock(
    key = "killed:<id>",
    ttl = "30s",
    on_conflict = "error",
    backend = "my-kill"
)]
async fn my_long_body(
    id: &str,
    started: tokio::sync::oneshot::Sender<()>,
) -> Result<(), LockError> {
    let _ = started.send(());
    tokio::time::sleep(Duration::from_secs(20)).await;
    MY_BODY_FINISHED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Kills the sessions under a running body with `kill`; the call must end with `Lost`
/// within a few heartbeats, and the key must be free for another instance.
async fn killed_session_is_lost<F, Fut>(
    url: &str,
    call: F,
    kill: impl Fn() -> usize,
    done: &AtomicBool,
) where
    F: FnOnce(String, tokio::sync::oneshot::Sender<()>) -> Fut,
    Fut: std::future::Future<Output = Result<(), LockError>> + Send + 'static,
{
    let id = unique("k");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let running = tokio::spawn(call(id.clone(), tx));
    rx.await.unwrap();
    let killed_at = Instant::now();
    assert!(kill() > 0, "no session to kill");
    let e = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the body was not stopped after its session was killed")
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    assert!(!done.load(Ordering::SeqCst), "the body ran to its end");
    eprintln!("lost noticed {:?} after the kill", killed_at.elapsed());
    let other = connect(url).await;
    let taken = other
        .lock(format!("killed:{id}"))
        .ttl(Duration::from_secs(30))
        .acquire(Duration::from_secs(5))
        .await
        .expect("the killed session's lock is free");
    taken.release().await.unwrap();
}

#[test]
fn postgres_terminated_session_gives_lost() {
    block_on(async {
        let app = "lockattr-test-kill";
        lockattr::set_named("pg-kill", connect(&pg_url(app)).await).unwrap();
        killed_session_is_lost(
            &pg_url("lockattr-test-kill-other"),
            |id, tx| async move { pg_long_body(&id, tx).await },
            || pg_kill_all(app),
            &PG_BODY_FINISHED,
        )
        .await;
    });
}

#[test]
fn mysql_killed_session_gives_lost() {
    block_on(async {
        let db = "lockattr_test_kill";
        lockattr::set_named("my-kill", connect(&my_url(db)).await).unwrap();
        killed_session_is_lost(
            &my_url("lockattr_test_kill_other"),
            |id, tx| async move { my_long_body(&id, tx).await },
            || my_kill_all(db),
            &MY_BODY_FINISHED,
        )
        .await;
    });
}

// ---- losing every connection does not need a restart ------------------------------------

/// Holds a lock, kills every session of the backend, then: the old guard reports `Lost`,
/// and the same handle takes locks again (try and wait) on new sessions.
async fn recovers_after_losing_every_session(url: &str, kill: impl Fn() -> usize) {
    let locks = connect(url).await;
    // Fill the pool: several sessions, all of which will be dead at the next take.
    let many = unique("recover-many");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (locks, key) = (locks.clone(), format!("{many}:{i}"));
        set.spawn(async move {
            let guard = locks.lock(key).ttl(Duration::from_secs(30)).try_acquire();
            guard.await.unwrap().unwrap().release().await.unwrap();
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    let key = unique("recover");
    let held = take(&locks, &key, Duration::from_secs(30)).await.unwrap();
    assert!(kill() > 0);
    // The server needs a moment to end the sessions.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = held.release().await.unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    // The handle's pooled sessions are all gone: the next take opens a new one.
    let again = locks
        .lock(&key)
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .expect("the handle recovers without a restart")
        .expect("the key is free");
    again.release().await.unwrap();
    kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waited = locks
        .lock(&key)
        .ttl(Duration::from_secs(30))
        .acquire(Duration::from_secs(2))
        .await
        .expect("waiting recovers too");
    waited.release().await.unwrap();
}

#[test]
fn postgres_recovers_after_losing_every_session() {
    block_on(async {
        let app = "lockattr-test-recover";
        recovers_after_losing_every_session(&pg_url(app), || pg_kill_all(app)).await;
    });
}

#[test]
fn mysql_recovers_after_losing_every_session() {
    block_on(async {
        let db = "lockattr_test_recover";
        recovers_after_losing_every_session(&my_url(db), || my_kill_all(db)).await;
    });
}

// ---- the server-side key mapping is the documented one ----------------------------------

/// The advisory lock PostgreSQL shows for a fixed key is the first 8 bytes of the SHA-256
/// of the stored key (`printf %s lockattr:session-test:stable | sha256sum`): a release
/// that changed it would let two versions of a program hold "the same" lock at once.
#[test]
fn postgres_key_mapping_is_stable() {
    block_on(async {
        let app = "lockattr-test-mapping";
        let locks = connect(&pg_url(app)).await;
        let guard = locks
            .lock("session-test:stable")
            .ttl(Duration::from_secs(30))
            .acquire(Duration::from_secs(10))
            .await
            .unwrap();
        let shown = psql(&format!(
            "SELECT (l.classid::bigint << 32) | l.objid::bigint FROM pg_locks l \
             JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND a.application_name = '{app}'"
        ));
        let expected = u64::from_str_radix("219636c661e83e35", 16).unwrap() as i64;
        assert_eq!(
            lockattr::backend::postgres::advisory_key("lockattr:session-test:stable"),
            expected
        );
        assert_eq!(shown, (expected as u64).to_string());
        guard.release().await.unwrap();
    });
}

/// PostgreSQL's fencing tokens come in blocks per backend: a handle taking one key again
/// and again counts up within its block, and as soon as another handle has taken a later
/// block (for any key), the next take, on any key, moves past it. A wait in the server's
/// queue keeps the order too.
#[test]
fn postgres_fencing_blocks_keep_tokens_growing_across_handles() {
    block_on(async {
        let ttl = Duration::from_secs(30);
        let (a, b) = (connect(PG).await, connect(PG).await);
        let (k1, k2) = (unique("fence-block-1"), unique("fence-block-2"));
        let mut last = 0;
        let next = |locks: &Locks, key: &str| {
            let (locks, key) = (locks.clone(), key.to_owned());
            async move {
                let guard = take(&locks, &key, ttl).await.expect("free");
                let token = guard.token();
                guard.release().await.unwrap();
                token
            }
        };
        for _ in 0..3 {
            let t = next(&a, &k1).await;
            assert!(t > last, "{t} after {last}");
            last = t;
        }
        // `b` takes a later block on another key; `a`'s next take must pass it.
        let on_other_key = next(&b, &k2).await;
        assert!(on_other_key > last);
        let t = next(&a, &k1).await;
        assert!(
            t > on_other_key,
            "{t} after {on_other_key} from a later block"
        );
        last = t;
        // Handles taking turns on one key.
        for i in 0..6 {
            let t = next(if i % 2 == 0 { &b } else { &a }, &k1).await;
            assert!(t > last, "{t} after {last}");
            last = t;
        }
        // A waiter granted in the server's queue.
        let held = take(&a, &k1, ttl).await.unwrap();
        let held_token = held.token();
        let waiter = {
            let (b, k1) = (b.clone(), k1.clone());
            tokio::spawn(async move { b.lock(k1).ttl(ttl).acquire(Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        held.release().await.unwrap();
        let granted = waiter.await.unwrap().unwrap();
        assert!(granted.token() > held_token);
        granted.release().await.unwrap();
    });
}

/// Waits granted in the server's queue and `try_acquire`s of one backend on one key never
/// overlap: a take never reaches a session that already holds the key (both servers would
/// grant it again, re-entrantly), and no holder finds its lease gone.
async fn waits_and_tries_of_one_backend_exclude(url: &str) {
    let locks = connect(url).await;
    let key = unique("wait-try");
    let inside = std::sync::Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (locks, key, inside) = (locks.clone(), key.clone(), inside.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let lock = locks.lock(&key).ttl(Duration::from_secs(30));
                let guard = if t % 2 == 0 {
                    lock.acquire(Duration::from_secs(30)).await.unwrap()
                } else {
                    match lock.try_acquire().await.unwrap() {
                        Some(guard) => guard,
                        None => {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                    }
                };
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                tokio::task::yield_now().await;
                inside.store(false, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn postgres_waits_and_tries_of_one_backend_exclude() {
    block_on(waits_and_tries_of_one_backend_exclude(PG));
}

#[test]
fn mysql_waits_and_tries_of_one_backend_exclude() {
    block_on(waits_and_tries_of_one_backend_exclude(&my_url(
        "lockattr_test_wait_try",
    )));
}

/// MariaDB shows the stored key itself as the lock name.
#[test]
fn mysql_lock_names_are_the_stored_keys() {
    block_on(async {
        let locks = connect(&my_url("lockattr_test_mapping")).await;
        let key = unique("mapping");
        let guard = take(&locks, &key, Duration::from_secs(30)).await.unwrap();
        let used = mariadb(&format!(
            "SELECT IS_USED_LOCK('lockattr:{key}') IS NOT NULL"
        ));
        assert_eq!(used, "1");
        guard.release().await.unwrap();
        let used = mariadb(&format!(
            "SELECT IS_USED_LOCK('lockattr:{key}') IS NOT NULL"
        ));
        assert_eq!(used, "0");
    });
}

// ---- 1,000 held locks use at most 8 connections -----------------------------------------

/// Takes 1,000 locks at once on one handle and counts the server's sessions of it.
async fn thousand_locks_use_few_connections(url: &str, count: impl Fn() -> usize) {
    let locks = connect(url).await;
    let base = unique("many");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let (locks, key) = (locks.clone(), format!("{base}:{i}"));
        tasks.spawn(async move {
            take(&locks, key, Duration::from_secs(60))
                .await
                .expect("a free key is taken")
        });
    }
    let mut guards = Vec::new();
    while let Some(guard) = tasks.join_next().await {
        guards.push(guard.unwrap());
    }
    assert_eq!(guards.len(), 1000);
    let sessions = count();
    eprintln!("1000 held locks: {sessions} connections");
    assert!(sessions <= 8, "1000 held locks use {sessions} connections");
    // They are really held: another instance finds them taken.
    let other = connect(url).await;
    for i in [0, 499, 999] {
        assert!(take(&other, format!("{base}:{i}"), Duration::from_secs(5))
            .await
            .is_none());
    }
    for guard in guards {
        guard.release().await.unwrap();
    }
}

#[test]
fn postgres_thousand_locks_use_at_most_eight_connections() {
    block_on(async {
        let app = "lockattr-test-many";
        thousand_locks_use_few_connections(&pg_url(app), || pg_sessions(app)).await;
    });
}

#[test]
fn mysql_thousand_locks_use_at_most_eight_connections() {
    block_on(async {
        let db = "lockattr_test_many";
        let url = my_url(db);
        thousand_locks_use_few_connections(&url, || my_sessions(db)).await;
    });
}

// ---- abandoned statements do not cost other locks ---------------------------------------

/// Polls `f` up to `polls` times, yielding in between; its output if it finished, else it
/// is dropped where it stands.
async fn poll_then_drop<F: std::future::Future>(f: F, polls: usize) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    for _ in 0..polls {
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(out) = polled {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// Takes and releases given up at random points (timeouts of a few hundred µs) leave the
/// handle's other lock held, and leave no lock behind for nobody.
async fn abandoned_statements_are_repaired(url: &str) {
    let locks = connect(url).await;
    let kept_key = unique("kept");
    let kept = take(&locks, &kept_key, Duration::from_secs(30))
        .await
        .unwrap();
    let key = unique("abandoned");
    for i in 0..100usize {
        // Polled a few times (so the statement is on its way), then dropped.
        let attempt = locks.lock(&key).ttl(Duration::from_secs(30)).try_acquire();
        poll_then_drop(attempt, 1 + i % 4).await;
        // Once repaired, the handle takes the key again; then a release is abandoned.
        let guard = suite::take_eventually(&locks, &key, Duration::from_secs(5))
            .await
            .expect("an abandoned take was not repaired");
        poll_then_drop(guard.release(), 1 + i % 3).await;
    }
    let other = connect(url).await;
    let taken = suite::take_eventually(&other, &key, Duration::from_secs(5)).await;
    assert!(taken.is_some(), "an abandoned take left the key held");
    assert!(
        take(&other, &kept_key, Duration::from_secs(30))
            .await
            .is_none(),
        "the other lock of the handle was lost"
    );
    kept.release().await.expect("the kept lock is still held");
    taken.unwrap().release().await.unwrap();
}

#[test]
fn postgres_abandoned_statements_are_repaired() {
    block_on(abandoned_statements_are_repaired(&pg_url(
        "lockattr-test-abandon",
    )));
}

#[test]
fn mysql_abandoned_statements_are_repaired() {
    block_on(abandoned_statements_are_repaired(&my_url(
        "lockattr_test_abandon",
    )));
}

// ---- a stalled process loses its locks to the server --------------------------------------

/// The ttl of the stalled holder's leases: its idle limit (ttl + 0.5 s) is long enough for
/// the release of a session's last lease to leave it in place, so that the takes after
/// the first send no limit at all (the session already has the one they need).
const STALL_TTL: Duration = Duration::from_secs(2);

/// Semantic 3 for a process that stalls after back-to-back takes of one ttl: a handle on a
/// runtime whose only thread is blocked (its keeper cannot unlock the lease, nor send a
/// heartbeat) loses the key when the server ends its idle session; another handle then
/// takes it.
async fn stalled_holder_loses_the_key_to_the_server(url: &str) {
    let key = unique("stalled");
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let (url, key) = (url.to_owned(), key.clone());
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let locks = connect(&url).await;
                for _ in 0..3 {
                    let guard = take(&locks, &key, STALL_TTL).await.expect("key is free");
                    guard.release().await.unwrap();
                }
                let guard = take(&locks, &key, STALL_TTL).await.expect("key is free");
                taken_tx.send(()).unwrap();
                // The stall: the thread that would run the keeper blocks.
                let _ = resume_rx.recv();
                drop(guard);
            });
        }
    });
    taken_rx.await.unwrap();
    let other = connect(url).await;
    let taken = suite::take_eventually(&other, &key, Duration::from_secs(30)).await;
    resume_tx.send(()).unwrap();
    holder.join().unwrap();
    let taken = taken.expect("the server did not end the stalled holder's session");
    taken.release().await.unwrap();
}

#[test]
fn postgres_stalled_holder_loses_the_key_to_the_server() {
    block_on(stalled_holder_loses_the_key_to_the_server(&pg_url(
        "lockattr-test-stall",
    )));
}

#[test]
fn mysql_stalled_holder_loses_the_key_to_the_server() {
    block_on(stalled_holder_loses_the_key_to_the_server(&my_url(
        "lockattr_test_stall",
    )));
}

// ---- messages never show the password ----------------------------------------------------

/// An unreachable server is an error at `connect` (never a skipped test or a silent
/// handle), and its message names the URL without the password.
#[test]
fn unreachable_servers_fail_without_printing_the_password() {
    block_on(async {
        for url in [
            "postgres://postgres:hunter2@127.0.0.1:1/test",
            "mysql://root:hunter2@127.0.0.1:1/test",
        ] {
            let e = lockattr::connect(url).await.unwrap_err();
            let msg = format!("{e} / {e:?}");
            assert!(matches!(e, LockError::Backend { .. }), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
            assert!(msg.contains(":***@127.0.0.1:1"), "{msg}");
        }
        let e = lockattr::connect("postgres://127.0.0.1/test?mode=table&password=hunter2")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mode=table"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    });
}

// ---- idle pooled sessions stay open -------------------------------------------------------

/// A lease sets its session's idle limit near its ttl (PostgreSQL: `idle_session_timeout`
/// of ttl + 0.5 s, left in place by the release of the session's last lease; MariaDB:
/// `wait_timeout` of 3 s); once the session is empty its keeper gives the server's
/// default back, so the pooled session outlives an idle pause longer than the last ttl
/// (no reconnect at the next take). `sessions` lists the backend's server sessions.
async fn idle_pooled_sessions_stay_open(url: &str, sessions: impl Fn() -> String) {
    let locks = connect(url).await;
    let key = unique("idle");
    let guard = take(&locks, &key, Duration::from_secs(2)).await.unwrap();
    guard.release().await.unwrap();
    let before = sessions();
    assert!(!before.is_empty());
    // Past the limit the lease left on the session.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(sessions(), before, "the idle pooled session was closed");
    let again = take(&locks, &key, Duration::from_secs(2)).await.unwrap();
    again.release().await.unwrap();
}

#[test]
fn mysql_idle_pooled_sessions_stay_open() {
    let db = "lockattr_test_idle";
    block_on(idle_pooled_sessions_stay_open(&my_url(db), || {
        mariadb(&format!(
            "SELECT id FROM information_schema.processlist WHERE db = '{db}' ORDER BY id"
        ))
    }));
}

#[test]
fn postgres_idle_pooled_sessions_stay_open() {
    let app = "lockattr-test-idle";
    block_on(idle_pooled_sessions_stay_open(&pg_url(app), || {
        psql(&format!(
            "SELECT pid FROM pg_stat_activity WHERE application_name = '{app}' ORDER BY pid"
        ))
    }));
}
