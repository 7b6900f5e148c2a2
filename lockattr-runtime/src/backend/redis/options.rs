//! The parameters of a `redis://` or `rediss://` URL, read once into [`RedisOptions`]: the
//! only place that reads them.

use std::time::Duration;

use redis::Client;

use crate::backend::limit::NoAnswer;
pub(super) use crate::backend::limit::TimeLimit;
#[cfg(test)]
use crate::backend::BackendResult;
use crate::error::{BoxError, LockError};
use crate::url::{BackendUrl, Secrets};

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
#[derive(Clone)]
pub(super) struct RedisOptions {
    /// `timeout_ms`: the longest one operation waits for an answer.
    pub(super) timeout: TimeLimit,
    /// `connect_timeout_ms`: the longest opening the backend takes (both connections, the
    /// subscription, the format check), and each connection attempt after that.
    pub(super) connect_timeout: TimeLimit,
    /// `prefix`: the text every stored key starts with.
    pub(super) prefix: String,
    /// The client for the server, with the TLS settings (`tls_ca_file`, `tls_insecure`)
    /// applied and without lockattr's own parameters.
    pub(super) client: Client,
    /// The URL without its password, for messages and logs.
    pub(super) backend: String,
    /// The URL's password, scrubbed from every client error.
    secrets: Secrets,
}

impl RedisOptions {
    /// Reads and checks the parameters of `url`; an unknown or malformed one is
    /// [`LockError::InvalidUrl`].
    pub(super) fn from_url(url: &BackendUrl) -> Result<Self, LockError> {
        url.check_params(PARAMS)?;
        let secrets = url.secrets();
        Ok(RedisOptions {
            timeout: TimeLimit {
                server: "Redis",
                param: "timeout_ms",
                length: url.millis("timeout_ms", DEFAULT_TIMEOUT)?,
            },
            connect_timeout: TimeLimit {
                server: "Redis",
                param: "connect_timeout_ms",
                length: url.millis("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?,
            },
            prefix: url.prefix().to_owned(),
            client: client(url, &secrets)?,
            backend: url.redacted.clone(),
            secrets,
        })
    }

    /// What an error of the Redis client becomes: the one path every one of them takes.
    /// Its message is scrubbed of the URL's password; a connection attempt that timed out
    /// (the client bounds each by `connect_timeout_ms`) says so.
    pub(super) fn client_error(&self, e: redis::RedisError) -> BoxError {
        if e.is_timeout() {
            Box::new(NoAnswer(self.connect_timeout))
        } else {
            self.secrets.error(e)
        }
    }

    /// The key that records the storage format on the server: `{<prefix>}format`, beside
    /// (and never equal to) the lock names `{<prefix><key>}…`.
    pub(super) fn format_key(&self) -> String {
        format!("{{{}}}format", self.prefix)
    }
}

/// The client for `url`, without lockattr's own parameters.
fn client(url: &BackendUrl, secrets: &Secrets) -> Result<Client, LockError> {
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
        url.invalid(format!("the Redis client refused it: {}", secrets.error(e)))
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
        assert_eq!(o.timeout.length, Duration::from_millis(1000));
        assert_eq!(o.timeout.param, "timeout_ms");
        assert_eq!(o.connect_timeout.length, Duration::from_millis(1000));
        assert_eq!(o.connect_timeout.param, "connect_timeout_ms");
        assert_eq!(o.prefix, "lockattr:");
        assert_eq!(o.format_key(), "{lockattr:}format");
        let o =
            options("redis://127.0.0.1?timeout_ms=250&connect_timeout_ms=300&prefix=app:").unwrap();
        assert_eq!(o.timeout.length, Duration::from_millis(250));
        assert_eq!(o.connect_timeout.length, Duration::from_millis(300));
        assert_eq!(o.prefix, "app:");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_that_runs_out_names_its_parameter_and_value() {
        let o = options("redis://u:hunter2@127.0.0.1?connect_timeout_ms=300").unwrap();
        let e = o
            .connect_timeout
            .bound(std::future::pending::<BackendResult<()>>())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Redis did not answer within 300 ms (the URL's `connect_timeout_ms`)"
        );
        let timed_out = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(o
            .client_error(timed_out)
            .to_string()
            .contains("`connect_timeout_ms`"));
    }

    #[test]
    fn client_errors_are_scrubbed_of_the_password() {
        let o = options("redis://u:hunter%32@127.0.0.1").unwrap();
        let echoed = redis::RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "refused",
            "password hunter2 (hunter%32)".to_owned(),
        ));
        let e = o.client_error(echoed);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("password *** (***)"), "{shown}");
    }
}
