//! The Redis backend under faults, against redis-server processes these tests start on
//! free ports: a restart during a hold, a server that stops answering, a listener that
//! never answers, TLS with a certificate made at test time, an ACL user, a password. The
//! tests of queues, fencing counters and the storage format marker use the shared server
//! (`lockattr_tests::redis_url()`), on keys of their own. A missing `redis-server` or
//! `openssl` fails the test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lockattr::{distributed_lock, LockError, Locks};
use lockattr_tests::{black_hole, redis_url, with_param};

mod suite;
use suite::{eventually, take};

/// A free TCP port on loopback.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "lockattr-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A redis-server child process that keeps nothing on disk.
struct Server {
    child: Option<Child>,
    args: Vec<String>,
    /// The port `redis-cli` checks readiness on, and whether it speaks TLS.
    probe: (u16, Option<String>),
}

impl Server {
    fn start(port: u16) -> Server {
        Server::with_args(vec!["--port".into(), port.to_string()], (port, None))
    }

    fn with_args(extra: Vec<String>, probe: (u16, Option<String>)) -> Server {
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra);
        let mut server = Server {
            child: None,
            args,
            probe,
        };
        server.restart();
        server
    }

    /// (Re)starts the process and waits until it answers `PING`.
    fn restart(&mut self) {
        self.kill();
        let probe = &self.probe;
        let answers_ping = || {
            let mut cli = Command::new("redis-cli");
            cli.args(["-h", "127.0.0.1", "-p", &probe.0.to_string()]);
            if let Some(ca) = &probe.1 {
                cli.args(["--tls", "--cacert", ca]);
            }
            let out = cli.arg("ping").output().expect("redis-cli runs");
            String::from_utf8_lossy(&out.stdout).trim() == "PONG"
        };
        self.child = Some(lockattr_tests::start_server(
            "redis-server",
            &self.args,
            "scripts/services.sh redis installs it",
            Duration::from_millis(50),
            answers_ping,
        ));
    }

    /// `redis-cli` with `args` against this server (without TLS); its answer.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.probe.0.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn signal(&self, signal: &str) {
        lockattr_tests::signal(self.child.as_ref().expect("running"), signal);
    }

    fn kill(&mut self) {
        lockattr_tests::end(&mut self.child);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `locks` takes `key` (free) and gives it back: the backend works.
async fn takes_and_releases(locks: &Locks, key: &str) {
    let guard = take(locks, key, Duration::from_secs(30)).await;
    guard.expect("the key is free").release().await.unwrap();
}

fn assert_backend_error<T: std::fmt::Debug>(result: Result<T, LockError>, url: &str) -> LockError {
    let e = result.expect_err("the operation must fail");
    assert!(matches!(e, LockError::Backend { .. }), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains(url),
        "the message names the backend: {shown}"
    );
    e
}

#[distributed_lock(
    key = "restart:<id>",
    ttl = "1s",
    on_conflict = "error",
    renew = true,
    backend = "restart"
)]
async fn renewed_through_restart(id: &str) -> Result<(), LockError> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(())
}

#[distributed_lock(
    key = "restart-held:<id>",
    ttl = "30s",
    on_conflict = "error",
    backend = "restart"
)]
async fn held_through_restart(id: &str) -> Result<(), LockError> {
    tokio::time::sleep(Duration::from_secs(20)).await;
    Ok(())
}

/// A restart during a hold: operations fail with clear `Backend` errors, a renewing body
/// ends with `Lost` before its ttl could have run out, and the same handle works again
/// once the server is back, with fencing tokens still growing although the server lost
/// its data; a body whose lease the restart wiped (no renewal, a long ttl) ends with `Lost`
/// as soon as the backend is connected again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_a_hold_errors_then_recovers() {
    let port = free_port();
    let mut server = Server::start(port);
    let url = format!("redis://127.0.0.1:{port}?timeout_ms=300&connect_timeout_ms=300");
    let locks = lockattr::init_named("restart", &url).await.unwrap();
    let shown = locks.backend_name().to_owned();
    let ttl = Duration::from_secs(30);

    let before = take(&locks, "held", ttl).await.unwrap();
    let body_started = Instant::now();
    let body = tokio::spawn(async {
        let ended = renewed_through_restart("body").await;
        (ended, Instant::now())
    });
    let wiped = tokio::spawn(held_through_restart("wiped"));
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.kill();
    let killed = Instant::now();
    assert_backend_error(before.extend(ttl).await, &shown);
    assert_backend_error(locks.lock("other").ttl(ttl).try_acquire().await, &shown);
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "errors took {:?}",
        killed.elapsed()
    );
    // Renewal fails: the body is cancelled with `Lost` before its 1 s lease could expire.
    let (ended, lost_at) = body.await.unwrap();
    let e = ended.unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    assert!(
        lost_at - body_started < Duration::from_secs(1),
        "Lost came {:?} after the body started",
        lost_at - body_started
    );
    let token = before.token();
    drop(before);

    server.restart();
    let restarted = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), wiped)
        .await
        .expect("the body whose lease was wiped ends")
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    assert!(e.to_string().contains("gone"), "{e}");
    assert!(
        restarted.elapsed() < Duration::from_secs(5),
        "Lost came {:?} after the restart",
        restarted.elapsed()
    );
    let after = eventually(Duration::from_secs(10), || async {
        locks
            .lock("held")
            .ttl(ttl)
            .try_acquire()
            .await
            .ok()
            .flatten()
    })
    .await
    .expect("the handle works again after the restart");
    assert!(
        after.token() > token,
        "fencing token {} after {token}",
        after.token()
    );

    // Waiting works again too: a waiter gets the key once it is released.
    let waiter = {
        let locks: Locks = locks.clone();
        tokio::spawn(async move {
            locks
                .lock("held")
                .ttl(ttl)
                .acquire(Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    after.release().await.unwrap();
    waiter.await.unwrap().unwrap().release().await.unwrap();
}

#[distributed_lock(
    key = "stall:<id>",
    ttl = "1500ms",
    on_conflict = "error",
    renew = true,
    backend = "stall"
)]
async fn renewed_through_stall(id: &str) -> Result<(), LockError> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(())
}

/// A server that stops answering (SIGSTOP): every operation is a `Backend` error within
/// the operation timeout, a renewing body ends with `Lost` before its lease could expire,
/// and all is well once the server answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_times_out() {
    let port = free_port();
    let server = Server::start(port);
    let timeout = Duration::from_millis(300);
    let url = format!("redis://127.0.0.1:{port}?timeout_ms=300");
    let locks = lockattr::init_named("stall", &url).await.unwrap();
    let shown = locks.backend_name().to_owned();
    let ttl = Duration::from_secs(30);
    let held = take(&locks, "held", ttl).await.unwrap();
    let body_started = Instant::now();
    let body = tokio::spawn(async {
        let ended = renewed_through_stall("body").await;
        (ended, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.signal("-STOP");
    let stopped = Instant::now();
    // Generous: the bound proves there is one, not how fast it is.
    let bound = timeout * 5 + Duration::from_secs(1);
    let names_the_operation_timeout = |e: &LockError, what: &str| {
        let shown = e.to_string();
        assert!(
            shown.contains("within 300 ms (the URL's `timeout_ms`)"),
            "{what}: {shown}"
        );
    };
    for _ in 0..2 {
        let started = Instant::now();
        let e = assert_backend_error(locks.lock("other").ttl(ttl).try_acquire().await, &shown);
        assert!(
            started.elapsed() < bound,
            "try_acquire took {:?}: {e}",
            started.elapsed()
        );
        names_the_operation_timeout(&e, "try_acquire");
        let started = Instant::now();
        let e = assert_backend_error(held.extend(ttl).await, &shown);
        assert!(
            started.elapsed() < bound,
            "extend took {:?}",
            started.elapsed()
        );
        names_the_operation_timeout(&e, "extend");
        let started = Instant::now();
        let waited = locks
            .lock("held")
            .ttl(ttl)
            .acquire(Duration::from_secs(5))
            .await;
        let e = assert_backend_error(waited, &shown);
        assert!(
            started.elapsed() < bound,
            "acquire took {:?}",
            started.elapsed()
        );
        names_the_operation_timeout(&e, "acquire");
    }
    let (ended, lost_at) = body.await.unwrap();
    let e = ended.unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    // The lease (1.5 s from the body's start, or later if a renewal got through) could
    // not have expired yet when the body was cancelled.
    assert!(
        lost_at - body_started < Duration::from_millis(1500),
        "Lost came {:?} after the body started",
        lost_at - body_started
    );
    assert!(lost_at > stopped);

    server.signal("-CONT");
    let again = eventually(Duration::from_secs(10), || async {
        locks
            .lock("after")
            .ttl(ttl)
            .try_acquire()
            .await
            .ok()
            .flatten()
    })
    .await;
    assert!(
        again.is_some(),
        "the handle works again once the server answers"
    );
    held.release().await.unwrap();
}

/// A server that accepts connections and never answers: `connect` fails with a `Backend`
/// error once `connect_timeout_ms` (default 1000) has run out, not before and not much
/// later, and the message names that parameter. Opening makes two connections and checks
/// the storage format: all of it is bounded by `connect_timeout_ms`, not by a multiple of
/// it or by `timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_listener_fails_connect_in_time() {
    for (param, limit_ms) in [(None, 1000), (Some("connect_timeout_ms=300"), 300)] {
        let mut url = format!("redis://127.0.0.1:{}", black_hole());
        if let Some(param) = param {
            url = with_param(&url, param);
        }
        let limit = Duration::from_millis(limit_ms);
        let started = Instant::now();
        let e = lockattr::connect(&url).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, LockError::Backend { .. }), "{url}: {e}");
        let shown = e.to_string();
        assert!(
            shown.contains(&format!(
                "within {limit_ms} ms (the URL's `connect_timeout_ms`)"
            )),
            "{url}: {shown}"
        );
        assert!(took >= limit, "{url}: gave up after {took:?}");
        assert!(
            took < limit * 5 + Duration::from_secs(1),
            "{url}: took {took:?}"
        );
    }
}

/// Options that are not numbers, unknown options and TLS options on `redis://` are
/// `InvalidUrl`, and a password never shows.
#[tokio::test]
async fn bad_urls_are_invalid_and_redacted() {
    for url in [
        "redis://u:hunter2@127.0.0.1:6379?timeout_ms=soon",
        "redis://u:hunter2@127.0.0.1:6379?timeout=5",
        "redis://u:hunter2@127.0.0.1:6379?tls_insecure=true",
        "rediss://u:hunter2@127.0.0.1:6379?tls_ca_file=/nonexistent/ca.pem",
    ] {
        let e = lockattr::connect(url).await.unwrap_err();
        assert!(matches!(e, LockError::InvalidUrl { .. }), "{url}: {e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

fn openssl(dir: &TempDir, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(&dir.0)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 and localhost, signed by it.
fn make_certificates(dir: &TempDir) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=lockattr test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        Path::new(&dir.path("san.ext")),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// `rediss://` against a server with a certificate made here: trusted through
/// `tls_ca_file`, refused without it, accepted unverified with `tls_insecure=true`.
/// Locks, releases and notified waiting all go over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_test_ca() {
    let dir = TempDir::new("tls");
    make_certificates(&dir);
    let port = free_port();
    let server = Server::with_args(
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            dir.path("server.crt"),
            "--tls-key-file".into(),
            dir.path("server.key"),
            "--tls-ca-cert-file".into(),
            dir.path("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
        (port, Some(dir.path("ca.crt"))),
    );

    let url = format!(
        "rediss://127.0.0.1:{port}?tls_ca_file={}",
        dir.path("ca.crt")
    );
    let locks = lockattr::connect(&url).await.unwrap();
    let ttl = Duration::from_secs(30);
    let held = take(&locks, "tls", ttl).await.unwrap();
    assert!(take(&locks, "tls", ttl).await.is_none());
    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            locks
                .lock("tls")
                .ttl(ttl)
                .acquire(Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let released = Instant::now();
    held.release().await.unwrap();
    let next = waiter.await.unwrap().unwrap();
    assert!(
        released.elapsed() < Duration::from_secs(1),
        "the waiter was not notified"
    );
    next.release().await.unwrap();

    // The system's roots do not know the test CA.
    let e = lockattr::connect(&format!(
        "rediss://127.0.0.1:{port}?connect_timeout_ms=2000"
    ))
    .await
    .unwrap_err();
    assert!(matches!(e, LockError::Backend { .. }), "{e}");

    let insecure = lockattr::connect(&format!("rediss://127.0.0.1:{port}?tls_insecure=true"))
        .await
        .unwrap();
    takes_and_releases(&insecure, "tls2").await;
    drop(server);
}

/// A grant whose answer comes back after the lease's ttl (here: the server stopped while
/// the request was on its way) is an error, not a guard: the server may already have let
/// another caller in, so its token is never handed out, and the lease is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_arrives_after_its_ttl_is_refused() {
    let port = free_port();
    let server = Server::start(port);
    let url = format!("redis://127.0.0.1:{port}?timeout_ms=5000");
    let (locks, other) = (
        lockattr::connect(&url).await.unwrap(),
        lockattr::connect(&url).await.unwrap(),
    );
    server.signal("-STOP");
    let late = tokio::spawn(async move {
        locks
            .lock("late")
            .ttl(Duration::from_millis(300))
            .try_acquire()
            .await
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.signal("-CONT");
    let e = late.await.unwrap().unwrap_err();
    assert!(matches!(e, LockError::Backend { .. }), "{e}");
    assert!(e.to_string().contains("after its ttl"), "{e}");
    let next = eventually(Duration::from_secs(5), || async {
        take(&other, "late", Duration::from_secs(30)).await
    })
    .await;
    assert!(next.is_some(), "the late lease was never freed");
}

/// A waiter that gives up (its future dropped) leaves the queue at once, and a waiter
/// that vanished without a word (a ticket whose lease ran out) does not hold up the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_waiters_do_not_block_the_queue() {
    let locks = lockattr::connect(&redis_url()).await.unwrap();
    let key = format!("abandon-{}-{}", std::process::id(), free_port());
    let ttl = Duration::from_secs(30);
    let held = take(&locks, &key, ttl).await.unwrap();
    let wait = |locks: Locks, key: String| {
        tokio::spawn(async move {
            locks
                .lock(key)
                .ttl(ttl)
                .acquire(Duration::from_secs(10))
                .await
        })
    };
    let first = wait(locks.clone(), key.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = wait(locks.clone(), key.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let released = Instant::now();
    held.release().await.unwrap();
    let next = second.await.unwrap().unwrap();
    assert!(
        released.elapsed() < Duration::from_millis(1000),
        "the second waiter waited {:?} behind a waiter that gave up",
        released.elapsed()
    );
    next.release().await.unwrap();

    // A ticket at the head of the queue whose lease ran out long ago: skipped, by a
    // newcomer and by a waiter alike.
    let queue = format!("{{lockattr:{key}}}:queue");
    on_shared_server::<()>(&["ZADD", &queue, "0", "vanished"]).await;
    let taken = take(&locks, &key, ttl).await;
    assert!(taken.is_some(), "a vanished waiter kept the key");
    taken.unwrap().release().await.unwrap();
    on_shared_server::<()>(&["ZADD", &queue, "0", "vanished"]).await;
    let held = take(&locks, &key, ttl).await.unwrap();
    let waiter = wait(locks.clone(), key.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.release().await.unwrap();
    let next = waiter.await.unwrap().unwrap();
    next.release().await.unwrap();
}

/// `args` run as one command on the shared server; its answer.
async fn on_shared_server<T: redis::FromRedisValue>(args: &[&str]) -> T {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Fencing tokens keep growing when the counter is lost (a restart without persistence,
/// its daily expiry), and a refused attempt never leaves a counter that cannot expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_grow_when_the_counter_is_lost() {
    let locks = lockattr::connect(&redis_url()).await.unwrap();
    let key = format!("fence-lost-{}-{}", std::process::id(), free_port());
    let counter = format!("{{lockattr:{key}}}:fence");
    let ttl = Duration::from_secs(30);
    let first = take(&locks, &key, ttl).await.unwrap();
    let mut last = first.token();
    on_shared_server::<()>(&["DEL", &counter]).await;
    assert!(take(&locks, &key, ttl).await.is_none(), "the key is held");
    let pttl: i64 = on_shared_server(&["PTTL", &counter]).await;
    assert_ne!(pttl, -1, "a refused attempt left a counter without expiry");
    first.release().await.unwrap();
    for _ in 0..3 {
        let guard = take(&locks, &key, ttl).await.unwrap();
        assert!(guard.token() > last, "{} after {last}", guard.token());
        last = guard.token();
        guard.release().await.unwrap();
        on_shared_server::<()>(&["DEL", &counter]).await;
    }
}

/// Waiting is notified, not polled: after a long hold (the waiter's poll has backed off
/// to 250–750 ms) the waiter still takes the key within a few milliseconds of the
/// release, three times in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_woken_by_the_release() {
    let (a, b) = (
        lockattr::connect(&redis_url()).await.unwrap(),
        lockattr::connect(&redis_url()).await.unwrap(),
    );
    let key = format!("notified-{}-{}", std::process::id(), free_port());
    let ttl = Duration::from_secs(30);
    for _ in 0..3 {
        let held = take(&a, &key, ttl).await.unwrap();
        let waiter = {
            let (b, key) = (b.clone(), key.clone());
            tokio::spawn(async move {
                let guard = b.lock(key).ttl(ttl).acquire(Duration::from_secs(10)).await;
                (guard, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let released = Instant::now();
        held.release().await.unwrap();
        let (guard, taken) = waiter.await.unwrap();
        let handoff = taken - released;
        assert!(
            handoff < Duration::from_millis(150),
            "the waiter took the key {handoff:?} after the release"
        );
        guard.unwrap().release().await.unwrap();
    }
}

/// An ACL user allowed only the keys and channels under the prefix and the commands the
/// backend uses (as in the module docs) can lock, wait and release; a wrong password is
/// a `Backend` error that does not show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_limited_to_the_prefix_works() {
    let port = free_port();
    let server = Server::start(port);
    let user = [
        "ACL",
        "SETUSER",
        "locker",
        "on",
        ">s3cret",
        "~{lockattr:*",
        "&{lockattr:*}:released",
    ];
    let commands = [
        "+evalsha",
        "+script|load",
        "+append",
        "+get",
        "+psubscribe",
        "+publish",
        "+exists",
        "+set",
        "+incr",
        "+time",
        "+zrange",
        "+zscore",
        "+zadd",
        "+zrem",
        "+pexpire",
        "+pttl",
        "+del",
    ];
    assert_eq!(server.cli(&[&user[..], &commands[..]].concat()), "OK");
    let url = format!("redis://locker:s3cret@127.0.0.1:{port}");
    let (a, b) = (
        lockattr::connect(&url).await.unwrap(),
        lockattr::connect(&url).await.unwrap(),
    );
    let ttl = Duration::from_secs(30);
    let held = take(&a, "acl", ttl).await.unwrap();
    held.extend(ttl).await.unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock("acl").ttl(ttl).acquire(Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.release().await.unwrap();
    let next = waiter.await.unwrap().unwrap();
    assert!(next.token() > 0);
    next.release().await.unwrap();

    assert_password_hidden(
        &format!("redis://locker:wrong-secret@127.0.0.1:{port}"),
        "wrong-secret",
    )
    .await;
}

/// What this test process's tracing subscriber wrote, at every level and from every test
/// in the process: installed once, the first time it is asked for.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other tracing subscriber in this test process");
        logs
    })
}

/// Appends to the captured logs.
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Connects to `url`, whose `password` the server refuses: a `Backend` error whose
/// message and `Debug` do not show the password, and neither does anything logged while
/// connecting (which does log, naming the backend with its password as `***`).
async fn assert_password_hidden(url: &str, password: &str) {
    let logs = captured_logs();
    let e = lockattr::connect(url).await.unwrap_err();
    assert!(matches!(e, LockError::Backend { .. }), "{e}");
    let shown = format!("{e}\n{e:?}");
    assert!(!shown.contains(password), "{shown}");
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let redacted = lockattr::url::redact(url);
    assert!(
        logged
            .lines()
            .any(|l| l.contains("connecting to Redis failed") && l.contains(&redacted)),
        "connecting logged no failure for {redacted}: {logged}"
    );
    assert!(!logged.contains(password), "{logged}");
}

/// A server with `requirepass` and a URL with a wrong password (with a %-escape, which
/// the client decodes): the password shows in no error message, `Debug` or log line,
/// neither as written nor decoded; the right one connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_never_shows() {
    let port = free_port();
    let server = Server::start(port);
    assert_eq!(
        server.cli(&["CONFIG", "SET", "requirepass", "the-r1ght-one"]),
        "OK"
    );
    let wrong = format!("redis://:n0t-the%21secret@127.0.0.1:{port}");
    assert_password_hidden(&wrong, "n0t-the%21secret").await;
    assert_password_hidden(&wrong, "n0t-the!secret").await;
    let right = lockattr::connect(&format!("redis://:the-r1ght-one@127.0.0.1:{port}"))
        .await
        .unwrap();
    takes_and_releases(&right, "password").await;
}

/// The storage format is recorded under the prefix (`{<prefix>}format`) when a backend
/// opens; a server whose marker says a newer format than this build's is refused, with a
/// message that names the marker and says to upgrade; back at this build's format, it
/// opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_storage_format_is_refused() {
    let prefix = format!("format-{}-{}:", std::process::id(), free_port());
    let url = with_param(&redis_url(), &format!("prefix={prefix}"));
    let marker = format!("{{{prefix}}}format");
    let locks = lockattr::connect(&url).await.unwrap();
    let recorded: Option<String> = on_shared_server(&["GET", &marker]).await;
    assert_eq!(recorded.as_deref(), Some("1"), "the format is recorded");
    drop(locks);

    on_shared_server::<()>(&["SET", &marker, "2"]).await;
    let e = lockattr::connect(&url).await.unwrap_err();
    on_shared_server::<()>(&["SET", &marker, "1"]).await;
    assert!(matches!(e, LockError::Backend { .. }), "{e}");
    let shown = e.to_string();
    for part in [marker.as_str(), "storage format 2", "upgrade lockattr"] {
        assert!(shown.contains(part), "no `{part}` in: {shown}");
    }
    let again = lockattr::connect(&url).await.unwrap();
    takes_and_releases(&again, "format").await;
    on_shared_server::<()>(&["DEL", &marker]).await;
}
