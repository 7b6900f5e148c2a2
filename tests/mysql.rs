//! Faults of the `mysql://` / `mariadb://` session backend (`GET_LOCK`) on a real server:
//! the checks both session backends share (`session::shared_tests!`: killed sessions,
//! stalled holders, abandoned statements, connections used), and MariaDB's own: the lock
//! names, the storage format, timeouts and passwords. An unreachable server fails these
//! tests; it never skips them.
//!
//! The server is `lockattr_tests::mysql_url()`, driven from outside through the `mariadb`
//! client, as an operator would; each backend under test runs on a database of its own on
//! that server, so that its sessions can be told apart.

mod session;
mod suite;

use std::process::Command;
use std::time::Duration;

use lockattr::LockError;
use lockattr_tests::{mysql_url, with_database};
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

/// The shared server; a backend's sessions are told apart by their database (lock names
/// are server-wide, so backends on two databases still share them).
struct MariaDb;

impl session::Server for MariaDb {
    fn elsewhere(login: &str, port: u16) -> String {
        format!("mysql://{login}@127.0.0.1:{port}/test")
    }

    fn url(name: &str) -> String {
        my_url(name)
    }

    fn session_ids(name: &str) -> String {
        mariadb(&format!(
            "SELECT id FROM information_schema.processlist WHERE db = '{name}' ORDER BY id"
        ))
    }

    fn kill_all(name: &str) -> usize {
        let ids = Self::session_ids(name);
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        for id in &ids {
            // A session may end by itself meanwhile: ignore the error for that one.
            let _ = client().args(["-e", &format!("KILL {id}")]).output();
        }
        ids.len()
    }
}

session::shared_tests!(MariaDb);

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

// ---- messages never show the password ----------------------------------------------------

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
