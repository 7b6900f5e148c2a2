//! Faults of the `postgres://` session backend (advisory locks) on a real server: a session
//! terminated under a running body, every session of a backend terminated between two
//! acquisitions, a holder whose process stalls, the server-side key mapping, fencing
//! blocks, and how many connections 1,000 held locks use. An unreachable server fails
//! these tests; it never skips them.
//!
//! The server is `lockattr_tests::postgres_url()`, driven from outside through `psql`, as
//! an operator would; each backend under test is told apart from the others by its
//! `application_name`.

mod session;
mod suite;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lockattr::{distributed_lock, LockError, Locks};
use lockattr_tests::{black_hole, postgres_url, with_database, with_param, PrivatePostgres};
use session::connect;
use suite::{block_on, take, unique};

/// Runs one statement with `psql` on the test database and returns its unaligned output.
fn psql(sql: &str) -> String {
    psql_on(&postgres_url(), sql)
}

/// The test server's URL with another database.
fn pg_url_on(database: &str) -> String {
    with_database(&postgres_url(), database)
}

/// The test server's URL logging in as `role` (no password: the test server trusts it).
fn pg_url_as(role: &str) -> String {
    let url = postgres_url();
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}@{host}")
}

/// Runs one statement with `psql` on `url`'s database and returns its unaligned output.
fn psql_on(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-XAtc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A URL whose sessions carry `app` as their `application_name`.
fn pg_url(app: &str) -> String {
    with_param(&postgres_url(), &format!("application_name={app}"))
}

fn pg_sessions(app: &str) -> usize {
    psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"
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

// ---- a terminated session gives Lost to the body ------------------------------------------

static BODY_FINISHED: AtomicBool = AtomicBool::new(false);

#[distributed_lock(
    key = "killed:<id>",
    ttl = "30s",
    on_conflict = "error",
    backend = "pg-kill"
)]
async fn long_body(id: &str, started: tokio::sync::oneshot::Sender<()>) -> Result<(), LockError> {
    let _ = started.send(());
    tokio::time::sleep(Duration::from_secs(20)).await;
    BODY_FINISHED.store(true, Ordering::SeqCst);
    Ok(())
}

#[test]
fn terminated_session_gives_lost() {
    block_on(async {
        let app = "lockattr-test-kill";
        lockattr::set_named("pg-kill", connect(&pg_url(app)).await).unwrap();
        session::killed_session_is_lost(
            &pg_url("lockattr-test-kill-other"),
            |id, tx| async move { long_body(&id, tx).await },
            || pg_kill_all(app),
            &BODY_FINISHED,
        )
        .await;
    });
}

#[test]
fn recovers_after_losing_every_session() {
    block_on(async {
        let app = "lockattr-test-recover";
        session::recovers_after_losing_every_session(&pg_url(app), || pg_kill_all(app)).await;
    });
}

// ---- the server-side key mapping is the documented one ----------------------------------

/// The advisory lock PostgreSQL shows for a fixed key is the first 8 bytes of the SHA-256
/// of the stored key (`printf %s lockattr:session-test:stable | sha256sum`): a release
/// that changed it would let two versions of a program hold "the same" lock at once.
#[test]
fn key_mapping_is_stable() {
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

/// Fencing tokens come in blocks per backend: a handle taking one key again and again
/// counts up within its block, and as soon as another handle has taken a later block (for
/// any key), the next take, on any key, moves past it. A wait in the server's queue keeps
/// the order too.
#[test]
fn fencing_blocks_keep_tokens_growing_across_handles() {
    block_on(async {
        let ttl = Duration::from_secs(30);
        let url = postgres_url();
        let (a, b) = (connect(&url).await, connect(&url).await);
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

#[test]
fn waits_and_tries_of_one_backend_exclude() {
    block_on(session::waits_and_tries_of_one_backend_exclude(
        &postgres_url(),
    ));
}

#[test]
fn thousand_locks_use_at_most_eight_connections() {
    block_on(async {
        let app = "lockattr-test-many";
        session::thousand_locks_use_few_connections(&pg_url(app), || pg_sessions(app)).await;
    });
}

#[test]
fn waiters_beyond_max_waiting_wait_in_the_process() {
    let app = "lockattr-test-max-waiting";
    block_on(session::waiters_beyond_max_waiting_wait_in_the_process(
        &pg_url("lockattr-test-max-waiting-holder"),
        &with_param(&pg_url(app), "max_waiting=2"),
        || pg_sessions(app),
    ));
}

#[test]
fn abandoned_statements_are_repaired() {
    block_on(session::abandoned_statements_are_repaired(&pg_url(
        "lockattr-test-abandon",
    )));
}

#[test]
fn stalled_holder_loses_the_key_to_the_server() {
    block_on(session::stalled_holder_loses_the_key_to_the_server(
        &pg_url("lockattr-test-stall"),
    ));
}

#[test]
fn idle_pooled_sessions_stay_open() {
    let app = "lockattr-test-idle";
    block_on(session::idle_pooled_sessions_stay_open(
        &pg_url(app),
        || {
            psql(&format!(
                "SELECT pid FROM pg_stat_activity WHERE application_name = '{app}' ORDER BY pid"
            ))
        },
    ));
}

// ---- a server that never answers ----------------------------------------------------------

#[test]
fn connect_to_a_black_hole_times_out() {
    let port = black_hole();
    block_on(session::connect_to_a_black_hole_times_out(&format!(
        "postgres://postgres@127.0.0.1:{port}/test?connect_timeout_ms=300"
    )));
}

// ---- messages never show the password ----------------------------------------------------

/// An unreachable server is an error at `connect` (never a skipped test or a silent
/// handle), and its message names the URL without the password.
#[test]
fn unreachable_server_fails_without_printing_the_password() {
    block_on(async {
        let e = lockattr::connect("postgres://postgres:hunter2@127.0.0.1:1/test")
            .await
            .unwrap_err();
        let msg = format!("{e} / {e:?}");
        assert!(matches!(e, LockError::Backend { .. }), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains(":***@127.0.0.1:1"), "{msg}");
        let e = lockattr::connect("postgres://127.0.0.1/test?mode=table&password=hunter2")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mode=table"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    });
}

/// A server that refuses the password (a private one: the shared server trusts every
/// login): the error and the logs never show it.
#[test]
fn refused_password_is_never_shown() {
    let server = PrivatePostgres::start_with_password("lockattr-right-Pw");
    let wrong = "lockattr-wrong-Pw";
    session::refused_password_is_never_shown(
        &server.url("postgres", Some(wrong)),
        wrong,
        "password authentication failed",
    );
    // The right one logs in: the refusal above was about the password.
    block_on(async {
        connect(&server.url("postgres", Some("lockattr-right-Pw"))).await;
    });
}

// ---- the set-up checks of `open` ----------------------------------------------------------

/// Drops a role made for one test, however the test ends.
struct DropRole(String);

impl Drop for DropRole {
    fn drop(&mut self) {
        let role = &self.0;
        psql(&format!("DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}"));
    }
}

/// A role that may not use the fencing sequence is refused at `open`, with the GRANT that
/// fixes it, instead of failing every take; granted it, the role takes locks.
#[test]
fn a_role_without_fence_privileges_is_refused_at_open() {
    block_on(async {
        // The sequence exists (created by a role that may).
        connect(&postgres_url()).await;
        let role = format!("lockattr_test_noprivs_{}", std::process::id());
        psql(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"
        ));
        let _drop = DropRole(role.clone());
        let e = lockattr::connect(&pg_url_as(&role)).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LockError::Backend { .. }), "{msg}");
        assert!(
            msg.contains("lockattr_fence")
                && msg.contains(&format!(
                    "GRANT USAGE ON SEQUENCE lockattr_fence TO {role};"
                )),
            "{msg}"
        );
        psql(&format!("GRANT USAGE ON SEQUENCE lockattr_fence TO {role}"));
        let locks = connect(&pg_url_as(&role)).await;
        let guard = take(&locks, unique("granted"), Duration::from_secs(30))
            .await
            .expect("the granted role takes a free key");
        guard.release().await.unwrap();
    });
}

/// A database of its own for one test, dropped (with its sessions) however the test ends.
struct ScratchDatabase(String);

impl ScratchDatabase {
    fn create(name: &str) -> Self {
        psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        psql(&format!("CREATE DATABASE {name}"));
        ScratchDatabase(name.to_owned())
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

/// "Mixed versions": the sequence records the storage format it was set up with, and a
/// server set up by a newer format is refused with a message that says to upgrade.
#[test]
fn a_newer_storage_format_is_refused() {
    let db = ScratchDatabase::create(&format!("lockattr_test_format_{}", std::process::id()));
    let url = pg_url_on(&db.0);
    let comment = "SELECT obj_description('lockattr_fence'::regclass, 'pg_class')";
    block_on(async {
        drop(connect(&url).await);
        assert_eq!(psql_on(&url, comment), "lockattr format 1");
        psql_on(
            &url,
            "COMMENT ON SEQUENCE lockattr_fence IS 'lockattr format 2'",
        );
        let e = lockattr::connect(&url).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LockError::Backend { .. }), "{msg}");
        assert!(
            msg.contains("lockattr_fence") && msg.contains("format 2") && msg.contains("upgrade"),
            "{msg}"
        );
        // A sequence left unmarked (as an older lockattr left it) is marked at open.
        psql_on(&url, "COMMENT ON SEQUENCE lockattr_fence IS NULL");
        drop(connect(&url).await);
        assert_eq!(psql_on(&url, comment), "lockattr format 1");
    });
}

/// `synchronous_commit = off` for the backend's role is warned about at open: a crash can
/// give a fencing block out twice. The default says nothing.
#[test]
fn asynchronous_commit_is_warned_about() {
    let (locks, logged) = session::with_logs(lockattr::connect(&with_param(
        &postgres_url(),
        "options=-c%20synchronous_commit%3Doff",
    )));
    locks.expect("connects");
    assert!(
        logged.contains("WARN") && logged.contains("synchronous_commit") && logged.contains("2^20"),
        "{logged}"
    );
    let (locks, logged) = session::with_logs(lockattr::connect(&postgres_url()));
    locks.expect("connects");
    assert!(!logged.contains("synchronous_commit"), "{logged}");
}
