//! What the lease-table test targets share (`sqlite.rs`, `postgres_table.rs`,
//! `mysql_table.rs`): handles, scratch names, and the checks that run the same way on every
//! server, each taking the backend's URL.

// Each test target uses the part it needs.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use lockattr::{LockError, LockGuard, Locks};

use crate::suite::{self, take, unique};

/// A ttl no check waits out.
pub const TTL: Duration = Duration::from_secs(30);

/// A path for a new SQLite file in this process's scratch folder.
pub fn temp_sqlite(name: &str) -> std::path::PathBuf {
    suite::scratch_dir("table").join(format!("{}.db", unique(name)))
}

/// A `sqlite://` URL for a new file.
pub fn sqlite_url(name: &str) -> String {
    format!("sqlite://{}", temp_sqlite(name).display())
}

/// A handle on `url`; a backend that cannot be reached fails the test.
pub async fn connect(url: &str) -> Locks {
    lockattr::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A table name no earlier run used.
pub fn table_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("la_{tag}_{}_{nanos}", std::process::id())
}

/// Takes and gives back one key, checking exclusion on a second handle.
pub async fn round_trip(a: &Locks, b: &Locks) -> u64 {
    let key = unique("rt");
    let g = take(a, &key, TTL).await.unwrap();
    assert!(take(b, &key, TTL).await.is_none());
    let token = g.token();
    g.release().await.unwrap();
    token
}

/// Two `table=` names on one database (`base` ends in `?` or `&`) do not interfere: a key
/// taken in one is free in the other, fences are per table, a release in one frees only
/// that one.
pub async fn two_tables_do_not_interfere(base: &str, t1: &str, t2: &str) {
    let one = connect(&format!("{base}table={t1}")).await;
    let two = connect(&format!("{base}table={t2}")).await;
    let key = unique("shared-name");
    let g1 = take(&one, &key, TTL).await.expect("free in table one");
    let g2 = take(&two, &key, TTL)
        .await
        .unwrap_or_else(|| panic!("{base}: a lock in table one blocked table two"));
    assert_eq!(
        (g1.token(), g2.token()),
        (1, 1),
        "{base}: fences are per table"
    );
    g1.release().await.unwrap();
    assert!(
        take(&two, &key, TTL).await.is_none(),
        "{base}: releasing in table one freed table two"
    );
    g2.release().await.unwrap();
}

/// Each URL is refused at connect as [`LockError::InvalidUrl`].
pub async fn refused_as_invalid(urls: &[String]) {
    for url in urls {
        let e = lockattr::connect(url).await.unwrap_err();
        assert!(matches!(e, LockError::InvalidUrl { .. }), "{url}: {e}");
    }
}

/// The lease is a row, not a session: every connection of the pool killed by the server
/// (what a restart does to a client) is noticed at the next statement, which runs again on
/// a new connection; the lease held meanwhile is still held, and still exclusive.
pub async fn survives_killed_sessions(url: &str, kill: impl Future<Output = u64>) {
    let (a, b) = (connect(url).await, connect(url).await);
    // Open connections in both pools.
    round_trip(&a, &b).await;
    let key = unique("restart");
    let g = take(&a, &key, TTL).await.unwrap();
    let killed = kill.await;
    assert!(killed >= 2, "{url}: killed {killed} sessions");
    tokio::time::sleep(Duration::from_millis(100)).await;
    lease_outlived(g, &b, &key, &format!("the kill of the sessions of {url}")).await;
}

/// After `what` (sessions killed, the server restarted), the lease `g` still holds: it
/// extends, `b` cannot take the key, and once it is released `b` takes it with a greater
/// fencing token.
pub async fn lease_outlived(g: LockGuard, b: &Locks, key: &str, what: &str) {
    g.extend(TTL)
        .await
        .unwrap_or_else(|e| panic!("extend after {what}: {e}"));
    assert!(
        take(b, key, TTL).await.is_none(),
        "the lease was lost in {what}"
    );
    let token = g.token();
    g.release().await.unwrap();
    let next = take(b, key, TTL).await.unwrap();
    assert!(next.token() > token);
    next.release().await.unwrap();
}

/// A server restarted for real during a hold (`restart` stops and starts it): the lease
/// survives, and the same handles go on without a new `connect`.
pub async fn survives_a_restart(url: &str, restart: impl Future<Output = ()>) {
    let (a, b) = (connect(url).await, connect(url).await);
    round_trip(&a, &b).await;
    let key = unique("restart");
    let g = take(&a, &key, TTL).await.unwrap();
    restart.await;
    lease_outlived(g, &b, &key, "the restart").await;
}

/// `min_hold` is kept by the database: the key stays taken after the handle that released
/// it is gone, as after a process exit.
pub async fn min_hold_outlives_the_handle(url: &str) {
    let key = unique("min-hold");
    let a = connect(url).await;
    let g = a
        .lock(&key)
        .ttl(Duration::from_secs(10))
        .min_hold(Duration::from_secs(2))
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    g.release().await.unwrap();
    drop(a);
    let b = connect(url).await;
    assert!(
        take(&b, &key, TTL).await.is_none(),
        "{url}: min_hold ended with the handle"
    );
}

/// Semantic 6 across processes (no in-process wake-ups, only the waiter table): holder
/// processes that start waiting one after another take the key in that order. Blocking:
/// call it outside the runtime.
pub fn waiters_in_other_processes_are_served_in_order(url: &str) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let key = unique("fifo-proc");
    let mut lines = Vec::new();
    let mut children = Vec::new();
    for hold_ms in ["2500", "200", "200", "200"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockattr-holder"))
            .args([url, key.as_str(), hold_ms])
            .stdout(Stdio::piped())
            .spawn()
            .expect("lockattr-holder starts");
        let out = BufReader::new(child.stdout.take().unwrap());
        lines.push(std::thread::spawn(move || {
            out.lines().map_while(Result::ok).collect::<Vec<_>>()
        }));
        children.push(child);
        // Let holder i queue before holder i + 1 starts.
        // (generous: a loaded CI machine starts processes slowly).
        std::thread::sleep(Duration::from_millis(600));
    }
    for mut c in children {
        c.wait().unwrap();
    }
    let tokens: Vec<u64> = lines
        .into_iter()
        .map(|l| {
            let out = l.join().unwrap();
            let acquired = out
                .iter()
                .find_map(|l| l.strip_prefix("acquired "))
                .unwrap_or_else(|| panic!("{url}: holder said {out:?}"));
            assert!(out.iter().any(|l| l == "finished"), "{url}: {out:?}");
            acquired.parse().unwrap()
        })
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "{url}: processes served out of order, tokens by arrival {tokens:?}"
    );
}

/// A waiter that times out, or whose future is dropped, leaves the queue at once: it does
/// not hold up a `try_acquire` once the key is free.
pub async fn waiters_that_give_up_leave_the_queue(url: &str) {
    let (a, b, c) = (connect(url).await, connect(url).await, connect(url).await);
    let key = unique("give-up");
    let held = take(&a, &key, TTL).await.unwrap();
    let e = b
        .lock(&key)
        .ttl(TTL)
        .acquire(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::Timeout { .. }), "{url}: {e}");
    let waiter = tokio::spawn({
        let (b, key) = (b.clone(), key.clone());
        async move { b.lock(&key).ttl(TTL).acquire(Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    waiter.abort();
    let _ = waiter.await;
    // The aborted waiter leaves in the background.
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.release().await.unwrap();
    let started = std::time::Instant::now();
    let next = take(&c, &key, TTL).await;
    assert!(
        next.is_some(),
        "{url}: a waiter that gave up still blocks the key"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A waiter process killed while queued holds up the queue only until its place lapses
/// (3 s), not forever.
pub async fn killed_waiter_process_lapses(url: &str) {
    use std::process::{Command, Stdio};

    let a = connect(url).await;
    let id = unique("killed-waiter");
    let key = format!("proc:{id}");
    let held = take(&a, &key, TTL).await.unwrap();
    let mut waiter = Command::new(env!("CARGO_BIN_EXE_lockattr-holder"))
        .args([url, id.as_str(), "100"])
        .stdout(Stdio::null())
        .spawn()
        .expect("lockattr-holder starts");
    // Long enough for the holder process to start and queue.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    waiter.kill().unwrap();
    waiter.wait().unwrap();
    held.release().await.unwrap();
    assert!(
        take(&a, &key, TTL).await.is_none(),
        "{url}: the killed waiter's place was not kept"
    );
    let taken = suite::eventually(Duration::from_secs(6), || async {
        take(&a, &key, TTL).await
    })
    .await;
    assert!(
        taken.is_some(),
        "{url}: a killed waiter blocked the key for good"
    );
}

/// A database that cannot be reached is a `Backend` error at connect, naming the URL and
/// not its password.
pub async fn unreachable_database_is_a_backend_error(url: &str) {
    let e = lockattr::connect(url).await.unwrap_err();
    assert!(matches!(e, LockError::Backend { .. }), "{url}: {e}");
    let msg = e.to_string();
    assert!(
        msg.contains("127.0.0.1:1") && !msg.contains("hunter2"),
        "{msg}"
    );
}

/// The error's source (the backend's own message, without the URL that the error's
/// `Display` adds).
pub fn source_of(e: &LockError) -> String {
    std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// A server that accepts connections and never answers (`scheme://` in table mode, on
/// [`lockattr_tests::black_hole`]): `connect` gives up after `connect_timeout_ms`, with an
/// error that names the parameter and its value. The bound is generous (a loaded machine);
/// a hang, or the former hard-coded 5 s, fails it.
pub async fn unanswered_connect_gives_up_after_connect_timeout(scheme: &str) {
    let port = lockattr_tests::black_hole();
    let url =
        format!("{scheme}://lockattr@127.0.0.1:{port}/test?mode=table&connect_timeout_ms=300");
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(60), lockattr::connect(&url))
        .await
        .unwrap_or_else(|_| panic!("{url}: connect hung"))
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, LockError::Backend { .. }), "{url}: {e}");
    let source = source_of(&e);
    assert!(source.contains("`connect_timeout_ms=300`"), "{url}: {e}");
    assert!(
        took < Duration::from_secs(4),
        "{url}: gave up after {took:?}"
    );
}

/// A statement that the server does not answer (it waits for a row lock that another
/// session holds: `hold_row_lock` takes it on the row named by its argument and keeps it
/// while its output lives) gives up after `timeout_ms`, with an error that names the
/// parameter and its value, and the same handle goes on at once with other keys. The
/// abandoned statement may still run once the row is free (the server does not notice
/// that its client left): then it holds the key until its ttl ends, and no longer.
pub async fn blocked_statement_gives_up_after_timeout<Held, Holding>(
    url: &str,
    hold_row_lock: impl FnOnce(String) -> Holding,
) where
    Holding: Future<Output = Held>,
{
    const BLOCKED_TTL: Duration = Duration::from_secs(2);
    let url = lockattr_tests::with_param(url, "timeout_ms=300");
    let locks = connect(&url).await;
    let key = unique("unanswered");
    // The row exists from now on.
    take(&locks, &key, TTL)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let held = hold_row_lock(format!("lockattr:{key}")).await;
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        locks.lock(&key).ttl(BLOCKED_TTL).try_acquire(),
    )
    .await
    .unwrap_or_else(|_| panic!("{url}: the blocked statement hung"))
    .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, LockError::Backend { .. }), "{url}: {e}");
    assert!(source_of(&e).contains("`timeout_ms=300`"), "{url}: {e}");
    assert!(
        took < Duration::from_secs(4),
        "{url}: gave up after {took:?}"
    );
    let other = take(&locks, unique("other"), TTL).await;
    assert!(other.is_some(), "{url}: the handle did not go on");
    drop(held);
    let taken = suite::eventually(BLOCKED_TTL * 5, || take(&locks, &key, TTL)).await;
    assert!(taken.is_some(), "{url}: the key stayed taken past its ttl");
}

/// `url` (`scheme://user@host…`, as the test URLs are written) with `password` added to
/// its user.
pub fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme://");
    let (user, host) = rest.split_once('@').expect("a user@ in the test URL");
    let user = user.split(':').next().unwrap_or(user);
    format!("{scheme}://{user}:{password}@{host}")
}

/// A login the server refuses (`url` carries a wrong password): the error names the
/// backend, and neither its `Display`, its `Debug`, nor any log line written during the
/// attempt (every level) contains the password.
pub fn refused_login_never_shows_the_password(url: &str, password: &str) {
    let (result, logs) = lockattr_tests::with_logs(lockattr::connect(url));
    let e = result.expect_err("the server accepted a wrong password");
    assert!(matches!(e, LockError::Backend { .. }), "{e}");
    let (shown, debug) = (e.to_string(), format!("{e:?}"));
    for (what, text) in [("Display", &shown), ("Debug", &debug), ("logs", &logs)] {
        assert!(
            !text.contains(password),
            "the password is in the {what}: {text}"
        );
    }
    assert!(shown.contains(":***@"), "{shown}");
    assert!(
        !logs.is_empty(),
        "nothing was logged: the capture does not work"
    );
}

/// Opening `url`, whose table records a storage format above this build's, is refused
/// with an error that says which format it found and to upgrade.
pub async fn refused_as_newer_format(url: &str, found: u32) {
    let e = lockattr::connect(url)
        .await
        .expect_err("a table of a newer format was opened");
    assert!(matches!(e, LockError::Backend { .. }), "{url}: {e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("storage format {found}")) && msg.contains("upgrade lockattr"),
        "{url}: {msg}"
    );
}

/// The checks that run the same way on PostgreSQL and MySQL, as `#[test]`s of the target
/// that invokes this: `$admin` is an async fn giving a direct sqlx connection to the test
/// database, `$table_url` a fn giving that database's URL in table mode, `$scheme` the URL
/// scheme. The SQL is written so that both servers take it as it is.
#[allow(unused_macros)] // not in the SQLite target
macro_rules! server_table_checks {
    ($admin:path, $table_url:path, $scheme:literal) => {
        /// Whether `table` and its waiter and format tables exist.
        async fn tables_exist(table: &str) -> bool {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_name IN \
                 ('{table}', '{table}_waiters', '{table}_format')"
            )))
            .fetch_one(&mut $admin().await)
            .await
            .unwrap();
            n == 3
        }

        async fn drop_tables(table: &str) {
            let drop = format!("DROP TABLE IF EXISTS {table}, {table}_waiters, {table}_format");
            sqlx::Executor::execute(&mut $admin().await, sqlx::AssertSqlSafe(drop))
                .await
                .unwrap();
        }

        #[test]
        fn tables_are_created_on_first_use() {
            suite::block_on(async {
                let t = table_support::table_name("first");
                assert!(!tables_exist(&t).await);
                let url = lockattr_tests::with_param(&$table_url(), &format!("table={t}"));
                let (a, b) = (
                    table_support::connect(&url).await,
                    table_support::connect(&url).await,
                );
                assert!(tables_exist(&t).await, "{url}: table {t} not created");
                assert_eq!(table_support::round_trip(&a, &b).await, 1);
                drop_tables(&t).await;
            });
        }

        #[test]
        fn two_tables_do_not_interfere() {
            suite::block_on(async {
                let (t1, t2) = (
                    table_support::table_name("one"),
                    table_support::table_name("two"),
                );
                let base = format!("{}&", $table_url());
                table_support::two_tables_do_not_interfere(&base, &t1, &t2).await;
                drop_tables(&t1).await;
                drop_tables(&t2).await;
            });
        }

        #[test]
        fn min_hold_outlives_the_handle() {
            suite::block_on(table_support::min_hold_outlives_the_handle(&$table_url()));
        }

        #[test]
        fn waiters_in_other_processes_are_served_in_order() {
            table_support::waiters_in_other_processes_are_served_in_order(&$table_url());
        }

        #[test]
        fn waiters_that_give_up_leave_the_queue() {
            suite::block_on(table_support::waiters_that_give_up_leave_the_queue(
                &$table_url(),
            ));
        }

        #[test]
        fn killed_waiter_process_lapses() {
            suite::block_on(table_support::killed_waiter_process_lapses(&$table_url()));
        }

        #[test]
        fn unanswered_connect_gives_up_after_connect_timeout() {
            suite::block_on(
                table_support::unanswered_connect_gives_up_after_connect_timeout($scheme),
            );
        }

        #[test]
        fn blocked_statement_gives_up_after_timeout() {
            suite::block_on(table_support::blocked_statement_gives_up_after_timeout(
                &$table_url(),
                |name| async move {
                    let mut holder = $admin().await;
                    let lock_row =
                        format!("SELECT 1 FROM lockattr_locks WHERE name = '{name}' FOR UPDATE");
                    for statement in ["BEGIN".to_string(), lock_row] {
                        sqlx::Executor::execute(&mut holder, sqlx::AssertSqlSafe(statement))
                            .await
                            .unwrap();
                    }
                    holder
                },
            ));
        }

        /// The table records its storage format in `{table}_format` when it is set up; a
        /// table whose recorded format is newer than this build's is refused.
        #[test]
        fn newer_format_is_refused() {
            suite::block_on(async {
                let t = table_support::table_name("format");
                let url = lockattr_tests::with_param(&$table_url(), &format!("table={t}"));
                table_support::connect(&url).await;
                let mut admin = $admin().await;
                let recorded: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT format FROM {t}_format"
                )))
                .fetch_all(&mut admin)
                .await
                .unwrap();
                assert_eq!(recorded, [1]);
                let newer = format!("INSERT INTO {t}_format (format) VALUES (2)");
                sqlx::Executor::execute(&mut admin, sqlx::AssertSqlSafe(newer))
                    .await
                    .unwrap();
                table_support::refused_as_newer_format(&url, 2).await;
                drop_tables(&t).await;
            });
        }
    };
}
#[allow(unused_imports)]
pub(crate) use server_table_checks;
