//! The parameters of a `redis://` or `rediss://` URL, read once into [`RedisOptions`]: the
//! only place that reads them.

use std::time::Duration;

use redis::Client;

use crate::error::LockError;
use crate::url::BackendUrl;

/// `timeout_ms` unless the URL says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// `connect_timeout_ms` unless the URL says otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The query parameters this backend takes.
const PARAMS: &[&str] = &[
    "prefix",
    "timeout_ms",
    "connect_timeout_ms",
    "tls_ca_file",
    "tls_insecure",
];

/// What a Redis URL asks for, checked.
pub(super) struct RedisOptions {
    /// `timeout_ms`: the longest one operation waits for an answer.
    pub(super) timeout: Duration,
    /// `connect_timeout_ms`: the longest one connection attempt takes.
    pub(super) connect_timeout: Duration,
    /// `prefix`: the text every stored key starts with.
    pub(super) prefix: String,
    /// The client for the server, with the TLS settings (`tls_ca_file`, `tls_insecure`)
    /// applied and without lockattr's own parameters.
    pub(super) client: Client,
}

impl RedisOptions {
    /// Reads and checks the parameters of `url`; an unknown or malformed one is
    /// [`LockError::InvalidUrl`].
    pub(super) fn from_url(url: &BackendUrl) -> Result<Self, LockError> {
        url.check_params(PARAMS)?;
        Ok(RedisOptions {
            timeout: url.millis("timeout_ms", DEFAULT_TIMEOUT)?,
            connect_timeout: url.millis("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?,
            prefix: url.prefix().to_owned(),
            client: client(url)?,
        })
    }
}

/// The client for `url`, without lockattr's own parameters.
fn client(url: &BackendUrl) -> Result<Client, LockError> {
    let tls = url.scheme == "rediss";
    let ca_file = url.params.get("tls_ca_file");
    let insecure = url.flag("tls_insecure")?;
    if !tls && (ca_file.is_some() || insecure) {
        return Err(url.invalid("`tls_ca_file` and `tls_insecure` need a `rediss://` URL"));
    }
    let mut target = format!("{}://{}", url.scheme, url.rest);
    if insecure && !target.contains('#') {
        target.push_str("#insecure");
    }
    let refused = |e: redis::RedisError| {
        // The client's messages describe the URL's shape, never its password.
        url.invalid(format!("the Redis client refused it: {e}"))
    };
    if tls {
        // rustls needs a process-wide crypto provider; keep the application's if it set one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| url.invalid(format!("cannot read `tls_ca_file` {path}: {e}")))?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Client::build_with_tls(target, certs).map_err(refused)
        }
        None => Client::open(target).map_err(refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Result<RedisOptions, LockError> {
        RedisOptions::from_url(&BackendUrl::parse(url).unwrap())
    }

    #[test]
    fn bad_options_are_invalid_urls() {
        for bad in [
            "redis://127.0.0.1?timeout_ms=0",
            "redis://127.0.0.1?connect_timeout_ms=soon",
            "redis://127.0.0.1?timeout=5",
            "redis://127.0.0.1?tls_insecure=true",
            "rediss://127.0.0.1?tls_insecure=maybe",
            "redis://u:hunter2@[bad",
            "redis://u:hunter2@h:notaport",
            "redis://u:hunter2@h/db",
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
        let o = options("redis://127.0.0.1").unwrap();
        assert_eq!(o.timeout, Duration::from_millis(1000));
        assert_eq!(o.connect_timeout, Duration::from_millis(1000));
        assert_eq!(o.prefix, "lockattr:");
        let o =
            options("redis://127.0.0.1?timeout_ms=250&connect_timeout_ms=300&prefix=app:").unwrap();
        assert_eq!(o.timeout, Duration::from_millis(250));
        assert_eq!(o.connect_timeout, Duration::from_millis(300));
        assert_eq!(o.prefix, "app:");
    }
}
