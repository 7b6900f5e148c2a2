//! The Memcached backend under faults, against memcached processes these tests start on
//! free ports: eviction of a held lock under memory pressure and a restart during a hold,
//! everything flushed between two takes, a server that stops answering, a listener that
//! never answers, a server without CAS, a newer storage format. Plus the keys it sends
//! (no whitespace or control bytes, 250 bytes at most), the ttls it refuses, a server that
//! cannot list its keys for the operator's `held`, and its line of waiters across
//! processes (no in-process wake-ups there). A missing
//! `memcached` binary fails the test (`scripts/services.sh memcached` installs it).

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use lockattr::{distributed_lock, LockError, Locks};
use lockattr_tests::{black_hole, memcached_url, with_param};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod suite;
use suite::{eventually, take, unique};

// The waiting checks the lease tables run too, each taking a URL.
#[path = "table_support/mod.rs"]
mod table_support;

/// A free TCP port on loopback.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A memcached child process on a port of its own.
struct Server {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    /// A server with `megabytes` of memory (at least 1) and `extra` arguments.
    fn start(megabytes: u32, extra: &[&str]) -> Server {
        let port = free_port();
        let mut args: Vec<String> = ["-l", "127.0.0.1", "-U", "0", "-I", "512k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([
            "-p".into(),
            port.to_string(),
            "-m".into(),
            megabytes.to_string(),
        ]);
        // As root, memcached wants a user to run as.
        let uid = Command::new("id").arg("-u").output().map(|o| o.stdout);
        if uid.is_ok_and(|out| out == b"0\n") {
            args.extend(["-u".into(), "memcache".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = Server {
            port,
            args,
            child: None,
        };
        server.restart();
        server
    }

    fn url(&self, params: &str) -> String {
        format!("memcached://127.0.0.1:{}?{params}", self.port)
    }

    /// (Re)starts the process and waits until it answers `version`.
    fn restart(&mut self) {
        self.kill();
        let port = self.port;
        let answers_version = || {
            use std::io::{Read, Write};
            let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let mut buf = [0u8; 7];
            conn.write_all(b"version\r\n").is_ok()
                && conn.read_exact(&mut buf).is_ok()
                && &buf == b"VERSION"
        };
        self.child = Some(lockattr_tests::start_server(
            "memcached",
            &self.args,
            "scripts/services.sh memcached installs it",
            Duration::from_millis(20),
            answers_version,
        ));
    }

    fn signal(&self, signal: &str) {
        lockattr_tests::signal(self.child.as_ref().expect("running"), signal);
    }

    fn kill(&mut self) {
        lockattr_tests::end(&mut self.child);
    }

    /// Sends `commands` (each ending in `\r\n`) and returns the answers up to the `mn`
    /// sent after them.
    async fn raw(&self, commands: &[u8]) -> String {
        raw(self.port, commands).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `commands` sent to the memcached on `port`; its answers before the closing `MN`.
async fn raw(port: u16, commands: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(commands).await.unwrap();
    conn.write_all(b"mn\r\n").await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"MN\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "memcached closed the connection");
        answer.extend_from_slice(&buf[..n]);
    }
    answer.truncate(answer.len() - 4);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The port of a `memcached://127.0.0.1:PORT…` URL.
fn port_of(url: &str) -> u16 {
    let rest = url.split("://").nth(1).unwrap();
    let authority = rest.split(['?', '/']).next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

#[distributed_lock(
    key = "renewed:<id>",
    ttl = "3s",
    on_conflict = "error",
    renew = true,
    backend = "mc-private"
)]
async fn renewed(id: &str) -> Result<(), LockError> {
    tokio::time::sleep(Duration::from_secs(20)).await;
    Ok(())
}

/// Waits until `id`'s renewing body holds its lock on `server`.
async fn held_by_body(server: &Server, id: &str) {
    let lock = format!("lockattr:renewed:{id}|l");
    let present = eventually(Duration::from_secs(5), || async {
        let answer = server.raw(format!("mg {lock} v\r\n").as_bytes()).await;
        answer.starts_with("VA").then_some(())
    })
    .await;
    assert!(present.is_some(), "the body took its lock");
}

/// The body ends with `Lost` at its next renewal (every second) after `since`.
async fn ends_lost(body: tokio::task::JoinHandle<Result<(), LockError>>, since: Instant) {
    let e = tokio::time::timeout(Duration::from_secs(10), body)
        .await
        .expect("the body ends")
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "Lost came {:?} after the lock was gone",
        since.elapsed()
    );
}

/// A cache can lose a lock. A server out of memory (1 MB) evicts a held lock, and a
/// restart forgets one: each time the renewing holder sees `Lost` at its next renewal,
/// and the next holder of a key gets a greater fencing token (after the restart too,
/// although the server starts its CAS numbers over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_and_restart_lose_held_locks_and_fences_keep_growing() {
    let mut server = Server::start(1, &[]);
    let url = server.url("timeout_ms=300&connect_timeout_ms=300");
    let locks = lockattr::init_named("mc-private", &url).await.unwrap();
    let ttl = Duration::from_secs(30);
    let mut tokens = vec![take(&locks, "token", ttl).await.unwrap().token()];

    let body = tokio::spawn(renewed("evicted"));
    held_by_body(&server, "evicted").await;
    // Fill the server with items of the lock's size (in its slab class) until the lock
    // is evicted; each batch is larger than the server's memory.
    let value = "v".repeat(32);
    let mut evicted = false;
    for batch in 0..20 {
        let mut fill = String::new();
        for i in 0..20_000 {
            fill.push_str(&format!("ms fill:{batch:03}:{i:012} 32 q\r\n{value}\r\n"));
        }
        server.raw(fill.as_bytes()).await;
        let answer = server.raw(b"mg lockattr:renewed:evicted|l v\r\n").await;
        if answer.starts_with("EN") {
            evicted = true;
            break;
        }
    }
    assert!(evicted, "the lock was never evicted");
    ends_lost(body, Instant::now()).await;
    tokens.push(take(&locks, "token", ttl).await.unwrap().token());

    let body = tokio::spawn(renewed("restarted"));
    held_by_body(&server, "restarted").await;
    // The tokens' argument wants a server that ran for a second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.restart();
    ends_lost(body, Instant::now()).await;
    let after = eventually(Duration::from_secs(5), || async {
        take(&locks, "token", ttl).await
    })
    .await
    .expect("the handle works again after the restart");
    tokens.push(after.token());
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
}

/// Fencing tokens need no item that could be lost: with the lock's items deleted and
/// then the whole server flushed between takes, each token is still greater.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_grow_when_every_item_is_lost_between_takes() {
    let server = Server::start(8, &[]);
    let locks = lockattr::connect(&server.url("")).await.unwrap();
    let key = "fence";
    let ttl = Duration::from_secs(30);
    let mut tokens = Vec::new();
    for round in 0..4 {
        let guard = take(&locks, key, ttl).await.unwrap();
        tokens.push(guard.token());
        guard.release().await.unwrap();
        let wipe: &[u8] = if round % 2 == 0 {
            b"md lockattr:fence|l q\r\nmd lockattr:fence|t q\r\nmd lockattr:fence|w q\r\n"
        } else {
            b"flush_all\r\n"
        };
        server.raw(wipe).await;
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// A server that stops answering (SIGSTOP): operations are `Backend` errors naming
/// `timeout_ms` within it; once it answers again, all is well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_times_out() {
    let server = Server::start(8, &[]);
    let locks = lockattr::connect(&server.url("timeout_ms=300"))
        .await
        .unwrap();
    let ttl = Duration::from_secs(30);
    let held = take(&locks, "stall", ttl).await.unwrap();
    server.signal("-STOP");
    let started = Instant::now();
    let e = locks
        .lock("other")
        .ttl(ttl)
        .try_acquire()
        .await
        .unwrap_err();
    let e2 = held.extend(ttl).await.unwrap_err();
    let took = started.elapsed();
    server.signal("-CONT");
    for e in [e, e2] {
        assert!(matches!(e, LockError::Backend { .. }), "{e}");
        assert!(e.to_string().contains("`timeout_ms`"), "{e}");
    }
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let again = eventually(Duration::from_secs(5), || async {
        locks
            .lock("other")
            .ttl(ttl)
            .try_acquire()
            .await
            .ok()
            .flatten()
    })
    .await;
    assert!(again.is_some(), "works again once the server answers");
}

/// A listener that never answers fails `connect` within `connect_timeout_ms`.
#[tokio::test]
async fn a_silent_listener_fails_connect_in_time() {
    let url = format!(
        "memcached://127.0.0.1:{}?connect_timeout_ms=300",
        black_hole()
    );
    let started = Instant::now();
    let e = lockattr::connect(&url).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, LockError::Backend { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("within 300 ms (the URL's `connect_timeout_ms`)"),
        "{e}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A server started without CAS (`-C`) cannot check leases: refused at `connect`.
#[tokio::test]
async fn a_server_without_cas_is_refused() {
    let server = Server::start(8, &["-C"]);
    let e = lockattr::connect(&server.url("")).await.unwrap_err();
    assert!(e.to_string().contains("CAS"), "{e}");
}

/// A server started without the LRU crawler (`-o no_lru_crawler`) or with dumps forbidden
/// (`-X`) cannot list its keys: `held` is `Unsupported` (the CLI's exit code 4), naming
/// the server's answer; `inspect` and a forced release still work there.
#[tokio::test]
async fn a_server_that_cannot_dump_its_keys_cannot_list() {
    for (flags, answer) in [
        (&["-o", "no_lru_crawler"][..], "lru crawler disabled"),
        (&["-X"][..], "metadump not allowed"),
    ] {
        let server = Server::start(8, flags);
        let locks = lockattr::connect(&server.url("")).await.unwrap();
        assert!(locks.can_list());
        let guard = take(&locks, "stuck", Duration::from_secs(30))
            .await
            .unwrap();
        match locks.held().await {
            Err(LockError::Unsupported { what, .. }) => {
                assert!(what.contains(answer), "{flags:?}: {what}")
            }
            other => panic!("{flags:?}: {other:?}"),
        }
        assert!(locks.inspect("stuck").await.unwrap().is_some());
        assert!(locks.force_release("stuck").await.unwrap());
        assert!(locks.inspect("stuck").await.unwrap().is_none());
        let next = take(&locks, "stuck", Duration::from_secs(30))
            .await
            .unwrap();
        assert!(next.token() > guard.token());
        assert!(matches!(
            guard.extend(Duration::from_secs(30)).await,
            Err(LockError::Lost { .. })
        ));
    }
}

/// A server whose format marker names a newer format is refused with a message that says
/// to upgrade.
#[tokio::test]
async fn a_newer_storage_format_is_refused() {
    let server = Server::start(8, &[]);
    drop(lockattr::connect(&server.url("")).await.unwrap());
    assert!(server
        .raw(b"mg lockattr:|format v\r\n")
        .await
        .contains("\r\n1\r\n"));
    server.raw(b"ms lockattr:|format 1 T0\r\n2\r\n").await;
    let e = lockattr::connect(&server.url("")).await.unwrap_err();
    let shown = e.to_string();
    for part in ["lockattr:|format", "storage format 2", "upgrade lockattr"] {
        assert!(shown.contains(part), "no `{part}` in: {shown}");
    }
}

#[distributed_lock(
    key = "escape:<value>",
    ttl = "30s",
    on_conflict = "skip",
    backend = "mc-keys"
)]
async fn locked_on(value: &str) -> Option<(String, String)> {
    let key = lockattr::current()?.key().to_owned();
    let port = port_of(&memcached_url());
    let answer = raw(port, format!("mg lockattr:{key}|l v\r\n").as_bytes()).await;
    Some((key, answer))
}

/// Keys never carry whitespace or control bytes to the server: the attribute escapes
/// them, and a hand-built key that has one is an error, never sent. Keys over the limit
/// are hashed so that every name stays within Memcached's 250 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_safe_and_short_enough() {
    let url = memcached_url();
    lockattr::init_named("mc-keys", &url).await.unwrap();
    let value = format!("a b\r\nflush_all\t\u{7f}{}", unique(""));
    let (key, answer) = locked_on(&value).await.expect("ran under the lock");
    assert!(key.bytes().all(|b| b > b' ' && b != 0x7f), "key `{key:?}`");
    assert!(
        answer.starts_with("VA 32"),
        "the lock is stored under it: {answer}"
    );
    let locks: Locks = lockattr::connect(&url).await.unwrap();
    let ttl = Duration::from_secs(30);
    let e = locks
        .lock("a b\r\nmd x")
        .ttl(ttl)
        .try_acquire()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::Backend { .. }), "{e}");
    assert!(e.to_string().contains("spaces or control bytes"), "{e}");

    let long = unique("long").repeat(30);
    let guard = take(&locks, &long, ttl).await.unwrap();
    let stored = guard.stored_key().to_owned();
    assert!(stored.len() + 2 <= 250, "{} bytes", stored.len());
    let port = port_of(&url);
    let answer = raw(port, format!("mg {stored}|l v\r\n").as_bytes()).await;
    assert!(answer.starts_with("VA 32"), "{answer}");
    assert!(take(&locks, &long, ttl).await.is_none());
    guard.release().await.unwrap();
}

/// Memcached counts whole seconds: other ttls (and extensions) are `InvalidOptions`
/// naming it; a lease of n seconds is stored with `T<n + 1>`.
#[tokio::test]
async fn ttls_are_whole_seconds_stored_with_one_more() {
    let url = memcached_url();
    let locks = lockattr::connect(&url).await.unwrap();
    let key = unique("ttl");
    for ttl in [Duration::from_millis(1500), Duration::from_millis(300)] {
        let e = locks.lock(&key).ttl(ttl).try_acquire().await.unwrap_err();
        assert!(matches!(e, LockError::InvalidOptions { .. }), "{e}");
        assert!(e.to_string().contains("whole seconds"), "{e}");
    }
    let e = locks
        .lock(&key)
        .ttl(Duration::from_secs(40 * 24 * 3600))
        .try_acquire()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("30 days"), "{e}");
    let guard = take(&locks, &key, Duration::from_secs(5)).await.unwrap();
    let answer = raw(
        port_of(&url),
        format!("mg {}|l t\r\n", guard.stored_key()).as_bytes(),
    )
    .await;
    let left: u64 = answer
        .trim()
        .strip_prefix("HD t")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"));
    assert!((5..=6).contains(&left), "{answer}");
    let e = guard.extend(Duration::from_millis(2500)).await.unwrap_err();
    assert!(matches!(e, LockError::InvalidOptions { .. }), "{e}");
    guard.release().await.unwrap();
}

/// 64 tasks on one handle share its pool of connections (at most 16) without errors,
/// and never hold one key twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_the_pool() {
    let locks = lockattr::connect(&with_param(&memcached_url(), "timeout_ms=5000"))
        .await
        .unwrap();
    let key = unique("pool");
    let inside = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (locks, key, inside) = (locks.clone(), key.clone(), inside.clone());
        tasks.push(tokio::spawn(async move {
            let own = take(&locks, format!("{key}:{i}"), Duration::from_secs(30)).await;
            own.expect("a key of its own").release().await.unwrap();
            let guard = locks
                .lock(&key)
                .ttl(Duration::from_secs(30))
                .acquire(Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
            inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            guard.release().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Semantic 6 across processes: holder processes that start waiting one after another
/// take the key in that order, through the line on the server alone.
#[test]
fn waiters_in_other_processes_are_served_in_order() {
    table_support::waiters_in_other_processes_are_served_in_order(&memcached_url());
}

/// A waiter that times out or is dropped passes its turn on at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_that_give_up_leave_the_line() {
    table_support::waiters_that_give_up_leave_the_queue(&memcached_url()).await;
}

/// A waiter process killed while it claims the next turn holds the key up only until its
/// claim lapses (about 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_waiter_process_lapses() {
    table_support::killed_waiter_process_lapses(&memcached_url()).await;
}
