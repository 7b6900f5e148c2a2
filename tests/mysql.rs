//! Faults of the `mysql://` / `mariadb://` session backend (`GET_LOCK`) on a real server:
//! a session killed under a running body, every session of a backend killed between two
//! acquisitions, a holder whose process stalls, the server-side lock names, and how many
//! connections 1,000 held locks use. An unreachable server fails these tests; it never
//! skips them.
//!
//! The server is `lockattr_tests::mysql_url()`, driven from outside through the `mariadb`
//! client, as an operator would; each backend under test runs on a database of its own on
//! that server, so that its sessions can be told apart.

mod session;
mod suite;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lockattr::{distributed_lock, LockError};
use lockattr_tests::{black_hole, mysql_url, with_database, with_param};
use session::connect;
use suite::{block_on, take, unique};

/// The parts of `mysql_url()` the `mariadb` client needs.
struct Server {
    user: String,
    password: Option<String>,
    host: String,
    port: String,
    database: String,
}

fn server() -> Server {
    let url = mysql_url();
    let (_, rest) = url.split_once("://").expect("a mysql:// URL");
    let rest = rest.split('?').next().unwrap();
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("root", authority));
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p.to_owned())),
        None => (userinfo, None),
    };
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    Server {
        user: user.to_owned(),
        password,
        host: host.to_owned(),
        port: port.to_owned(),
        database: database.to_owned(),
    }
}

/// The `mariadb` client with the test server's address and login.
fn client() -> Command {
    let s = server();
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "--protocol=tcp",
        "-h",
        &s.host,
        "-P",
        &s.port,
        "-u",
        &s.user,
    ]);
    if let Some(password) = &s.password {
        cmd.arg(format!("--password={password}"));
    }
    cmd
}

/// Runs statements with the `mariadb` client on the test database and returns its output.
fn mariadb(sql: &str) -> String {
    let out = client()
        .args(["-N", "-B", &server().database, "-e", sql])
        .output()
        .expect("mariadb runs");
    assert!(
        out.status.success(),
        "mariadb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A URL of the test server on a database of its own (created here), so that the
/// backend's sessions can be found.
fn my_url(db: &str) -> String {
    mariadb(&format!("CREATE DATABASE IF NOT EXISTS {db}"));
    with_database(&mysql_url(), db)
}

fn my_sessions(db: &str) -> usize {
    mariadb(&format!(
        "SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{db}'"
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
        let _ = client().args(["-e", &format!("KILL {id}")]).output();
    }
    ids.len()
}

// ---- a killed session gives Lost to the body ----------------------------------------------

static BODY_FINISHED: AtomicBool = AtomicBool::new(false);

#[distributed_lock(
    key = "killed:<id>",
    ttl = "30s",
    on_conflict = "error",
    backend = "my-kill"
)]
async fn long_body(id: &str, started: tokio::sync::oneshot::Sender<()>) -> Result<(), LockError> {
    let _ = started.send(());
    tokio::time::sleep(Duration::from_secs(20)).await;
    BODY_FINISHED.store(true, Ordering::SeqCst);
    Ok(())
}

#[test]
fn killed_session_gives_lost() {
    block_on(async {
        let db = "lockattr_test_kill";
        lockattr::set_named("my-kill", connect(&my_url(db)).await).unwrap();
        session::killed_session_is_lost(
            &my_url("lockattr_test_kill_other"),
            |id, tx| async move { long_body(&id, tx).await },
            || my_kill_all(db),
            &BODY_FINISHED,
        )
        .await;
    });
}

#[test]
fn recovers_after_losing_every_session() {
    block_on(async {
        let db = "lockattr_test_recover";
        session::recovers_after_losing_every_session(&my_url(db), || my_kill_all(db)).await;
    });
}

#[test]
fn waits_and_tries_of_one_backend_exclude() {
    block_on(session::waits_and_tries_of_one_backend_exclude(&my_url(
        "lockattr_test_wait_try",
    )));
}

/// MariaDB shows the stored key itself as the lock name.
#[test]
fn lock_names_are_the_stored_keys() {
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

#[test]
fn thousand_locks_use_at_most_eight_connections() {
    block_on(async {
        let db = "lockattr_test_many";
        session::thousand_locks_use_few_connections(&my_url(db), || my_sessions(db)).await;
    });
}

/// Lock names are server-wide: the holder and the waiters share them from two databases.
#[test]
fn waiters_beyond_max_waiting_wait_in_the_process() {
    let db = "lockattr_test_max_waiting";
    block_on(session::waiters_beyond_max_waiting_wait_in_the_process(
        &my_url("lockattr_test_max_waiting_holder"),
        &with_param(&my_url(db), "max_waiting=2"),
        || my_sessions(db),
    ));
}

#[test]
fn abandoned_statements_are_repaired() {
    block_on(session::abandoned_statements_are_repaired(&my_url(
        "lockattr_test_abandon",
    )));
}

#[test]
fn stalled_holder_loses_the_key_to_the_server() {
    block_on(session::stalled_holder_loses_the_key_to_the_server(
        &my_url("lockattr_test_stall"),
    ));
}

#[test]
fn idle_pooled_sessions_stay_open() {
    let db = "lockattr_test_idle";
    block_on(session::idle_pooled_sessions_stay_open(&my_url(db), || {
        mariadb(&format!(
            "SELECT id FROM information_schema.processlist WHERE db = '{db}' ORDER BY id"
        ))
    }));
}

// ---- a server that never answers ----------------------------------------------------------

#[test]
fn connect_to_a_black_hole_times_out() {
    let port = black_hole();
    block_on(session::connect_to_a_black_hole_times_out(&format!(
        "mysql://root@127.0.0.1:{port}/test?connect_timeout_ms=300"
    )));
}

// ---- messages never show the password ----------------------------------------------------

/// An unreachable server is an error at `connect` (never a skipped test or a silent
/// handle), and its message names the URL without the password.
#[test]
fn unreachable_server_fails_without_printing_the_password() {
    block_on(async {
        let e = lockattr::connect("mysql://root:hunter2@127.0.0.1:1/test")
            .await
            .unwrap_err();
        let msg = format!("{e} / {e:?}");
        assert!(matches!(e, LockError::Backend { .. }), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains(":***@127.0.0.1:1"), "{msg}");
    });
}

/// The server refuses a wrong password (the test login has none): the error and the logs
/// never show it.
#[test]
fn refused_password_is_never_shown() {
    let s = server();
    assert!(
        s.password.is_none(),
        "the test login has a password already"
    );
    let wrong = "lockattr-wrong-Pw";
    let url = format!(
        "mysql://{}:{wrong}@{}:{}/{}",
        s.user, s.host, s.port, s.database
    );
    session::refused_password_is_never_shown(&url, wrong, "Access denied");
}

/// "Mixed versions": the sequence records the storage format it was set up with, and a
/// server set up by a newer format is refused with a message that says to upgrade.
#[test]
fn a_newer_storage_format_is_refused() {
    let db = format!("lockattr_test_format_{}", std::process::id());
    mariadb(&format!("DROP DATABASE IF EXISTS {db}"));
    let url = my_url(&db);
    let comment = format!(
        "SELECT table_comment FROM information_schema.tables \
         WHERE table_schema = '{db}' AND table_name = 'lockattr_fence'"
    );
    let checked = std::panic::catch_unwind(|| {
        block_on(async {
            drop(connect(&url).await);
            assert_eq!(mariadb(&comment), "lockattr format 1");
            mariadb(&format!(
                "ALTER TABLE {db}.lockattr_fence COMMENT = 'lockattr format 2'"
            ));
            let e = lockattr::connect(&url).await.unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, LockError::Backend { .. }), "{msg}");
            assert!(
                msg.contains("lockattr_fence")
                    && msg.contains("format 2")
                    && msg.contains("upgrade"),
                "{msg}"
            );
            // A sequence left unmarked (as an older lockattr left it) is marked at open.
            mariadb(&format!("ALTER TABLE {db}.lockattr_fence COMMENT = ''"));
            drop(connect(&url).await);
            assert_eq!(mariadb(&comment), "lockattr format 1");
        })
    });
    mariadb(&format!("DROP DATABASE IF EXISTS {db}"));
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }
}
