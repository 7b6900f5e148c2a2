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

mod private_postgres;

pub use private_postgres::PrivatePostgres;

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
