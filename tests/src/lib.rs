//! Integration tests of lockattr live in this package's test targets; this library holds
//! what they share: the addresses of the test servers.
//!
//! Each server's URL comes from an environment variable, with the local default that
//! `scripts/services.sh` starts (see `tests/README.md`).

/// The variable that overrides [`redis_url`].
pub const REDIS_URL_ENV: &str = "LOCKATTR_TEST_REDIS_URL";
/// The variable that overrides [`postgres_url`].
pub const POSTGRES_URL_ENV: &str = "LOCKATTR_TEST_POSTGRES_URL";
/// The variable that overrides [`mysql_url`].
pub const MYSQL_URL_ENV: &str = "LOCKATTR_TEST_MYSQL_URL";
/// The variable that overrides [`memcached_url`].
pub const MEMCACHED_URL_ENV: &str = "LOCKATTR_TEST_MEMCACHED_URL";

mod private_postgres;

pub use private_postgres::{as_postgres, PrivatePostgres};

#[cfg(feature = "mysql")]
mod private_mariadb;
#[cfg(feature = "mysql")]
pub use private_mariadb::PrivateMariaDb;

fn from_env(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The shared Redis server: `$LOCKATTR_TEST_REDIS_URL`, else `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    from_env(REDIS_URL_ENV, "redis://127.0.0.1:6379")
}

/// The shared PostgreSQL database: `$LOCKATTR_TEST_POSTGRES_URL`, else
/// `postgres://postgres@127.0.0.1:5432/test`. No query parameters: callers append theirs.
pub fn postgres_url() -> String {
    from_env(POSTGRES_URL_ENV, "postgres://postgres@127.0.0.1:5432/test")
}

/// The shared MySQL / MariaDB database: `$LOCKATTR_TEST_MYSQL_URL`, else
/// `mysql://root@127.0.0.1:3306/test`. No query parameters: callers append theirs.
pub fn mysql_url() -> String {
    from_env(MYSQL_URL_ENV, "mysql://root@127.0.0.1:3306/test")
}

/// The shared Memcached server: `$LOCKATTR_TEST_MEMCACHED_URL`, else
/// `memcached://127.0.0.1:11211`.
pub fn memcached_url() -> String {
    from_env(MEMCACHED_URL_ENV, "memcached://127.0.0.1:11211")
}

/// Starts the server `program` with `args` (its output discarded), and waits up to 10 s,
/// polling every `poll`, until `ready` says it answers. `hint` says how to install it.
pub fn start_server(
    program: &str,
    args: &[String],
    hint: &str,
    poll: std::time::Duration,
    mut ready: impl FnMut() -> bool,
) -> std::process::Child {
    let child = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed ({hint}): {e}"));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ready() {
        assert!(std::time::Instant::now() < end, "{program} did not come up");
        std::thread::sleep(poll);
    }
    child
}

/// Sends `signal` (`-STOP`, `-CONT`, …) to a server process the test started.
pub fn signal(child: &std::process::Child, signal: &str) {
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} failed");
}

/// Ends a server process the test started, if it runs (resumed first, should it be
/// stopped), and reaps it.
pub fn end(child: &mut Option<std::process::Child>) {
    if let Some(mut child) = child.take() {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &child.id().to_string()])
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `url` with one more query parameter (`?` or `&` as needed).
pub fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// `url` (`scheme://[login@]host[:port]/database[?query]`) with another database, the
/// query kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = head.split_once("://").unwrap_or(("", head));
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers: a server that
/// hangs. Connections stay open (unanswered) until the process ends. Returns its port.
pub fn black_hole() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a spare loopback port");
    let port = listener.local_addr().expect("a bound address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` whose answers can be held back: while
/// stalled, what the server sends waits in the proxy (statements still reach the server
/// and run there), as on a network that delays one direction. For timeout tests.
pub struct StallingProxy {
    /// The proxy's port: connect here instead of to `upstream`.
    pub port: u16,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingProxy {
    /// Starts a proxy to `upstream` (`host:port`) on the current tokio runtime.
    pub async fn start(upstream: &str) -> StallingProxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a spare loopback port");
        let port = listener.local_addr().expect("a bound address").port();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let held = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                    let _ = to_server.shutdown().await;
                });
                let held = held.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        while held.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        }
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        StallingProxy { port, stalled }
    }

    /// Holds back (`true`) or lets through (`false`) what the server sends.
    pub fn stall(&self, stalled: bool) {
        self.stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs `work` to completion on a one-thread runtime of its own (so that every task it
/// spawns logs through this thread's subscriber), with every `tracing` event of every
/// level written, without colours, to a buffer; then lets what it left running log for
/// 100 ms more. Returns `work`'s output and the text logged.
pub fn with_logs<T>(work: impl std::future::Future<Output = T>) -> (T, String) {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let buffer = buffer.clone();
            move || buffer.clone()
        })
        .finish();
    let out = tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let out = runtime.block_on(work);
        runtime.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(100)).await });
        out
    });
    let logged = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    (out, logged)
}
