//! The lease table beyond the conformance suite: the table is created on first use, two
//! `table=` names do not interfere, killed sessions and a real database restart do not lose
//! the lease (nor need a new `connect`), fair waiting across processes, and a broken SQLite
//! file is a clear error.
//!
//! Needs the PostgreSQL and MariaDB of `scripts/services.sh`; a server that cannot be
//! reached fails the test. The restart tests start private servers of their own (their own
//! folder and port, from the same packages), so that restarting them disturbs nobody.

mod suite;

use std::time::Duration;

use lockattr::{LockError, Locks};
use sqlx::{Connection, Executor};
use suite::{block_on, take, unique};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY: &str = "mysql://root@127.0.0.1:3306/test";
const TTL: Duration = Duration::from_secs(30);

fn temp_sqlite(name: &str) -> std::path::PathBuf {
    suite::scratch_dir("table").join(format!("{}.db", unique(name)))
}

async fn connect(url: &str) -> Locks {
    lockattr::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A table name no earlier run used.
fn table_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("la_{tag}_{}_{nanos}", std::process::id())
}

async fn pg_table_exists(table: &str) -> bool {
    let mut c = sqlx::PgConnection::connect(PG).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = $1 OR table_name = $1 || '_waiters'",
    )
    .bind(table)
    .fetch_one(&mut c)
    .await
    .unwrap();
    n == 2
}

async fn my_table_exists(table: &str) -> bool {
    let mut c = sqlx::MySqlConnection::connect(MY).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'test' AND (table_name = ? OR table_name = CONCAT(?, '_waiters'))",
    )
    .bind(table)
    .bind(table)
    .fetch_one(&mut c)
    .await
    .unwrap();
    n == 2
}

async fn drop_pg(table: &str) {
    let mut c = sqlx::PgConnection::connect(PG).await.unwrap();
    c.execute(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table}, {table}_waiters"
    )))
    .await
    .unwrap();
}

async fn drop_my(table: &str) {
    let mut c = sqlx::MySqlConnection::connect(MY).await.unwrap();
    c.execute(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table}, {table}_waiters"
    )))
    .await
    .unwrap();
}

/// Takes and gives back one key, checking exclusion on a second handle.
async fn round_trip(a: &Locks, b: &Locks) -> u64 {
    let key = unique("rt");
    let g = take(a, &key, TTL).await.unwrap();
    assert!(take(b, &key, TTL).await.is_none());
    let token = g.token();
    g.release().await.unwrap();
    token
}

#[test]
fn tables_are_created_on_first_use() {
    block_on(async {
        let t = table_name("first");
        assert!(!pg_table_exists(&t).await);
        let url = format!("{PG}?mode=table&table={t}");
        let (a, b) = (connect(&url).await, connect(&url).await);
        assert!(pg_table_exists(&t).await, "postgres table {t} not created");
        assert_eq!(round_trip(&a, &b).await, 1);
        drop_pg(&t).await;

        let t = table_name("first");
        assert!(!my_table_exists(&t).await);
        let url = format!("{MY}?mode=table&table={t}");
        let (a, b) = (connect(&url).await, connect(&url).await);
        assert!(my_table_exists(&t).await, "mysql table {t} not created");
        assert_eq!(round_trip(&a, &b).await, 1);
        drop_my(&t).await;

        let path = temp_sqlite("first");
        assert!(!path.exists());
        let url = format!("sqlite://{}?table=first_use", path.display());
        let (a, b) = (connect(&url).await, connect(&url).await);
        assert!(path.exists());
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('first_use', 'first_use_waiters')",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(round_trip(&a, &b).await, 1);
    });
}

#[test]
fn two_tables_do_not_interfere() {
    block_on(async {
        let path = temp_sqlite("two");
        let sqlite = format!("sqlite://{}", path.display());
        let (t1, t2) = (table_name("one"), table_name("two"));
        for base in [
            format!("{PG}?mode=table&"),
            format!("{MY}?mode=table&"),
            format!("{sqlite}?"),
        ] {
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
        drop_pg(&t1).await;
        drop_pg(&t2).await;
        drop_my(&t1).await;
        drop_my(&t2).await;
    });
}

#[test]
fn bad_table_names_are_refused() {
    block_on(async {
        for url in [
            format!("{PG}?mode=table&table=x;drop"),
            format!("{MY}?mode=table&table=1x"),
            "sqlite://x.db?table=a-b".to_string(),
            format!("{PG}?mode=table&tabel=x"),
        ] {
            let e = lockattr::connect(&url).await.unwrap_err();
            assert!(matches!(e, LockError::InvalidUrl { .. }), "{url}: {e}");
        }
    });
}

/// The lease is a row, not a session: every connection of the pool killed by the server
/// (what a restart does to a client) is noticed at the next statement, which runs again on
/// a new connection; the lease held meanwhile is still held, and still exclusive.
async fn survives_killed_sessions(url: &str, kill: impl std::future::Future<Output = u64>) {
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
async fn lease_outlived(g: lockattr::LockGuard, b: &Locks, key: &str, what: &str) {
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

#[test]
fn postgres_sessions_killed_during_a_hold() {
    block_on(async {
        let app = format!("lockattr_restart_{}", std::process::id());
        let url = format!("{PG}?mode=table&application_name={app}");
        survives_killed_sessions(&url, async {
            let mut c = sqlx::PgConnection::connect(PG).await.unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k",
            )
            .bind(&app)
            .fetch_one(&mut c)
            .await
            .unwrap();
            n as u64
        })
        .await;
    });
}

#[test]
fn mysql_sessions_killed_during_a_hold() {
    block_on(async {
        // A database of its own, so that only this test's sessions are killed.
        let db = "lockattr_restart";
        let mut admin = sqlx::MySqlConnection::connect(MY).await.unwrap();
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE IF NOT EXISTS {db}"
            )))
            .await
            .unwrap();
        let url = format!("mysql://root@127.0.0.1:3306/{db}?mode=table");
        survives_killed_sessions(&url, async {
            let ids: Vec<u64> = sqlx::query_scalar(
                "SELECT CAST(id AS UNSIGNED) FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
            )
            .bind(db)
            .fetch_all(&mut admin)
            .await
            .unwrap();
            for id in &ids {
                let _ = admin
                    .execute(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
                    .await;
            }
            ids.len() as u64
        })
        .await;
    });
}

#[test]
fn sqlite_file_deleted_is_a_clear_error() {
    block_on(async {
        let path = temp_sqlite("deleted");
        let url = format!("sqlite://{}", path.display());
        let (a, b) = (connect(&url).await, connect(&url).await);
        round_trip(&a, &b).await;
        let held = take(&a, "held", TTL).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let e = b.lock("k").ttl(TTL).try_acquire().await.unwrap_err();
        assert!(matches!(e, LockError::Backend { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("gone"),
            "{msg}"
        );
        let e = held.extend(TTL).await.unwrap_err();
        assert!(matches!(e, LockError::Backend { .. }), "{e}");
        // A new handle starts a new file.
        let c = connect(&url).await;
        assert!(take(&c, "k", TTL).await.is_some());
    });
}

#[test]
fn sqlite_file_locked_by_another_writer_is_a_clear_error() {
    block_on(async {
        let path = temp_sqlite("locked");
        let url = format!("sqlite://{}?busy_timeout=200", path.display());
        let a = connect(&url).await;
        // Another connection (SQLite's file locks work the same between connections of one
        // process as between processes) takes the write lock and keeps it.
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        other.execute("BEGIN EXCLUSIVE").await.unwrap();
        let started = std::time::Instant::now();
        let e = a.lock("k").ttl(TTL).try_acquire().await.unwrap_err();
        assert!(matches!(e, LockError::Backend { .. }), "{e}");
        assert!(e.to_string().contains("locked"), "{e}");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "busy_timeout not waited"
        );
        other.execute("COMMIT").await.unwrap();
        assert!(take(&a, "k", TTL).await.is_some());
    });
}

/// `min_hold` is kept by the database: the key stays taken after the handle that released
/// it is gone, as after a process exit.
#[test]
fn min_hold_outlives_the_handle() {
    block_on(async {
        let path = temp_sqlite("min-hold");
        for url in [
            format!("sqlite://{}", path.display()),
            format!("{PG}?mode=table"),
            format!("{MY}?mode=table"),
        ] {
            let key = unique("min-hold");
            let a = connect(&url).await;
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
            let b = connect(&url).await;
            assert!(
                take(&b, &key, TTL).await.is_none(),
                "{url}: min_hold ended with the handle"
            );
        }
    });
}

/// Semantic 6 across processes (no in-process wake-ups, only the waiter table): holder
/// processes that start waiting one after another take the key in that order.
#[test]
fn waiters_in_other_processes_are_served_in_order() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let path = temp_sqlite("fifo-processes");
    let urls = [
        format!("sqlite://{}", path.display()),
        format!("{PG}?mode=table"),
        format!("{MY}?mode=table"),
    ];
    let runs: Vec<_> = urls
        .into_iter()
        .map(|url| {
            std::thread::spawn(move || {
                let key = unique("fifo-proc");
                let mut lines = Vec::new();
                let mut children = Vec::new();
                for hold_ms in ["2500", "200", "200", "200"] {
                    let mut child = Command::new(env!("CARGO_BIN_EXE_lockattr-holder"))
                        .args([url.as_str(), key.as_str(), hold_ms])
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
            })
        })
        .collect();
    for r in runs {
        r.join().unwrap();
    }
}

fn all_urls(tag: &str) -> [String; 3] {
    [
        format!("sqlite://{}", temp_sqlite(tag).display()),
        format!("{PG}?mode=table"),
        format!("{MY}?mode=table"),
    ]
}

/// A waiter that times out, or whose future is dropped, leaves the queue at once: it does
/// not hold up a `try_acquire` once the key is free.
#[test]
fn waiters_that_give_up_leave_the_queue() {
    block_on(async {
        for url in all_urls("give-up") {
            let (a, b, c) = (
                connect(&url).await,
                connect(&url).await,
                connect(&url).await,
            );
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
    });
}

/// A waiter process killed while queued holds up the queue only until its place lapses
/// (3 s), not forever.
#[test]
fn killed_waiter_process_lapses() {
    use std::process::{Command, Stdio};
    block_on(async {
        for url in all_urls("killed-waiter") {
            let a = connect(&url).await;
            let id = unique("killed-waiter");
            let key = format!("proc:{id}");
            let held = take(&a, &key, TTL).await.unwrap();
            let mut waiter = Command::new(env!("CARGO_BIN_EXE_lockattr-holder"))
                .args([url.as_str(), id.as_str(), "100"])
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
    });
}

/// A lease is a row: 1,000 held locks keep no connection busy, and one handle never opens
/// more than its pool's 8 connections.
#[test]
fn a_thousand_held_locks_use_few_connections() {
    block_on(async {
        let app = format!("lockattr_many_{}", std::process::id());
        let locks = connect(&format!("{PG}?mode=table&application_name={app}")).await;
        let prefix = unique("many");
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (locks, prefix) = (locks.clone(), prefix.clone());
            tasks.push(tokio::spawn(async move {
                let mut guards = Vec::new();
                for i in 0..125 {
                    let key = format!("{prefix}:{t}:{i}");
                    guards.push(take(&locks, key, TTL).await.unwrap());
                }
                guards
            }));
        }
        let mut guards = Vec::new();
        for t in tasks {
            guards.extend(t.await.unwrap());
        }
        assert_eq!(guards.len(), 1000);
        let mut c = sqlx::PgConnection::connect(PG).await.unwrap();
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app)
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert!((1..=8).contains(&n), "{n} connections for 1,000 held locks");
        for g in guards {
            g.release().await.unwrap();
        }
    });
}

/// A database that cannot be reached is a `Backend` error at connect, naming the URL.
#[test]
fn unreachable_database_is_a_backend_error() {
    block_on(async {
        for url in [
            "postgres://postgres:hunter2@127.0.0.1:1/test?mode=table",
            "mysql://root:hunter2@127.0.0.1:1/test?mode=table",
        ] {
            let e = lockattr::connect(url).await.unwrap_err();
            assert!(matches!(e, LockError::Backend { .. }), "{url}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains("127.0.0.1:1") && !msg.contains("hunter2"),
                "{msg}"
            );
        }
    });
}

/// Runs `program args` as the `postgres` user when this process is root (the PostgreSQL
/// server refuses to run as root), else as this user.
fn as_postgres(program: &str, args: &[&str]) -> std::process::Output {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| d.filter_map(Result::ok).map(|e| e.path()).max())
        .map(|v| v.join("bin").join(program))
        .unwrap_or_else(|| program.into());
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A private PostgreSQL server (its own folder and port), restarted for real during a
/// hold: the lease survives, and the same handle goes on without a new `connect`.
#[test]
fn postgres_restarted_during_a_hold() {
    let dir = suite::scratch_dir("pg");
    let _ = std::process::Command::new("chown")
        .args(["postgres:postgres", &dir.display().to_string()])
        .status();
    let data = dir.join("data");
    let data = data.display().to_string();
    let port = 20000 + std::process::id() % 20000;
    as_postgres("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"]);
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        dir.display()
    );
    let log = dir.join("log").display().to_string();
    as_postgres(
        "pg_ctl",
        &["-D", &data, "-o", &opts, "-l", &log, "-w", "start"],
    );
    struct Stop(String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(|| {
                as_postgres("pg_ctl", &["-D", &self.0, "-m", "immediate", "stop"])
            });
        }
    }
    let stop = Stop(data.clone());
    block_on(async {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?mode=table");
        let (a, b) = (connect(&url).await, connect(&url).await);
        round_trip(&a, &b).await;
        let key = unique("restart");
        let g = take(&a, &key, TTL).await.unwrap();
        as_postgres(
            "pg_ctl",
            &[
                "-D", &data, "-o", &opts, "-l", &log, "-m", "fast", "-w", "restart",
            ],
        );
        lease_outlived(g, &b, &key, "the restart").await;
    });
    drop(stop);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A private MariaDB server (its own folder and port).
struct PrivateMariaDb {
    dir: std::path::PathBuf,
    port: u32,
    child: Option<std::process::Child>,
}

impl PrivateMariaDb {
    fn install() -> Self {
        let dir = suite::scratch_dir("my");
        let out = std::process::Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .expect("mariadb-install-db runs");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = 20000 + (std::process::id() + 7) % 20000;
        PrivateMariaDb {
            dir,
            port,
            child: None,
        }
    }

    async fn start(&mut self) {
        let server = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("mariadbd");
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = std::process::Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let admin = format!("mysql://root@127.0.0.1:{}/mysql", self.port);
        let up = suite::eventually(Duration::from_secs(30), || async {
            sqlx::MySqlConnection::connect(&admin).await.ok()
        })
        .await;
        let mut c = up.expect("the private MariaDB answers");
        c.execute("CREATE DATABASE IF NOT EXISTS test")
            .await
            .unwrap();
    }

    /// A clean shutdown (SIGTERM), as a service manager's restart does.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private MariaDB, restarted for real during a hold: the lease survives, and the same
/// handle goes on without a new `connect`.
#[test]
fn mysql_restarted_during_a_hold() {
    block_on(async {
        let mut server = PrivateMariaDb::install();
        server.start().await;
        let url = format!("mysql://root@127.0.0.1:{}/test?mode=table", server.port);
        let (a, b) = (connect(&url).await, connect(&url).await);
        round_trip(&a, &b).await;
        let key = unique("restart");
        let g = take(&a, &key, TTL).await.unwrap();
        server.stop();
        server.start().await;
        lease_outlived(g, &b, &key, "the restart").await;
    });
}
