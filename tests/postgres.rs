//! Faults of the `postgres://` session backend (advisory locks) on a real server: the
//! checks both session backends share (`session::shared_tests!`: killed sessions, stalled
//! holders, abandoned statements, connections used), and PostgreSQL's own: the key
//! mapping, fencing blocks, the checks `open` makes, timeouts and passwords. An
//! unreachable server fails these tests; it never skips them.
//!
//! The server is `lockattr_tests::postgres_url()`, driven from outside through `psql`, as
//! an operator would; each backend under test is told apart from the others by its
//! `application_name`.

mod session;
mod suite;

use std::process::Command;
use std::time::Duration;

use lockattr::{LockError, Locks};
use lockattr_tests::{postgres_url, with_database, with_param, PrivatePostgres};
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

/// The shared server; a backend's sessions are told apart by their `application_name`.
struct Pg;

impl session::Server for Pg {
    fn elsewhere(login: &str, port: u16) -> String {
        format!("postgres://{login}@127.0.0.1:{port}/test")
    }

    fn url(name: &str) -> String {
        pg_url(name)
    }

    fn session_ids(name: &str) -> String {
        psql(&format!(
            "SELECT pid FROM pg_stat_activity WHERE application_name = '{name}' ORDER BY pid"
        ))
    }

    fn kill_all(name: &str) -> usize {
        psql(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{name}') t"
        ))
        .parse()
        .unwrap()
    }
}

session::shared_tests!(Pg);

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

// ---- messages never show the password ----------------------------------------------------

/// A `mode=table` URL's error never prints its `password=` either.
#[test]
fn table_mode_errors_never_print_the_password() {
    block_on(async {
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
    let (locks, logged) = lockattr_tests::with_logs(lockattr::connect(&with_param(
        &postgres_url(),
        "options=-c%20synchronous_commit%3Doff",
    )));
    locks.expect("connects");
    assert!(
        logged.contains("WARN") && logged.contains("synchronous_commit") && logged.contains("2^20"),
        "{logged}"
    );
    let (locks, logged) = lockattr_tests::with_logs(lockattr::connect(&postgres_url()));
    locks.expect("connects");
    assert!(!logged.contains("synchronous_commit"), "{logged}");
}
