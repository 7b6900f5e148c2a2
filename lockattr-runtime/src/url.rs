//! Backend URLs: which backend a URL names, its options, and the redacted form used in
//! every message.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::LockError;
use crate::key::DEFAULT_PREFIX;

/// A backend URL split into the parts lockattr needs; the backend's client gets the rest.
#[derive(Debug, Clone)]
pub struct BackendUrl {
    /// The scheme, lower-cased: `memory`, `redis`, …
    pub scheme: String,
    /// Everything between `://` and the `?`.
    pub rest: String,
    /// The query parameters, in order of their names.
    pub params: BTreeMap<String, String>,
    /// The URL with the password replaced by `***`: safe for logs and error messages.
    pub redacted: String,
}

impl BackendUrl {
    /// Splits `url`. Fails (naming the redacted URL) if it has no `scheme://`.
    pub fn parse(url: &str) -> Result<Self, LockError> {
        let redacted = redact(url);
        let invalid = |reason: &str| LockError::InvalidUrl {
            url: redacted.clone(),
            reason: reason.to_owned(),
        };
        let (scheme, after) = url.split_once("://").ok_or_else(|| {
            invalid("expected `scheme://…`, for example `memory://` or `redis://127.0.0.1:6379`")
        })?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(invalid("the scheme is not a word"));
        }
        let (rest, query) = match after.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (after, None),
        };
        let mut params = BTreeMap::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| invalid("a query value has a bad %-escape"))?;
            params.insert(k.to_owned(), v);
        }
        Ok(BackendUrl {
            scheme: scheme.to_ascii_lowercase(),
            rest: rest.to_owned(),
            params,
            redacted,
        })
    }

    /// The key prefix: `?prefix=…`, else [`DEFAULT_PREFIX`].
    pub fn prefix(&self) -> &str {
        self.params
            .get("prefix")
            .map_or(DEFAULT_PREFIX, String::as_str)
    }

    /// An [`LockError::InvalidUrl`] about this URL.
    pub fn invalid(&self, reason: impl Into<String>) -> LockError {
        LockError::InvalidUrl {
            url: self.redacted.clone(),
            reason: reason.into(),
        }
    }

    /// The parameter `name` as a positive number of milliseconds, or `default` when absent.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use lockattr::url::BackendUrl;
    /// let url = BackendUrl::parse("redis://h?timeout_ms=250&x=0").unwrap();
    /// assert_eq!(url.millis("timeout_ms", Duration::from_secs(1)).unwrap(), Duration::from_millis(250));
    /// assert_eq!(url.millis("connect_timeout_ms", Duration::from_secs(1)).unwrap(), Duration::from_secs(1));
    /// assert!(url.millis("x", Duration::from_secs(1)).is_err());
    /// ```
    pub fn millis(&self, name: &str, default: Duration) -> Result<Duration, LockError> {
        match self.params.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                _ => Err(self.invalid(format!(
                    "`{name}` must be a positive number of milliseconds, not `{v}`"
                ))),
            },
        }
    }

    /// The parameter `name` as a flag: absent, `false` or `0` is off; `true`, `1` or an
    /// empty value is on; anything else is [`LockError::InvalidUrl`].
    pub fn flag(&self, name: &str) -> Result<bool, LockError> {
        match self.params.get(name).map(String::as_str) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(v) => Err(self.invalid(format!("`{name}` must be `true` or `false`, not `{v}`"))),
        }
    }

    /// Fails if the query has a parameter outside `known` (a typo must not be ignored).
    pub fn check_params(&self, known: &[&str]) -> Result<(), LockError> {
        match self.params.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(self.invalid(format!(
                "unknown parameter `{k}`; this backend takes: {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

impl BackendUrl {
    /// The secrets in this URL, to scrub from client messages.
    pub fn secrets(&self) -> Secrets {
        let mut found: Vec<String> = Vec::new();
        let authority = self.rest.split('/').next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                found.push(password.to_owned());
                if let Some(decoded) = percent_decode(password) {
                    found.push(decoded);
                }
            }
        }
        for (k, v) in &self.params {
            if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") {
                found.push(v.clone());
            }
        }
        found.retain(|s| !s.is_empty());
        // Longest first, so that a secret inside another is not replaced half-way.
        found.sort_by_key(|s| std::cmp::Reverse(s.len()));
        found.dedup();
        Secrets(found.into())
    }

    /// The URL for a backend's client library: `scheme://rest` with the query parameters
    /// other than lockattr's own (`own`), percent-encoded again. A parameter that is in
    /// neither `own` nor `client` (those the client reads) is [`LockError::InvalidUrl`].
    pub fn client_url(
        &self,
        scheme: &str,
        own: &[&str],
        client: &[&str],
    ) -> Result<String, LockError> {
        let known: Vec<&str> = own.iter().chain(client).copied().collect();
        self.check_params(&known)?;
        let mut out = format!("{scheme}://{}", self.rest);
        let mut sep = '?';
        for (k, v) in self
            .params
            .iter()
            .filter(|(k, _)| !own.contains(&k.as_str()))
        {
            out.push(sep);
            sep = '&';
            out.push_str(k);
            out.push('=');
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        Ok(out)
    }
}

/// The secrets a backend URL carries (the password of its `user:password@` part and of a
/// `password=` parameter, as written and %-decoded), so that a driver's message that
/// echoes one can be scrubbed before it reaches an error, a log or a `Debug` print. Its
/// own `Debug` prints no secret.
///
/// Every backend maps its client's errors through [`Secrets::error`]: one redaction path.
#[derive(Clone, Default)]
pub struct Secrets(std::sync::Arc<[String]>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

impl Secrets {
    /// `text` with every secret replaced by `***`.
    ///
    /// ```
    /// use lockattr::url::BackendUrl;
    /// let url = BackendUrl::parse("postgres://app:p%40ss@db/app").unwrap();
    /// let secrets = url.secrets();
    /// assert_eq!(secrets.scrub("password authentication failed (p%40ss, p@ss)"),
    ///            "password authentication failed (***, ***)");
    /// ```
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.0.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// A client's error as a [`BoxError`](crate::BoxError) whose message and `Debug` are
    /// scrubbed; the original error is not kept (its `Debug` may hold the password).
    pub fn error(&self, e: impl std::fmt::Display) -> crate::BoxError {
        Box::new(Scrubbed(self.scrub(&e.to_string())))
    }
}

/// A client error with the secrets taken out of its message.
#[derive(Debug)]
struct Scrubbed(String);

impl std::fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Scrubbed {}

/// `url` with the password of its `user:password@` part, and the value of any
/// `password=` query parameter, replaced by `***`.
///
/// ```
/// use lockattr::url::redact;
/// assert_eq!(redact("redis://app:s3cret@cache:6379/0"), "redis://app:***@cache:6379/0");
/// assert_eq!(redact("postgres://db/app?password=x&sslmode=require"),
///            "postgres://db/app?password=***&sslmode=require");
/// assert_eq!(redact("memory://"), "memory://");
/// ```
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    // Without `scheme://`, the whole head is treated as an authority: a password must not
    // escape redaction just because the URL is malformed.
    let rest = match head.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            rest
        }
        None => head,
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scheme_rest_and_params() {
        let u = BackendUrl::parse("Memory://jobs?prefix=app%3A&x=1").unwrap();
        assert_eq!(u.scheme, "memory");
        assert_eq!(u.rest, "jobs");
        assert_eq!(u.prefix(), "app:");
        assert_eq!(u.params["x"], "1");
    }

    #[test]
    fn rejects_urls_without_scheme_and_never_prints_the_password() {
        let e = BackendUrl::parse("app:hunter2@localhost").unwrap_err();
        assert!(matches!(e, LockError::InvalidUrl { .. }));
        let e = BackendUrl::parse("redis://u:hunter2@h?prefix=%zz").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("redis://u:***@h"), "{msg}");
    }

    #[test]
    fn redacts_passwords_with_at_signs_and_query_passwords() {
        assert_eq!(redact("redis://:p@ss@h:1"), "redis://:***@h:1");
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact("x://h?Password=1"), "x://h?Password=***");
    }

    #[test]
    fn client_urls_drop_own_params_and_reencode() {
        let u = BackendUrl::parse(
            "postgres://u@h/db?mode=table&prefix=a%3A&sslmode=require&application_name=a%20b",
        )
        .unwrap();
        let client = u
            .client_url(
                "postgres",
                &["mode", "prefix"],
                &["sslmode", "application_name"],
            )
            .unwrap();
        assert_eq!(
            client,
            "postgres://u@h/db?application_name=a%20b&sslmode=require"
        );
        assert!(u
            .client_url("postgres", &["mode", "prefix"], &["sslmode"])
            .is_err());
    }

    #[test]
    fn secrets_are_scrubbed_from_messages_and_debug() {
        let u = BackendUrl::parse("mysql://root:hun%3Ater2@h/db?password=swordfish").unwrap();
        let secrets = u.secrets();
        let e = secrets.error("access denied for root (hun:ter2, hun%3Ater2, swordfish)");
        assert_eq!(e.to_string(), "access denied for root (***, ***, ***)");
        let debug = format!("{e:?} {secrets:?}");
        assert!(
            !debug.contains("ter2") && !debug.contains("sword"),
            "{debug}"
        );
        let none = BackendUrl::parse("redis://h").unwrap().secrets();
        assert_eq!(none.scrub("a b"), "a b");
    }

    #[test]
    fn unknown_params_are_errors() {
        let u = BackendUrl::parse("memory://?prefx=a").unwrap();
        let msg = u.check_params(&["prefix"]).unwrap_err().to_string();
        assert!(msg.contains("unknown parameter `prefx`"), "{msg}");
    }
}
