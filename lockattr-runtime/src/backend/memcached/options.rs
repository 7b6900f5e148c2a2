//! The parameters of a `memcached://` URL, read once into [`MemcachedOptions`]: the only
//! place that reads them; and the one rounding of a ttl to Memcached's whole seconds.

use std::fmt;
use std::time::Duration;

pub(super) use crate::backend::limit::TimeLimit;
#[cfg(test)]
use crate::backend::BackendResult;
use crate::error::{BoxError, LockError};
use crate::url::{BackendUrl, Secrets};

/// `timeout_ms` unless the URL says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// `connect_timeout_ms` unless the URL says otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// The port of `memcached://host` without one.
const DEFAULT_PORT: u16 = 11211;
/// The longest relative expiry Memcached takes: a larger one is read as a Unix time.
const MAX_RELATIVE_EXPIRY: u64 = 30 * 24 * 3600;

/// The query parameters this backend takes.
const PARAMS: &[&str] = &["prefix", "timeout_ms", "connect_timeout_ms"];

/// What a Memcached URL asks for, checked.
#[derive(Debug, Clone)]
pub(super) struct MemcachedOptions {
    /// `host:port` of the server.
    pub(super) address: String,
    /// `timeout_ms`: the longest one operation waits for an answer.
    pub(super) timeout: TimeLimit,
    /// `connect_timeout_ms`: the longest opening the backend, and each new connection, takes.
    pub(super) connect_timeout: TimeLimit,
    /// `prefix`: the text every stored key starts with.
    pub(super) prefix: String,
    /// The redacted URL, for messages and logs.
    pub(super) backend: String,
    /// What error messages are scrubbed of (a Memcached URL carries no password, which
    /// this backend refuses; kept so that every client error takes the one path).
    secrets: Secrets,
}

impl MemcachedOptions {
    /// Reads and checks the parameters of `url`; an unknown or malformed one is
    /// [`LockError::InvalidUrl`].
    pub(super) fn from_url(url: &BackendUrl) -> Result<Self, LockError> {
        url.check_params(PARAMS)?;
        let rest = url.rest.strip_suffix('/').unwrap_or(&url.rest);
        if rest.contains('@') {
            return Err(url.invalid(
                "Memcached's text protocol has no login: remove the `user:password@` part",
            ));
        }
        if rest.is_empty() || rest.contains('/') {
            return Err(url.invalid("expected `memcached://host[:port]`, with no path"));
        }
        let prefix = url.prefix();
        if prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(
                url.invalid("Memcached keys cannot hold spaces or control bytes: nor can `prefix`")
            );
        }
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let host_end = if rest.starts_with('[') {
            rest.find(']').map_or(rest.len(), |i| i + 1)
        } else {
            rest.find(':').unwrap_or(rest.len())
        };
        let (host, port) = rest.split_at(host_end);
        let port = match port.strip_prefix(':') {
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| url.invalid(format!("the port `{port}` is not a number")))?,
            None if port.is_empty() => DEFAULT_PORT,
            None => return Err(url.invalid(format!("unexpected `{port}` after the host"))),
        };
        let address = format!("{host}:{port}");
        Ok(MemcachedOptions {
            address,
            timeout: TimeLimit {
                server: "Memcached",
                param: "timeout_ms",
                length: url.millis("timeout_ms", DEFAULT_TIMEOUT)?,
            },
            connect_timeout: TimeLimit {
                server: "Memcached",
                param: "connect_timeout_ms",
                length: url.millis("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?,
            },
            prefix: prefix.to_owned(),
            backend: url.redacted.clone(),
            secrets: url.secrets(),
        })
    }

    /// What an error of the connection becomes, scrubbed through the URL's [`Secrets`].
    pub(super) fn client_error(&self, e: impl fmt::Display) -> BoxError {
        self.secrets
            .error(format!("Memcached at {}: {e}", self.address))
    }

    /// The key that records the storage format on the server: `<prefix>|format`. Every
    /// lock name ends with a two-byte suffix (`|l`, `|w`, `|t`), which this one does not.
    pub(super) fn format_key(&self) -> String {
        format!("{}|format", self.prefix)
    }
}

/// Why Memcached cannot keep a lease of `ttl`, if it cannot: it counts whole seconds, and
/// reads an expiry over 30 days as a date.
pub(super) fn ttl_refused(ttl: Duration) -> Option<String> {
    if ttl.subsec_nanos() != 0 || ttl.is_zero() {
        return Some(format!(
            "Memcached counts expiries in whole seconds: give a ttl of whole seconds (1s, 2s, \
             30s…), not {ttl:?}"
        ));
    }
    if ttl.as_secs() >= MAX_RELATIVE_EXPIRY {
        return Some(format!(
            "Memcached takes expiries of at most 30 days: {ttl:?} is too long (renew a shorter \
             lease instead)"
        ));
    }
    None
}

/// The expiry sent for a lease that must last at least `d`: whole seconds rounded up,
/// plus one. Memcached's clock ticks once a second, so an item stored with `T<n>` lives
/// more than `n - 1` and at most `n` seconds; with `n = ⌈d⌉ + 1` the server never frees
/// the key before the holder's local deadline, and (for a whole-second ttl) frees a
/// crashed holder's key at most one second after it. Never 0 (no expiry) nor a date.
pub(super) fn expiry_secs(d: Duration) -> u64 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    (whole + 1).min(MAX_RELATIVE_EXPIRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Result<MemcachedOptions, LockError> {
        MemcachedOptions::from_url(&BackendUrl::parse(url).unwrap())
    }

    #[test]
    fn bad_options_are_invalid_urls() {
        for bad in [
            "memcached://127.0.0.1?timeout_ms=0",
            "memcached://127.0.0.1?connect_timeout_ms=soon",
            "memcached://127.0.0.1?timeout=5",
            "memcached://u:hunter2@127.0.0.1",
            "memcached://127.0.0.1:notaport",
            "memcached://127.0.0.1/db",
            "memcached://",
            "memcached://127.0.0.1?prefix=a%20b",
        ] {
            let e = options(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(matches!(e, LockError::InvalidUrl { .. }), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn defaults_and_given_values() {
        let o = options("memcached://127.0.0.1").unwrap();
        assert_eq!(o.address, "127.0.0.1:11211");
        assert_eq!(o.timeout.length, Duration::from_millis(1000));
        assert_eq!(o.connect_timeout.length, Duration::from_millis(1000));
        assert_eq!(o.prefix, "lockattr:");
        assert_eq!(o.format_key(), "lockattr:|format");
        let o = options(
            "memcached://localhost:11300/?timeout_ms=250&connect_timeout_ms=300&prefix=app:",
        )
        .unwrap();
        assert_eq!(o.address, "localhost:11300");
        assert_eq!(o.timeout.length, Duration::from_millis(250));
        assert_eq!(o.connect_timeout.length, Duration::from_millis(300));
        assert_eq!(o.prefix, "app:");
        assert_eq!(
            options("memcached://[::1]:11212").unwrap().address,
            "[::1]:11212"
        );
        assert_eq!(options("memcached://[::1]").unwrap().address, "[::1]:11211");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_that_runs_out_names_its_parameter_and_value() {
        let o = options("memcached://127.0.0.1?timeout_ms=300").unwrap();
        let e = o
            .timeout
            .bound(std::future::pending::<BackendResult<()>>())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Memcached did not answer within 300 ms (the URL's `timeout_ms`)"
        );
    }

    #[test]
    fn expiries_round_up_and_add_one_second() {
        assert_eq!(expiry_secs(Duration::from_secs(1)), 2);
        assert_eq!(expiry_secs(Duration::from_secs(30)), 31);
        assert_eq!(expiry_secs(Duration::from_millis(1)), 2);
        assert_eq!(expiry_secs(Duration::from_millis(1500)), 3);
        assert_eq!(
            expiry_secs(Duration::from_secs(365 * 24 * 3600)),
            MAX_RELATIVE_EXPIRY
        );
    }

    #[test]
    fn ttls_memcached_cannot_keep_are_refused() {
        assert!(ttl_refused(Duration::from_secs(1)).is_none());
        assert!(ttl_refused(Duration::from_secs(29 * 24 * 3600)).is_none());
        let e = ttl_refused(Duration::from_millis(1500)).unwrap();
        assert!(e.contains("whole seconds"), "{e}");
        assert!(ttl_refused(Duration::from_millis(300)).is_some());
        let e = ttl_refused(Duration::from_secs(30 * 24 * 3600)).unwrap();
        assert!(e.contains("30 days"), "{e}");
    }
}
