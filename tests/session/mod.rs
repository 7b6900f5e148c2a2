//! What the fault tests of the session-lock backends (`tests/postgres.rs`,
//! `tests/mysql.rs`) share: each check here runs on both servers, given the backend's URL
//! and a way to drive its server from outside (count or kill the backend's sessions). A
//! test file implements [`Server`] and calls [`shared_tests!`]. An unreachable server
//! fails these tests; it never skips them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockattr_tests::{with_logs, with_param};

use lockattr::{distributed_lock, LockError, Locks};

use crate::suite::{self, take, unique};

/// A test server driven from outside, as an operator would. Each check names the
/// backend it opens (`name`: a PostgreSQL `application_name`, a MariaDB database), so
/// that its sessions can be told apart from every other test's.
pub trait Server {
    /// A URL of the test server whose sessions carry `name`.
    fn url(name: &str) -> String;
    /// The ids of the server's sessions of `name`, one a line, in order.
    fn session_ids(name: &str) -> String;
    /// Ends every session of `name`; how many there were.
    fn kill_all(name: &str) -> usize;
    /// A URL of this server's kind logging in as `login` (`user` or `user:password`) on
    /// 127.0.0.1:`port`, where no such server is.
    fn elsewhere(login: &str, port: u16) -> String;

    /// How many sessions of `name` the server has.
    fn sessions(name: &str) -> usize {
        Self::session_ids(name)
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    }
}

/// The checks both session backends run, as `#[test]`s on `$server` (a [`Server`]).
macro_rules! shared_tests {
    ($server:ty) => {
        #[test]
        fn killed_session_gives_lost() {
            $crate::suite::block_on($crate::session::killed_session_is_lost::<$server>());
        }

        #[test]
        fn recovers_after_losing_every_session() {
            $crate::suite::block_on($crate::session::recovers_after_losing_every_session::<
                $server,
            >());
        }

        #[test]
        fn waits_and_tries_of_one_backend_exclude() {
            $crate::suite::block_on($crate::session::waits_and_tries_of_one_backend_exclude(
                &<$server as $crate::session::Server>::url("lockattr_test_wait_try"),
            ));
        }

        #[test]
        fn thousand_locks_use_at_most_eight_connections() {
            $crate::suite::block_on(
                $crate::session::thousand_locks_use_few_connections::<$server>(),
            );
        }

        #[test]
        fn waiters_beyond_max_waiting_wait_in_the_process() {
            $crate::suite::block_on(
                $crate::session::waiters_beyond_max_waiting_wait_in_the_process::<$server>(),
            );
        }

        #[test]
        fn extend_on_a_session_closed_by_a_timeout_is_lost() {
            $crate::suite::block_on(
                $crate::session::extend_on_a_session_closed_by_a_timeout_is_lost::<$server>(),
            );
        }

        #[test]
        fn waits_beyond_max_waiting_still_take_a_free_key() {
            $crate::suite::block_on(
                $crate::session::waits_beyond_max_waiting_still_take_a_free_key::<$server>(),
            );
        }

        #[test]
        fn abandoned_statements_are_repaired() {
            $crate::suite::block_on($crate::session::abandoned_statements_are_repaired(
                &<$server as $crate::session::Server>::url("lockattr_test_abandon"),
            ));
        }

        #[test]
        fn stalled_holder_loses_the_key_to_the_server() {
            $crate::suite::block_on($crate::session::stalled_holder_loses_the_key_to_the_server(
                &<$server as $crate::session::Server>::url("lockattr_test_stall"),
            ));
        }

        #[test]
        fn connect_to_a_black_hole_times_out() {
            let port = lockattr_tests::black_hole();
            let url = <$server as $crate::session::Server>::elsewhere("lockattr", port);
            $crate::suite::block_on($crate::session::connect_to_a_black_hole_times_out(
                &lockattr_tests::with_param(&url, "connect_timeout_ms=300"),
            ));
        }

        #[test]
        fn unreachable_server_fails_without_printing_the_password() {
            $crate::suite::block_on(
                $crate::session::unreachable_server_fails_without_printing_the_password(
                    &<$server as $crate::session::Server>::elsewhere("lockattr:hunter2", 1),
                ),
            );
        }

        #[test]
        fn idle_pooled_sessions_stay_open() {
            $crate::suite::block_on($crate::session::idle_pooled_sessions_stay_open::<$server>());
        }
    };
}
pub(crate) use shared_tests;

/// Connects, or fails the test naming the URL.
pub async fn connect(url: &str) -> Locks {
    lockattr::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

static BODY_FINISHED: AtomicBool = AtomicBool::new(false);

#[distributed_lock(
    key = "killed:<id>",
    ttl = "30s",
    on_conflict = "error",
    backend = "session-kill"
)]
async fn long_body(id: &str, started: tokio::sync::oneshot::Sender<()>) -> Result<(), LockError> {
    let _ = started.send(());
    tokio::time::sleep(Duration::from_secs(20)).await;
    BODY_FINISHED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Kills the sessions under a running body: the call must end with `Lost` within a few
/// heartbeats, and the key must be free for another instance.
pub async fn killed_session_is_lost<S: Server>() {
    let name = "lockattr_test_kill";
    lockattr::set_named("session-kill", connect(&S::url(name)).await).unwrap();
    let id = unique("k");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let running = tokio::spawn({
        let id = id.clone();
        async move { long_body(&id, tx).await }
    });
    rx.await.unwrap();
    let killed_at = Instant::now();
    assert!(S::kill_all(name) > 0, "no session to kill");
    let e = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the body was not stopped after its session was killed")
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    assert!(
        !BODY_FINISHED.load(Ordering::SeqCst),
        "the body ran to its end"
    );
    eprintln!("lost noticed {:?} after the kill", killed_at.elapsed());
    let other = connect(&S::url("lockattr_test_kill_other")).await;
    let taken = other
        .lock(format!("killed:{id}"))
        .ttl(Duration::from_secs(30))
        .acquire(Duration::from_secs(5))
        .await
        .expect("the killed session's lock is free");
    taken.release().await.unwrap();
}

/// Holds a lock, kills every session of the backend, then: the old guard reports `Lost`,
/// and the same handle takes locks again (try and wait) on new sessions.
pub async fn recovers_after_losing_every_session<S: Server>() {
    let name = "lockattr_test_recover";
    let kill = || S::kill_all(name);
    let locks = connect(&S::url(name)).await;
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

/// Waits granted in the server's queue and `try_acquire`s of one backend on one key never
/// overlap: a take never reaches a session that already holds the key (both servers would
/// grant it again, re-entrantly), and no holder finds its lease gone.
pub async fn waits_and_tries_of_one_backend_exclude(url: &str) {
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

/// Takes 1,000 locks at once on one handle and counts the server's sessions of it.
pub async fn thousand_locks_use_few_connections<S: Server>() {
    let name = "lockattr_test_many";
    let url = &S::url(name);
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
    let sessions = S::sessions(name);
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
pub async fn abandoned_statements_are_repaired(url: &str) {
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

/// The ttl of the stalled holder's leases: its idle limit (ttl + 0.5 s) is long enough for
/// the release of a session's last lease to leave it in place, so that the takes after
/// the first send no limit at all (the session already has the one they need).
const STALL_TTL: Duration = Duration::from_secs(2);

/// Semantic 3 for a process that stalls after back-to-back takes of one ttl: a handle on a
/// runtime whose only thread is blocked (its keeper cannot unlock the lease, nor send a
/// heartbeat) loses the key when the server ends its idle session; another handle then
/// takes it.
pub async fn stalled_holder_loses_the_key_to_the_server(url: &str) {
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

/// A lease sets its session's idle limit near its ttl (PostgreSQL: `idle_session_timeout`
/// of ttl + 0.5 s, left in place by the release of the session's last lease; MariaDB:
/// `wait_timeout` of 3 s); once the session is empty its keeper gives the server's
/// default back, so the pooled session outlives an idle pause longer than the last ttl
/// (no reconnect at the next take).
pub async fn idle_pooled_sessions_stay_open<S: Server>() {
    // A name of this process's own: a backend of another test process on the same
    // server must not be counted (its sessions come and go).
    let name = &format!("lockattr_test_idle_{}", std::process::id());
    let sessions = || S::session_ids(name);
    let locks = connect(&S::url(name)).await;
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

/// An unreachable server (`url`, with the password `hunter2`) is an error at `connect`
/// (never a skipped test or a silent handle), and its message names the URL without the
/// password.
pub async fn unreachable_server_fails_without_printing_the_password(url: &str) {
    let e = lockattr::connect(url).await.unwrap_err();
    let msg = format!("{e} / {e:?}");
    assert!(matches!(e, LockError::Backend { .. }), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains(":***@127.0.0.1:1"), "{msg}");
}

/// A server that accepts connections and never answers (`lockattr_tests::black_hole`):
/// `connect` to `url` (which sets `connect_timeout_ms=300`) fails, naming the parameter
/// and its value, well within a bound far above it (the machine is shared and noisy).
pub async fn connect_to_a_black_hole_times_out(url: &str) {
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(60), lockattr::connect(url))
        .await
        .expect("connect to a server that never answers still hangs")
        .expect_err("a server that never answers cannot be connected to");
    let took = started.elapsed();
    let msg = e.to_string();
    assert!(matches!(e, LockError::Backend { .. }), "{msg}");
    assert!(msg.contains("`connect_timeout_ms=300`"), "{msg}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {msg}");
}

/// `connect` to `url`, whose server refuses its password `password`, fails with an error
/// that says why (`refusal`, the server's words) and shows the password neither in its
/// message, its `Debug`, nor anything logged during the attempt.
pub fn refused_password_is_never_shown(url: &str, password: &str, refusal: &str) {
    let (e, logged) = with_logs(lockattr::connect(url));
    let e = e.expect_err("the server refuses the password");
    let (shown, debug) = (e.to_string(), format!("{e:?}"));
    assert!(matches!(e, LockError::Backend { .. }), "{shown}");
    assert!(shown.contains(refusal), "{shown}");
    for text in [&shown, &debug, &logged] {
        assert!(!text.contains(password), "the password shows in: {text}");
    }
}

/// Waiting acquires hold a session each only up to `max_waiting` (here 2): six waiters
/// on one handle use at most 2 waiting sessions, the rest wait in the process, and every
/// one gets the key in turn once another handle lets it go. A waiter whose deadline comes
/// while it waits in the process times out like any other.
pub async fn waiters_beyond_max_waiting_wait_in_the_process<S: Server>() {
    let name = "lockattr_test_max_waiting";
    let waiters_url = lockattr_tests::with_param(&S::url(name), "max_waiting=2");
    let key = unique("max-waiting");
    let ttl = Duration::from_secs(30);
    let holder = connect(&S::url("lockattr_test_max_waiting_holder")).await;
    let held = take(&holder, &key, ttl).await.expect("a free key");
    let locks = connect(&waiters_url).await;
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (locks, key) = (locks.clone(), key.clone());
        waiters.spawn(async move {
            let guard = locks
                .lock(&key)
                .ttl(ttl)
                .acquire(Duration::from_secs(60))
                .await?;
            guard.release().await
        });
    }
    // The waiters have had time to take every session they can.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = S::sessions(name);
    let late = locks
        .lock(&key)
        .ttl(ttl)
        .acquire(Duration::from_millis(300))
        .await
        .expect_err("the key is held");
    assert!(matches!(late, LockError::Timeout { .. }), "{late}");
    // Its first session (taken by a waiter) and one more; one spare for a pooled session.
    assert!(waiting <= 3, "{waiting} sessions for 6 waiters");
    held.release().await.unwrap();
    while let Some(waited) = waiters.join_next().await {
        waited.unwrap().expect("every waiter gets the key in turn");
    }
}

/// `url` (of the test server) with its `host:port` replaced by 127.0.0.1:`port`, and the
/// `host:port` it named.
fn through_port(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("scheme://");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (login, host) = match authority.rsplit_once('@') {
        Some((login, host)) => (format!("{login}@"), host),
        None => (String::new(), authority),
    };
    (
        format!("{scheme}://{login}127.0.0.1:{port}{path}"),
        host.to_owned(),
    )
}

/// A session closed by lockattr because a statement on it did not answer within
/// `timeout_ms` frees its locks on the server: a lease on it whose `extend` was waiting
/// for the session's connection meanwhile is lost, never extended (it once answered
/// `Ok` and moved the deadline while another process took the key).
pub async fn extend_on_a_session_closed_by_a_timeout_is_lost<S: Server>() {
    let url = with_param(&S::url("lockattr_test_timeout_extend"), "timeout_ms=300");
    let (_, upstream) = through_port(&url, 1);
    let proxy = lockattr_tests::StallingProxy::start(&upstream).await;
    let (proxied, _) = through_port(&url, proxy.port);
    let slow = connect(&proxied).await;
    let direct = connect(&url).await;
    let (held_key, other_key) = (unique("timeout-extend"), unique("timeout-take"));
    let ttl = Duration::from_secs(10);
    let held = Arc::new(take(&slow, &held_key, ttl).await.unwrap());
    // A take on the same (only) session that does not answer in time closes the session;
    // the extend queued behind it must not succeed on it.
    proxy.stall(true);
    let taking = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.lock(other_key).ttl(ttl).try_acquire().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let extending = {
        let held = held.clone();
        tokio::spawn(async move { held.extend(ttl).await })
    };
    tokio::time::sleep(Duration::from_millis(450)).await;
    proxy.stall(false);
    let took = taking.await.unwrap();
    assert!(took.is_err(), "the unanswered take is an error: {took:?}");
    let extended = extending.await.unwrap();
    assert!(
        matches!(extended, Err(LockError::Lost { .. })),
        "an extend on the closed session is Lost: {extended:?}"
    );
    // And the key really is free on the server again (the session is gone).
    let next = suite::take_eventually(&direct, &held_key, Duration::from_secs(10))
        .await
        .expect("the closed session's lock was freed");
    assert!(next.token() > held.token());
    next.release().await.unwrap();
}

/// Waits beyond `max_waiting` queue in the process, but a wait for a key that is free
/// takes it at once: a long wait on another key does not hold it up until its deadline.
pub async fn waits_beyond_max_waiting_still_take_a_free_key<S: Server>() {
    let url = S::url("lockattr_test_max_waiting_free");
    let holder = connect(&url).await;
    let waiters = connect(&with_param(&url, "max_waiting=1")).await;
    let (busy, free) = (unique("busy"), unique("free"));
    let ttl = Duration::from_secs(30);
    let held = take(&holder, &busy, ttl).await.unwrap();
    let waiting = {
        let waiters = waiters.clone();
        tokio::spawn(async move {
            waiters
                .lock(busy)
                .ttl(ttl)
                .acquire(Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let got = waiters
        .lock(free)
        .ttl(ttl)
        .acquire(Duration::from_secs(20))
        .await
        .unwrap();
    // Before the fix it got the key only at the end of its 20 s wait.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    got.release().await.unwrap();
    held.release().await.unwrap();
    waiting.await.unwrap().unwrap().release().await.unwrap();
}
