//! The meta protocol over one TCP connection, and the small pool of connections every
//! operation borrows one from.
//!
//! A request is a batch of commands written at once (pipelined) and answered in order;
//! each answer is one [`Reply`]. A connection learns, when it opens, the start time of the
//! server process it talks to (`stats`: `time - uptime`), which the fencing tokens are
//! built from (see the [module docs](super)).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::options::MemcachedOptions;
use crate::backend::BackendResult;

/// The most connections one backend opens at once; more concurrent operations wait for
/// one (within their `timeout_ms`).
pub(super) const MAX_CONNECTIONS: usize = 16;

/// The longest answer line accepted; a meta answer line is a few dozen bytes.
const MAX_LINE: usize = 4096;

/// The longest value read back: lock values are 32 hex digits, tickets a number.
const MAX_VALUE: usize = 1024;

/// One answer to a meta command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// `HD`: done; the item's CAS when asked for with `c`.
    Stored { cas: Option<u64> },
    /// `VA`: a value, with the item's CAS when asked for with `c`, and its seconds left
    /// when asked for with `t` (`-1`: no expiry).
    Value {
        data: Vec<u8>,
        cas: Option<u64>,
        ttl: Option<i64>,
    },
    /// `NS`: not stored (an add on a key that exists).
    NotStored,
    /// `EX`: the CAS did not match.
    Exists,
    /// `NF` or `EN`: no such item.
    NotFound,
}

/// One command: its line, and the data block that follows it for `ms`.
pub(super) struct Command(Vec<u8>);

impl Command {
    /// `line` followed by `\r\n`. The caller builds it from checked keys (no whitespace
    /// or control bytes) and numbers.
    pub(super) fn line(line: &str) -> Self {
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        Command(buf)
    }

    /// `ms <key> <len> <flags>` and the value `data`.
    pub(super) fn set(key: &str, flags: &str, data: &[u8]) -> Self {
        let mut cmd = Command::line(&format!("ms {key} {} {flags}", data.len()));
        cmd.0.extend_from_slice(data);
        cmd.0.extend_from_slice(b"\r\n");
        cmd
    }
}

/// One open connection to a server process, with that process's start time.
struct Connection {
    stream: BufStream<TcpStream>,
    /// When the server process started, in seconds since 1970 (`stats` `time - uptime`).
    started: u64,
}

impl Connection {
    /// Opens a connection and reads the server's start time. The caller bounds it.
    async fn open(address: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream: BufStream::new(stream),
            started: 0,
        };
        conn.stream.write_all(b"stats\r\n").await?;
        conn.stream.flush().await?;
        let (mut time, mut uptime) = (None, None);
        loop {
            let line = conn.line().await?;
            if line == "END" {
                break;
            }
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some("STAT"), Some("time"), Some(v)) => time = v.parse::<u64>().ok(),
                (Some("STAT"), Some("uptime"), Some(v)) => uptime = v.parse::<u64>().ok(),
                (Some("STAT"), _, _) => {}
                _ => return Err(invalid(format!("unexpected answer to `stats`: `{line}`"))),
            }
        }
        match (time, uptime) {
            (Some(time), Some(uptime)) if time > uptime => conn.started = time - uptime,
            _ => return Err(invalid("`stats` gave no `time` and `uptime`")),
        }
        Ok(conn)
    }

    /// One answer line, without its `\r\n`.
    async fn line(&mut self) -> std::io::Result<String> {
        self.line_ending(b"\r\n").await
    }

    /// One answer line ending in `end`, without it. Metadump lines end in `\n` alone
    /// (its closing `END` in `\r\n`, which is stripped as well).
    async fn line_ending(&mut self, end: &[u8]) -> std::io::Result<String> {
        let mut buf = Vec::with_capacity(64);
        let n = (&mut self.stream)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if !buf.ends_with(end) {
            return Err(invalid("an answer line was cut short or too long"));
        }
        buf.truncate(buf.len() - end.len());
        if end == b"\n" && buf.ends_with(b"\r") {
            buf.pop();
        }
        String::from_utf8(buf).map_err(|_| invalid("an answer line is not UTF-8"))
    }

    /// Writes `commands` at once and reads one answer to each.
    async fn run(&mut self, commands: &[Command]) -> std::io::Result<Vec<Reply>> {
        for cmd in commands {
            self.stream.write_all(&cmd.0).await?;
        }
        self.stream.flush().await?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.reply().await?);
        }
        Ok(replies)
    }

    async fn reply(&mut self) -> std::io::Result<Reply> {
        let line = self.line().await?;
        let mut words = line.split(' ');
        let code = words.next().unwrap_or("");
        let (mut cas, mut ttl) = (None, None);
        let mut size = None;
        for (i, word) in words.enumerate() {
            if code == "VA" && i == 0 {
                size = word.parse::<usize>().ok();
            } else if let Some(v) = word.strip_prefix('c') {
                cas = v.parse().ok();
            } else if let Some(v) = word.strip_prefix('t') {
                ttl = v.parse().ok();
            }
        }
        Ok(match code {
            "HD" => Reply::Stored { cas },
            "NS" => Reply::NotStored,
            "EX" => Reply::Exists,
            "NF" | "EN" => Reply::NotFound,
            "VA" => {
                let size = size
                    .filter(|&s| s <= MAX_VALUE)
                    .ok_or_else(|| invalid(format!("unexpected value header `{line}`")))?;
                let mut data = vec![0; size + 2];
                self.stream.read_exact(&mut data).await?;
                if !data.ends_with(b"\r\n") {
                    return Err(invalid("a value was not followed by `\\r\\n`"));
                }
                data.truncate(size);
                Reply::Value { data, cas, ttl }
            }
            _ => return Err(invalid(format!("the server answered `{line}`"))),
        })
    }
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// The connections of one backend: idle ones kept for reuse, at most
/// [`MAX_CONNECTIONS`] in use.
pub(super) struct Pool {
    pub(super) options: MemcachedOptions,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// What a request got: the answers, and the start time of the server process that gave
/// them.
pub(super) struct Answers {
    pub(super) replies: Vec<Reply>,
    pub(super) server_started: u64,
}

impl Pool {
    /// A pool that opens its first connection now (bounded by `connect_timeout_ms`), so
    /// that a server that is down fails [`connect`](crate::connect).
    pub(super) async fn open(options: MemcachedOptions) -> BackendResult<Self> {
        let pool = Pool {
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_CONNECTIONS),
            options,
        };
        let conn = pool.connect().await?;
        pool.idle_conns().push(conn);
        Ok(pool)
    }

    fn idle_conns(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect(&self) -> BackendResult<Connection> {
        let address = &self.options.address;
        self.options
            .connect_timeout
            .bound(async {
                Connection::open(address)
                    .await
                    .map_err(|e| self.options.client_error(e))
            })
            .await
    }

    /// Runs `commands` as one pipelined request, bounded as a whole by `timeout_ms`. A
    /// connection that fails or is abandoned mid-request is closed, never reused. A reused
    /// connection that turns out to be closed (the server restarted since) is replaced
    /// once by a new one.
    pub(super) async fn run(&self, commands: &[Command]) -> BackendResult<Answers> {
        self.options
            .timeout
            .bound(async {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|e| self.options.client_error(e))?;
                let reused = self.idle_conns().pop();
                let fresh = reused.is_none();
                let mut conn = match reused {
                    Some(conn) => conn,
                    None => self.connect().await?,
                };
                let replies = match conn.run(commands).await {
                    Ok(replies) => replies,
                    Err(e) if !fresh && is_closed(&e) => {
                        tracing::debug!(backend = self.options.backend, error = %e, "a pooled Memcached connection was closed; opening a new one");
                        conn = self.connect().await?;
                        conn.run(commands)
                            .await
                            .map_err(|e| self.options.client_error(e))?
                    }
                    Err(e) => return Err(self.options.client_error(e)),
                };
                let server_started = conn.started;
                self.idle_conns().push(conn);
                Ok(Answers {
                    replies,
                    server_started,
                })
            })
            .await
    }
}

/// What `lru_crawler metadump` answered.
pub(super) enum Dump {
    /// The keys (decoded) of the items the caller kept.
    Keys(Vec<String>),
    /// The server cannot list its items, and said so: `CLIENT_ERROR lru crawler disabled`
    /// (started with `-o no_lru_crawler`), `ERROR metadump not allowed` (started with
    /// `-X`), or `ERROR` (a server that does not know the command).
    Refused(String),
}

/// The command that lists every item of the server by walking its hash table (recent
/// 1.6 releases; Debian's 1.6.18 has it): every item is seen once, where a walk of the
/// LRUs can miss items accessed while it runs (as held locks are, at each renewal).
const METADUMP_HASH: &[u8] = b"lru_crawler metadump hash\r\n";
/// The same by walking the LRUs, for a server that does not know `hash` (it reads it as a
/// slab class and answers `BADCLASS`).
const METADUMP_ALL: &[u8] = b"lru_crawler metadump all\r\n";
/// The pause before asking again while the crawler is busy with another crawl.
const BUSY_PAUSE: Duration = Duration::from_millis(50);

impl Pool {
    /// The keys of the server's items, decoded, that `keep` selects: `lru_crawler metadump
    /// hash` (or `all` where `hash` is unknown), which walks the whole cache. On a
    /// connection of its own (counted in the pool's [`MAX_CONNECTIONS`]), closed
    /// afterwards: opening it is bounded by `connect_timeout_ms`, and each line of the
    /// answer by `timeout_ms` (the walk as a whole takes as long as the cache is large).
    /// While the crawler is busy with another crawl (`BUSY`), asks again for up to
    /// `timeout_ms`.
    pub(super) async fn metadump(&self, mut keep: impl FnMut(&str) -> bool) -> BackendResult<Dump> {
        let timeout = self.options.timeout;
        let _permit = timeout
            .bound(async {
                self.permits
                    .acquire()
                    .await
                    .map_err(|e| self.options.client_error(e))
            })
            .await?;
        let mut conn = self.connect().await?;
        let busy_until = Instant::now() + timeout.length;
        let mut command = METADUMP_HASH;
        let mut line = loop {
            self.dump_io(async {
                conn.stream.write_all(command).await?;
                conn.stream.flush().await
            })
            .await?;
            let mut first = self.dump_io(conn.line_ending(b"\n")).await?;
            // Documented as the answer to a crawl that started, though no server sends it.
            if first == "OK" {
                first = self.dump_io(conn.line_ending(b"\n")).await?;
            }
            if first.starts_with("BADCLASS") && command == METADUMP_HASH {
                command = METADUMP_ALL;
            } else if first.starts_with("BUSY") && Instant::now() < busy_until {
                tokio::time::sleep(BUSY_PAUSE).await;
            } else {
                break first;
            }
        };
        if line == "ERROR"
            || line.starts_with("ERROR metadump not allowed")
            || line.starts_with("CLIENT_ERROR lru crawler disabled")
        {
            return Ok(Dump::Refused(line));
        }
        let mut keys = Vec::new();
        // `NOTSTARTED no items to crawl`: an empty cache.
        while line != "END" && !line.starts_with("NOTSTARTED") {
            let key = line
                .split(' ')
                .next()
                .and_then(|word| word.strip_prefix("key="))
                .ok_or_else(|| {
                    self.options
                        .client_error(format!("unexpected answer to a metadump: `{line}`"))
                })?;
            if let Some(key) = uri_decode(key).filter(|k| keep(k)) {
                keys.push(key);
            }
            line = self.dump_io(conn.line_ending(b"\n")).await?;
        }
        Ok(Dump::Keys(keys))
    }

    /// One step of a metadump, bounded by `timeout_ms`.
    async fn dump_io<T>(
        &self,
        io: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> BackendResult<T> {
        self.options
            .timeout
            .bound(async { io.await.map_err(|e| self.options.client_error(e)) })
            .await
    }
}

/// A key as metadump writes it (URI-encoded: `%7C` for `|`) decoded; `None` if it is not
/// UTF-8 (no stored key of this backend is) or not well encoded.
fn uri_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `e` says the peer closed the connection (as after a server restart).
fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_end_in_crlf_and_carry_their_data() {
        assert_eq!(Command::line("mg k v").0, b"mg k v\r\n");
        assert_eq!(
            Command::set("k", "T2 ME c", b"ab").0,
            b"ms k 2 T2 ME c\r\nab\r\n"
        );
    }

    #[test]
    fn metadump_keys_are_decoded() {
        assert_eq!(
            uri_decode("lockattr%3Ajob%3Anightly%7Cl").as_deref(),
            Some("lockattr:job:nightly|l")
        );
        // A key holding `%20` (an escaped space) is dumped as `%2520`.
        assert_eq!(uri_decode("a%2520b").as_deref(), Some("a%20b"));
        assert_eq!(uri_decode("plain").as_deref(), Some("plain"));
        assert_eq!(uri_decode("bad%7"), None);
        assert_eq!(uri_decode("bad%zz"), None);
    }
}
